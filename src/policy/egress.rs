//! Egress: how an outbound socket leaves the host — its source address, interface
//! (SO_BINDTODEVICE) and firewall mark (SO_MARK), and random IPv6 sources from a prefix.
//!
//! Sticky sources hash the session id with HMAC-SHA-256 under a key from the
//! configuration, so a session keeps its address across connections and restarts
//! (same configuration, same address) while nobody without the key can tell which session
//! an address belongs to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use ipnet::Ipv6Net;
use sha2::Sha256;

/// How a source address is drawn from [`Egress::ipv6_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv6Mode {
    /// A new random address for every connection.
    #[default]
    PerConnection,
    /// The same address for every connection of a session (from the session id in the
    /// username); per connection when the username carries none.
    PerSession,
}

impl Ipv6Mode {
    pub fn name(self) -> &'static str {
        match self {
            Ipv6Mode::PerConnection => "per-connection",
            Ipv6Mode::PerSession => "per-session",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Egress {
    /// Source address for IPv4 destinations.
    pub source_v4: Option<Ipv4Addr>,
    /// Source address for IPv6 destinations (when there is no prefix).
    pub source_v6: Option<Ipv6Addr>,
    /// SO_BINDTODEVICE.
    pub interface: Option<String>,
    /// SO_MARK.
    pub mark: Option<u32>,
    /// Source addresses for IPv6 destinations are drawn from this prefix.
    pub ipv6_prefix: Option<Ipv6Net>,
    pub ipv6_mode: Ipv6Mode,
    /// HMAC key for per-session addresses.
    pub session_key: Vec<u8>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session key stays out of logs.
        f.debug_struct("Egress")
            .field("source_v4", &self.source_v4)
            .field("source_v6", &self.source_v6)
            .field("interface", &self.interface)
            .field("mark", &self.mark)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("ipv6_mode", &self.ipv6_mode)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// The source address to bind before connecting to a destination of the given
    /// family, or `None` to let the kernel choose. `session` is the id from the username
    /// ([`super::split_username`]); `rng_u64` is a fresh random number from the caller.
    pub fn source(
        &self,
        family_is_v6: bool,
        session: Option<&str>,
        rng_u64: u64,
    ) -> Option<IpAddr> {
        if !family_is_v6 {
            return self.source_v4.map(IpAddr::V4);
        }
        let Some(prefix) = self.ipv6_prefix else {
            return self.source_v6.map(IpAddr::V6);
        };
        let bits = match (self.ipv6_mode, session) {
            (Ipv6Mode::PerSession, Some(id)) => self.session_bits(id),
            _ => spread(rng_u64),
        };
        Some(IpAddr::V6(address_in(prefix, bits)))
    }

    /// Whether this egress changes anything about an outbound socket.
    pub fn is_empty(&self) -> bool {
        self.source_v4.is_none()
            && self.source_v6.is_none()
            && self.interface.is_none()
            && self.mark.is_none()
            && self.ipv6_prefix.is_none()
    }

    fn session_bits(&self, session: &str) -> u128 {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.session_key)
            .expect("HMAC takes keys of any length");
        mac.update(session.as_bytes());
        let digest = mac.finalize().into_bytes();
        u128::from_be_bytes(digest[..16].try_into().expect("SHA-256 gives 32 bytes"))
    }
}

/// 128 random-looking bits from 64 (splitmix64 twice), for prefixes shorter than /64.
fn spread(seed: u64) -> u128 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let hi = mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
    ((hi as u128) << 64) | seed as u128
}

/// The prefix's network bits with `bits` as the host part. The all-zero host part (the
/// subnet-router anycast address) is never returned.
fn address_in(prefix: Ipv6Net, bits: u128) -> Ipv6Addr {
    let len = u32::from(prefix.prefix_len());
    if len >= 128 {
        return prefix.network();
    }
    let host_mask = u128::MAX >> len;
    let mut host = bits & host_mask;
    if host == 0 {
        host = 1;
    }
    Ipv6Addr::from(u128::from(prefix.network()) | host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn v6_egress(p: &str, mode: Ipv6Mode, key: &[u8]) -> Egress {
        Egress {
            ipv6_prefix: Some(prefix(p)),
            ipv6_mode: mode,
            session_key: key.to_vec(),
            ..Egress::default()
        }
    }

    #[test]
    fn fixed_sources_follow_the_family() {
        let e = Egress {
            source_v4: Some(Ipv4Addr::new(192, 0, 2, 7)),
            source_v6: Some("2001:db8::7".parse().unwrap()),
            ..Egress::default()
        };
        assert_eq!(e.source(false, None, 1), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(
            e.source(true, None, 1),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(Egress::default().source(true, None, 1), None);
        assert!(Egress::default().is_empty());
        assert!(!e.is_empty());
    }

    #[test]
    fn random_sources_stay_inside_the_prefix_and_differ() {
        for p in [
            "2001:db8:1:2::/64",
            "2001:db8:abc::/48",
            "2001:db8::ff00/120",
        ] {
            let net = prefix(p);
            let e = v6_egress(p, Ipv6Mode::PerConnection, b"k");
            let mut seen = std::collections::HashSet::new();
            for seed in 0..200u64 {
                let Some(IpAddr::V6(a)) = e.source(true, Some("s"), seed.wrapping_mul(7919)) else {
                    panic!("no address from {p}");
                };
                assert!(net.contains(&a), "{a} outside {p}");
                assert_ne!(a, net.network(), "anycast address handed out");
                seen.insert(a);
            }
            assert!(seen.len() > 150, "{p}: only {} distinct of 200", seen.len());
        }
        // Bits above /64 vary too when the prefix is shorter.
        let e = v6_egress("2001:db8::/48", Ipv6Mode::PerConnection, b"k");
        let subnets: std::collections::HashSet<_> = (0..50u64)
            .filter_map(|s| e.source(true, None, s))
            .map(|a| match a {
                IpAddr::V6(a) => a.segments()[3],
                IpAddr::V4(_) => unreachable!(),
            })
            .collect();
        assert!(subnets.len() > 40, "subnet bits barely vary: {subnets:?}");
    }

    #[test]
    fn sticky_sources_depend_on_session_and_key_only() {
        let e = v6_egress("2001:db8:5::/64", Ipv6Mode::PerSession, b"secret");
        let a = e.source(true, Some("abc123"), 1).unwrap();
        assert_eq!(
            a,
            e.source(true, Some("abc123"), 999).unwrap(),
            "rng must not matter"
        );
        assert_ne!(a, e.source(true, Some("abc124"), 1).unwrap());
        // A configuration rebuilt from the same values (a restart) gives the same address.
        let again = v6_egress("2001:db8:5::/64", Ipv6Mode::PerSession, b"secret");
        assert_eq!(a, again.source(true, Some("abc123"), 5).unwrap());
        let rekeyed = v6_egress("2001:db8:5::/64", Ipv6Mode::PerSession, b"other");
        assert_ne!(a, rekeyed.source(true, Some("abc123"), 1).unwrap());
        // Without a session id, per-session falls back to per connection.
        assert_ne!(e.source(true, None, 1), e.source(true, None, 2));
        // The exact value is pinned so that a change in hashing (which would move every
        // sticky session to a new address after an upgrade) is noticed.
        assert_eq!(a.to_string(), STICKY_ABC123);
    }

    const STICKY_ABC123: &str = "2001:db8:5:0:fb68:3e1b:fa12:1f9f";

    #[test]
    fn ipv4_destinations_ignore_the_prefix() {
        let mut e = v6_egress("2001:db8::/64", Ipv6Mode::PerConnection, b"");
        assert_eq!(e.source(false, None, 3), None);
        e.source_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            e.source(false, None, 3),
            Some("198.51.100.1".parse().unwrap())
        );
    }

    #[test]
    fn a_full_length_prefix_is_one_address() {
        let e = v6_egress("2001:db8::9/128", Ipv6Mode::PerConnection, b"");
        assert_eq!(
            e.source(true, None, 77),
            Some("2001:db8::9".parse().unwrap())
        );
    }
}
