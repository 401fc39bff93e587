//! The resolver: a bounded queue of names, resolver threads that look them up, requests for
//! a name in flight joined to that lookup, and the cache in front of it all.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::cache::Cache;
use super::dns::DnsClient;
use super::stats::ResolverStats;
use super::{
    cache_key, is_valid_host, system, Addrs, Lookup, Notify, ResolveError, ResolverConfig,
};

/// A handle to the resolver threads; clones share them. Dropping the last clone shuts the
/// resolver down, as [`Resolver::shutdown`] does.
#[derive(Clone)]
pub struct Resolver {
    handle: Arc<Handle>,
}

/// Shuts the resolver down when the last [`Resolver`] goes. The threads hold [`Shared`]
/// but not this, so they do not keep it alive.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

struct Shared {
    backend: Backend,
    cache: Cache,
    stats: Arc<ResolverStats>,
    ttl: TtlPolicy,
    queue_capacity: usize,
    state: Mutex<State>,
    /// Signalled when a name is queued or the resolver stops.
    work: Condvar,
}

enum Backend {
    System,
    Servers(DnsClient),
}

struct TtlPolicy {
    negative: Duration,
    min: Duration,
    max: Duration,
    system: Duration,
}

#[derive(Default)]
struct State {
    /// Names waiting for a thread, oldest first. Every one has an entry in `waiting`.
    queue: VecDeque<String>,
    /// Everyone waiting for each queued or in-flight name.
    waiting: HashMap<String, Vec<Waiter>>,
    stopping: bool,
    #[cfg(test)]
    threads: Vec<thread::JoinHandle<()>>,
}

struct Waiter {
    ticket: u64,
    notify: Arc<dyn Notify>,
}

const SHUTTING_DOWN: &str = "shutting down";

impl Resolver {
    /// Checks `config` and spawns the resolver threads.
    pub fn start(config: ResolverConfig) -> io::Result<Resolver> {
        validate(&config)?;
        let backend = if config.servers.is_empty() {
            Backend::System
        } else {
            Backend::Servers(DnsClient::new(config.servers.clone(), config.timeout))
        };
        let shared = Arc::new(Shared {
            backend,
            cache: Cache::new(config.cache_capacity),
            stats: Arc::default(),
            ttl: TtlPolicy {
                negative: config.negative_ttl,
                min: config.min_ttl,
                max: config.max_ttl,
                system: config.system_ttl,
            },
            queue_capacity: config.queue_capacity,
            state: Mutex::default(),
            work: Condvar::new(),
        });
        let resolver = Resolver {
            handle: Arc::new(Handle {
                shared: Arc::clone(&shared),
            }),
        };
        for index in 0..config.threads {
            let worker = Arc::clone(&shared);
            // On error, dropping `resolver` stops the threads already started.
            let _thread = thread::Builder::new()
                .name(format!("resolve-{index}"))
                .spawn(move || worker.run())?;
            #[cfg(test)]
            shared.lock().threads.push(_thread);
        }
        Ok(resolver)
    }

    /// Cache only: never waits on the network. `Some` on a live positive or negative entry
    /// (and for an IP literal, which needs no lookup).
    pub fn cached(&self, host: &str) -> Option<Result<Addrs, ResolveError>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Ok(Addrs::from([ip])));
        }
        let shared = &self.handle.shared;
        let answer = shared.cache.get(&cache_key(host), Instant::now());
        ResolverStats::bump(if answer.is_some() {
            &shared.stats.cache_hits
        } else {
            &shared.stats.cache_misses
        });
        answer
    }

    /// The resolver's counters, for the metrics exporter.
    pub fn stats(&self) -> Arc<ResolverStats> {
        Arc::clone(&self.handle.shared.stats)
    }

    /// Queues a lookup; `notify.resolved(ticket, result)` is called exactly once, from a
    /// resolver thread. Concurrent requests for the same host share one lookup.
    ///
    /// Answered at once, on this thread, before returning: an IP literal (its own address),
    /// an invalid name, a full queue, a resolver that is shut down.
    pub fn resolve(&self, host: &str, ticket: u64, notify: Arc<dyn Notify>) {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return notify.resolved(ticket, Ok(Addrs::from([ip])));
        }
        let stats = &self.handle.shared.stats;
        if !is_valid_host(host) {
            ResolverStats::bump(&stats.refused);
            let why = ResolveError::Failed("invalid host name".into());
            return notify.resolved(ticket, Err(why));
        }
        let shared = &self.handle.shared;
        let key = cache_key(host);
        let mut state = shared.lock();
        let refusal = if state.stopping {
            SHUTTING_DOWN
        } else if let Some(waiters) = state.waiting.get_mut(key.as_ref()) {
            waiters.push(Waiter { ticket, notify });
            drop(state);
            ResolverStats::bump(&stats.joined);
            return;
        } else if state.queue.len() >= shared.queue_capacity {
            "resolver queue full"
        } else {
            let key = key.into_owned();
            state.queue.push_back(key.clone());
            state.waiting.insert(key, vec![Waiter { ticket, notify }]);
            drop(state);
            shared.work.notify_one();
            return;
        };
        drop(state);
        ResolverStats::bump(&stats.refused);
        notify.resolved(ticket, Err(ResolveError::Failed(refusal.into())));
    }

    /// Stops the threads; pending requests are answered `Failed("shutting down")` on this
    /// thread, and later ones at once. A thread in the middle of a lookup finishes it (its
    /// answer goes to the cache only) and then exits: this call does not wait for it.
    pub fn shutdown(&self) {
        self.handle.shared.shut_down();
    }

    /// Waits for every resolver thread to exit.
    #[cfg(test)]
    fn join(&self) {
        let threads = std::mem::take(&mut self.handle.shared.lock().threads);
        for thread in threads {
            thread.join().expect("resolver thread panicked");
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

fn validate(config: &ResolverConfig) -> io::Result<()> {
    let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
    if config.threads == 0 {
        return invalid("resolver threads must be at least 1");
    }
    if config.queue_capacity == 0 {
        return invalid("resolver queue capacity must be at least 1");
    }
    if config.min_ttl > config.max_ttl {
        return invalid("resolver min_ttl must not exceed max_ttl");
    }
    if config.timeout.is_zero() {
        return invalid("resolver timeout must be above zero");
    }
    Ok(())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking notifier must not take the whole resolver down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A resolver thread: take a name, look it up, answer everyone waiting for it.
    fn run(&self) {
        while let Some(key) = self.next_name() {
            let result = self.lookup(&key);
            // The cache already holds the answer, so a request arriving after this removal
            // is answered from it rather than missed.
            let waiters = self.lock().waiting.remove(&key).unwrap_or_default();
            for waiter in waiters {
                waiter.notify.resolved(waiter.ticket, result.clone());
            }
        }
    }

    /// Blocks until a name is queued (`Some`) or the resolver stops (`None`).
    fn next_name(&self) -> Option<String> {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return None;
            }
            if let Some(key) = state.queue.pop_front() {
                return Some(key);
            }
            state = self
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lookup(&self, key: &str) -> Result<Addrs, ResolveError> {
        // Answered while this name sat in the queue.
        if let Some(answer) = self.cache.get(key, Instant::now()) {
            return answer;
        }
        let Lookup { result, ttl } = match &self.backend {
            Backend::System => system::lookup(key),
            Backend::Servers(client) => client.lookup(key),
        };
        ResolverStats::bump(&self.stats.lookups);
        let failure = match &result {
            Ok(addrs) if !addrs.is_empty() => None,
            Ok(_) | Err(ResolveError::NotFound) => Some(&self.stats.not_found),
            Err(ResolveError::Timeout) => Some(&self.stats.timeouts),
            Err(ResolveError::Failed(_)) => Some(&self.stats.errors),
        };
        if let Some(counter) = failure {
            ResolverStats::bump(counter);
        }
        let (answer, ttl) = match result {
            Ok(addrs) if !addrs.is_empty() => {
                let ttl = ttl.map_or(self.ttl.system, |ttl| ttl.clamp(self.ttl.min, self.ttl.max));
                (Ok(Addrs::from(addrs)), ttl)
            }
            Ok(_) => (Err(ResolveError::NotFound), self.ttl.negative),
            Err(err) => (Err(err), self.ttl.negative),
        };
        self.cache
            .insert(key.to_owned(), answer.clone(), ttl, Instant::now());
        answer
    }

    fn shut_down(&self) {
        let waiters = {
            let mut state = self.lock();
            if state.stopping {
                return;
            }
            state.stopping = true;
            state.queue.clear();
            std::mem::take(&mut state.waiting)
        };
        self.work.notify_all();
        for waiter in waiters.into_values().flatten() {
            let why = ResolveError::Failed(SHUTTING_DOWN.into());
            waiter.notify.resolved(waiter.ticket, Err(why));
        }
    }
}

#[cfg(test)]
mod tests;
