//! Reply codes and the one mapping from each error to the reply a client gets.

use std::io;

use crate::proto::ErrorReply;
use crate::proto::{Error, Field, ReplyCode};

const NAMED: [(ReplyCode, u8); 9] = [
    (ReplyCode::Succeeded, 0x00),
    (ReplyCode::GeneralFailure, 0x01),
    (ReplyCode::NotAllowed, 0x02),
    (ReplyCode::NetworkUnreachable, 0x03),
    (ReplyCode::HostUnreachable, 0x04),
    (ReplyCode::ConnectionRefused, 0x05),
    (ReplyCode::TtlExpired, 0x06),
    (ReplyCode::CommandNotSupported, 0x07),
    (ReplyCode::AddressTypeNotSupported, 0x08),
];

#[test]
fn named_codes_have_their_rfc_1928_values() {
    for (code, value) in NAMED {
        assert_eq!(code.to_u8(), value);
        assert_eq!(ReplyCode::from_u8(value), code);
    }
}

#[test]
fn every_byte_round_trips_and_unassigned_ones_stay_unknown() {
    for v in 0..=255u8 {
        let code = ReplyCode::from_u8(v);
        assert_eq!(code.to_u8(), v);
        assert_eq!(matches!(code, ReplyCode::Unknown(_)), v > 0x08, "{v:#04x}");
    }
}

#[test]
fn only_success_maps_to_socks4_granted() {
    assert_eq!(ReplyCode::Succeeded.socks4(), 90);
    for v in 1..=255 {
        assert_eq!(ReplyCode::from_u8(v).socks4(), 91);
    }
}

#[test]
fn outbound_errors_map_to_the_codes_clients_expect() {
    let cases = [
        (
            io::ErrorKind::ConnectionRefused,
            ReplyCode::ConnectionRefused,
        ),
        (
            io::ErrorKind::NetworkUnreachable,
            ReplyCode::NetworkUnreachable,
        ),
        (io::ErrorKind::HostUnreachable, ReplyCode::HostUnreachable),
        (io::ErrorKind::TimedOut, ReplyCode::TtlExpired),
        (io::ErrorKind::PermissionDenied, ReplyCode::NotAllowed),
        (io::ErrorKind::AddrInUse, ReplyCode::GeneralFailure),
        (io::ErrorKind::Other, ReplyCode::GeneralFailure),
    ];
    for (kind, code) in cases {
        assert_eq!(
            ReplyCode::from_io_error(&io::Error::from(kind)),
            code,
            "{kind:?}"
        );
    }
    let raw = |errno| ReplyCode::from_io_error(&io::Error::from_raw_os_error(errno));
    assert_eq!(raw(libc::ECONNREFUSED), ReplyCode::ConnectionRefused);
    assert_eq!(raw(libc::ENETUNREACH), ReplyCode::NetworkUnreachable);
    assert_eq!(raw(libc::EHOSTUNREACH), ReplyCode::HostUnreachable);
    assert_eq!(raw(libc::ETIMEDOUT), ReplyCode::TtlExpired);
}

#[test]
fn names_are_distinct_metric_labels() {
    let mut names: Vec<_> = NAMED.iter().map(|(c, _)| c.name()).collect();
    names.push(ReplyCode::Unknown(0x42).name());
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all);
    assert!(names
        .iter()
        .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

#[test]
fn every_error_maps_to_its_reply() {
    use ErrorReply::{AuthFailure, NoAcceptableMethod, Request};
    let cases = [
        (Error::UnknownVersion(0x47), ErrorReply::None),
        (Error::NoMethodsOffered, NoAcceptableMethod),
        (Error::NoAcceptableMethod, NoAcceptableMethod),
        (Error::BadAuthVersion(5), AuthFailure),
        (Error::AuthFailed, AuthFailure),
        (Error::Socks4NeedsAuth, Request(ReplyCode::NotAllowed)),
        (
            Error::BadRequestVersion(4),
            Request(ReplyCode::GeneralFailure),
        ),
        (
            Error::UnknownCommand(9),
            Request(ReplyCode::CommandNotSupported),
        ),
        (
            Error::UnknownAddressType(2),
            Request(ReplyCode::AddressTypeNotSupported),
        ),
        (Error::EmptyDomain, Request(ReplyCode::HostUnreachable)),
        (Error::InvalidDomain, Request(ReplyCode::HostUnreachable)),
        (
            Error::TooLong(Field::Socks4UserId),
            Request(ReplyCode::GeneralFailure),
        ),
        (
            Error::TooLong(Field::Socks4Host),
            Request(ReplyCode::GeneralFailure),
        ),
        (
            Error::TooLong(Field::Message),
            Request(ReplyCode::GeneralFailure),
        ),
        (
            Error::Rejected(ReplyCode::TtlExpired),
            Request(ReplyCode::TtlExpired),
        ),
    ];
    for (error, reply) in cases {
        assert_eq!(error.reply(), reply, "{error:?}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn error_messages_name_the_offending_value() {
    assert_eq!(
        Error::UnknownVersion(0x47).to_string(),
        "not a SOCKS client (first byte 0x47)"
    );
    assert_eq!(Error::UnknownCommand(9).to_string(), "unknown command 0x09");
    assert_eq!(
        Error::Rejected(ReplyCode::ConnectionRefused).to_string(),
        "request rejected: connection_refused"
    );
}
