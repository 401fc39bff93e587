//! Limits shared by every shard: concurrent sessions (total, per client IP, per user), new
//! sessions per second per client IP, and bandwidth per user and direction.
//!
//! [`Limiter`] holds the counters and lives as long as the process: a reload builds a new
//! [`super::Policy`] (new limit values) but keeps the limiter, so sessions admitted before
//! it still count. Admission returns a [`SessionGuard`] that gives everything back when
//! dropped. Per-IP and per-user entries sit in a sharded `Mutex<HashMap>` and are removed
//! once they hold nothing a fresh entry would not (no session, a full rate bucket).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use crate::proto::ReplyCode;

/// Locks per map: enough that shards rarely meet on one, few enough to sweep cheaply.
const MAP_SHARDS: usize = 64;
/// How often a map shard is swept for per-IP entries that only held a refilled bucket.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Limit values; `None` is unlimited. Bandwidth is in bytes per second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// Concurrent sessions, all shards together.
    pub max_sessions: Option<u64>,
    pub max_sessions_per_ip: Option<u32>,
    pub max_new_sessions_per_ip_per_sec: Option<u32>,
    /// Defaults for every user; [`UserLimits`] in a user's settings override them.
    pub user: UserLimits,
}

/// A user's limits; `None` is unlimited (or, in a per-user override, "as the default").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_sessions: Option<u32>,
    /// Client to target.
    pub bandwidth_up: Option<u64>,
    /// Target to client.
    pub bandwidth_down: Option<u64>,
}

impl UserLimits {
    /// `self`, with `defaults` where `self` says nothing.
    pub fn or(self, defaults: UserLimits) -> UserLimits {
        UserLimits {
            max_sessions: self.max_sessions.or(defaults.max_sessions),
            bandwidth_up: self.bandwidth_up.or(defaults.bandwidth_up),
            bandwidth_down: self.bandwidth_down.or(defaults.bandwidth_down),
        }
    }
}

/// Which limit refused a session (or paused a relay), for replies, counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitHit {
    Sessions,
    SessionsPerIp,
    NewSessionsPerIp,
    SessionsPerUser,
    BandwidthUp,
    BandwidthDown,
}

impl LimitHit {
    pub const ALL: [LimitHit; 6] = [
        LimitHit::Sessions,
        LimitHit::SessionsPerIp,
        LimitHit::NewSessionsPerIp,
        LimitHit::SessionsPerUser,
        LimitHit::BandwidthUp,
        LimitHit::BandwidthDown,
    ];

    /// A metric label / log word.
    pub fn name(self) -> &'static str {
        match self {
            LimitHit::Sessions => "sessions",
            LimitHit::SessionsPerIp => "sessions_per_ip",
            LimitHit::NewSessionsPerIp => "new_sessions_per_ip",
            LimitHit::SessionsPerUser => "sessions_per_user",
            LimitHit::BandwidthUp => "bandwidth_up",
            LimitHit::BandwidthDown => "bandwidth_down",
        }
    }

    /// The reply for a request refused by this limit (SOCKS4: 91). Bandwidth limits pause
    /// a relay and never refuse.
    pub fn reply(self) -> ReplyCode {
        ReplyCode::NotAllowed
    }
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A user's bandwidth buckets, shared by all their sessions.
#[derive(Debug)]
pub struct Bandwidth {
    pub up: Option<TokenBucket>,
    pub down: Option<TokenBucket>,
}

impl Bandwidth {
    fn rates(&self) -> (Option<u64>, Option<u64>) {
        (
            self.up.as_ref().map(TokenBucket::rate),
            self.down.as_ref().map(TokenBucket::rate),
        )
    }
}

#[derive(Debug, Default)]
struct IpEntry {
    active: u32,
    rate: Option<TokenBucket>,
}

#[derive(Debug, Default)]
struct UserEntry {
    active: u32,
    bandwidth: Option<Arc<Bandwidth>>,
}

struct MapShard<K, V> {
    map: HashMap<K, V>,
    next_sweep: Option<Instant>,
}

struct ShardedMap<K, V> {
    hasher: RandomState,
    shards: Box<[Mutex<MapShard<K, V>>]>,
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn new() -> Self {
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..MAP_SHARDS)
                .map(|_| {
                    Mutex::new(MapShard {
                        map: HashMap::new(),
                        next_sweep: None,
                    })
                })
                .collect(),
        }
    }

    fn lock<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, MapShard<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A panic elsewhere never leaves an entry half-updated, so a poisoned lock is
        // still consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

/// The counters behind every limit. Share one (in an `Arc`) between all shards.
pub struct Limiter {
    total: AtomicU64,
    ips: ShardedMap<IpAddr, IpEntry>,
    users: ShardedMap<Box<str>, UserEntry>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            total: AtomicU64::new(0),
            ips: ShardedMap::new(),
            users: ShardedMap::new(),
        }
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// The key per-IP limits count under: IPv4 (mapped or not) as is, IPv6 by /64, since one
/// IPv6 host usually holds a whole /64 and could otherwise open sessions from endless
/// addresses.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

impl Limiter {
    pub fn new() -> Arc<Limiter> {
        Arc::new(Limiter::default())
    }

    /// Admits a new session from `client` (call when accepting it), counting it against
    /// the total and per-IP limits. Add the user with [`SessionGuard::admit_user`] once
    /// known.
    pub fn admit(
        self: &Arc<Self>,
        limits: &LimitSettings,
        client: IpAddr,
        now: Instant,
    ) -> Result<SessionGuard, LimitHit> {
        let counted = match limits.max_sessions {
            Some(max) => self
                .total
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok(),
            None => {
                self.total.fetch_add(1, Ordering::AcqRel);
                true
            }
        };
        if !counted {
            return Err(LimitHit::Sessions);
        }
        let mut guard = SessionGuard {
            limiter: self.clone(),
            ip: None,
            user: None,
            bandwidth: None,
        };
        if limits.max_sessions_per_ip.is_some() || limits.max_new_sessions_per_ip_per_sec.is_some()
        {
            let key = client_key(client);
            self.admit_ip(limits, key, now)?;
            guard.ip = Some(key);
        }
        Ok(guard)
    }

    fn admit_ip(&self, limits: &LimitSettings, key: IpAddr, now: Instant) -> Result<(), LimitHit> {
        let mut shard = self.ips.lock(&key);
        if shard.next_sweep.is_none_or(|t| now >= t) {
            shard
                .map
                .retain(|_, e| e.active > 0 || e.rate.as_ref().is_some_and(|b| !b.is_full(now)));
            shard.next_sweep = Some(now + SWEEP_EVERY);
        }
        let entry = shard.map.entry(key).or_default();
        let result = (|| {
            if let Some(rate) = limits.max_new_sessions_per_ip_per_sec {
                let rate = u64::from(rate);
                if entry.rate.as_ref().is_none_or(|b| b.rate() != rate) {
                    entry.rate = Some(TokenBucket::new(rate, now));
                }
                let bucket = entry.rate.as_ref().expect("set above");
                bucket
                    .take(now, 1)
                    .map_err(|_| LimitHit::NewSessionsPerIp)?;
            } else {
                entry.rate = None;
            }
            if limits
                .max_sessions_per_ip
                .is_some_and(|max| entry.active >= max)
            {
                return Err(LimitHit::SessionsPerIp);
            }
            entry.active += 1;
            Ok(())
        })();
        if entry.active == 0 && entry.rate.is_none() {
            shard.map.remove(&key);
        }
        result
    }

    /// Sessions admitted and not yet dropped.
    pub fn active(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Per-IP entries held (sessions open, or a rate bucket still refilling).
    pub fn tracked_ips(&self) -> usize {
        self.ips.len()
    }

    /// Per-user entries held (users with a session open).
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    fn release_ip(&self, key: IpAddr) {
        let mut shard = self.ips.lock(&key);
        if let Some(entry) = shard.map.get_mut(&key) {
            entry.active = entry.active.saturating_sub(1);
            if entry.active == 0 && entry.rate.is_none() {
                shard.map.remove(&key);
            }
        }
    }

    fn release_user(&self, user: &str) {
        let mut shard = self.users.lock(user);
        if let Some(entry) = shard.map.get_mut(user) {
            entry.active = entry.active.saturating_sub(1);
            if entry.active == 0 {
                shard.map.remove(user);
            }
        }
    }
}

/// One admitted session's share of the limits; dropping it gives the share back.
#[derive(Debug)]
pub struct SessionGuard {
    limiter: Arc<Limiter>,
    ip: Option<IpAddr>,
    user: Option<Box<str>>,
    bandwidth: Option<Arc<Bandwidth>>,
}

impl SessionGuard {
    /// Counts the session against `user`'s limits (`limits` from
    /// [`super::Policy::user_limits`]) and picks up the user's bandwidth buckets. Call once,
    /// after authentication; a second call for the same guard is ignored.
    pub fn admit_user(
        &mut self,
        user: &str,
        limits: UserLimits,
        now: Instant,
    ) -> Result<(), LimitHit> {
        if self.user.is_some() {
            return Ok(());
        }
        let rates = (limits.bandwidth_up, limits.bandwidth_down);
        if limits.max_sessions.is_none() && rates == (None, None) {
            return Ok(());
        }
        let mut shard = self.limiter.users.lock(user);
        let entry = shard.map.entry(user.into()).or_default();
        if limits.max_sessions.is_some_and(|max| entry.active >= max) {
            if entry.active == 0 {
                shard.map.remove(user);
            }
            return Err(LimitHit::SessionsPerUser);
        }
        entry.active += 1;
        if rates != (None, None) {
            // A reload may have changed the rates: later sessions get new buckets.
            let current = entry.bandwidth.as_ref().filter(|b| b.rates() == rates);
            let bandwidth = match current {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(Bandwidth {
                        up: rates.0.map(|r| TokenBucket::new(r, now)),
                        down: rates.1.map(|r| TokenBucket::new(r, now)),
                    });
                    entry.bandwidth = Some(b.clone());
                    b
                }
            };
            self.bandwidth = Some(bandwidth);
        }
        self.user = Some(user.into());
        Ok(())
    }

    /// The user's bandwidth buckets: before sending `n` bytes one way, `take(now, n)` on
    /// that direction's bucket; on `Err(wait)` hold the bytes (and stop receiving on that
    /// direction) until `now + wait`.
    pub fn bandwidth(&self) -> Option<&Bandwidth> {
        self.bandwidth.as_deref()
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.limiter.release_ip(ip);
        }
        if let Some(user) = &self.user {
            self.limiter.release_user(user);
        }
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
