//! BIND (RFC 1928 §4, SOCKS4 "BIND"): which incoming peer the client is waiting for.
//!
//! DST.ADDR names the host expected to connect (for FTP, the server of the client's
//! control session). A peer from any other IP is refused; an unspecified DST.ADDR
//! (0.0.0.0 or ::) accepts any peer.

use std::net::IpAddr;

/// Whether `peer` may be the BIND connection for a request whose DST.ADDR resolved to
/// `expected` (one address for an IP request, the resolved set for a name).
pub fn peer_allowed(expected: &[IpAddr], peer: IpAddr) -> bool {
    let peer = canonical(peer);
    expected
        .iter()
        .any(|&ip| ip.is_unspecified() || canonical(ip) == peer)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_expected_peer() {
        assert!(peer_allowed(&[ip("192.0.2.7")], ip("192.0.2.7")));
        assert!(peer_allowed(&[ip("192.0.2.7")], ip("::ffff:192.0.2.7")));
        assert!(!peer_allowed(&[ip("192.0.2.7")], ip("192.0.2.8")));
        assert!(peer_allowed(
            &[ip("2001:db8::1"), ip("192.0.2.7")],
            ip("192.0.2.7")
        ));
        assert!(!peer_allowed(&[], ip("192.0.2.7")));
    }

    #[test]
    fn unspecified_accepts_anyone() {
        assert!(peer_allowed(&[ip("0.0.0.0")], ip("203.0.113.9")));
        assert!(peer_allowed(&[ip("::")], ip("203.0.113.9")));
    }
}
