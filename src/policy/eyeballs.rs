//! Happy Eyeballs address ordering (RFC 8305 §4): the resolver's answers interleaved by
//! family, starting with the preferred one, so a racing connector tries one family, then
//! the other, then the first again. Order within a family is kept.

use std::net::IpAddr;

/// Which family goes first. IPv6 by default, as RFC 8305 §4 recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefer {
    #[default]
    Ipv6,
    Ipv4,
}

impl Prefer {
    pub fn name(self) -> &'static str {
        match self {
            Prefer::Ipv6 => "ipv6",
            Prefer::Ipv4 => "ipv4",
        }
    }
}

pub fn order(addrs: &[IpAddr], prefer: Prefer) -> Vec<IpAddr> {
    let first_is_v6 = prefer == Prefer::Ipv6;
    let mut first = addrs.iter().filter(|a| a.is_ipv6() == first_is_v6);
    let mut second = addrs.iter().filter(|a| a.is_ipv6() != first_is_v6);
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        let a = first.next();
        let b = second.next();
        if a.is_none() && b.is_none() {
            return out;
        }
        out.extend(a.into_iter().chain(b).copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn interleaves_starting_with_ipv6_by_default() {
        let answers = ips(&[
            "192.0.2.1",
            "192.0.2.2",
            "2001:db8::1",
            "192.0.2.3",
            "2001:db8::2",
        ]);
        assert_eq!(
            order(&answers, Prefer::default()),
            ips(&[
                "2001:db8::1",
                "192.0.2.1",
                "2001:db8::2",
                "192.0.2.2",
                "192.0.2.3"
            ])
        );
    }

    #[test]
    fn prefer_ipv4_starts_with_ipv4() {
        let answers = ips(&["2001:db8::1", "2001:db8::2", "2001:db8::3", "192.0.2.1"]);
        assert_eq!(
            order(&answers, Prefer::Ipv4),
            ips(&["192.0.2.1", "2001:db8::1", "2001:db8::2", "2001:db8::3"])
        );
    }

    #[test]
    fn one_family_or_none_keeps_the_order() {
        let v4 = ips(&["192.0.2.9", "192.0.2.1"]);
        assert_eq!(order(&v4, Prefer::Ipv6), v4);
        assert!(order(&[], Prefer::Ipv4).is_empty());
    }
}
