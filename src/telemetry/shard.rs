//! One shard's counters. The shard thread is the only writer; the exporter reads them.

use std::array;
use std::time::Duration;

use super::counter::{Counter, Histogram, HistogramSnapshot, DURATION_BOUNDS_NS, TURN_BOUNDS};
use super::labels::{self, CloseReason, Direction, Limit, Pool, UdpDrop, REPLIES, STATES};
use crate::proto::{Command, ReplyCode};

const NSTATES: usize = STATES.len();
const NREPLIES: usize = REPLIES.len();

/// What one shard counts. Built by whoever builds the shard, shared (`Arc`) with the
/// exporter; every method is to be called from the owning shard thread only.
///
/// Session accounting, in the order the engine calls it:
/// [`session_opened`](Self::session_opened) at accept,
/// [`session_request`](Self::session_request) once the request is read (the session
/// leaves the handshake state), [`session_closed`](Self::session_closed) with the same
/// command (or `None` if no request was read) when the slot is freed.
// Aligned so that two shards' counters never share a cache line (or an adjacent-line
// prefetch pair), which would make one shard's increments slow down another's.
#[repr(align(128))]
#[derive(Debug)]
pub struct ShardStats {
    shard: usize,
    accepted: Counter,
    /// Sessions that entered / left each state (handshake, connect, bind, udp); the gauge
    /// is the difference, so it needs no decrement and no second writer.
    entered: [Counter; NSTATES],
    left: [Counter; NSTATES],
    /// Finished sessions by command (or none) and reply (or none).
    finished: [[Counter; NREPLIES]; NSTATES],
    closes: [Counter; CloseReason::COUNT],
    auth_failures: Counter,
    bytes: [Counter; Direction::COUNT],
    handshake: Histogram<{ DURATION_BOUNDS_NS.len() }>,
    connect: Histogram<{ DURATION_BOUNDS_NS.len() }>,
    udp_datagrams: [Counter; Direction::COUNT],
    udp_bytes: [Counter; Direction::COUNT],
    udp_dropped: [Counter; UdpDrop::COUNT],
    limits: [Counter; Limit::COUNT],
    turns: Counter,
    completions: Counter,
    per_turn: Histogram<{ TURN_BOUNDS.len() }>,
    exhausted: [Counter; Pool::COUNT],
    /// Bytes of each pool's pages written so far; only grows.
    written: [Counter; Pool::COUNT],
    stale: Counter,
    spliced: Counter,
    splice_refused: Counter,
}

fn counters<const N: usize>() -> [Counter; N] {
    array::from_fn(|_| Counter::default())
}

impl ShardStats {
    /// Counters of shard `shard` (its index, the `shard` label of the loop figures).
    pub fn new(shard: usize) -> ShardStats {
        ShardStats {
            shard,
            accepted: Counter::default(),
            entered: counters(),
            left: counters(),
            finished: array::from_fn(|_| counters()),
            closes: counters(),
            auth_failures: Counter::default(),
            bytes: counters(),
            handshake: Histogram::durations(),
            connect: Histogram::durations(),
            udp_datagrams: counters(),
            udp_bytes: counters(),
            udp_dropped: counters(),
            limits: counters(),
            turns: Counter::default(),
            completions: Counter::default(),
            per_turn: Histogram::new(&TURN_BOUNDS),
            exhausted: counters(),
            written: counters(),
            stale: Counter::default(),
            spliced: Counter::default(),
            splice_refused: Counter::default(),
        }
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// A client connection was accepted: it is now in the handshake.
    #[inline]
    pub fn session_opened(&self) {
        self.accepted.inc();
        self.entered[0].inc();
    }

    /// The session's request was read: it leaves the handshake for `command`.
    #[inline]
    pub fn session_request(&self, command: Command) {
        self.left[0].inc();
        self.entered[labels::state_index(Some(command))].inc();
    }

    /// The session ended. `command` is what was passed to
    /// [`session_request`](Self::session_request), `None` if it never was; `reply` is the
    /// reply sent to the request, `None` if none was (SOCKS4's 90/91 count as succeeded /
    /// the failure's code).
    #[inline]
    pub fn session_closed(
        &self,
        command: Option<Command>,
        reply: Option<ReplyCode>,
        reason: CloseReason,
    ) {
        let state = labels::state_index(command);
        self.left[state].inc();
        self.finished[state][labels::reply_index(reply)].inc();
        self.closes[reason.index()].inc();
    }

    /// RFC 1929 credentials (or a SOCKS4 client where authentication is required) refused.
    #[inline]
    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    /// From accept to the request read (authentication included).
    #[inline]
    pub fn handshake_time(&self, d: Duration) {
        self.handshake.observe_duration(d);
    }

    /// From the first outbound connect attempt to success or final failure.
    #[inline]
    pub fn connect_time(&self, d: Duration) {
        self.connect.observe_duration(d);
    }

    /// TCP payload bytes delivered (client to target is up), counted per completed send.
    #[inline]
    pub fn relayed(&self, dir: Direction, bytes: u64) {
        self.bytes[dir.index()].add(bytes);
    }

    /// One UDP datagram relayed; `bytes` is its payload, without the SOCKS header.
    #[inline]
    pub fn udp_relayed(&self, dir: Direction, bytes: u64) {
        self.udp_datagrams[dir.index()].inc();
        self.udp_bytes[dir.index()].add(bytes);
    }

    #[inline]
    pub fn udp_dropped(&self, why: UdpDrop) {
        self.udp_dropped[why.index()].inc();
    }

    #[inline]
    pub fn limit_hit(&self, limit: Limit) {
        self.limits[limit.index()].inc();
    }

    /// One loop turn that handled `completions` completions.
    #[inline]
    pub fn loop_turn(&self, completions: usize) {
        self.turns.inc();
        self.completions.add(completions as u64);
        self.per_turn.observe(completions as u64);
    }

    /// A receive found `pool` empty (ENOBUFS).
    #[inline]
    pub fn buffers_exhausted(&self, pool: Pool) {
        self.exhausted[pool.index()].inc();
    }

    /// `pool` has now had `bytes` of its pages written (a figure that only grows).
    #[inline]
    pub fn buffers_written(&self, pool: Pool, bytes: u64) {
        let c = &self.written[pool.index()];
        let old = c.get();
        if bytes > old {
            c.add(bytes - old);
        }
    }

    /// A completion for a slot that has since been reused.
    #[inline]
    pub fn stale_completion(&self) {
        self.stale.inc();
    }

    /// A bulk relay direction moved from relay buffers to a pipe.
    #[inline]
    pub fn spliced(&self) {
        self.spliced.inc();
    }

    /// A bulk relay direction stayed on relay buffers: no descriptors or pipe to spare.
    #[inline]
    pub fn splice_refused(&self) {
        self.splice_refused.inc();
    }

    /// What a reader sees now.
    pub fn read(&self) -> ShardSnapshot {
        let get = |cs: &[Counter]| -> Vec<u64> { cs.iter().map(Counter::get).collect() };
        // `left` before `entered`: the writer bumps `entered` first, so the gauge cannot
        // go below zero on a machine that keeps loads in order (and is clamped anyway).
        let left = get(&self.left);
        let entered = get(&self.entered);
        ShardSnapshot {
            shard: self.shard,
            accepted: self.accepted.get(),
            active: entered
                .iter()
                .zip(&left)
                .map(|(e, l)| e.saturating_sub(*l))
                .collect(),
            finished: self.finished.iter().map(|row| get(row)).collect(),
            closes: get(&self.closes),
            auth_failures: self.auth_failures.get(),
            bytes: get(&self.bytes),
            handshake: self.handshake.read(),
            connect: self.connect.read(),
            udp_datagrams: get(&self.udp_datagrams),
            udp_bytes: get(&self.udp_bytes),
            udp_dropped: get(&self.udp_dropped),
            limits: get(&self.limits),
            turns: self.turns.get(),
            completions: self.completions.get(),
            per_turn: self.per_turn.read(),
            exhausted: get(&self.exhausted),
            written: get(&self.written),
            stale: self.stale.get(),
            spliced: self.spliced.get(),
            splice_refused: self.splice_refused.get(),
        }
    }
}

/// One reading of a [`ShardStats`], or the sum of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub accepted: u64,
    /// Indexed like `STATES`.
    pub active: Vec<u64>,
    /// `[command][reply]`, indexed like `COMMANDS` and `REPLIES`.
    pub finished: Vec<Vec<u64>>,
    pub closes: Vec<u64>,
    pub auth_failures: u64,
    pub bytes: Vec<u64>,
    pub handshake: HistogramSnapshot,
    pub connect: HistogramSnapshot,
    pub udp_datagrams: Vec<u64>,
    pub udp_bytes: Vec<u64>,
    pub udp_dropped: Vec<u64>,
    pub limits: Vec<u64>,
    pub turns: u64,
    pub completions: u64,
    pub per_turn: HistogramSnapshot,
    pub exhausted: Vec<u64>,
    pub written: Vec<u64>,
    pub stale: u64,
    pub spliced: u64,
    pub splice_refused: u64,
}

fn add(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl ShardSnapshot {
    /// Adds `other` into this one (the shard index stays this one's).
    pub fn merge(&mut self, other: &ShardSnapshot) {
        self.accepted += other.accepted;
        add(&mut self.active, &other.active);
        for (a, b) in self.finished.iter_mut().zip(&other.finished) {
            add(a, b);
        }
        add(&mut self.closes, &other.closes);
        self.auth_failures += other.auth_failures;
        add(&mut self.bytes, &other.bytes);
        self.handshake.merge(&other.handshake);
        self.connect.merge(&other.connect);
        add(&mut self.udp_datagrams, &other.udp_datagrams);
        add(&mut self.udp_bytes, &other.udp_bytes);
        add(&mut self.udp_dropped, &other.udp_dropped);
        add(&mut self.limits, &other.limits);
        self.turns += other.turns;
        self.completions += other.completions;
        self.per_turn.merge(&other.per_turn);
        add(&mut self.exhausted, &other.exhausted);
        add(&mut self.written, &other.written);
        self.stale += other.stale;
        self.spliced += other.spliced;
        self.splice_refused += other.splice_refused;
    }

    /// Sessions open on this shard (or these shards), all states.
    pub fn active_total(&self) -> u64 {
        self.active.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_moves_from_handshake_to_its_command_and_out() {
        let s = ShardStats::new(3);
        s.session_opened();
        assert_eq!(s.read().active, [1, 0, 0, 0]);
        s.session_request(Command::Connect);
        assert_eq!(s.read().active, [0, 1, 0, 0]);
        s.session_closed(
            Some(Command::Connect),
            Some(ReplyCode::Succeeded),
            CloseReason::Completed,
        );
        let r = s.read();
        assert_eq!(r.shard, 3);
        assert_eq!(r.active, [0, 0, 0, 0]);
        assert_eq!(r.accepted, 1);
        assert_eq!(r.finished[1][0], 1);
        assert_eq!(r.closes[CloseReason::Completed.index()], 1);
    }

    #[test]
    fn a_session_without_request_counts_under_none() {
        let s = ShardStats::new(0);
        s.session_opened();
        s.auth_failed();
        s.session_closed(None, None, CloseReason::HandshakeError);
        let r = s.read();
        assert_eq!(r.active_total(), 0);
        assert_eq!(r.finished[0][10], 1);
        assert_eq!(r.auth_failures, 1);
    }

    #[test]
    fn snapshots_add_up() {
        let a = ShardStats::new(0);
        let b = ShardStats::new(1);
        a.relayed(Direction::Up, 10);
        b.relayed(Direction::Up, 5);
        b.relayed(Direction::Down, 7);
        a.loop_turn(3);
        b.loop_turn(0);
        b.udp_dropped(UdpDrop::Fragment);
        let mut sum = a.read();
        sum.merge(&b.read());
        assert_eq!(sum.bytes, [15, 7]);
        assert_eq!(sum.turns, 2);
        assert_eq!(sum.completions, 3);
        assert_eq!(sum.per_turn.count(), 2);
        assert_eq!(sum.udp_dropped[UdpDrop::Fragment.index()], 1);
    }

    #[test]
    fn stats_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<ShardStats>(), 128);
    }
}
