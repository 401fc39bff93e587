//! A token bucket shared between threads: `rate` tokens a second, holding at most one
//! second's worth (the burst). Time comes in as an `Instant`; nothing here sleeps.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const NANOS: u128 = 1_000_000_000;

#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens × 10⁹, so refills by the nanosecond stay exact. Negative after a take larger
    /// than what was there (see [`TokenBucket::take`]): a debt later takes wait out.
    scaled: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be at least 1.
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let rate = rate.max(1);
        TokenBucket {
            rate,
            state: Mutex::new(State {
                scaled: (rate as u128 * NANOS) as i128,
                last: now,
            }),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `amount` tokens, or says how long to wait before trying again.
    ///
    /// A take succeeds once the bucket holds `amount` (or a full bucket, when `amount` is
    /// more than the burst) and may drive the bucket into debt, so indivisible takes
    /// still average `rate`. Relays, which can send part of what they hold, use
    /// [`TokenBucket::take_up_to`].
    /// Clocks read on different threads may go slightly backwards; such a `now` adds
    /// nothing.
    pub fn take(&self, now: Instant, amount: u64) -> Result<(), Duration> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        let cap = self.rate as i128;
        let need = (amount as i128).min(cap) * NANOS as i128;
        if st.scaled >= need {
            st.scaled -= amount as i128 * NANOS as i128;
            return Ok(());
        }
        let missing = (need - st.scaled) as u128;
        let wait = missing.div_ceil(self.rate as u128);
        Err(Duration::from_nanos(wait.min(u64::MAX as u128) as u64))
    }

    /// Takes as many of `want` tokens as the bucket holds, without debt, for a relay that
    /// can send part of what it has: `Ok(granted)` with `1 <= granted <= want`, once at
    /// least `min(want, min_grant)` tokens are there (so a paced relay sends chunks worth
    /// a system call, not single bytes); otherwise how long until they are.
    pub fn take_up_to(&self, now: Instant, want: u64, min_grant: u64) -> Result<u64, Duration> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        let floor = want.min(min_grant).clamp(1, self.rate) as i128 * NANOS as i128;
        if st.scaled >= floor {
            let held = (st.scaled / NANOS as i128) as u64;
            let granted = want.min(held).max(1);
            st.scaled -= granted as i128 * NANOS as i128;
            return Ok(granted);
        }
        let missing = (floor - st.scaled) as u128;
        let wait = missing.div_ceil(self.rate as u128);
        Err(Duration::from_nanos(wait.min(u64::MAX as u128) as u64))
    }

    /// Whether the bucket is full at `now` (its holder may then be forgotten: a new
    /// bucket would behave the same).
    pub fn is_full(&self, now: Instant) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        st.scaled >= (self.rate as u128 * NANOS) as i128
    }

    fn refill(&self, st: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(st.last).as_nanos();
        if elapsed == 0 {
            return;
        }
        st.last = now;
        let cap = (self.rate as u128 * NANOS) as i128;
        // Enough to repay any debt and fill up, small enough for i128.
        let added = elapsed
            .saturating_mul(self.rate as u128)
            .min(u64::MAX as u128) as i128;
        st.scaled = (st.scaled + added).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_allows_one_second_of_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1000, t0);
        assert_eq!(b.take(t0, 600), Ok(()));
        assert_eq!(b.take(t0, 400), Ok(()));
        // Empty: one more token takes 1 ms to arrive.
        assert_eq!(b.take(t0, 1), Err(ms(1)));
        assert_eq!(b.take(t0 + ms(1), 1), Ok(()));
    }

    #[test]
    fn the_wait_is_exactly_what_is_missing() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1000, t0);
        b.take(t0, 1000).unwrap();
        assert_eq!(b.take(t0 + ms(100), 300), Err(ms(200)));
        // Waiting less than told is still refused, with the remainder.
        assert_eq!(b.take(t0 + ms(250), 300), Err(ms(50)));
        assert_eq!(b.take(t0 + ms(300), 300), Ok(()));
    }

    #[test]
    fn refills_never_exceed_one_second() {
        let t0 = Instant::now();
        let b = TokenBucket::new(500, t0);
        b.take(t0, 500).unwrap();
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later));
        assert_eq!(b.take(later, 500), Ok(()));
        assert_eq!(b.take(later, 1), Err(ms(2)));
    }

    #[test]
    fn takes_larger_than_the_burst_go_into_debt() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1000, t0);
        // 4000 bytes at 1000/s: allowed at once from a full bucket, then 3 s of debt plus
        // the next take's own second.
        assert_eq!(b.take(t0, 4000), Ok(()));
        assert_eq!(b.take(t0, 4000), Err(Duration::from_secs(4)));
        assert_eq!(b.take(t0 + Duration::from_secs(4), 4000), Ok(()));
    }

    #[test]
    fn a_transfer_averages_the_rate() {
        // 32 KiB buffers through a 100 KiB/s bucket: sending 1 MiB after the burst takes
        // (1 MiB - 100 KiB) / 100 KiB/s = 9.24 s of simulated time.
        let t0 = Instant::now();
        let b = TokenBucket::new(100 * 1024, t0);
        let mut now = t0;
        let mut sent = 0u64;
        let mut turns = 0;
        while sent < 1024 * 1024 {
            turns += 1;
            assert!(turns < 10_000, "bounded");
            match b.take(now, 32 * 1024) {
                Ok(()) => sent += 32 * 1024,
                Err(wait) => {
                    assert!(wait > Duration::ZERO);
                    now += wait;
                }
            }
        }
        let took = (now - t0).as_secs_f64();
        assert!((took - 9.24).abs() < 0.001, "took {took} s");
    }

    #[test]
    fn partial_takes_grant_what_is_there_and_never_owe() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1000, t0);
        assert_eq!(b.take_up_to(t0, 4000, 100), Ok(1000), "the burst, not more");
        // Empty: the next grant waits for the minimum chunk, not for all 4000.
        assert_eq!(b.take_up_to(t0, 4000, 100), Err(ms(100)));
        assert_eq!(b.take_up_to(t0 + ms(100), 4000, 100), Ok(100));
        // A small want needs only itself.
        assert_eq!(b.take_up_to(t0 + ms(130), 20, 100), Ok(20));
        assert_eq!(b.take_up_to(t0 + ms(130), 20, 100), Err(ms(10)));
    }

    #[test]
    fn partial_takes_pace_a_transfer_exactly() {
        // 1 MiB offered in 512 KiB gathers through a 100 KiB/s bucket: every byte past the
        // burst waits its turn, so the last byte leaves at (1 MiB - 100 KiB) / 100 KiB/s.
        let t0 = Instant::now();
        let rate = 100 * 1024;
        let b = TokenBucket::new(rate, t0);
        let mut now = t0;
        let mut left = 1024 * 1024u64;
        let mut turns = 0;
        while left > 0 {
            turns += 1;
            assert!(turns < 10_000, "bounded");
            match b.take_up_to(now, left.min(512 * 1024), rate / 20) {
                Ok(n) => left -= n,
                Err(wait) => now += wait,
            }
        }
        let took = (now - t0).as_secs_f64();
        assert!((took - 9.24).abs() < 0.001, "took {took} s");
    }

    #[test]
    fn an_earlier_now_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let b = TokenBucket::new(10, t0);
        b.take(t0, 10).unwrap();
        assert!(b.take(t0 - Duration::from_secs(5), 1).is_err());
        assert_eq!(b.take(t0 + ms(100), 1), Ok(()));
    }

    #[test]
    fn shared_between_threads() {
        let t0 = Instant::now();
        let b = std::sync::Arc::new(TokenBucket::new(1000, t0));
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..500).filter(|_| b.take(t0, 1).is_ok()).count())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(
            granted, 1000,
            "exactly the burst, however the threads interleave"
        );
    }
}
