//! UDP association and BIND rules: reply headers written in place, client recognition and
//! the BIND peer check, for any address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::FILL;
use crate::proto::association::{reply_header, ClientMatch, MAX_REPLY_HEADER};
use crate::proto::bind::peer_allowed;
use crate::proto::udp::Header;
use crate::proto::Address;

/// The IPv4 address inside an IPv4-mapped IPv6 address, else the address itself.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        any::<[u8; 4]>().prop_map(|v4| IpAddr::V6(std::net::Ipv4Addr::from(v4).to_ipv6_mapped())),
    ]
}

#[test]
fn reply_header_for_ipv6_source_is_22_bytes_at_the_end_of_the_room() {
    let mut room = [FILL; MAX_REPLY_HEADER + 5];
    let src = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 53);
    let n = reply_header(src, &mut room);
    assert_eq!(n, 22);
    let mut expected = vec![0, 0, 0, 0x04];
    expected.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    expected.extend_from_slice(&[0x00, 0x35]);
    assert_eq!(room[5..], expected[..]);
    assert_eq!(room[..5], [FILL; 5]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn reply_header_parses_back_to_the_source_right_before_the_payload(
        ip in arb_ip(),
        port in any::<u16>(),
        spare in 0..32usize,
    ) {
        let mut room = vec![FILL; MAX_REPLY_HEADER + spare];
        let n = reply_header(SocketAddr::new(ip, port), &mut room);
        let start = room.len() - n;
        prop_assert!(room[..start].iter().all(|&b| b == FILL));
        let mut datagram = room[start..].to_vec();
        datagram.extend_from_slice(b"payload");
        let header = Header { frag: 0, address: Address::Ip(SocketAddr::new(unmapped(ip), port)) };
        prop_assert_eq!(Header::parse(&datagram), Ok(Some((header, n))));
    }

    #[test]
    fn client_is_recognised_by_its_ip_whatever_it_declared(
        control in arb_ip(),
        declared in arb_ip(),
        declared_port in any::<u16>(),
        src in arb_ip(),
        src_port in any::<u16>(),
    ) {
        let m = ClientMatch::new(&Address::Ip(SocketAddr::new(declared, declared_port)), control);
        let same = unmapped(src) == unmapped(control);
        prop_assert_eq!(m.is_client(SocketAddr::new(src, src_port)), same);
        prop_assert!(m.is_client(SocketAddr::new(control, src_port)));
        if let Some(reply_to) = m.declared() {
            prop_assert_eq!(reply_to.ip(), unmapped(control));
            prop_assert_eq!(reply_to.port(), declared_port);
        }
    }

    #[test]
    fn bind_accepts_only_an_expected_peer(expected in prop::collection::vec(arb_ip(), 0..4), peer in arb_ip()) {
        let allowed = expected
            .iter()
            .any(|&ip| ip.is_unspecified() || unmapped(ip) == unmapped(peer));
        prop_assert_eq!(peer_allowed(&expected, peer), allowed);
        let mut with_peer = expected.clone();
        with_peer.push(peer);
        prop_assert!(peer_allowed(&with_peer, peer));
    }
}
