//! The system backend: `getaddrinfo`, so `/etc/hosts`, nsswitch and resolv.conf apply as
//! for every other program on the host. It reports no TTL, and its timeout is resolv.conf's.

use std::io;

use dns_lookup::{AddrInfoHints, LookupErrorKind};

use super::{dedup, Lookup, ResolveError};

pub(super) fn lookup(host: &str) -> Lookup {
    // One entry per address: without a socket type getaddrinfo lists each address once per
    // type (stream, datagram, raw).
    let hints = AddrInfoHints {
        socktype: libc::SOCK_STREAM,
        ..AddrInfoHints::default()
    };
    let result = match dns_lookup::getaddrinfo(Some(host), None, Some(hints)) {
        Ok(list) => {
            let addrs = dedup(list.filter_map(Result::ok).map(|info| info.sockaddr.ip()));
            if addrs.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(addrs)
            }
        }
        Err(err) => Err(match err.kind() {
            LookupErrorKind::NoName | LookupErrorKind::NoData => ResolveError::NotFound,
            _ => ResolveError::Failed(io::Error::from(err).to_string()),
        }),
    };
    Lookup { result, ttl: None }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    // `localhost` comes from /etc/hosts: no query leaves the machine.
    #[test]
    fn localhost_resolves_from_etc_hosts() {
        let lookup = lookup("localhost");
        let addrs = lookup.result.expect("localhost resolves");
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
        assert_eq!(lookup.ttl, None);
    }

    #[test]
    fn ip_literal_is_returned_as_is() {
        let addrs = lookup("192.0.2.7").result.unwrap();
        assert_eq!(addrs, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
    }
}
