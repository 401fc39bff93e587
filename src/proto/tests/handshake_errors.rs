//! Handshakes that fail: each fault gets its reply (or, for a non-SOCKS peer, none), under
//! any split of the client's writes, and nothing after the fault is read.

use std::net::SocketAddr;

use super::handshake_flow::{no_auth, output, with_auth};
use super::invariants::{drive, End, Script, Transcript};
use super::wire::{self, socks5_failure, SOCKS4_REJECTED};
use crate::proto::socks4::MAX_FIELD_LEN;
use crate::proto::{Address, Error, Event, Field, Handshake, HandshakeConfig, ReplyCode};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn script(accept_credentials: bool, verdict: Result<&str, ReplyCode>) -> Script {
    Script {
        accept_credentials,
        verdict: verdict.map(sa),
        bind_peer: Ok(sa("203.0.113.9:51000")),
    }
}

fn grant_all() -> Script {
    script(true, Ok("198.51.100.7:40000"))
}

/// Drives `input` whole, one byte per write and cut once at every point; expects the same
/// bytes sent, events and end each time, and that end to be a failure with `err`.
fn fails(config: HandshakeConfig, input: &[u8], script: &Script, err: Error) -> Transcript {
    let whole = drive(config, input, &[], script);
    assert_eq!(whole.end, End::Failed(err), "sent {:02x?}", whole.sent);
    let splits = (1..input.len()).map(|i| vec![i]).chain([vec![1]]);
    for chunks in splits {
        let t = drive(config, input, &chunks, script);
        assert_eq!(
            (&t.sent, &t.events, &t.end),
            (&whole.sent, &whole.events, &whole.end),
            "writes of {chunks:?}"
        );
    }
    whole
}

fn ip(s: &str) -> Address {
    Address::Ip(sa(s))
}

#[test]
fn closes_without_a_reply_when_the_first_byte_is_not_a_socks_version() {
    for first in [0x00, 0x01, 0x03, 0x06, b'G', 0x16, 0xff] {
        let input = [first, 0x01, 0x00, 0x05, 0x01, 0x00];
        let t = fails(
            no_auth(),
            &input,
            &grant_all(),
            Error::UnknownVersion(first),
        );
        assert!(t.sent.is_empty(), "{first:#04x}: {:02x?}", t.sent);
        assert_eq!(t.consumed, 0);
    }
}

#[test]
fn rejects_greeting_with_no_methods_with_method_ff() {
    let input = [0x05, 0x00, 0x05, 0x01, 0x00];
    let t = fails(no_auth(), &input, &grant_all(), Error::NoMethodsOffered);
    assert_eq!(t.sent, [0x05, 0xff]);
}

#[test]
fn rejects_greeting_without_an_acceptable_method_with_method_ff() {
    let cases: [(HandshakeConfig, &[u8]); 4] = [
        (no_auth(), &[0x02]),
        (no_auth(), &[0x01, 0x03, 0x80, 0xfe]),
        (with_auth(), &[0x00]),
        (with_auth(), &[0x00, 0x01]),
    ];
    for (config, methods) in cases {
        let input = wire::greeting(methods);
        let t = fails(config, &input, &grant_all(), Error::NoAcceptableMethod);
        assert_eq!(t.sent, [0x05, 0xff], "{methods:02x?}");
    }
}

#[test]
fn rejects_auth_of_another_version_with_status_1() {
    let mut input = wire::greeting(&[0x02]);
    input.extend_from_slice(&[0x05, 0x01, b'u', 0x01, b'p']);
    let t = fails(with_auth(), &input, &grant_all(), Error::BadAuthVersion(5));
    assert_eq!(t.sent, [0x05, 0x02, 0x01, 0x01]);
    assert!(t.events.is_empty());
}

#[test]
fn rejected_credentials_get_status_1_and_the_request_is_not_read() {
    let greeting = wire::greeting(&[0x02]);
    let creds = wire::credentials(b"mallory", b"guess");
    let request = wire::socks5_request(1, &ip("192.0.2.10:80"));
    let input = [greeting.clone(), creds.clone(), request].concat();
    let t = fails(
        with_auth(),
        &input,
        &script(false, Ok("198.51.100.7:1")),
        Error::AuthFailed,
    );
    assert_eq!(t.sent, [0x05, 0x02, 0x01, 0x01]);
    assert!(matches!(&t.events[..], [Event::Credentials(c)] if c.username == b"mallory"));
    assert_eq!(t.consumed, greeting.len() + creds.len());
}

#[test]
fn refuses_socks4_with_cd_91_when_auth_is_required() {
    let plain = wire::socks4_request(1, 80, [192, 0, 2, 10], b"alice", None);
    let socks4a = wire::socks4_request(1, 80, [0, 0, 0, 1], b"alice", Some(b"example.com"));
    for input in [plain, socks4a] {
        let t = fails(with_auth(), &input, &grant_all(), Error::Socks4NeedsAuth);
        assert_eq!(t.sent, SOCKS4_REJECTED);
        assert!(t.events.is_empty());
    }
}

#[test]
fn rejects_unknown_socks5_command_with_rep_07() {
    for cmd in [0x00, 0x04, 0x80, 0xff] {
        let input = [
            wire::greeting(&[0x00]),
            wire::socks5_request(cmd, &ip("10.0.0.1:80")),
        ]
        .concat();
        let t = fails(no_auth(), &input, &grant_all(), Error::UnknownCommand(cmd));
        assert_eq!(t.sent, [vec![0x05, 0x00], socks5_failure(0x07)].concat());
        assert!(t.events.is_empty());
    }
}

#[test]
fn rejects_unknown_socks4_command_including_udp_with_cd_91() {
    for cmd in [0x00, 0x03, 0xff] {
        let input = wire::socks4_request(cmd, 80, [10, 0, 0, 1], b"", None);
        let t = fails(no_auth(), &input, &grant_all(), Error::UnknownCommand(cmd));
        assert_eq!(t.sent, SOCKS4_REJECTED);
    }
}

#[test]
fn rejects_unknown_address_type_with_rep_08() {
    for atyp in [0x00, 0x02, 0x05, 0xff] {
        let mut input = wire::greeting(&[0x00]);
        input.extend_from_slice(&[0x05, 0x01, 0x00, atyp, 1, 2, 3, 4, 5, 6]);
        let t = fails(
            no_auth(),
            &input,
            &grant_all(),
            Error::UnknownAddressType(atyp),
        );
        assert_eq!(t.sent, [vec![0x05, 0x00], socks5_failure(0x08)].concat());
        // The fault is known at the ATYP byte: nothing after it was needed.
        assert_eq!(drive(no_auth(), &input[..7], &[], &grant_all()).end, t.end);
    }
}

#[test]
fn rejects_request_of_another_version_with_rep_01() {
    let mut input = wire::greeting(&[0x00]);
    input.extend_from_slice(&[0x04, 0x01, 0x00, 0x01, 10, 0, 0, 1, 0, 80]);
    let t = fails(no_auth(), &input, &grant_all(), Error::BadRequestVersion(4));
    assert_eq!(t.sent, [vec![0x05, 0x00], socks5_failure(0x01)].concat());
}

#[test]
fn rejects_empty_domain_with_rep_04() {
    let mut input = wire::greeting(&[0x00]);
    input.extend_from_slice(&[0x05, 0x01, 0x00, 0x03, 0x00, 0x00, 0x50]);
    let t = fails(no_auth(), &input, &grant_all(), Error::EmptyDomain);
    assert_eq!(t.sent, [vec![0x05, 0x00], socks5_failure(0x04)].concat());
}

#[test]
fn rejects_domain_with_unprintable_bytes_with_rep_04() {
    let dst = Address::Domain("bad\nname".into(), 80);
    let input = [wire::greeting(&[0x00]), wire::socks5_request(1, &dst)].concat();
    let t = fails(no_auth(), &input, &grant_all(), Error::InvalidDomain);
    assert_eq!(t.sent, [vec![0x05, 0x00], socks5_failure(0x04)].concat());
}

#[test]
fn rejects_empty_or_unprintable_socks4a_host_with_cd_91() {
    let empty = wire::socks4_request(1, 80, [0, 0, 0, 1], b"", Some(b""));
    let t = fails(no_auth(), &empty, &grant_all(), Error::EmptyDomain);
    assert_eq!(t.sent, SOCKS4_REJECTED);
    let bad = wire::socks4_request(1, 80, [0, 0, 0, 1], b"", Some(b"a\x01b"));
    let t = fails(no_auth(), &bad, &grant_all(), Error::InvalidDomain);
    assert_eq!(t.sent, SOCKS4_REJECTED);
}

/// A SOCKS4 header, then `len` bytes of a field that never ends.
fn endless_socks4_field(dstip: [u8; 4], len: usize) -> Vec<u8> {
    let mut input = wire::socks4_request(1, 80, dstip, b"", None);
    if dstip[..3] != [0, 0, 0] {
        input.pop();
    }
    input.resize(input.len() + len, b'x');
    input
}

#[test]
fn rejects_socks4_user_id_over_255_bytes_when_its_256th_byte_arrives() {
    let input = endless_socks4_field([10, 0, 0, 1], 1000);
    let t = fails(
        no_auth(),
        &input,
        &grant_all(),
        Error::TooLong(Field::Socks4UserId),
    );
    assert_eq!(t.sent, SOCKS4_REJECTED);
    let mut hs = Handshake::new(no_auth());
    let fault_at = 8 + MAX_FIELD_LEN + 1;
    for (i, b) in input.iter().enumerate() {
        let n = hs.handle_input(&[*b]);
        if hs.is_failed() {
            assert_eq!((i + 1, n), (fault_at, 0), "failed at byte {}", i + 1);
            break;
        }
        assert_eq!(n, 1);
    }
    assert_eq!(hs.error(), Some(&Error::TooLong(Field::Socks4UserId)));
    assert_eq!(output(&mut hs), SOCKS4_REJECTED);
}

#[test]
fn rejects_socks4a_host_over_255_bytes_when_its_256th_byte_arrives() {
    let input = endless_socks4_field([0, 0, 0, 1], 1000);
    let t = fails(
        no_auth(),
        &input,
        &grant_all(),
        Error::TooLong(Field::Socks4Host),
    );
    assert_eq!(t.sent, SOCKS4_REJECTED);
    let fault_at = 9 + MAX_FIELD_LEN + 1;
    let short = drive(no_auth(), &input[..fault_at - 1], &[1], &grant_all());
    assert_eq!(short.end, End::Waiting);
    let at = drive(no_auth(), &input[..fault_at], &[1], &grant_all());
    assert_eq!(at.end, End::Failed(Error::TooLong(Field::Socks4Host)));
}

#[test]
fn a_huge_write_without_a_nul_is_rejected_not_buffered() {
    for dstip in [[10, 0, 0, 1], [0, 0, 0, 1]] {
        let input = endless_socks4_field(dstip, 1 << 20);
        for first in [1, 9, 300, input.len()] {
            let mut hs = Handshake::new(no_auth());
            let taken = hs.handle_input(&input[..first]) + hs.handle_input(&input[first..]);
            assert!(hs.is_failed(), "first write of {first}");
            assert!(
                taken <= crate::proto::handshake::MAX_MESSAGE_LEN,
                "took {taken}"
            );
            assert_eq!(output(&mut hs), SOCKS4_REJECTED);
        }
    }
}

/// Every reply code a driver may reject with: all but success.
fn failure_codes() -> impl Iterator<Item = ReplyCode> {
    (1..=255).map(ReplyCode::from_u8)
}

#[test]
fn driver_rejection_sends_each_code_as_socks5_rep() {
    let input = [
        wire::greeting(&[0x00]),
        wire::socks5_request(1, &ip("192.0.2.10:80")),
    ]
    .concat();
    for code in failure_codes() {
        let t = fails(
            no_auth(),
            &input,
            &script(true, Err(code)),
            Error::Rejected(code),
        );
        assert_eq!(
            t.sent,
            [vec![0x05, 0x00], socks5_failure(code.to_u8())].concat()
        );
        assert_eq!(t.consumed, input.len());
    }
}

#[test]
fn driver_rejection_sends_every_code_as_socks4_cd_91() {
    let input = wire::socks4_request(1, 80, [192, 0, 2, 10], b"", None);
    for code in failure_codes() {
        let t = fails(
            no_auth(),
            &input,
            &script(true, Err(code)),
            Error::Rejected(code),
        );
        assert_eq!(t.sent, SOCKS4_REJECTED, "{code:?}");
    }
}

#[test]
fn driver_rejection_never_sends_a_success_reply() {
    let socks5 = [
        wire::greeting(&[0x00]),
        wire::socks5_request(1, &ip("192.0.2.10:80")),
    ]
    .concat();
    let socks4 = wire::socks4_request(1, 80, [192, 0, 2, 10], b"", None);
    for code in [ReplyCode::Succeeded, ReplyCode::Unknown(0)] {
        let t = drive(no_auth(), &socks5, &[], &script(true, Err(code)));
        assert_eq!(
            t.sent,
            [vec![0x05, 0x00], socks5_failure(0x01)].concat(),
            "{code:?}"
        );
        assert!(matches!(t.end, End::Failed(_)));
        let t = drive(no_auth(), &socks4, &[], &script(true, Err(code)));
        assert_eq!(t.sent, SOCKS4_REJECTED, "{code:?}");
    }
}

#[test]
fn bind_peer_rejection_sends_a_second_failure_reply() {
    let dst = ip("192.0.2.10:21");
    let socks5 = [wire::greeting(&[0x00]), wire::socks5_request(2, &dst)].concat();
    let socks4 = wire::socks4_request(2, 21, [192, 0, 2, 10], b"", None);
    let bound = sa("198.51.100.7:40000");
    for code in [ReplyCode::NotAllowed, ReplyCode::TtlExpired] {
        let script = Script {
            accept_credentials: true,
            verdict: Ok(bound),
            bind_peer: Err(code),
        };
        let t = fails(no_auth(), &socks5, &script, Error::Rejected(code));
        let first = wire::socks5_reply(0, bound);
        let expected = [vec![0x05, 0x00], first, socks5_failure(code.to_u8())].concat();
        assert_eq!(t.sent, expected);
        let t = fails(no_auth(), &socks4, &script, Error::Rejected(code));
        assert_eq!(
            t.sent,
            [wire::socks4_reply(90, bound), SOCKS4_REJECTED.to_vec()].concat()
        );
    }
}

#[test]
fn nothing_is_read_or_sent_after_a_failure() {
    let mut hs = Handshake::new(no_auth());
    let input = [vec![0x05, 0x00], wire::greeting(&[0x00])].concat();
    assert_eq!(hs.handle_input(&input), 0);
    assert_eq!(output(&mut hs), [0x05, 0xff]);
    assert_eq!(hs.handle_input(&input), 0);
    assert!(!hs.has_output());
    assert_eq!(hs.poll_event(), None);
    assert_eq!(hs.error(), Some(&Error::NoMethodsOffered));
}
