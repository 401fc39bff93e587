//! Name resolution, off the shard threads.
//!
//! A shard never blocks: one blocked shard stalls every connection pinned to its core. Name
//! lookups block (`getaddrinfo` has no completion-based form, and a DNS server may take
//! seconds to answer), so they run on a small pool of resolver threads instead, and the
//! asking shard learns the answer through [`Notify`]: the shard's implementation pushes
//! `(ticket, result)` to its own queue and wakes its ring (`MSG_RING`), then picks the
//! result up on its next loop turn. Nothing here touches a ring, a slab or a timer wheel.
//!
//! The shard's side, in order:
//!
//! 1. An IP literal needs no resolver: the caller turns it into an address itself.
//! 2. [`Resolver::cached`]: a lock and a map look-up, never the network. A live answer
//!    (positive or negative) is used at once, so hot names cost no thread hop.
//! 3. Otherwise [`Resolver::resolve`] with a ticket (the connection's token) and the shard's
//!    [`Notify`]; the connection waits, bounded by the shard's own resolve timeout.
//!
//! Inside: requests for a name already being looked up join that lookup (a burst of
//! connections to one new name costs one query); the queue of distinct names is bounded, and
//! a full queue refuses at once rather than growing; answers and failures go into a bounded
//! LRU cache, positive ones for their DNS TTL clamped to `[min_ttl, max_ttl]`, failures for
//! `negative_ttl`, so a dead name cannot turn every connection into a query.
//!
//! Two backends: the system resolver (`getaddrinfo`: `/etc/hosts`, nsswitch, resolv.conf),
//! or, when [`ResolverConfig::servers`] is set, DNS queries straight to those servers (UDP,
//! TCP when the answer is truncated), which gives real TTLs, a timeout the resolver controls,
//! and a resolver tests can control ([`fake_dns::FakeDns`]).

mod cache;
mod dns;
pub mod fake_dns;
mod resolver;
mod stats;
mod system;

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use resolver::Resolver;
pub use stats::{ResolverCounts, ResolverStats};

/// The addresses of one name, in the order the backend gave them (IPv6 and IPv4 both, when
/// both exist). Cheap to clone: shared with the cache.
pub type Addrs = Arc<[IpAddr]>;

/// Why a name has no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The name does not exist, or has no A / AAAA records.
    NotFound,
    /// No server answered in time.
    Timeout,
    /// The lookup could not be done (server failure, refusal, network error, bad name, full
    /// queue, shutting down).
    Failed(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound => f.write_str("host not found"),
            ResolveError::Timeout => f.write_str("name lookup timed out"),
            ResolveError::Failed(why) => write!(f, "name lookup failed: {why}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Where a lookup's answer goes.
pub trait Notify: Send + Sync + 'static {
    /// Called on a resolver thread; must not block (the shard pushes to a queue and wakes its
    /// ring) and must not panic (it would end that thread). A request refused at once (invalid name, full queue, shut down) is answered on
    /// the thread that called [`Resolver::resolve`], before it returns.
    fn resolved(&self, ticket: u64, result: Result<Addrs, ResolveError>);
}

/// How the resolver runs. [`Default`] gives the values documented on each field.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Resolver threads (default 4). Each runs one lookup at a time.
    pub threads: usize,
    /// Distinct names waiting for a thread (default 1024). Past it, requests fail at once.
    pub queue_capacity: usize,
    /// Cached names (default 10,000); the least recently used is evicted. 0 disables caching.
    pub cache_capacity: usize,
    /// How long a failure is cached (default 5 s).
    pub negative_ttl: Duration,
    /// Lower clamp for a positive answer's DNS TTL (default 10 s).
    pub min_ttl: Duration,
    /// Upper clamp for a positive answer's DNS TTL (default 300 s).
    pub max_ttl: Duration,
    /// How long a positive answer from the system resolver is cached; `getaddrinfo` does not
    /// report TTLs (default 60 s).
    pub system_ttl: Duration,
    /// DNS servers to query directly, in order of preference. Empty (default): the system
    /// resolver (`getaddrinfo`, honours `/etc/hosts`).
    pub servers: Vec<SocketAddr>,
    /// Time for one lookup, all servers and retries included (default 5 s). Applies to the
    /// DNS-server backend; `getaddrinfo` has its own (resolv.conf `options timeout`).
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            threads: 4,
            queue_capacity: 1024,
            cache_capacity: 10_000,
            negative_ttl: Duration::from_secs(5),
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(300),
            system_ttl: Duration::from_secs(60),
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a backend found, before the cache policy (clamping, negative TTL) is applied.
#[derive(Debug)]
struct Lookup {
    result: Result<Vec<IpAddr>, ResolveError>,
    /// The DNS TTL of a positive answer, if the backend knows it.
    ttl: Option<Duration>,
}

/// The longest host name in presentation form (253 characters, plus a root dot).
const MAX_HOST_LEN: usize = 254;

/// Whether `host` can be looked up at all: non-empty, not too long, printable ASCII without
/// spaces. The proto layer already enforces printable ASCII; this keeps the resolver safe on
/// its own (a NUL would truncate the name given to `getaddrinfo`).
fn is_valid_host(host: &str) -> bool {
    !host.is_empty() && host.len() <= MAX_HOST_LEN && host.bytes().all(|b| b.is_ascii_graphic())
}

/// The cache key of a host: names are case-insensitive. Borrows when already lower case, so
/// the common cache hit allocates nothing.
fn cache_key(host: &str) -> Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `addrs` without repeats, first occurrence kept (backends may list an address twice).
fn dedup(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for addr in addrs {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Polls `condition` until it holds or `limit` passes; whether it held. Tests use it to
/// wait for another thread without guessing a sleep.
#[cfg(test)]
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    condition()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation_rejects_what_getaddrinfo_would_misread() {
        assert!(is_valid_host("example.com"));
        assert!(is_valid_host("a-b_c.example."));
        assert!(!is_valid_host(""));
        assert!(!is_valid_host("exa mple.com"));
        assert!(!is_valid_host("example.com\0evil"));
        assert!(!is_valid_host("caf\u{e9}.example"));
        assert!(!is_valid_host(&"a".repeat(MAX_HOST_LEN + 1)));
    }

    #[test]
    fn cache_key_folds_case_and_borrows_lower_case() {
        assert_eq!(cache_key("ExAmple.COM"), "example.com");
        assert!(matches!(cache_key("example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn dedup_keeps_first_occurrence_order() {
        let v6: IpAddr = "::1".parse().unwrap();
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(dedup([v6, v4, v6, v4]), vec![v6, v4]);
    }

    #[test]
    fn errors_display_as_one_line() {
        assert_eq!(ResolveError::NotFound.to_string(), "host not found");
        assert_eq!(
            ResolveError::Failed("server failure".into()).to_string(),
            "name lookup failed: server failure"
        );
    }
}
