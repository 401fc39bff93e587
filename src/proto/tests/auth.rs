//! Username/password sub-negotiation (RFC 1929), both ways.

use super::{assert_fails_at, assert_parses, emitted};
use crate::proto::auth::{Credentials, Status, STATUS_FAILURE, STATUS_SUCCESS};
use crate::proto::Error;

fn creds(user: &[u8], pass: &[u8]) -> Credentials {
    Credentials {
        username: user.to_vec(),
        password: pass.to_vec(),
    }
}

#[test]
fn credentials_round_trip() {
    let bytes = b"\x01\x05alice\x06s3cret";
    let msg = creds(b"alice", b"s3cret");
    assert_parses(Credentials::parse, bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn credentials_of_255_bytes_each_make_the_longest_message() {
    let user: Vec<u8> = (0..255).collect();
    let pass = vec![0xff; 255];
    let mut bytes = vec![0x01, 255];
    bytes.extend_from_slice(&user);
    bytes.push(255);
    bytes.extend_from_slice(&pass);
    assert_eq!(bytes.len(), Credentials::MAX_LEN);
    let msg = creds(&user, &pass);
    assert_parses(Credentials::parse, &bytes, msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), bytes);
}

#[test]
fn accepts_empty_username_and_password() {
    // RFC 1929 says 1 to 255 bytes; an empty field is passed on for the policy to refuse.
    let msg = creds(b"", b"");
    assert_parses(Credentials::parse, &[0x01, 0x00, 0x00], msg.clone());
    assert_eq!(emitted(|out| msg.emit(out)), [0x01, 0x00, 0x00]);
}

#[test]
fn rejects_credentials_of_another_version() {
    // Some clients send the SOCKS version (5) here.
    for v in [0x00, 0x02, 0x05] {
        assert_fails_at(Credentials::parse, &[v, 0x05], Error::BadAuthVersion(v));
    }
}

#[test]
fn emit_cuts_fields_to_255_bytes() {
    let msg = creds(&[b'u'; 300], &[b'p'; 256]);
    let bytes = emitted(|out| msg.emit(out));
    assert_eq!(bytes.len(), Credentials::MAX_LEN);
    assert_eq!(bytes[..2], [0x01, 255]);
    assert_eq!(bytes[257], 255);
    assert!(bytes[2..257].iter().all(|&b| b == b'u'));
    assert!(bytes[258..].iter().all(|&b| b == b'p'));
}

#[test]
fn debug_output_never_shows_the_password() {
    let text = format!("{:?}", creds(b"alice", b"hunter2"));
    assert!(text.contains("alice"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn status_round_trips() {
    for status in [STATUS_SUCCESS, STATUS_FAILURE, 0xff] {
        let bytes = [0x01, status];
        assert_parses(Status::parse, &bytes, Status { status });
        assert_eq!(emitted(|out| Status { status }.emit(out)), bytes);
    }
    assert_eq!(Status::LEN, 2);
}

#[test]
fn only_status_zero_is_success() {
    assert!(Status { status: 0 }.is_success());
    for status in 1..=255 {
        assert!(!Status { status }.is_success());
    }
}

#[test]
fn rejects_status_of_another_version() {
    assert_fails_at(Status::parse, &[0x05, 0x00], Error::BadAuthVersion(5));
}
