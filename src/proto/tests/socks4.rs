//! SOCKS4 and SOCKS4a messages, both ways.

use std::net::{SocketAddr, SocketAddrV4};

use super::wire::socks4_request as wire;
use super::{assert_fails_at, assert_incomplete_prefixes, assert_parses, emitted};
use crate::proto::socks4::{Reply, Request, MAX_FIELD_LEN};
use crate::proto::{Address, Error, Field, Parse, ReplyCode};

fn ip(s: &str) -> Address {
    Address::Ip(s.parse().unwrap())
}

fn v4(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn request(command: u8, address: Address, user_id: &[u8]) -> Request {
    Request {
        command,
        address,
        user_id: user_id.to_vec(),
    }
}

#[test]
fn connect_with_empty_user_id_round_trips() {
    let bytes = [0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0x00];
    let msg = request(0x01, ip("192.0.2.1:80"), b"");
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn bind_with_user_id_round_trips() {
    let bytes = wire(0x02, 21, [192, 0, 2, 1], b"alice", None);
    let msg = request(0x02, ip("192.0.2.1:21"), b"alice");
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn socks4a_host_follows_the_user_id() {
    let bytes = wire(0x01, 443, [0, 0, 0, 1], b"alice", Some(b"example.com"));
    let msg = request(0x01, Address::Domain("example.com".into(), 443), b"alice");
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn any_dstip_0_0_0_x_with_x_nonzero_means_socks4a() {
    for x in [1, 2, 127, 255] {
        let bytes = wire(0x01, 80, [0, 0, 0, x], b"", Some(b"h"));
        assert_parses(
            Request::parse,
            &bytes,
            request(1, Address::Domain("h".into(), 80), b""),
        );
    }
}

#[test]
fn dstip_0_0_0_0_is_a_plain_address_not_socks4a() {
    let bytes = wire(0x01, 80, [0, 0, 0, 0], b"u", None);
    assert_parses(Request::parse, &bytes, request(1, ip("0.0.0.0:80"), b"u"));
}

#[test]
fn dstip_with_high_octets_set_is_not_socks4a() {
    for dst in [[0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]] {
        let bytes = wire(0x01, 80, dst, b"", None);
        let addr = Address::Ip(SocketAddr::from((dst, 80)));
        assert_parses(Request::parse, &bytes, request(1, addr, b""));
    }
}

#[test]
fn request_keeps_an_unknown_command_for_the_handshake_to_answer() {
    let bytes = wire(0x03, 53, [10, 0, 0, 1], b"", None);
    assert_parses(Request::parse, &bytes, request(3, ip("10.0.0.1:53"), b""));
}

#[test]
fn user_id_may_hold_any_byte_but_nul() {
    let user: Vec<u8> = (1..=255).collect();
    let bytes = wire(0x01, 80, [10, 0, 0, 1], &user, None);
    assert_parses(Request::parse, &bytes, request(1, ip("10.0.0.1:80"), &user));
}

#[test]
fn longest_user_id_and_host_make_the_longest_message() {
    let user = vec![b'u'; MAX_FIELD_LEN];
    let host = vec![b'h'; MAX_FIELD_LEN];
    let bytes = wire(0x01, 80, [0, 0, 0, 9], &user, Some(&host));
    assert_eq!(bytes.len(), crate::proto::handshake::MAX_MESSAGE_LEN);
    let name = String::from_utf8(host).unwrap();
    let msg = request(1, Address::Domain(name, 80), &user);
    assert_parses(Request::parse, &bytes, msg.clone());
    let mut sent = emitted(|out| msg.emit(out));
    sent[7] = 9;
    assert_eq!(sent, bytes);
}

#[test]
fn rejects_user_id_of_256_bytes_without_waiting_for_its_end() {
    let mut bytes = wire(0x01, 80, [10, 0, 0, 1], b"", None);
    bytes.pop();
    bytes.extend_from_slice(&[b'u'; MAX_FIELD_LEN + 1]);
    assert_fails_at(Request::parse, &bytes, Error::TooLong(Field::Socks4UserId));
}

#[test]
fn rejects_socks4a_host_of_256_bytes_without_waiting_for_its_end() {
    let mut bytes = wire(0x01, 80, [0, 0, 0, 1], b"user", None);
    bytes.extend_from_slice(&[b'h'; MAX_FIELD_LEN + 1]);
    assert_fails_at(Request::parse, &bytes, Error::TooLong(Field::Socks4Host));
}

#[test]
fn rejects_empty_socks4a_host_at_its_nul() {
    let bytes = wire(0x01, 80, [0, 0, 0, 1], b"user", Some(b""));
    assert_fails_at(Request::parse, &bytes, Error::EmptyDomain);
}

#[test]
fn rejects_socks4a_host_with_bytes_that_are_not_printable_ascii() {
    for host in [&b"a b"[..], b"\x01", b"\xff"] {
        let bytes = wire(0x01, 80, [0, 0, 0, 1], b"", Some(host));
        assert_fails_at(Request::parse, &bytes, Error::InvalidDomain);
    }
}

#[test]
fn rejects_request_of_another_version_at_its_first_byte() {
    assert_fails_at(Request::parse, &[0x05], Error::UnknownVersion(5));
}

#[test]
fn request_without_its_nul_is_incomplete() {
    let bytes = wire(0x01, 80, [10, 0, 0, 1], &[b'u'; MAX_FIELD_LEN], None);
    assert_incomplete_prefixes(Request::parse, &bytes);
    let no_host_nul = wire(0x01, 80, [0, 0, 0, 1], b"", Some(&[b'h'; MAX_FIELD_LEN]));
    let no_host_nul = &no_host_nul[..no_host_nul.len() - 1];
    assert_eq!(Request::parse(no_host_nul), Ok(Parse::Incomplete));
}

#[test]
fn emit_sends_a_domain_as_socks4a() {
    let msg = request(0x01, Address::Domain("h.example".into(), 8080), b"id");
    assert_eq!(
        emitted(|out| msg.emit(out)),
        wire(0x01, 8080, [0, 0, 0, 1], b"id", Some(b"h.example"))
    );
}

#[test]
fn emit_sends_an_ipv6_address_as_a_socks4a_host_in_text() {
    let msg = request(0x01, ip("[2001:db8::1]:80"), b"");
    let bytes = emitted(|out| msg.emit(out));
    assert_eq!(
        bytes,
        wire(0x01, 80, [0, 0, 0, 1], b"", Some(b"2001:db8::1"))
    );
    let parsed = Request::parse(&bytes).unwrap();
    let Parse::Complete { msg: back, .. } = parsed else {
        panic!("incomplete");
    };
    assert_eq!(back.address.normalized(), ip("[2001:db8::1]:80"));
}

#[test]
fn emit_sends_an_ipv4_address_in_the_socks4a_range_as_a_host_in_text() {
    // DSTIP 0.0.0.7 on the wire would mean "a host name follows".
    let msg = request(0x01, ip("0.0.0.7:80"), b"u");
    let bytes = emitted(|out| msg.emit(out));
    assert_eq!(bytes, wire(0x01, 80, [0, 0, 0, 1], b"u", Some(b"0.0.0.7")));
    let Ok(Parse::Complete {
        msg: back,
        consumed,
    }) = Request::parse(&bytes)
    else {
        panic!("does not parse back");
    };
    assert_eq!(consumed, bytes.len());
    assert_eq!(back.address.normalized(), ip("0.0.0.7:80"));
}

#[test]
fn granted_reply_carries_the_bound_address() {
    let bytes = [0x00, 90, 0x9c, 0x40, 127, 0, 0, 1];
    let msg = Reply::new(
        ReplyCode::Succeeded,
        Some("127.0.0.1:40000".parse().unwrap()),
    );
    assert_eq!(
        msg,
        Reply {
            code: 90,
            bound: v4("127.0.0.1:40000")
        }
    );
    assert_parses(Reply::parse, &bytes, msg);
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
    assert_eq!(Reply::LEN, 8);
}

#[test]
fn granted_reply_keeps_the_port_of_an_ipv6_bound_address() {
    let msg = Reply::new(ReplyCode::Succeeded, Some("[::1]:40000".parse().unwrap()));
    assert_eq!(
        emitted(|out| msg.emit(out)),
        [0x00, 90, 0x9c, 0x40, 0, 0, 0, 0]
    );
    let msg = Reply::new(
        ReplyCode::Succeeded,
        Some("[::ffff:10.1.2.3]:80".parse().unwrap()),
    );
    assert_eq!(emitted(|out| msg.emit(out)), [0x00, 90, 0, 80, 10, 1, 2, 3]);
}

#[test]
fn every_failure_code_becomes_rejected_91() {
    let failures = (1..=255).map(ReplyCode::from_u8);
    for code in failures.chain([ReplyCode::Unknown(0)]) {
        let msg = Reply::new(code, None);
        assert_eq!(
            emitted(|out| msg.emit(out)),
            [0x00, 91, 0, 0, 0, 0, 0, 0],
            "{code:?}"
        );
    }
}

#[test]
fn reply_parse_keeps_the_code_and_ignores_the_version_byte() {
    let bytes = [0x04, 92, 0x00, 0x50, 10, 0, 0, 1];
    let msg = Reply {
        code: 92,
        bound: v4("10.0.0.1:80"),
    };
    assert_parses(Reply::parse, &bytes, msg);
}
