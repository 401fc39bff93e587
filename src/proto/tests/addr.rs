//! SOCKS5 addresses: ATYP, address, port.

use std::net::{Ipv6Addr, SocketAddr};

use super::{assert_fails_at, assert_parses, emitted};
use crate::proto::{Address, Error, MAX_DOMAIN_LEN};

fn ip(s: &str) -> Address {
    Address::Ip(s.parse().unwrap())
}

fn domain(name: &str, port: u16) -> Address {
    Address::Domain(name.to_owned(), port)
}

/// Parses `bytes` as `addr` and emits `addr` as exactly `bytes`.
fn assert_both_ways(bytes: &[u8], addr: Address) {
    assert_parses(Address::parse, bytes, addr.clone());
    assert_eq!(emitted(|out| addr.emit(out)), bytes);
    assert_eq!(addr.wire_len(), bytes.len());
}

#[test]
fn ipv4_address_round_trips_with_port_in_network_order() {
    assert_both_ways(&[0x01, 192, 0, 2, 1, 0x1f, 0x90], ip("192.0.2.1:8080"));
}

#[test]
fn ipv6_address_takes_nineteen_bytes() {
    let mut bytes = vec![0x04];
    bytes.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    bytes.extend_from_slice(&[0x01, 0xbb]);
    assert_eq!(bytes.len(), 19);
    assert_both_ways(&bytes, ip("[2001:db8::1]:443"));
}

#[test]
fn domain_address_carries_its_length_and_no_nul() {
    let mut bytes = vec![0x03, 11];
    bytes.extend_from_slice(b"example.com");
    bytes.extend_from_slice(&[0x00, 0x50]);
    assert_both_ways(&bytes, domain("example.com", 80));
}

#[test]
fn longest_domain_of_255_bytes_round_trips() {
    let name = "a".repeat(MAX_DOMAIN_LEN);
    let mut bytes = vec![0x03, 255];
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&[0xff, 0xff]);
    assert_both_ways(&bytes, domain(&name, 65535));
}

#[test]
fn port_zero_and_port_65535_are_kept() {
    assert_both_ways(&[0x01, 0, 0, 0, 0, 0, 0], ip("0.0.0.0:0"));
    assert_both_ways(
        &[0x01, 255, 255, 255, 255, 0xff, 0xff],
        ip("255.255.255.255:65535"),
    );
}

#[test]
fn rejects_unknown_address_types_at_the_first_byte() {
    for atyp in [0x00, 0x02, 0x05, 0x7f, 0xff] {
        assert_fails_at(Address::parse, &[atyp], Error::UnknownAddressType(atyp));
    }
}

#[test]
fn rejects_empty_domain_before_its_port_arrives() {
    assert_fails_at(Address::parse, &[0x03, 0], Error::EmptyDomain);
}

#[test]
fn rejects_domain_with_bytes_that_are_not_printable_ascii() {
    for bad in [
        &b"a b"[..],
        b"a\0b",
        b"a\x7fb",
        b"\tab",
        "caf\u{e9}".as_bytes(),
    ] {
        let mut bytes = vec![0x03, bad.len() as u8];
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(&[0, 80]);
        // The name is judged only once the whole address (port included) is there.
        assert_fails_at(Address::parse, &bytes, Error::InvalidDomain);
    }
}

#[test]
fn ip_literals_in_domains_become_ip_addresses() {
    assert_eq!(domain("127.0.0.1", 80).normalized(), ip("127.0.0.1:80"));
    assert_eq!(domain("::1", 443).normalized(), ip("[::1]:443"));
    assert_eq!(domain("[::1]", 443).normalized(), ip("[::1]:443"));
    assert_eq!(domain("[127.0.0.1]", 1).normalized(), ip("127.0.0.1:1"));
}

#[test]
fn names_stay_names_when_normalized() {
    for name in [
        "localhost",
        "example.com",
        "1.2.3",
        "[example.com]",
        "[::1",
        "::1]",
        "[[::1]]",
    ] {
        assert_eq!(domain(name, 80).normalized(), domain(name, 80), "{name}");
    }
    assert_eq!(ip("[::1]:80").normalized(), ip("[::1]:80"));
}

#[test]
fn emit_cuts_an_overlong_domain_to_255_bytes_and_wire_len_agrees() {
    let addr = domain(&"b".repeat(300), 80);
    let bytes = emitted(|out| addr.emit(out));
    assert_eq!(bytes[..2], [0x03, 255]);
    assert_eq!(bytes.len(), 1 + 1 + 255 + 2);
    assert_eq!(bytes[257..], [0, 80]);
    assert_eq!(addr.wire_len(), bytes.len());
}

#[test]
fn displays_as_host_and_port() {
    assert_eq!(ip("192.0.2.1:8080").to_string(), "192.0.2.1:8080");
    assert_eq!(ip("[::1]:443").to_string(), "[::1]:443");
    assert_eq!(domain("example.com", 80).to_string(), "example.com:80");
}

#[test]
fn port_reads_from_either_form() {
    assert_eq!(ip("10.1.2.3:9").port(), 9);
    assert_eq!(domain("h", 7).port(), 7);
    let sa: SocketAddr = "[::1]:5".parse().unwrap();
    assert_eq!(Address::from(sa), Address::Ip(sa));
}
