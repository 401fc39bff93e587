//! PROXY protocol headers, written out by hand from HAProxy's proxy-protocol.txt (not
//! with the product's encoder, so that a shared mistake cannot hide).

use std::net::{IpAddr, SocketAddr};

/// A version 1 line: `PROXY TCP4 src dst sport dport\r\n` (TCP6 for IPv6).
pub fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// The 12-byte version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// A version 2 PROXY header over TCP, with the TLVs given (type, value) after the
/// addresses. Both addresses must be of one family.
pub fn v2(source: SocketAddr, destination: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11 // AF_INET, STREAM
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21 // AF_INET6, STREAM
        }
        _ => panic!("v2 header with mixed families: {source} {destination}"),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    for (kind, value) in tlvs {
        block.push(*kind);
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(value);
    }
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21); // version 2, PROXY
    out.push(family);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A version 2 LOCAL header (a balancer's health check): no addresses.
pub fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}
