//! A hashed timer wheel for connection deadlines.
//!
//! Entries are never removed: a connection keeps at most one entry and checks its own
//! deadline when the entry fires (rescheduling if it moved, ignoring it if the connection is
//! gone). That makes "activity pushes the idle deadline" a single store, not a wheel
//! operation, which matters because it happens on every receive.

/// Wheel time, in ticks since the shard started.
pub type Tick = u64;

#[derive(Debug)]
pub struct TimerWheel {
    buckets: Vec<Vec<(Tick, u64)>>,
    mask: u64,
    /// Every tick up to and including this one has fired.
    now: Tick,
    len: usize,
}

impl TimerWheel {
    /// `buckets` is rounded up to a power of two. Deadlines further than one turn away
    /// stay in their bucket until their turn comes.
    pub fn new(buckets: usize) -> TimerWheel {
        let n = buckets.max(2).next_power_of_two();
        TimerWheel {
            buckets: (0..n).map(|_| Vec::new()).collect(),
            mask: n as u64 - 1,
            now: 0,
            len: 0,
        }
    }

    pub fn now(&self) -> Tick {
        self.now
    }

    /// Entries not yet fired (including stale ones the owner will ignore).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `key` to fire at `at` (or at the next advance, if `at` has passed).
    pub fn schedule(&mut self, at: Tick, key: u64) {
        let at = at.max(self.now + 1);
        self.buckets[(at & self.mask) as usize].push((at, key));
        self.len += 1;
    }

    /// Moves time to `to` and appends every key whose deadline is ≤ `to`.
    pub fn advance(&mut self, to: Tick, fired: &mut Vec<u64>) {
        if to <= self.now {
            return;
        }
        // Past one full turn every bucket is visited once.
        let turns = (to - self.now).min(self.mask + 1);
        for t in (to + 1 - turns)..=to {
            let bucket = &mut self.buckets[(t & self.mask) as usize];
            let before = bucket.len();
            bucket.retain(|&(at, key)| {
                if at <= to {
                    fired.push(key);
                    false
                } else {
                    true
                }
            });
            self.len -= before - bucket.len();
            // A burst leaves a bucket far larger than it now needs: give that memory
            // back, or every bucket keeps the largest burst it ever saw.
            if bucket.capacity() > 4 * bucket.len() + 16 {
                bucket.shrink_to(bucket.len() * 2);
            }
        }
        self.now = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = TimerWheel::new(8);
        let mut fired = Vec::new();
        w.schedule(5, 1);
        w.advance(4, &mut fired);
        assert!(fired.is_empty());
        w.advance(5, &mut fired);
        assert_eq!(fired, vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_one_turn_wait_for_their_turn() {
        let mut w = TimerWheel::new(8);
        let mut fired = Vec::new();
        w.schedule(3, 1);
        w.schedule(3 + 8, 2);
        w.schedule(3 + 16, 3);
        w.advance(3, &mut fired);
        assert_eq!(fired, vec![1]);
        w.advance(10, &mut fired);
        assert_eq!(fired, vec![1]);
        w.advance(11, &mut fired);
        assert_eq!(fired, vec![1, 2]);
        w.advance(100, &mut fired);
        assert_eq!(fired, vec![1, 2, 3]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut w = TimerWheel::new(4);
        let mut fired = Vec::new();
        for k in 0..20 {
            w.schedule(k + 1, k);
        }
        w.advance(1000, &mut fired);
        fired.sort_unstable();
        assert_eq!(fired, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn buckets_give_back_memory_after_a_burst() {
        let mut w = TimerWheel::new(8);
        let mut fired = Vec::new();
        for k in 0..10_000 {
            w.schedule(1, k);
        }
        w.advance(1, &mut fired);
        assert_eq!(fired.len(), 10_000);
        assert!(w.buckets.iter().all(|b| b.capacity() <= 16));
    }

    #[test]
    fn past_deadlines_fire_on_next_advance() {
        let mut w = TimerWheel::new(8);
        let mut fired = Vec::new();
        w.advance(10, &mut fired);
        w.schedule(2, 7);
        w.advance(11, &mut fired);
        assert_eq!(fired, vec![7]);
    }
}
