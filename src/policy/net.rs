//! Sets of networks (CIDRs) and the built-in `deny-internal` set.
//!
//! Every lookup also tries the IPv4 form of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`):
//! a dual-stack socket reports IPv4 peers that way, so `10.0.0.0/8` must catch
//! `::ffff:10.1.2.3` too. Destinations are also tried as the IPv4 address other forms
//! carry: IPv4-compatible, NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo
//! (`2001::/32`) addresses reach, through the stack, a translator or a relay, that IPv4
//! host, so `deny-internal` must catch `64:ff9b::10.1.2.3`. Sources are not: anyone can
//! own a 6to4 address that spells 10.0.0.1.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The name rules and the configuration use for [`NetSet::internal`].
pub const DENY_INTERNAL: &str = "deny-internal";

/// Addresses that are not the public internet: what a proxy must not be tricked into
/// reaching on the operator's side (loopback, private and link-local ranges, the cloud
/// metadata address 169.254.169.254, CGNAT, ULA, multicast, unspecified, reserved).
const INTERNAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// An unordered set of networks; an address is in it when any network contains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    nets: Vec<IpNet>,
    /// Names of the built-in sets this one was extended with, for display.
    builtins: Vec<&'static str>,
}

impl NetSet {
    pub fn new(nets: Vec<IpNet>) -> NetSet {
        NetSet {
            nets,
            builtins: Vec::new(),
        }
    }

    /// The `deny-internal` set.
    pub fn internal() -> NetSet {
        NetSet {
            nets: INTERNAL
                .iter()
                .map(|n| n.parse().expect("built-in networks parse"))
                .collect(),
            builtins: vec![DENY_INTERNAL],
        }
    }

    /// Parses one entry: a CIDR, a bare address (a /32 or /128) or `deny-internal`.
    pub fn parse_entry(s: &str) -> Result<NetSet, String> {
        let s = s.trim();
        if s == DENY_INTERNAL {
            return Ok(NetSet::internal());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(NetSet::new(vec![net.trunc()]));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(NetSet::new(vec![IpNet::from(ip)]));
        }
        Err(format!(
            "`{s}` is not a network: give a CIDR like 10.0.0.0/8 or 2001:db8::/32, an \
             address, or `{DENY_INTERNAL}`"
        ))
    }

    /// Adds every network of `other`.
    pub fn extend(&mut self, other: NetSet) {
        self.nets.extend(other.nets);
        for b in other.builtins {
            if !self.builtins.contains(&b) {
                self.builtins.push(b);
            }
        }
    }

    /// Whether `ip`, as a source address, is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.has(ip, (canonical != ip).then_some(canonical))
    }

    /// Whether connecting to `ip` reaches a host in the set.
    pub fn reaches(&self, ip: IpAddr) -> bool {
        let carried = match ip {
            IpAddr::V6(v6) => carried_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.has(ip, carried)
    }

    fn has(&self, ip: IpAddr, also: Option<IpAddr>) -> bool {
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || also.is_some_and(|a| net.contains(&a)))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// The IPv4 host a connection to an IPv6 address reaches, in the forms that deliver to
/// one.
fn carried_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let last32 = Ipv4Addr::from(bits as u32);
    match ip.segments() {
        // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (`::` and `::1` excepted:
        // they are IPv6's own unspecified and loopback addresses).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last32),
        [0, 0, 0, 0, 0, 0, _, _] if bits > 1 => Some(last32),
        // NAT64 well-known prefix (RFC 6052): the address is in the last 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last32),
        // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 is the site of AA.BB.CC.DD.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        // Teredo (RFC 4380): the client's address, inverted, in the last 32 bits.
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!(bits as u32))),
        _ => None,
    }
}

impl fmt::Display for NetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for b in &self.builtins {
            write!(f, "{}{b}", if first { "" } else { "," })?;
            first = false;
        }
        let internal = NetSet::internal().nets;
        let builtin = !self.builtins.is_empty();
        for net in &self.nets {
            if builtin && internal.contains(net) {
                continue;
            }
            write!(f, "{}{net}", if first { "" } else { "," })?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_covers_every_non_public_range() {
        let set = NetSet::internal();
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fc12::3",
            "ff02::1",
        ] {
            assert!(set.contains(ip(addr)), "{addr} must be internal");
        }
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2001:db8::1",
        ] {
            assert!(!set.contains(ip(addr)), "{addr} is public");
        }
    }

    #[test]
    fn v4_mapped_addresses_match_their_ipv4_networks() {
        let set = NetSet::internal();
        for addr in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:192.168.0.1",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
        ] {
            assert!(set.contains(ip(addr)), "{addr} must be internal");
        }
        assert!(!set.contains(ip("::ffff:1.1.1.1")));
        let office = NetSet::parse_entry("10.0.0.0/8").unwrap();
        assert!(office.contains(ip("::ffff:10.9.8.7")));
        assert!(!office.contains(ip("::ffff:11.0.0.1")));
    }

    #[test]
    fn translated_and_tunnelled_forms_match_their_ipv4_networks() {
        let set = NetSet::internal();
        for addr in [
            "::ffff:10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a00:1",
            "::10.0.0.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe:1::5",
            // Teredo client 10.0.0.1, inverted: f5ff:fffe.
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        ] {
            assert!(set.reaches(ip(addr)), "{addr} must be internal");
        }
        for addr in [
            "64:ff9b::1.1.1.1",
            "::8.8.8.8",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:fefe:fefe",
            "2001:db8::a00:1",
            "64:ff9b:0:1::a00:1",
        ] {
            assert!(!set.reaches(ip(addr)), "{addr} is public");
        }
        let office = NetSet::parse_entry("192.0.2.0/24").unwrap();
        assert!(office.reaches(ip("64:ff9b::192.0.2.7")));
        assert!(office.reaches(ip("2002:c000:207::")));
        assert!(!office.reaches(ip("64:ff9b::198.51.100.7")));
        // As a source, only the mapped form counts.
        assert!(office.contains(ip("::ffff:192.0.2.7")));
        assert!(!office.contains(ip("2002:c000:207::")));
        assert!(!office.contains(ip("64:ff9b::192.0.2.7")));
    }

    #[test]
    fn entries_parse_cidrs_addresses_and_the_builtin() {
        let net = NetSet::parse_entry("192.0.2.77/24").unwrap();
        assert_eq!(
            net.nets()[0].to_string(),
            "192.0.2.0/24",
            "host bits dropped"
        );
        assert!(net.contains(ip("192.0.2.1")));
        let host = NetSet::parse_entry("2001:db8::5").unwrap();
        assert!(host.contains(ip("2001:db8::5")));
        assert!(!host.contains(ip("2001:db8::6")));
        assert!(NetSet::parse_entry(DENY_INTERNAL)
            .unwrap()
            .contains(ip("169.254.169.254")));
        let err = NetSet::parse_entry("10.0.0.0/33").unwrap_err();
        assert!(err.contains("deny-internal"), "{err}");
        assert!(NetSet::parse_entry("example.com").is_err());
    }

    #[test]
    fn display_names_builtins_once() {
        let mut set = NetSet::internal();
        set.extend(NetSet::parse_entry("198.51.100.0/24").unwrap());
        set.extend(NetSet::internal());
        assert_eq!(set.to_string(), "deny-internal,198.51.100.0/24");
    }
}
