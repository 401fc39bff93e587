//! Client messages and server replies written out byte by byte, apart from the encoders
//! under test, so a handshake test cannot pass by sharing an encoder's mistake.

use std::net::SocketAddr;

use crate::proto::Address;

pub fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut b = vec![0x05, methods.len() as u8];
    b.extend_from_slice(methods);
    b
}

pub fn credentials(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut b = vec![0x01, user.len() as u8];
    b.extend_from_slice(user);
    b.push(pass.len() as u8);
    b.extend_from_slice(pass);
    b
}

/// ATYP, address, port.
pub fn address(addr: &Address) -> Vec<u8> {
    let mut b = Vec::new();
    match addr {
        Address::Ip(SocketAddr::V4(sa)) => {
            b.push(0x01);
            b.extend_from_slice(&sa.ip().octets());
        }
        Address::Ip(SocketAddr::V6(sa)) => {
            b.push(0x04);
            b.extend_from_slice(&sa.ip().octets());
        }
        Address::Domain(name, _) => {
            b.extend_from_slice(&[0x03, name.len() as u8]);
            b.extend_from_slice(name.as_bytes());
        }
    }
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

pub fn socks5_request(cmd: u8, addr: &Address) -> Vec<u8> {
    let mut b = vec![0x05, cmd, 0x00];
    b.extend_from_slice(&address(addr));
    b
}

/// VN CD DSTPORT DSTIP USERID NUL [HOST NUL].
pub fn socks4_request(cd: u8, port: u16, ip: [u8; 4], user: &[u8], host: Option<&[u8]>) -> Vec<u8> {
    let mut b = vec![0x04, cd];
    b.extend_from_slice(&port.to_be_bytes());
    b.extend_from_slice(&ip);
    b.extend_from_slice(user);
    b.push(0);
    if let Some(host) = host {
        b.extend_from_slice(host);
        b.push(0);
    }
    b
}

/// A SOCKS5 reply: VER REP RSV, then the bound address.
pub fn socks5_reply(rep: u8, bound: SocketAddr) -> Vec<u8> {
    let mut b = vec![0x05, rep, 0x00];
    b.extend_from_slice(&address(&Address::Ip(bound)));
    b
}

/// A SOCKS4 reply: VN 0, CD, the bound port, then the IPv4 address (an IPv4-mapped
/// IPv6 address unmapped, any other IPv6 address as zeros).
pub fn socks4_reply(cd: u8, bound: SocketAddr) -> Vec<u8> {
    let mut b = vec![0x00, cd];
    b.extend_from_slice(&bound.port().to_be_bytes());
    match bound {
        SocketAddr::V4(sa) => b.extend_from_slice(&sa.ip().octets()),
        SocketAddr::V6(sa) => match sa.ip().to_ipv4_mapped() {
            Some(v4) => b.extend_from_slice(&v4.octets()),
            None => b.extend_from_slice(&[0; 4]),
        },
    }
    b
}

/// The failure reply of SOCKS5: REP, and 0.0.0.0:0 bound.
pub fn socks5_failure(rep: u8) -> Vec<u8> {
    vec![0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0]
}

/// The failure reply of SOCKS4: rejected, zeros.
pub const SOCKS4_REJECTED: [u8; 8] = [0x00, 91, 0, 0, 0, 0, 0, 0];
