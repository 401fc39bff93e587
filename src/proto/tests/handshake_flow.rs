//! Handshakes that succeed: the bytes sent, the events, and the bytes left for the relay,
//! under every split of the client's writes.

use std::net::SocketAddr;

use super::invariants::{drive, End, Script, Transcript};
use super::wire;
use crate::proto::auth::Credentials;
use crate::proto::{Address, Command, Event, Handshake, HandshakeConfig, Request, Version};

const BOUND: &str = "198.51.100.7:40000";
const PEER: &str = "203.0.113.9:51000";
/// What a client pipelines right after its request.
const DATA: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Address {
    Address::Ip(sa(s))
}

pub(super) fn no_auth() -> HandshakeConfig {
    HandshakeConfig {
        auth_required: false,
    }
}

pub(super) fn with_auth() -> HandshakeConfig {
    HandshakeConfig {
        auth_required: true,
    }
}

fn grant_all() -> Script {
    Script {
        accept_credentials: true,
        verdict: Ok(sa(BOUND)),
        bind_peer: Ok(sa(PEER)),
    }
}

pub(super) fn output(hs: &mut Handshake) -> Vec<u8> {
    let mut out = Vec::new();
    hs.poll_transmit(&mut out);
    out
}

fn socks5(command: Command, address: Address, user: Option<&[u8]>) -> Request {
    Request {
        version: Version::Socks5,
        command,
        address,
        user: user.map(<[u8]>::to_vec),
        user_id: None,
    }
}

fn socks4(command: Command, address: Address, user_id: &[u8]) -> Request {
    Request {
        version: Version::Socks4,
        command,
        address,
        user: None,
        user_id: Some(user_id.to_vec()),
    }
}

/// Drives `input` one byte per write and under every split into up to three writes (every
/// pair of cut points), and expects `expected` each time.
fn assert_every_split(
    config: HandshakeConfig,
    input: &[u8],
    script: &Script,
    expected: &Transcript,
) {
    let n = input.len();
    assert_eq!(
        &drive(config, input, &[1], script),
        expected,
        "one byte per write"
    );
    for i in 0..=n {
        for j in i..=n {
            let chunks: Vec<usize> = [i, j - i, n - j].into_iter().filter(|&c| c > 0).collect();
            let t = drive(config, input, &chunks, script);
            assert_eq!(&t, expected, "writes of {chunks:?}");
        }
    }
}

/// The client's bytes: its handshake messages, then [`DATA`].
fn with_data(messages: &[&[u8]]) -> (Vec<u8>, usize) {
    let handshake = messages.concat();
    let len = handshake.len();
    ([handshake, DATA.to_vec()].concat(), len)
}

#[test]
fn every_split_of_socks5_no_auth_connect_gives_one_result() {
    let dst = ip("192.0.2.10:80");
    let (input, len) = with_data(&[&wire::greeting(&[0x00]), &wire::socks5_request(1, &dst)]);
    let expected = Transcript {
        sent: [vec![0x05, 0x00], wire::socks5_reply(0, sa(BOUND))].concat(),
        events: vec![Event::Request(socks5(Command::Connect, dst, None))],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(no_auth(), &input, &grant_all(), &expected);
}

#[test]
fn every_split_of_socks5_with_username_password_gives_one_result() {
    let dst = Address::Domain("example.com".into(), 443);
    let (input, len) = with_data(&[
        &wire::greeting(&[0x00, 0x02]),
        &wire::credentials(b"alice", b"s3cret"),
        &wire::socks5_request(1, &dst),
    ]);
    let creds = Credentials {
        username: b"alice".to_vec(),
        password: b"s3cret".to_vec(),
    };
    let expected = Transcript {
        sent: [
            vec![0x05, 0x02, 0x01, 0x00],
            wire::socks5_reply(0, sa(BOUND)),
        ]
        .concat(),
        events: vec![
            Event::Credentials(creds),
            Event::Request(socks5(Command::Connect, dst, Some(b"alice"))),
        ],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(with_auth(), &input, &grant_all(), &expected);
}

#[test]
fn every_split_of_socks4_connect_gives_one_result() {
    let req = wire::socks4_request(1, 80, [192, 0, 2, 10], b"bob", None);
    let (input, len) = with_data(&[&req]);
    let expected = Transcript {
        sent: vec![0x00, 90, 0x9c, 0x40, 198, 51, 100, 7],
        events: vec![Event::Request(socks4(
            Command::Connect,
            ip("192.0.2.10:80"),
            b"bob",
        ))],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(no_auth(), &input, &grant_all(), &expected);
}

#[test]
fn every_split_of_socks4a_connect_gives_one_result() {
    let req = wire::socks4_request(1, 443, [0, 0, 0, 1], b"bob", Some(b"example.com"));
    let (input, len) = with_data(&[&req]);
    let dst = Address::Domain("example.com".into(), 443);
    let expected = Transcript {
        sent: wire::socks4_reply(90, sa(BOUND)),
        events: vec![Event::Request(socks4(Command::Connect, dst, b"bob"))],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(no_auth(), &input, &grant_all(), &expected);
}

#[test]
fn every_split_of_socks5_bind_gives_one_result() {
    let dst = ip("192.0.2.10:21");
    let (input, len) = with_data(&[&wire::greeting(&[0x00]), &wire::socks5_request(2, &dst)]);
    let expected = Transcript {
        sent: [
            vec![0x05, 0x00],
            wire::socks5_reply(0, sa(BOUND)),
            wire::socks5_reply(0, sa(PEER)),
        ]
        .concat(),
        events: vec![Event::Request(socks5(Command::Bind, dst, None))],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(no_auth(), &input, &grant_all(), &expected);
}

#[test]
fn every_split_of_socks5_udp_associate_gives_one_result() {
    let dst = ip("0.0.0.0:0");
    let (input, len) = with_data(&[&wire::greeting(&[0x00]), &wire::socks5_request(3, &dst)]);
    let expected = Transcript {
        sent: [vec![0x05, 0x00], wire::socks5_reply(0, sa(BOUND))].concat(),
        events: vec![Event::Request(socks5(Command::UdpAssociate, dst, None))],
        consumed: len,
        end: End::Established,
    };
    assert_every_split(no_auth(), &input, &grant_all(), &expected);
}

#[test]
fn one_write_with_greeting_request_and_data_leaves_the_data_unconsumed() {
    let mut hs = Handshake::new(no_auth());
    let dst = ip("192.0.2.10:80");
    let (input, len) = with_data(&[&wire::greeting(&[0x00]), &wire::socks5_request(1, &dst)]);
    assert_eq!(hs.handle_input(&input), len);
    assert_eq!(output(&mut hs), [0x05, 0x00]);
    let expected = Event::Request(socks5(Command::Connect, dst, None));
    assert_eq!(hs.poll_event(), Some(expected));
    assert!(!hs.is_established());
    hs.grant(sa(BOUND));
    assert_eq!(output(&mut hs), wire::socks5_reply(0, sa(BOUND)));
    assert!(hs.is_established());
    assert_eq!(&input[len..], DATA);
}

#[test]
fn greeting_fed_one_byte_at_a_time_is_answered_on_its_last_byte() {
    let mut hs = Handshake::new(no_auth());
    for &b in &[0x05, 0x02, 0x02] {
        assert_eq!(hs.handle_input(&[b]), 1);
        assert!(!hs.has_output());
    }
    assert_eq!(hs.handle_input(&[0x00]), 1);
    assert_eq!(output(&mut hs), [0x05, 0x00]);
    assert_eq!(hs.poll_event(), None);
}

#[test]
fn request_fed_one_byte_at_a_time_becomes_an_event_on_its_last_byte() {
    let mut hs = Handshake::new(no_auth());
    assert_eq!(hs.handle_input(&[0x05, 0x01, 0x00]), 3);
    output(&mut hs);
    let req = wire::socks5_request(1, &Address::Domain("h.example".into(), 80));
    for &b in &req[..req.len() - 1] {
        assert_eq!(hs.handle_input(&[b]), 1);
        assert_eq!(hs.poll_event(), None);
    }
    assert_eq!(hs.handle_input(&req[req.len() - 1..]), 1);
    assert!(matches!(hs.poll_event(), Some(Event::Request(_))));
}

#[test]
fn credentials_and_the_pipelined_request_wait_for_the_credentials_verdict() {
    let mut hs = Handshake::new(with_auth());
    let greeting = wire::greeting(&[0x02]);
    let creds = wire::credentials(b"alice", b"s3cret");
    let dst = ip("192.0.2.10:80");
    let request = wire::socks5_request(1, &dst);
    let (input, _) = with_data(&[&greeting, &creds, &request]);

    assert_eq!(hs.handle_input(&input), greeting.len() + creds.len());
    let rest = &input[greeting.len() + creds.len()..];
    assert_eq!(output(&mut hs), [0x05, 0x02]);
    let Some(Event::Credentials(got)) = hs.poll_event() else {
        panic!("no credentials event");
    };
    assert_eq!(
        (&got.username[..], &got.password[..]),
        (&b"alice"[..], &b"s3cret"[..])
    );
    assert_eq!(
        hs.handle_input(rest),
        0,
        "nothing is read before the verdict"
    );

    hs.accept_credentials();
    assert_eq!(output(&mut hs), [0x01, 0x00]);
    assert_eq!(hs.handle_input(rest), request.len());
    let expected = socks5(Command::Connect, dst, Some(b"alice"));
    assert_eq!(hs.poll_event(), Some(Event::Request(expected)));
    hs.grant(sa(BOUND));
    assert_eq!(output(&mut hs), wire::socks5_reply(0, sa(BOUND)));
    assert!(hs.is_established());
    assert_eq!(&rest[request.len()..], DATA);
}

#[test]
fn client_data_sent_before_the_verdict_stays_with_the_driver() {
    let mut hs = Handshake::new(no_auth());
    let req = wire::socks4_request(1, 80, [192, 0, 2, 10], b"", None);
    assert_eq!(hs.handle_input(&req), req.len());
    assert!(hs.poll_event().is_some());
    assert_eq!(hs.handle_input(DATA), 0);
    hs.grant(sa(BOUND));
    assert_eq!(
        hs.handle_input(DATA),
        0,
        "established: the relay owns the bytes"
    );
}

#[test]
fn server_picks_the_method_it_needs_from_those_offered() {
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&wire::greeting(&[0x02, 0x01, 0x00, 0x80]));
    assert_eq!(output(&mut hs), [0x05, 0x00]);
    let mut hs = Handshake::new(with_auth());
    hs.handle_input(&wire::greeting(&[0x00, 0x01, 0x02]));
    assert_eq!(output(&mut hs), [0x05, 0x02]);
}

#[test]
fn ip_literal_host_names_reach_the_driver_as_ip_addresses() {
    for (name, expected) in [
        ("127.0.0.1", "127.0.0.1:80"),
        ("[::1]", "[::1]:80"),
        ("::1", "[::1]:80"),
    ] {
        let mut hs = Handshake::new(no_auth());
        let dst = Address::Domain(name.into(), 80);
        let input = [wire::greeting(&[0x00]), wire::socks5_request(1, &dst)].concat();
        hs.handle_input(&input);
        let Some(Event::Request(req)) = hs.poll_event() else {
            panic!("no request for {name}");
        };
        assert_eq!(req.address, ip(expected), "{name}");
    }
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&wire::socks4_request(
        1,
        80,
        [0, 0, 0, 1],
        b"",
        Some(b"127.0.0.1"),
    ));
    let Some(Event::Request(req)) = hs.poll_event() else {
        panic!("no SOCKS4a request");
    };
    assert_eq!(req.address, ip("127.0.0.1:80"));
}

#[test]
fn bind_sends_two_replies_and_reads_nothing_between_them() {
    let mut hs = Handshake::new(no_auth());
    let dst = ip("192.0.2.10:21");
    hs.handle_input(&[wire::greeting(&[0x00]), wire::socks5_request(2, &dst)].concat());
    output(&mut hs);
    assert_eq!(
        hs.poll_event(),
        Some(Event::Request(socks5(Command::Bind, dst, None)))
    );
    hs.grant(sa(BOUND));
    assert_eq!(output(&mut hs), wire::socks5_reply(0, sa(BOUND)));
    assert!(!hs.is_established());
    assert_eq!(hs.handle_input(DATA), 0);
    assert_eq!(hs.poll_event(), None);
    hs.grant_bind_peer(sa("[2001:db8::5]:51000"));
    assert_eq!(
        output(&mut hs),
        wire::socks5_reply(0, sa("[2001:db8::5]:51000"))
    );
    assert!(hs.is_established());
}

#[test]
fn socks4_bind_sends_two_replies_with_vn_0_and_cd_90() {
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&wire::socks4_request(2, 21, [192, 0, 2, 10], b"u", None));
    let expected = socks4(Command::Bind, ip("192.0.2.10:21"), b"u");
    assert_eq!(hs.poll_event(), Some(Event::Request(expected)));
    hs.grant(sa("198.51.100.7:40000"));
    assert_eq!(output(&mut hs), [0x00, 90, 0x9c, 0x40, 198, 51, 100, 7]);
    hs.grant_bind_peer(sa("203.0.113.9:51000"));
    assert_eq!(output(&mut hs), [0x00, 90, 0xc7, 0x38, 203, 0, 113, 9]);
    assert!(hs.is_established());
}

#[test]
fn udp_associate_grant_replies_with_the_relay_address() {
    for relay in ["198.51.100.7:40000", "[2001:db8::7]:40000"] {
        let mut hs = Handshake::new(no_auth());
        let dst = ip("0.0.0.0:0");
        hs.handle_input(&[wire::greeting(&[0x00]), wire::socks5_request(3, &dst)].concat());
        output(&mut hs);
        let expected = socks5(Command::UdpAssociate, dst, None);
        assert_eq!(hs.poll_event(), Some(Event::Request(expected)));
        hs.grant(sa(relay));
        let reply = output(&mut hs);
        assert_eq!(reply, wire::socks5_reply(0, sa(relay)));
        assert_eq!(reply.len(), if relay.starts_with('[') { 22 } else { 10 });
        assert!(hs.is_established());
    }
}

#[test]
fn socks4_grant_with_ipv6_bound_address_keeps_the_port_and_zeros_the_ip() {
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&wire::socks4_request(1, 80, [192, 0, 2, 10], b"", None));
    hs.poll_event();
    hs.grant(sa("[::1]:40000"));
    assert_eq!(output(&mut hs), [0x00, 90, 0x9c, 0x40, 0, 0, 0, 0]);
}

#[test]
fn ipv4_mapped_bound_addresses_are_sent_as_ipv4() {
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&wire::socks4_request(1, 80, [192, 0, 2, 10], b"", None));
    hs.poll_event();
    hs.grant(sa("[::ffff:192.0.2.1]:40000"));
    assert_eq!(output(&mut hs), [0x00, 90, 0x9c, 0x40, 192, 0, 2, 1]);
    let mut hs = Handshake::new(no_auth());
    hs.handle_input(&[5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 10, 0, 80]);
    hs.poll_event();
    hs.grant(sa("[::ffff:192.0.2.1]:40000"));
    assert_eq!(
        output(&mut hs),
        [5, 0, 5, 0, 0, 1, 192, 0, 2, 1, 0x9c, 0x40],
        "method selection, then a reply with ATYP 1"
    );
}

#[test]
fn command_names_are_metric_labels() {
    assert_eq!(Command::Connect.name(), "connect");
    assert_eq!(Command::Bind.name(), "bind");
    assert_eq!(Command::UdpAssociate.name(), "udp");
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "handshake decision in state")]
fn a_verdict_before_any_request_is_a_driver_bug() {
    Handshake::new(no_auth()).grant(sa(BOUND));
}
