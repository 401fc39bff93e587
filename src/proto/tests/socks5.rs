//! SOCKS5 messages (RFC 1928 §3, §4, §6), both ways.

use super::{assert_fails_at, assert_parses, emitted};
use crate::proto::socks5::{Greeting, MethodSelection, Reply, Request};
use crate::proto::{Address, Error, ReplyCode};

fn ip(s: &str) -> Address {
    Address::Ip(s.parse().unwrap())
}

#[test]
fn greeting_with_one_method_round_trips() {
    let bytes = [0x05, 0x01, 0x00];
    let msg = Greeting {
        methods: vec![0x00],
    };
    assert_parses(Greeting::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn greeting_keeps_methods_in_the_order_offered() {
    let bytes = [0x05, 0x03, 0x02, 0x01, 0x00];
    let msg = Greeting {
        methods: vec![0x02, 0x01, 0x00],
    };
    assert_parses(Greeting::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn greeting_with_255_methods_round_trips() {
    let methods: Vec<u8> = (0..=254).collect();
    let mut bytes = vec![0x05, 0xff];
    bytes.extend_from_slice(&methods);
    let msg = Greeting { methods };
    assert_parses(Greeting::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn greeting_emit_sends_at_most_255_methods() {
    let msg = Greeting {
        methods: vec![0x00; 300],
    };
    let bytes = emitted(|out| msg.emit(out));
    assert_eq!(bytes[..2], [0x05, 0xff]);
    assert_eq!(bytes.len(), 2 + 255);
}

#[test]
fn rejects_greeting_of_another_version_at_its_first_byte() {
    for v in [0x04, 0x00, b'G', 0xff] {
        assert_fails_at(Greeting::parse, &[v], Error::UnknownVersion(v));
    }
}

#[test]
fn rejects_greeting_with_no_methods_without_waiting() {
    assert_fails_at(Greeting::parse, &[0x05, 0x00], Error::NoMethodsOffered);
}

#[test]
fn method_selection_round_trips() {
    for method in [0x00, 0x02, 0xff] {
        let bytes = [0x05, method];
        assert_parses(MethodSelection::parse, &bytes, MethodSelection { method });
        assert_eq!(emitted(|out| MethodSelection { method }.emit(out)), bytes);
    }
    assert_eq!(MethodSelection::LEN, 2);
}

#[test]
fn rejects_method_selection_of_another_version() {
    assert_fails_at(
        MethodSelection::parse,
        &[0x04, 0x00],
        Error::UnknownVersion(4),
    );
}

#[test]
fn connect_request_to_ipv4_round_trips() {
    let bytes = [0x05, 0x01, 0x00, 0x01, 198, 51, 100, 7, 0x01, 0xbb];
    let msg = Request {
        command: 0x01,
        address: ip("198.51.100.7:443"),
    };
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn bind_request_to_ipv6_round_trips() {
    let mut bytes = vec![0x05, 0x02, 0x00, 0x04];
    bytes.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09,
    ]);
    bytes.extend_from_slice(&[0x00, 0x15]);
    let msg = Request {
        command: 0x02,
        address: ip("[2001:db8::9]:21"),
    };
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn udp_associate_request_with_longest_domain_round_trips() {
    let name = "x".repeat(255);
    let mut bytes = vec![0x05, 0x03, 0x00, 0x03, 0xff];
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&[0x00, 0x35]);
    assert_eq!(bytes.len(), 262);
    let msg = Request {
        command: 0x03,
        address: Address::Domain(name, 53),
    };
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn request_keeps_an_unknown_command_for_the_handshake_to_answer() {
    let bytes = [0x05, 0x09, 0x00, 0x01, 10, 0, 0, 1, 0, 80];
    let msg = Request {
        command: 0x09,
        address: ip("10.0.0.1:80"),
    };
    assert_parses(Request::parse, &bytes, msg);
}

#[test]
fn request_ignores_a_nonzero_reserved_byte_and_emits_zero() {
    let bytes = [0x05, 0x01, 0xee, 0x01, 10, 0, 0, 1, 0, 80];
    let msg = Request {
        command: 0x01,
        address: ip("10.0.0.1:80"),
    };
    assert_parses(Request::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out))[2], 0x00);
}

#[test]
fn rejects_request_of_another_version_once_its_header_is_in() {
    assert_fails_at(
        Request::parse,
        &[0x04, 0x01, 0x00, 0x01],
        Error::BadRequestVersion(4),
    );
}

#[test]
fn rejects_request_with_unknown_address_type_at_the_atyp_byte() {
    for atyp in [0x00, 0x02, 0x05] {
        let bytes = [0x05, 0x01, 0x00, atyp];
        assert_fails_at(Request::parse, &bytes, Error::UnknownAddressType(atyp));
    }
}

#[test]
fn rejects_request_with_empty_domain_at_the_length_byte() {
    assert_fails_at(
        Request::parse,
        &[0x05, 0x01, 0x00, 0x03, 0x00],
        Error::EmptyDomain,
    );
}

#[test]
fn success_reply_carries_the_bound_ipv4_address() {
    let bytes = [0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0x9c, 0x40];
    let msg = Reply {
        code: ReplyCode::Succeeded,
        bound: ip("127.0.0.1:40000"),
    };
    assert_parses(Reply::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn reply_with_ipv6_bound_address_is_the_longest_ip_reply() {
    let mut bytes = vec![0x05, 0x00, 0x00, 0x04];
    bytes.extend_from_slice(&[0; 15]);
    bytes.extend_from_slice(&[1, 0x9c, 0x41]);
    assert_eq!(bytes.len(), Reply::MAX_IP_LEN);
    let msg = Reply {
        code: ReplyCode::Succeeded,
        bound: ip("[::1]:40001"),
    };
    assert_parses(Reply::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn reply_with_domain_bound_address_parses() {
    let bytes = [0x05, 0x00, 0x00, 0x03, 0x01, b'h', 0x00, 0x01];
    let msg = Reply {
        code: ReplyCode::Succeeded,
        bound: Address::Domain("h".into(), 1),
    };
    assert_parses(Reply::parse, &bytes, msg);
}

#[test]
fn failure_reply_names_the_code_and_binds_nothing() {
    for rep in 0x01..=0xff {
        let code = ReplyCode::from_u8(rep);
        let bytes = [0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        assert_eq!(emitted(|out| Reply::failure(code).emit(out)), bytes);
        assert_parses(Reply::parse, &bytes, Reply::failure(code));
    }
}

#[test]
fn rejects_reply_of_another_version() {
    assert_fails_at(
        Reply::parse,
        &[0x00, 0x5a, 0x00, 0x01],
        Error::BadRequestVersion(0),
    );
}
