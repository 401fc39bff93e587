//! The answer cache: bounded, least recently used evicted first, every entry with its own
//! expiry. Failures are entries too, so a dead name is not queried once per connection.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{Addrs, ResolveError};

type Answer = Result<Addrs, ResolveError>;

struct Entry {
    answer: Answer,
    expires: Instant,
}

/// Keys are already-folded host names (see `cache_key`). The clock is passed in, so expiry
/// is testable without waiting.
pub(super) struct Cache {
    /// `None` when caching is disabled (capacity 0).
    map: Option<Mutex<LruCache<String, Entry>>>,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            map: NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap))),
        }
    }

    /// The live answer for `key`, marking it recently used. An expired entry is dropped.
    pub(super) fn get(&self, key: &str, now: Instant) -> Option<Answer> {
        let mut map = self
            .map
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some(entry) if now < entry.expires => Some(entry.answer.clone()),
            Some(_) => {
                map.pop(key);
                None
            }
            None => None,
        }
    }

    /// Stores `answer` for `ttl` from `now`, evicting the least recently used entry if full.
    pub(super) fn insert(&self, key: String, answer: Answer, ttl: Duration, now: Instant) {
        if let Some(map) = &self.map {
            let expires = now.checked_add(ttl).unwrap_or(now);
            let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
            map.put(key, Entry { answer, expires });
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| {
            map.lock().unwrap_or_else(PoisonError::into_inner).len()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn addrs(ip: &str) -> Answer {
        let ip: IpAddr = ip.parse().unwrap();
        Ok(Addrs::from(vec![ip]))
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn live_entry_is_returned_until_it_expires() {
        let cache = Cache::new(4);
        let t0 = Instant::now();
        cache.insert("a.test".into(), addrs("192.0.2.1"), TTL, t0);
        assert_eq!(cache.get("a.test", t0), Some(addrs("192.0.2.1")));
        assert_eq!(
            cache.get("a.test", t0 + TTL - Duration::from_millis(1)),
            Some(addrs("192.0.2.1"))
        );
        assert_eq!(cache.get("a.test", t0 + TTL), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn negative_entries_are_cached() {
        let cache = Cache::new(4);
        let t0 = Instant::now();
        cache.insert("gone.test".into(), Err(ResolveError::NotFound), TTL, t0);
        assert_eq!(
            cache.get("gone.test", t0),
            Some(Err(ResolveError::NotFound))
        );
    }

    #[test]
    fn full_cache_evicts_least_recently_used() {
        let cache = Cache::new(2);
        let t0 = Instant::now();
        cache.insert("a.test".into(), addrs("192.0.2.1"), TTL, t0);
        cache.insert("b.test".into(), addrs("192.0.2.2"), TTL, t0);
        // Touch a, so b is the least recently used.
        assert!(cache.get("a.test", t0).is_some());
        cache.insert("c.test".into(), addrs("192.0.2.3"), TTL, t0);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b.test", t0), None);
        assert_eq!(cache.get("a.test", t0), Some(addrs("192.0.2.1")));
        assert_eq!(cache.get("c.test", t0), Some(addrs("192.0.2.3")));
    }

    #[test]
    fn insert_replaces_an_existing_entry() {
        let cache = Cache::new(2);
        let t0 = Instant::now();
        cache.insert("a.test".into(), Err(ResolveError::Timeout), TTL, t0);
        cache.insert("a.test".into(), addrs("192.0.2.1"), TTL, t0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("a.test", t0), Some(addrs("192.0.2.1")));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = Cache::new(0);
        let t0 = Instant::now();
        cache.insert("a.test".into(), addrs("192.0.2.1"), TTL, t0);
        assert_eq!(cache.get("a.test", t0), None);
    }
}
