//! Remembers successful password verifications, so a client that opens many connections
//! with the same credentials pays for one argon2 run, not one per connection.
//!
//! Entries are keyed by HMAC-SHA-256, under a key drawn at random when the process starts,
//! of the username, the stored hash and the password. The cache thus holds no password and
//! nothing that can be checked against a guess without that key; a changed hash (a reload
//! with a new password) misses by construction; and nobody can choose inputs that collide.
//! Only successes are cached: a failure is never remembered, so a wrong password cannot
//! poison the cache for the right one. The cache is bounded (least recently used entries
//! go first) and entries expire, so a password removed from the file stops working within
//! the time to live even on a process that is never reloaded.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use lru::LruCache;
use sha2::Sha256;

pub const DEFAULT_CAPACITY: usize = 4096;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

type Key = [u8; 32];

pub struct VerifyCache {
    key: [u8; 32],
    ttl: Duration,
    /// Entry → when it expires.
    entries: Mutex<LruCache<Key, Instant>>,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for VerifyCache {
    fn default() -> Self {
        VerifyCache::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl VerifyCache {
    pub fn new(capacity: usize, ttl: Duration) -> VerifyCache {
        VerifyCache {
            key: rand::random(),
            ttl,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("at least 1"),
            )),
        }
    }

    fn entry_key(&self, user: &[u8], stored: &[u8], password: &[u8]) -> Key {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        // Lengths first, so ("ab", "c") and ("a", "bc") never feed the same bytes.
        for part in [user, stored] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    /// Whether these credentials verified against `stored` within the time to live.
    pub fn contains(&self, user: &[u8], stored: &[u8], password: &[u8], now: Instant) -> bool {
        let key = self.entry_key(user, stored, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&key) {
            Some(&expires) if now < expires => true,
            Some(_) => {
                entries.pop(&key);
                false
            }
            None => false,
        }
    }

    /// Records a successful verification.
    pub fn insert(&self, user: &[u8], stored: &[u8], password: &[u8], now: Instant) {
        let key = self.entry_key(user, stored, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.put(key, now + self.ttl);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_same_user_hash_and_password_until_expiry() {
        let cache = VerifyCache::new(8, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert(b"alice", b"$argon2id$h1", b"pw", t0);
        assert!(cache.contains(b"alice", b"$argon2id$h1", b"pw", t0));
        assert!(!cache.contains(b"alice", b"$argon2id$h1", b"pw2", t0));
        assert!(!cache.contains(b"bob", b"$argon2id$h1", b"pw", t0));
        assert!(
            !cache.contains(b"alice", b"$argon2id$h2", b"pw", t0),
            "new hash"
        );
        assert!(
            !cache.contains(b"alic", b"e$argon2id$h1", b"pw", t0),
            "shifted bytes"
        );
        let later = t0 + Duration::from_secs(59);
        assert!(cache.contains(b"alice", b"$argon2id$h1", b"pw", later));
        assert!(!cache.contains(
            b"alice",
            b"$argon2id$h1",
            b"pw",
            t0 + Duration::from_secs(60)
        ));
        assert!(cache.is_empty(), "the expired entry is dropped when found");
    }

    #[test]
    fn bounded_least_recently_used_first() {
        let cache = VerifyCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert(b"a", b"h", b"1", t0);
        cache.insert(b"b", b"h", b"1", t0);
        assert!(cache.contains(b"a", b"h", b"1", t0));
        cache.insert(b"c", b"h", b"1", t0);
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(b"a", b"h", b"1", t0));
        assert!(
            !cache.contains(b"b", b"h", b"1", t0),
            "least recently used went first"
        );
        assert!(cache.contains(b"c", b"h", b"1", t0));
    }

    #[test]
    fn keys_differ_between_processes() {
        let (a, b) = (VerifyCache::default(), VerifyCache::default());
        assert_ne!(a.entry_key(b"u", b"h", b"p"), b.entry_key(b"u", b"h", b"p"));
    }
}
