//! The rules of a UDP association (RFC 1928 §7) that go beyond the header: which
//! datagrams come from the client, what a client datagram asks for, and the header of a
//! reply.
//!
//! ASSOCIATE's DST.ADDR is where the client says it will send from. Many clients put
//! zeros there, and many wrongly put the destination; so unless it names the client's own
//! IP (the control connection's peer), the client is recognised by that IP alone.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use super::udp::Header;
use super::Address;

/// Recognises the client's datagrams on the relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMatch {
    ip: IpAddr,
    /// The port the client declared, when its declaration is believable.
    port: Option<u16>,
}

/// An IPv4-mapped IPv6 address compares as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl ClientMatch {
    /// From ASSOCIATE's DST.ADDR/PORT and the IP of the control connection's peer.
    pub fn new(declared: &Address, control_peer: IpAddr) -> ClientMatch {
        let ip = canonical(control_peer);
        let port = match declared {
            Address::Ip(sa) if canonical(sa.ip()) == ip && sa.port() != 0 => Some(sa.port()),
            _ => None,
        };
        ClientMatch { ip, port }
    }

    /// Whether a datagram from `src` is the client's. Only the IP decides: a declared port
    /// is where replies go first, but clients behind NAT rarely keep it.
    pub fn is_client(&self, src: SocketAddr) -> bool {
        canonical(src.ip()) == self.ip
    }

    /// Where replies go before the client's first datagram reveals its real port.
    pub fn declared(&self) -> Option<SocketAddr> {
        self.port.map(|p| SocketAddr::new(self.ip, p))
    }
}

/// Why a client datagram is not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// FRAG ≠ 0: no reassembly.
    Fragment,
    /// A header that does not parse.
    Malformed,
}

impl Drop {
    pub fn name(self) -> &'static str {
        match self {
            Drop::Fragment => "fragment",
            Drop::Malformed => "malformed",
        }
    }
}

/// What a datagram from the client asks for: send `payload` (a range of the datagram) to
/// `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub dest: Address,
    pub payload: Range<usize>,
}

/// Reads a client datagram.
pub fn client_datagram(datagram: &[u8]) -> Result<Outbound, Drop> {
    match Header::parse(datagram) {
        Ok(Some((header, offset))) if header.frag == 0 => Ok(Outbound {
            dest: header.address.normalized(),
            payload: offset..datagram.len(),
        }),
        Ok(Some(_)) => Err(Drop::Fragment),
        Ok(None) | Err(_) => Err(Drop::Malformed),
    }
}

/// The longest reply header: RSV, FRAG, ATYP and an IPv6 address and port.
pub const MAX_REPLY_HEADER: usize = 3 + 1 + 16 + 2;

/// Writes the header of a reply from `src` into the end of `room`, so that the payload
/// can follow it in place; returns its length. `room` must hold [`MAX_REPLY_HEADER`] bytes.
pub fn reply_header(src: SocketAddr, room: &mut [u8]) -> usize {
    let src = SocketAddr::new(canonical(src.ip()), src.port());
    let mut header = Vec::with_capacity(MAX_REPLY_HEADER);
    Header {
        frag: 0,
        address: Address::Ip(src),
    }
    .emit(&mut header);
    let n = header.len();
    let start = room.len() - n;
    room[start..].copy_from_slice(&header);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn zero_declaration_matches_by_ip() {
        let m = ClientMatch::new(&Address::Ip(sa("0.0.0.0:0")), "10.0.0.5".parse().unwrap());
        assert!(m.is_client(sa("10.0.0.5:4000")));
        assert!(m.is_client(sa("[::ffff:10.0.0.5]:4001")));
        assert!(!m.is_client(sa("10.0.0.6:4000")));
        assert_eq!(m.declared(), None);
    }

    #[test]
    fn destination_in_dst_addr_is_ignored() {
        // The client wrongly declared where it sends to.
        let m = ClientMatch::new(&Address::Ip(sa("8.8.8.8:53")), "10.0.0.5".parse().unwrap());
        assert!(m.is_client(sa("10.0.0.5:4000")));
        assert!(!m.is_client(sa("8.8.8.8:53")));
        assert_eq!(m.declared(), None);
        let m = ClientMatch::new(&Address::Domain("x".into(), 9), "10.0.0.5".parse().unwrap());
        assert_eq!(m.declared(), None);
    }

    #[test]
    fn own_address_declares_the_reply_port() {
        let m = ClientMatch::new(
            &Address::Ip(sa("10.0.0.5:4000")),
            "10.0.0.5".parse().unwrap(),
        );
        assert_eq!(m.declared(), Some(sa("10.0.0.5:4000")));
        assert!(m.is_client(sa("10.0.0.5:5000")), "NAT may change the port");
    }

    #[test]
    fn client_datagrams() {
        let mut d = vec![0, 0, 0, 1, 127, 0, 0, 1, 0, 53];
        d.extend_from_slice(b"query");
        let out = client_datagram(&d).unwrap();
        assert_eq!(out.dest, Address::Ip(sa("127.0.0.1:53")));
        assert_eq!(&d[out.payload], b"query");
        d[2] = 1;
        assert_eq!(client_datagram(&d), Err(Drop::Fragment));
        assert_eq!(client_datagram(&[0, 0, 0, 1, 127]), Err(Drop::Malformed));
        assert_eq!(
            client_datagram(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6]),
            Err(Drop::Malformed)
        );
        let mut dom = vec![0, 0, 0, 3, 9];
        dom.extend_from_slice(b"localhost");
        dom.extend_from_slice(&[0, 7]);
        let out = client_datagram(&dom).unwrap();
        assert_eq!(out.dest, Address::Domain("localhost".into(), 7));
        assert!(out.payload.is_empty());
    }

    #[test]
    fn reply_headers_end_where_the_payload_starts() {
        let mut room = [0xa5u8; 44];
        let n = reply_header(sa("192.0.2.1:7"), &mut room);
        assert_eq!(n, 10);
        assert_eq!(&room[34..], &[0, 0, 0, 1, 192, 0, 2, 1, 0, 7]);
        assert!(room[..34].iter().all(|&b| b == 0xa5));
        let n = reply_header(sa("[2001:db8::1]:443"), &mut room);
        assert_eq!(n, MAX_REPLY_HEADER);
        assert_eq!(room[22..26], [0, 0, 0, 4]);
        let n = reply_header(sa("[::ffff:192.0.2.1]:7"), &mut room);
        assert_eq!(n, 10, "mapped addresses are reported as IPv4");
    }
}
