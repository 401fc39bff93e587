//! What the resolver counts. Resolver threads and every shard write these, so they are
//! shared atomics (`fetch_add`); each sits next to a lock the same caller takes anyway (the
//! cache or the queue), so they add nothing measurable.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct ResolverStats {
    /// [`Resolver::cached`](super::Resolver::cached) found a live answer (positive or
    /// negative). IP literals are not counted.
    pub cache_hits: AtomicU64,
    /// [`Resolver::cached`](super::Resolver::cached) found nothing.
    pub cache_misses: AtomicU64,
    /// Lookups a resolver thread made (a name asked for by many counts once).
    pub lookups: AtomicU64,
    /// Requests that joined a lookup already queued or in flight.
    pub joined: AtomicU64,
    /// Lookups that found no such name (or no A / AAAA records).
    pub not_found: AtomicU64,
    /// Lookups that no server answered in time.
    pub timeouts: AtomicU64,
    /// Lookups that failed otherwise (server failure, network error).
    pub errors: AtomicU64,
    /// Requests refused at once: invalid name, full queue, shutting down.
    pub refused: AtomicU64,
}

impl ResolverStats {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy for the exporter.
    pub fn read(&self) -> ResolverCounts {
        ResolverCounts {
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            lookups: self.lookups.load(Relaxed),
            joined: self.joined.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            errors: self.errors.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

/// A reading of [`ResolverStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolverCounts {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub lookups: u64,
    pub joined: u64,
    pub not_found: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub refused: u64,
}
