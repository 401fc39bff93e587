//! Property tests: every message round-trips with arbitrary valid fields, no parser or
//! handshake panics on any input split any way, and valid handshakes give the expected
//! bytes and events however the client's writes are cut. Case counts are kept small so the
//! suite runs in seconds in a debug build.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::invariants::{check_client_datagram, check_handshake, check_parser};
use super::invariants::{check_transcript, check_udp_header};
use super::invariants::{drive, End, Script, Transcript};
use super::wire;
use crate::proto::auth::{Credentials, Status};
use crate::proto::udp::Header;
use crate::proto::{socks4, socks5, Address, Command, Error, Event, HandshakeConfig, Parse};
use crate::proto::{ReplyCode, Request, Version};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}

fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(
            ip.into(),
            port,
            0,
            0
        ))),
        // 0.0.0.x is the SOCKS4a marker: worth more than its share of random addresses.
        (any::<u8>(), any::<u16>()).prop_map(|(x, port)| SocketAddr::from(([0, 0, 0, x], port))),
    ]
}

/// A host name as SOCKS carries it: 1 to 255 printable ASCII bytes.
fn arb_domain() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(0x21u8..=0x7e, 1..=255),
        vec(select(b"abcxyz019.-".to_vec()), 1..=24),
    ]
    .prop_map(|b| String::from_utf8(b).unwrap())
}

fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        arb_socket_addr().prop_map(Address::Ip),
        (arb_domain(), any::<u16>()).prop_map(|(d, p)| Address::Domain(d, p)),
    ]
}

fn arb_failure_code() -> impl Strategy<Value = ReplyCode> {
    (1..=255u8).prop_map(ReplyCode::from_u8)
}

/// Emits `msg`, checks the bytes parse back to `msg` taking exactly their length (also
/// with bytes behind them), and returns them.
fn round_trip<T: std::fmt::Debug + PartialEq + Clone>(
    msg: &T,
    emit: impl Fn(&T, &mut Vec<u8>),
    parse: impl Fn(&[u8]) -> Result<Parse<T>, Error>,
) -> Result<Vec<u8>, TestCaseError> {
    let mut bytes = Vec::new();
    emit(msg, &mut bytes);
    let complete = Ok(Parse::Complete {
        msg: msg.clone(),
        consumed: bytes.len(),
    });
    prop_assert_eq!(&parse(&bytes), &complete);
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0x00, 0xa5, 0xff]);
    prop_assert_eq!(&parse(&longer), &complete);
    Ok(bytes)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn address_round_trips(addr in arb_address()) {
        let bytes = round_trip(&addr, Address::emit, Address::parse)?;
        prop_assert_eq!(bytes.len(), addr.wire_len());
    }

    #[test]
    fn socks5_greeting_round_trips(methods in vec(any::<u8>(), 1..=255)) {
        let msg = socks5::Greeting { methods };
        let bytes = round_trip(&msg, socks5::Greeting::emit, socks5::Greeting::parse)?;
        prop_assert_eq!(bytes, wire::greeting(&msg.methods));
    }

    #[test]
    fn socks5_method_selection_round_trips(method in any::<u8>()) {
        let msg = socks5::MethodSelection { method };
        round_trip(&msg, socks5::MethodSelection::emit, socks5::MethodSelection::parse)?;
    }

    #[test]
    fn socks5_request_round_trips(command in any::<u8>(), address in arb_address()) {
        let msg = socks5::Request { command, address };
        let bytes = round_trip(&msg, socks5::Request::emit, socks5::Request::parse)?;
        prop_assert_eq!(bytes, wire::socks5_request(command, &msg.address));
    }

    #[test]
    fn socks5_reply_round_trips(rep in any::<u8>(), bound in arb_address()) {
        let msg = socks5::Reply { code: ReplyCode::from_u8(rep), bound };
        round_trip(&msg, socks5::Reply::emit, socks5::Reply::parse)?;
    }

    #[test]
    fn socks4_request_round_trips(
        command in any::<u8>(),
        address in arb_address(),
        user_id in vec(1..=255u8, 0..=255),
    ) {
        let msg = socks4::Request { command, address, user_id };
        let mut bytes = Vec::new();
        msg.emit(&mut bytes);
        let Ok(Parse::Complete { msg: back, consumed }) = socks4::Request::parse(&bytes) else {
            return Err(TestCaseError::fail(format!("{msg:?} emits {bytes:02x?}")));
        };
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(back.command, command);
        prop_assert_eq!(&back.user_id, &msg.user_id);
        // IPv6 and 0.0.0.x addresses travel as SOCKS4a host names in text.
        prop_assert_eq!(back.address.clone().normalized(), msg.address.clone().normalized());
        if let Address::Ip(SocketAddr::V4(sa)) = msg.address {
            if sa.ip().octets()[..3] != [0, 0, 0] || sa.ip().octets()[3] == 0 {
                prop_assert_eq!(back.address, msg.address);
            }
        }
    }

    #[test]
    fn socks4_reply_round_trips(code in any::<u8>(), ip in any::<[u8; 4]>(), port in any::<u16>()) {
        let msg = socks4::Reply { code, bound: SocketAddrV4::new(Ipv4Addr::from(ip), port) };
        round_trip(&msg, socks4::Reply::emit, socks4::Reply::parse)?;
    }

    #[test]
    fn credentials_round_trip(
        username in vec(any::<u8>(), 0..=255),
        password in vec(any::<u8>(), 0..=255),
    ) {
        let msg = Credentials { username, password };
        let bytes = round_trip(&msg, Credentials::emit, Credentials::parse)?;
        prop_assert_eq!(bytes, wire::credentials(&msg.username, &msg.password));
    }

    #[test]
    fn auth_status_round_trips(status in any::<u8>()) {
        round_trip(&Status { status }, Status::emit, Status::parse)?;
    }

    #[test]
    fn udp_header_round_trips(
        frag in any::<u8>(),
        address in arb_address(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let header = Header { frag, address };
        let mut datagram = Vec::new();
        header.emit(&mut datagram);
        let len = datagram.len();
        prop_assert_eq!(len, header.wire_len());
        datagram.extend_from_slice(&payload);
        prop_assert_eq!(Header::parse(&datagram), Ok(Some((header, len))));
    }

    #[test]
    fn no_parser_panics_or_breaks_its_invariants(input in arb_input()) {
        check_all_parsers(&input);
    }

    #[test]
    fn parsers_keep_their_invariants_on_damaged_messages(input in arb_damaged_message()) {
        check_all_parsers(&input);
    }
}

fn check_all_parsers(input: &[u8]) {
    check_parser(input, Address::parse, Address::emit);
    check_parser(input, socks5::Greeting::parse, socks5::Greeting::emit);
    check_parser(
        input,
        socks5::MethodSelection::parse,
        socks5::MethodSelection::emit,
    );
    check_parser(input, socks5::Request::parse, socks5::Request::emit);
    check_parser(input, socks5::Reply::parse, socks5::Reply::emit);
    check_parser(input, socks4::Request::parse, socks4::Request::emit);
    check_parser(input, socks4::Reply::parse, socks4::Reply::emit);
    check_parser(input, Credentials::parse, Credentials::emit);
    check_parser(input, Status::parse, Status::emit);
    check_udp_header(input);
    check_client_datagram(input);
}

/// Bytes that reach deep into the parsers: a head of small values (versions, commands,
/// address types, lengths), a random body, and sometimes a long run without a NUL.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(select(vec![0u8, 1, 2, 3, 4, 5, 9, 0xff]), 0..8),
        vec(any::<u8>(), 0..48),
        prop_oneof![Just(0usize), 250..300usize],
    )
        .prop_map(|(head, body, run)| {
            let mut b = [head, body].concat();
            b.resize(b.len() + run, b'x');
            b
        })
}

/// A valid client message with a few bytes overwritten, cut short, or extended.
fn arb_damaged_message() -> impl Strategy<Value = Vec<u8>> {
    let message = prop_oneof![
        arb_address().prop_map(|a| wire::address(&a)),
        (any::<u8>(), arb_address()).prop_map(|(c, a)| wire::socks5_request(c, &a)),
        vec(any::<u8>(), 1..8).prop_map(|m| wire::greeting(&m)),
        (vec(any::<u8>(), 0..16), vec(any::<u8>(), 0..16))
            .prop_map(|(u, p)| wire::credentials(&u, &p)),
        (any::<u8>(), arb_domain(), vec(1..=255u8, 0..16)).prop_map(|(c, h, u)| {
            wire::socks4_request(c, 80, [0, 0, 0, 1], &u, Some(h.as_bytes()))
        }),
    ];
    (
        message,
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut b, edits, cut)| {
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            let keep = cut.index(b.len() + 8);
            b.resize(keep, 0x00);
            b
        })
}

/// A valid handshake with the transcript it must give whatever the split.
#[derive(Debug, Clone)]
struct Scenario {
    config: HandshakeConfig,
    input: Vec<u8>,
    script: Script,
    expected: Transcript,
}

/// Appends the client's verdicts to `t`: the reply or replies, the end and what it took.
fn expect_verdict(t: &mut Transcript, req: &Request, script: &Script, consumed: usize) {
    let reply = |rep: u8, bound: SocketAddr| match req.version {
        Version::Socks4 => wire::socks4_reply(if rep == 0 { 90 } else { 91 }, bound),
        Version::Socks5 => wire::socks5_reply(rep, bound),
    };
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    t.consumed = consumed;
    t.events.push(Event::Request(req.clone()));
    let bound = match script.verdict {
        Ok(bound) => bound,
        Err(code) => {
            t.sent.extend(reply(code.to_u8(), unspecified));
            t.end = End::Failed(Error::Rejected(code));
            return;
        }
    };
    t.sent.extend(reply(0, bound));
    t.end = End::Established;
    if req.command == Command::Bind {
        match script.bind_peer {
            Ok(peer) => t.sent.extend(reply(0, peer)),
            Err(code) => {
                t.sent.extend(reply(code.to_u8(), unspecified));
                t.end = End::Failed(Error::Rejected(code));
            }
        }
    }
}

fn arb_script() -> impl Strategy<Value = Script> {
    let verdict = prop_oneof![
        3 => arb_socket_addr().prop_map(Ok),
        1 => arb_failure_code().prop_map(Err),
    ];
    let peer = prop_oneof![
        3 => arb_socket_addr().prop_map(Ok),
        1 => arb_failure_code().prop_map(Err),
    ];
    (prop::bool::weighted(0.8), verdict, peer).prop_map(|(accept, verdict, bind_peer)| Script {
        accept_credentials: accept,
        verdict,
        bind_peer,
    })
}

fn arb_socks5_scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        vec(any::<u8>(), 0..4),
        (vec(any::<u8>(), 0..=40), vec(any::<u8>(), 0..=40)),
        select(vec![Command::Connect, Command::Bind, Command::UdpAssociate]),
        arb_address(),
        arb_script(),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(
            |(auth, other_methods, (user, pass), command, address, script, data)| {
                let config = HandshakeConfig {
                    auth_required: auth,
                };
                let method = if auth { 0x02 } else { 0x00 };
                let mut t = Transcript {
                    sent: vec![0x05, method],
                    events: Vec::new(),
                    consumed: 0,
                    end: End::Waiting,
                };
                let mut input = wire::greeting(&[other_methods, vec![method]].concat());
                if auth {
                    input.extend(wire::credentials(&user, &pass));
                    t.events.push(Event::Credentials(Credentials {
                        username: user.clone(),
                        password: pass,
                    }));
                    if !script.accept_credentials {
                        t.sent.extend([0x01, 0x01]);
                        t.end = End::Failed(Error::AuthFailed);
                        t.consumed = input.len();
                        input.extend(data);
                        return Scenario {
                            config,
                            input,
                            script,
                            expected: t,
                        };
                    }
                    t.sent.extend([0x01, 0x00]);
                }
                let cmd = match command {
                    Command::Connect => 1,
                    Command::Bind => 2,
                    Command::UdpAssociate => 3,
                };
                input.extend(wire::socks5_request(cmd, &address));
                let req = Request {
                    version: Version::Socks5,
                    command,
                    address: address.normalized(),
                    user: auth.then_some(user),
                    user_id: None,
                };
                expect_verdict(&mut t, &req, &script, input.len());
                input.extend(data);
                Scenario {
                    config,
                    input,
                    script,
                    expected: t,
                }
            },
        )
}

fn arb_socks4_scenario() -> impl Strategy<Value = Scenario> {
    // A plain SOCKS4 address is one that does not look like the SOCKS4a marker.
    let plain = any::<[u8; 4]>().prop_filter("0.0.0.x means SOCKS4a", |ip| {
        ip[..3] != [0, 0, 0] || ip[3] == 0
    });
    let target = prop_oneof![plain.prop_map(Ok), arb_domain().prop_map(Err)];
    (
        select(vec![Command::Connect, Command::Bind]),
        target,
        any::<u16>(),
        1..=255u8,
        vec(1..=255u8, 0..=255),
        arb_script(),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(|(command, target, port, marker, user_id, script, data)| {
            let cmd = if command == Command::Bind { 2 } else { 1 };
            let (mut input, address) = match target {
                Ok(ip) => (
                    wire::socks4_request(cmd, port, ip, &user_id, None),
                    Address::Ip(SocketAddr::from((ip, port))),
                ),
                Err(host) => (
                    wire::socks4_request(
                        cmd,
                        port,
                        [0, 0, 0, marker],
                        &user_id,
                        Some(host.as_bytes()),
                    ),
                    Address::Domain(host, port).normalized(),
                ),
            };
            let req = Request {
                version: Version::Socks4,
                command,
                address,
                user: None,
                user_id: Some(user_id),
            };
            let mut t = Transcript {
                sent: Vec::new(),
                events: Vec::new(),
                consumed: 0,
                end: End::Waiting,
            };
            expect_verdict(&mut t, &req, &script, input.len());
            input.extend(data);
            let config = HandshakeConfig {
                auth_required: false,
            };
            Scenario {
                config,
                input,
                script,
                expected: t,
            }
        })
}

fn arb_chunks() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1..=3usize, 1..=80usize], 1..6)
}

/// Client bytes for the handshake: a valid handshake cut or damaged, or noise with a
/// SOCKS-like head.
fn arb_handshake_input() -> impl Strategy<Value = (HandshakeConfig, Vec<u8>)> {
    let scenario = prop_oneof![arb_socks5_scenario(), arb_socks4_scenario()];
    let damaged = (
        scenario,
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(s, edits)| {
            let mut input = s.input;
            for (at, byte) in edits {
                let i = at.index(input.len());
                input[i] = byte;
            }
            (s.config, input)
        });
    let noise = (any::<bool>(), arb_input()).prop_map(|(auth, input)| {
        (
            HandshakeConfig {
                auth_required: auth,
            },
            input,
        )
    });
    prop_oneof![3 => damaged, 1 => noise]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn valid_handshakes_give_the_expected_transcript_under_any_split(
        s in prop_oneof![arb_socks5_scenario(), arb_socks4_scenario()],
        chunks in arb_chunks(),
    ) {
        for split in [&[][..], &[1], &chunks] {
            let t = drive(s.config, &s.input, split, &s.script);
            prop_assert_eq!(&t, &s.expected, "split {:?}", split);
            check_transcript(s.config, &s.input, &t);
        }
    }

    #[test]
    fn any_input_split_any_way_keeps_the_handshake_invariants(
        (config, input) in arb_handshake_input(),
        chunks in arb_chunks(),
        script in arb_script(),
    ) {
        check_handshake(config, &input, &chunks, &script);
    }
}
