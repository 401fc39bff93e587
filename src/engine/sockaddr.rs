//! `struct sockaddr_in` / `sockaddr_in6` as bytes, for memory the kernel reads or writes
//! directly (connect addresses, SO_PEERNAME results).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

const STORAGE: usize = std::mem::size_of::<libc::sockaddr_storage>();
const IN_LEN: u32 = std::mem::size_of::<libc::sockaddr_in>() as u32;
const IN6_LEN: u32 = std::mem::size_of::<libc::sockaddr_in6>() as u32;

/// Encodes `addr` into a sockaddr_storage-sized buffer; returns it and the length used.
pub fn encode(addr: SocketAddr) -> ([u8; STORAGE], u32) {
    let mut raw = [0u8; STORAGE];
    match addr {
        SocketAddr::V4(a) => {
            raw[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            raw[2..4].copy_from_slice(&a.port().to_be_bytes());
            raw[4..8].copy_from_slice(&a.ip().octets());
            (raw, IN_LEN)
        }
        SocketAddr::V6(a) => {
            raw[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            raw[2..4].copy_from_slice(&a.port().to_be_bytes());
            raw[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            raw[8..24].copy_from_slice(&a.ip().octets());
            raw[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            (raw, IN6_LEN)
        }
    }
}

/// Decodes an AF_INET or AF_INET6 address; `None` for anything else or a short buffer.
pub fn decode(raw: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(raw.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET if raw.len() >= IN_LEN as usize => {
            let ip: [u8; 4] = raw[4..8].try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 if raw.len() >= IN6_LEN as usize => {
            let flow = u32::from_be_bytes(raw[4..8].try_into().ok()?);
            let ip: [u8; 16] = raw[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes(raw[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for s in ["127.0.0.1:1080", "[::1]:443", "[fe80::1%2]:9", "0.0.0.0:0"] {
            let addr: SocketAddr = s.parse().unwrap();
            let (raw, len) = encode(addr);
            assert_eq!(decode(&raw[..len as usize]), Some(addr), "{s}");
        }
    }

    #[test]
    fn rejects_other_families_and_short_input() {
        assert_eq!(decode(&[]), None);
        let (mut raw, _) = encode("1.2.3.4:5".parse().unwrap());
        raw[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(decode(&raw), None);
        let (raw, _) = encode("[::1]:5".parse().unwrap());
        assert_eq!(decode(&raw[..20]), None);
    }
}
