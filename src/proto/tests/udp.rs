//! The SOCKS5 UDP request header (RFC 1928 §7), both ways.

use std::net::Ipv6Addr;

use super::emitted;
use crate::proto::udp::{Header, MAX_HEADER_LEN};
use crate::proto::{Address, Error};

fn ip(s: &str) -> Address {
    Address::Ip(s.parse().unwrap())
}

/// Parses `header ++ payload`, expects `expected` with the payload right after the
/// header, and emits `expected` as exactly `header`.
fn assert_both_ways(header: &[u8], expected: Header) {
    let mut datagram = header.to_vec();
    datagram.extend_from_slice(b"payload");
    assert_eq!(
        Header::parse(&datagram),
        Ok(Some((expected.clone(), header.len())))
    );
    assert_eq!(
        Header::parse(header),
        Ok(Some((expected.clone(), header.len())))
    );
    assert_eq!(emitted(|out| expected.emit(out)), header);
    assert_eq!(expected.wire_len(), header.len());
}

#[test]
fn ipv4_header_is_ten_bytes() {
    let header = [0, 0, 0, 0x01, 192, 0, 2, 1, 0x00, 0x35];
    let expected = Header {
        frag: 0,
        address: ip("192.0.2.1:53"),
    };
    assert_both_ways(&header, expected);
}

#[test]
fn ipv6_header_is_22_bytes() {
    let mut header = vec![0, 0, 0, 0x04];
    header.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    header.extend_from_slice(&[0x00, 0x35]);
    assert_eq!(header.len(), 22);
    let expected = Header {
        frag: 0,
        address: ip("[::1]:53"),
    };
    assert_both_ways(&header, expected);
}

#[test]
fn header_with_longest_domain_is_the_longest_header() {
    let name = "d".repeat(255);
    let mut header = vec![0, 0, 0, 0x03, 255];
    header.extend_from_slice(name.as_bytes());
    header.extend_from_slice(&[0x1f, 0x90]);
    assert_eq!(header.len(), MAX_HEADER_LEN);
    let expected = Header {
        frag: 0,
        address: Address::Domain(name, 8080),
    };
    assert_both_ways(&header, expected);
}

#[test]
fn fragment_number_is_reported_for_the_relay_to_drop() {
    let header = [0, 0, 0x01, 0x01, 10, 0, 0, 1, 0, 53];
    let expected = Header {
        frag: 1,
        address: ip("10.0.0.1:53"),
    };
    assert_both_ways(&header, expected);
}

#[test]
fn nonzero_reserved_bytes_are_ignored() {
    let datagram = [0xab, 0xcd, 0, 0x01, 10, 0, 0, 1, 0, 53, b'x'];
    let expected = Header {
        frag: 0,
        address: ip("10.0.0.1:53"),
    };
    assert_eq!(Header::parse(&datagram), Ok(Some((expected, 10))));
}

#[test]
fn truncated_headers_are_dropped_not_waited_for() {
    let header = [0, 0, 0, 0x01, 10, 0, 0, 1, 0, 53];
    for i in 0..header.len() {
        assert_eq!(Header::parse(&header[..i]), Ok(None), "{i} bytes");
    }
}

#[test]
fn rejects_unknown_address_type() {
    let datagram = [0, 0, 0, 0x05, 1, 2, 3, 4, 5, 6, 7];
    assert_eq!(Header::parse(&datagram), Err(Error::UnknownAddressType(5)));
}

#[test]
fn rejects_empty_and_invalid_domains() {
    assert_eq!(
        Header::parse(&[0, 0, 0, 0x03, 0, 0, 53]),
        Err(Error::EmptyDomain)
    );
    let datagram = [0, 0, 0, 0x03, 1, b' ', 0, 53];
    assert_eq!(Header::parse(&datagram), Err(Error::InvalidDomain));
}
