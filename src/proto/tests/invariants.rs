//! Properties that every parser and the handshake keep on any input, whatever its split.
//!
//! Shared by the property tests here and the fuzz targets in `fuzz/`, which include this
//! file by path with `crate::proto` re-exported, so both check exactly the same rules.
//! Every loop here is bounded by the input's length.

use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};

use crate::proto::association::{client_datagram, Drop};
use crate::proto::udp::Header;
use crate::proto::{Address, Command, Error, Event, Handshake, HandshakeConfig, Parse};
use crate::proto::{ReplyCode, Version};

/// Checks one parser on `buf`: it does not panic, never takes more than it was given, a
/// message is exactly its bytes (every shorter prefix is incomplete), an error stays the
/// same error however much more arrives, and what it parsed re-encodes to a message of
/// the same length that parses back to the same value.
pub fn check_parser<T, P, E>(buf: &[u8], parse: P, emit: E)
where
    T: Debug + PartialEq + Clone,
    P: Fn(&[u8]) -> Result<Parse<T>, Error>,
    E: Fn(&T, &mut Vec<u8>),
{
    let whole = parse(buf);
    match &whole {
        Ok(Parse::Complete { msg, consumed }) => {
            let n = *consumed;
            assert!(0 < n && n <= buf.len(), "consumed {n} of {}", buf.len());
            assert_eq!(parse(&buf[..n]), whole, "the message alone");
            for i in 0..n {
                assert_eq!(parse(&buf[..i]), Ok(Parse::Incomplete), "prefix {i} of {n}");
            }
            let mut out = Vec::new();
            emit(msg, &mut out);
            assert_eq!(out.len(), n, "re-encoded length of {msg:?}");
            assert_eq!(parse(&out), whole, "re-encoded {out:02x?}");
        }
        Ok(Parse::Incomplete) => {
            for i in 0..buf.len() {
                assert_eq!(parse(&buf[..i]), Ok(Parse::Incomplete), "prefix {i}");
            }
        }
        Err(e) => {
            for i in 0..buf.len() {
                let r = parse(&buf[..i]);
                assert!(
                    r == Ok(Parse::Incomplete) || r == whole,
                    "prefix {i}: {r:?}, not {e:?}"
                );
            }
            let mut longer = buf.to_vec();
            longer.extend_from_slice(&[0; 4]);
            assert_eq!(parse(&longer), whole, "more bytes after an error");
        }
    }
}

/// Checks the UDP header parser on one datagram: the payload offset is the header's
/// encoded length, and the header re-encodes to bytes that parse back to it.
pub fn check_udp_header(datagram: &[u8]) {
    let Ok(Some((header, offset))) = Header::parse(datagram) else {
        return;
    };
    assert!(
        offset <= datagram.len(),
        "offset {offset} of {}",
        datagram.len()
    );
    assert_eq!(header.wire_len(), offset);
    let mut out = Vec::new();
    header.emit(&mut out);
    assert_eq!(out.len(), offset);
    out.extend_from_slice(&datagram[offset..]);
    assert_eq!(Header::parse(&out), Ok(Some((header, offset))));
}

/// Checks the UDP relay's reading of a client datagram against the header parser: a
/// whole datagram (FRAG 0) is relayed to its normalized destination with the payload
/// right after the header; a fragment or a malformed header is dropped, for that reason.
pub fn check_client_datagram(datagram: &[u8]) {
    let header = Header::parse(datagram);
    match client_datagram(datagram) {
        Ok(out) => {
            let Ok(Some((h, offset))) = header else {
                panic!("relayed a datagram whose header is {header:?}");
            };
            assert_eq!(h.frag, 0);
            assert_eq!(out.dest, h.address.normalized());
            assert_eq!(out.payload, offset..datagram.len());
        }
        Err(Drop::Fragment) => assert!(matches!(header, Ok(Some((h, _))) if h.frag != 0)),
        Err(Drop::Malformed) => assert!(matches!(header, Ok(None) | Err(_))),
    }
}

/// How the driver answers the handshake's decisions.
#[derive(Debug, Clone)]
pub struct Script {
    pub accept_credentials: bool,
    /// The verdict on the request: grant with this bound address, or reject.
    pub verdict: Result<SocketAddr, ReplyCode>,
    /// BIND only, after a grant: the peer that connected, or a rejection.
    pub bind_peer: Result<SocketAddr, ReplyCode>,
}

/// Where a driven handshake stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Established,
    Failed(Error),
    /// The input ran out before the handshake ended.
    Waiting,
}

/// Everything a driven handshake did, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Every byte sent to the client, in order.
    pub sent: Vec<u8>,
    pub events: Vec<Event>,
    /// Input bytes the handshake took. Once established, the rest is pipelined data.
    pub consumed: usize,
    pub end: End,
}

/// Feeds `input` to a fresh handshake in chunks of the sizes in `chunks` (cycled; empty
/// means all at once), offering bytes it did not take again after each decision, as a
/// driver must. Asserts the call contract on the way.
pub fn drive(
    config: HandshakeConfig,
    input: &[u8],
    chunks: &[usize],
    script: &Script,
) -> Transcript {
    let mut hs = Handshake::new(config);
    let mut t = Transcript {
        sent: Vec::new(),
        events: Vec::new(),
        consumed: 0,
        end: End::Waiting,
    };
    let mut held: Vec<u8> = Vec::new();
    let mut delivered = 0;
    let mut sizes = chunks.iter().copied().cycle();
    // Each turn delivers a byte or answers one of at most two events.
    for _ in 0..input.len() + 4 {
        let n = hs.handle_input(&held);
        assert!(n <= held.len(), "consumed {n} of {}", held.len());
        held.drain(..n);
        t.consumed += n;
        transmit(&mut hs, &mut t.sent);
        let event = hs.poll_event();
        assert_eq!(hs.poll_event(), None, "an event is handed out once");
        if let Some(event) = event {
            answer(&mut hs, &event, script, &held);
            transmit(&mut hs, &mut t.sent);
            t.events.push(event);
        } else {
            if hs.is_established() || hs.is_failed() {
                break;
            }
            // Without an event or an end, the handshake took every byte it was offered.
            assert!(
                held.is_empty(),
                "{} bytes left without a reason",
                held.len()
            );
            if delivered == input.len() {
                break;
            }
            let size = sizes
                .next()
                .unwrap_or(input.len())
                .clamp(1, input.len() - delivered);
            held.extend_from_slice(&input[delivered..delivered + size]);
            delivered += size;
        }
    }
    t.end = match (hs.is_established(), hs.error()) {
        (true, _) => End::Established,
        (false, Some(e)) => End::Failed(e.clone()),
        (false, None) => End::Waiting,
    };
    if t.end != End::Waiting {
        // A finished handshake takes no more bytes and says nothing more.
        assert_eq!(hs.handle_input(input), 0);
        assert_eq!(hs.poll_event(), None);
        assert!(!hs.has_output());
    }
    t
}

fn transmit(hs: &mut Handshake, sent: &mut Vec<u8>) {
    let before = sent.len();
    let had = hs.has_output();
    hs.poll_transmit(sent);
    assert_eq!(
        had,
        sent.len() > before,
        "has_output agrees with poll_transmit"
    );
    assert!(!hs.has_output());
}

fn answer(hs: &mut Handshake, event: &Event, script: &Script, held: &[u8]) {
    match event {
        Event::Credentials(_) if script.accept_credentials => hs.accept_credentials(),
        Event::Credentials(_) => hs.reject_credentials(),
        Event::Request(req) => match script.verdict {
            Err(code) => hs.reject(code),
            Ok(bound) => {
                hs.grant(bound);
                if req.command == Command::Bind {
                    // While the peer is awaited, client bytes stay with the driver.
                    assert_eq!(hs.handle_input(held), 0);
                    assert_eq!(hs.poll_event(), None);
                    assert!(!hs.is_established() && !hs.is_failed());
                    match script.bind_peer {
                        Ok(peer) => hs.grant_bind_peer(peer),
                        Err(code) => hs.reject(code),
                    }
                }
            }
        },
    }
}

/// The reply a client must get for `e`, written out independently of `Error::reply`.
pub fn failure_reply(e: &Error, version: Version) -> Vec<u8> {
    let rep = match e {
        Error::UnknownVersion(_) => return Vec::new(),
        Error::NoMethodsOffered | Error::NoAcceptableMethod => return vec![5, 0xff],
        Error::BadAuthVersion(_) | Error::AuthFailed => return vec![1, 1],
        Error::Socks4NeedsAuth => 0x02,
        Error::BadRequestVersion(_) | Error::TooLong(_) => 0x01,
        Error::UnknownCommand(_) => 0x07,
        Error::UnknownAddressType(_) => 0x08,
        Error::EmptyDomain | Error::InvalidDomain => 0x04,
        Error::Rejected(code) => code.to_u8(),
    };
    match version {
        Version::Socks4 => vec![0, 91, 0, 0, 0, 0, 0, 0],
        Version::Socks5 => vec![5, rep, 0, 1, 0, 0, 0, 0, 0, 0],
    }
}

/// Checks one transcript of `input` against the rules that hold for any input.
pub fn check_transcript(config: HandshakeConfig, input: &[u8], t: &Transcript) {
    let version = match input.first() {
        Some(4) => Version::Socks4,
        _ => Version::Socks5,
    };
    assert!(t.consumed <= input.len());
    if let End::Failed(e) = &t.end {
        let reply = failure_reply(e, version);
        assert!(t.sent.ends_with(&reply), "{e:?}: sent {:02x?}", t.sent);
        if let Error::UnknownVersion(v) = e {
            assert!(t.sent.is_empty() && !matches!(v, 4 | 5));
            assert_eq!(input.first(), Some(v));
        }
    }
    let mut events = t.events.iter();
    if config.auth_required && version == Version::Socks5 {
        // The only way past the greeting is credentials.
        if t.events.is_empty() {
            assert_ne!(t.end, End::Established);
        } else {
            assert!(matches!(events.next(), Some(Event::Credentials(_))));
        }
    }
    match events.next() {
        Some(Event::Request(req)) => check_request(config, version, req),
        Some(other) => panic!("unexpected event {other:?}"),
        None => assert_ne!(t.end, End::Established, "established without a request"),
    }
    assert_eq!(events.next(), None, "at most one request");
}

fn check_request(config: HandshakeConfig, version: Version, req: &crate::proto::Request) {
    assert_eq!(req.version, version);
    match version {
        Version::Socks4 => {
            assert!(
                !config.auth_required,
                "SOCKS4 passed a server that requires auth"
            );
            assert_ne!(req.command, Command::UdpAssociate);
            assert!(req.user.is_none() && req.user_id.is_some());
        }
        Version::Socks5 => {
            assert_eq!(req.user.is_some(), config.auth_required);
            assert!(req.user_id.is_none());
        }
    }
    if let Address::Domain(name, _) = &req.address {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        assert!(
            bare.parse::<IpAddr>().is_err(),
            "IP literal {name} left as a domain"
        );
        assert!(!name.is_empty() && name.len() <= 255);
        assert!(name.bytes().all(|b| b.is_ascii_graphic()));
    }
}

/// Drives `input` whole, one byte at a time and split by `chunks`, checks each transcript,
/// and checks that the split changes nothing a client or the driver can see.
pub fn check_handshake(config: HandshakeConfig, input: &[u8], chunks: &[usize], script: &Script) {
    let whole = drive(config, input, &[], script);
    check_transcript(config, input, &whole);
    for split in [&[1][..], chunks] {
        let t = drive(config, input, split, script);
        check_transcript(config, input, &t);
        assert_eq!(t.sent, whole.sent, "sent bytes, split {split:?}");
        assert_eq!(t.events, whole.events, "events, split {split:?}");
        assert_eq!(t.end, whole.end, "end, split {split:?}");
        if t.end == End::Established {
            // What is left is pipelined data, the same however it arrived.
            assert_eq!(t.consumed, whole.consumed, "consumed, split {split:?}");
        }
    }
}
