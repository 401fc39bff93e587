//! Moving bytes: receives into provided buffers, one send in flight per direction, and
//! backpressure.
//!
//! Backpressure: a direction's receive stays armed only while its unsent bytes are under
//! the high-water mark. Past it the multishot receive is cancelled, and re-armed once the
//! sink has taken the bytes. A slow reader therefore holds at most a few buffers, never
//! makes the proxy buffer without bound, and cannot drain the shared pool for others.

use std::os::fd::AsRawFd;

use super::bufring::Slice;
use super::conn::{Bulk, ClientFd, Dir, Phase, RecvState, Seg};
use super::ring::{Completion, Fd, MAX_GATHER};
use super::shard::{Shard, TICK};
use super::splice::SPLICE_AFTER;
use super::token::Op;
use crate::policy::TokenBucket;
use crate::telemetry::{CloseReason, Direction, Limit, Pool};

impl Shard {
    /// Unsent bytes per direction above which its receive is paused.
    fn high_water(&self) -> u32 {
        (self.pool.buf_size() * 4).max(64 * 1024)
    }

    fn source(&self, slot: usize, dir: Dir) -> Option<Fd> {
        let conn = &self.conns[slot];
        match dir {
            Dir::Up => Some(Fd::Fixed(conn.client)),
            Dir::Down => conn.target.as_ref().map(|t| Fd::Raw(t.as_raw_fd())),
        }
    }

    fn sink(&self, slot: usize, dir: Dir) -> Option<Fd> {
        self.source(slot, opposite(dir))
    }

    pub(super) fn on_recv(&mut self, slot: usize, dir: Dir, c: Completion) {
        let now = self.now();
        let token = c.token;
        let conn = &mut self.conns[slot];
        let pipe = conn.pipe(dir);
        if !c.more() {
            pipe.recv = RecvState::Idle;
        }
        if c.result > 0 {
            let len = c.result as u32;
            self.filled.clear();
            let ok = c
                .buffer()
                .is_some_and(|first| self.pool.take_filled(first, len, &mut self.filled));
            for s in &self.filled {
                pipe.segs.push_back(Seg::Buf {
                    bid: s.bid,
                    off: 0,
                    len: s.len,
                });
                pipe.queued += s.len;
            }
            conn.last_active = now;
            if !ok {
                log::error!("receive completion without a usable buffer");
                self.begin_close(slot, side_error(dir));
            }
            return;
        }
        match -c.result {
            0 => pipe.eof = true,
            libc::ENOBUFS => {
                pipe.recv = RecvState::Starved;
                self.starved.push_back(token);
                self.pool.ran_dry();
                self.stats.buffers_exhausted(Pool::Relay);
            }
            libc::ECANCELED => {}
            e => {
                log::debug!(
                    "receive from {}: {}",
                    if dir == Dir::Up { "client" } else { "target" },
                    std::io::Error::from_raw_os_error(e)
                );
                self.begin_close(slot, side_error(dir));
            }
        }
    }

    pub(super) fn on_send(&mut self, slot: usize, dir: Dir, c: Completion) {
        let now = self.now();
        let conn = &mut self.conns[slot];
        let pipe = conn.pipe(dir);
        pipe.sending = false;
        if c.result <= 0 {
            if c.result < 0 {
                log::debug!("send: {}", std::io::Error::from_raw_os_error(-c.result));
            }
            self.begin_close(slot, side_error(opposite(dir)));
            return;
        }
        // One send may have covered several buffers (gathered); retire what it took.
        let mut left = c.result as u32;
        let mut relayed = 0u64;
        let mut replies_done = false;
        while left > 0 {
            let Some(front) = pipe.segs.front_mut() else {
                break;
            };
            let n = left.min(front.len());
            if matches!(front, Seg::Buf { .. }) {
                relayed += n as u64;
            }
            front.advance(n);
            pipe.queued -= n;
            left -= n;
            if front.len() == 0 {
                match pipe.segs.pop_front() {
                    Some(Seg::Buf { bid, .. }) => self.pool.give_back(bid),
                    Some(Seg::Out { .. }) => {
                        replies_done = !matches!(pipe.segs.front(), Some(Seg::Out { .. }))
                    }
                    None => {}
                }
            }
        }
        pipe.relayed += relayed;
        if relayed > 0 {
            let direction = if dir == Dir::Up {
                Direction::Up
            } else {
                Direction::Down
            };
            self.stats.relayed(direction, relayed);
        }
        // The last handshake reply is out: a relaying session needs no scratch block any
        // more (an idle session holds only its state).
        if replies_done && conn.phase == Phase::Relay {
            if let Some(id) = conn.scratch.take() {
                self.scratch.release(id);
            }
        }
        conn.last_active = now;
    }

    /// Arms or pauses the receive and starts the next send of one direction.
    pub(super) fn pump(&mut self, slot: usize, dir: Dir) {
        if self.conns[slot].pipe(dir).spliced.is_some() {
            return self.pump_spliced(slot, dir);
        }
        let may_splice = self.may_splice(slot);
        let pipe = self.conns[slot].pipe(dir);
        if !may_splice && pipe.bulk == Bulk::Moving {
            pipe.bulk = Bulk::Refused;
        }
        let may_splice = may_splice && pipe.bulk != Bulk::Refused;
        self.pump_buffers(slot, dir, may_splice);
        // A bulk direction moves to a pipe once its queue is out; if it cannot, the
        // buffers carry on (its receive was left stopped meanwhile).
        if self.conns[slot].pipe(dir).bulk == Bulk::Moving
            && !self.start_splice(slot, dir)
            && self.conns[slot].pipe(dir).bulk == Bulk::Refused
        {
            self.pump_buffers(slot, dir, false);
        }
    }

    fn pump_buffers(&mut self, slot: usize, dir: Dir, may_splice: bool) {
        let phase = self.conns[slot].phase;
        let high_water = self.high_water();
        let recv_allowed = match dir {
            Dir::Up => phase != Phase::Closing,
            Dir::Down => phase == Phase::Relay,
        };
        let send_allowed = match dir {
            Dir::Up => phase == Phase::Relay,
            Dir::Down => phase != Phase::Closing,
        };
        // A bulk direction waiting to move to a pipe keeps its receive stopped.
        if recv_allowed && self.conns[slot].pipe(dir).bulk != Bulk::Moving {
            let source = self.source(slot, dir);
            let recv_op = if dir == Dir::Up {
                Op::RecvClient
            } else {
                Op::RecvTarget
            };
            let token = self.token(slot, recv_op);
            let conn = &mut self.conns[slot];
            let pipe = conn.pipe(dir);
            let go_bulk = may_splice && pipe.relayed >= SPLICE_AFTER;
            match (pipe.recv, source) {
                (RecvState::Idle, Some(_)) if go_bulk => pipe.bulk = Bulk::Moving,
                (RecvState::Idle, Some(_))
                    if !pipe.eof
                        && pipe.queued < high_water
                        && !self.starved.is_empty()
                        && !self.rearming =>
                {
                    // Receives waiting for buffers go first: queue behind them, or the
                    // busiest sessions would keep taking every buffer that comes back.
                    pipe.recv = RecvState::Starved;
                    self.starved.push_back(token);
                }
                (RecvState::Idle, Some(fd)) if !pipe.eof && pipe.queued < high_water => {
                    pipe.recv = RecvState::Armed;
                    conn.inflight += 1;
                    self.ring.recv_multi(fd, self.pool.group(), token);
                }
                (RecvState::Armed, _) if pipe.queued >= high_water || go_bulk => {
                    if may_splice {
                        pipe.bulk = Bulk::Moving;
                    }
                    pipe.recv = RecvState::Cancelling;
                    conn.inflight += 1;
                    self.ring.cancel(token, self.token(slot, Op::Cancel));
                }
                _ => {}
            }
        }
        if send_allowed {
            let Some(sink) = self.sink(slot, dir) else {
                return;
            };
            let send_op = if dir == Dir::Up {
                Op::SendTarget
            } else {
                Op::SendClient
            };
            let token = self.token(slot, send_op);
            let conn = &mut self.conns[slot];
            let scratch = conn.scratch;
            // Leading buffers go out together, one system call for up to MAX_GATHER; one
            // at a time once the sockets are non-blocking for splicing (splice.rs).
            let gather = if matches!(conn.client_fd, ClientFd::None) {
                MAX_GATHER
            } else {
                1
            };
            let pipe = conn.pipe(dir);
            if pipe.sending {
                return;
            }
            let Some(&seg) = pipe.segs.front() else {
                return;
            };
            let paused_until = pipe.paused_until;
            self.gather.clear();
            for s in pipe.segs.iter().take(gather) {
                match *s {
                    Seg::Buf { bid, off, len } => self.gather.push(Slice { bid, off, len }),
                    Seg::Out { .. } => break,
                }
            }
            if paused_until > self.clock_tick() {
                return;
            }
            if !self.gather.is_empty() {
                let len = self.gather.iter().map(|s| s.len).sum();
                match self.bandwidth_grant(slot, dir, len) {
                    Ok(granted) if granted < len => trim_gather(&mut self.gather, granted),
                    Ok(_) => {}
                    Err(wait) => {
                        let until = self.now() + wait;
                        self.conns[slot].pipe(dir).paused_until = until;
                        self.stats.limit_hit(Limit::UserBandwidth);
                        self.set_deadline(slot, until);
                        return;
                    }
                }
            }
            let conn = &mut self.conns[slot];
            let pipe = conn.pipe(dir);
            pipe.sending = true;
            conn.inflight += 1;
            match seg {
                Seg::Buf { .. } => {
                    if !self.ring.send_bufs(sink, &self.pool, &self.gather, token) {
                        log::error!("send from a buffer that is not held");
                        let conn = &mut self.conns[slot];
                        conn.inflight -= 1;
                        conn.pipe(dir).sending = false;
                        self.begin_close(slot, side_error(opposite(dir)));
                    }
                }
                Seg::Out { off, len } => match scratch {
                    Some(id) => {
                        let (off, len) = (off as usize, len as usize);
                        self.ring.send_out(sink, &self.scratch, id, off, len, token)
                    }
                    None => {
                        let conn = &mut self.conns[slot];
                        conn.inflight -= 1;
                        conn.pipe(dir).sending = false;
                        self.begin_close(slot, CloseReason::HandshakeError);
                    }
                },
            }
        }
    }

    /// Relays half-closes: once a source has sent EOF and its bytes are delivered, shut
    /// the sink's write side. The session ends when both directions are shut.
    pub(super) fn drive_relay(&mut self, slot: usize) {
        for dir in [Dir::Up, Dir::Down] {
            let sink = self.sink(slot, dir);
            let token = self.token(slot, Op::Shutdown);
            let conn = &mut self.conns[slot];
            // The direction that finishes last needs no shutdown: closing both sockets,
            // which follows at once, sends its FIN.
            let last = conn.pipe(opposite(dir)).shut;
            let pipe = conn.pipe(dir);
            if pipe.eof && !pipe.in_transit() && !pipe.shut {
                pipe.shut = true;
                if let (Some(fd), false) = (sink, last) {
                    // A socket we hold a descriptor for is shut at once: the ring runs a
                    // shutdown on a worker thread, a wake-up and a completion per session.
                    match conn.plain_sink(dir) {
                        Some(sock) => {
                            // Fails only if the peer is gone, which its receive reports.
                            let _ = sock.shutdown(std::net::Shutdown::Write);
                        }
                        None => {
                            conn.inflight += 1;
                            self.ring.shutdown_write(fd, token);
                        }
                    }
                }
            }
        }
        let conn = &self.conns[slot];
        if conn.up.shut && conn.down.shut {
            self.begin_close(slot, CloseReason::Completed);
        }
    }

    /// After a failure reply: discard input, shut our side once the reply is out, and
    /// close when the client does (or the linger deadline passes).
    pub(super) fn drive_linger(&mut self, slot: usize) {
        let token = self.token(slot, Op::Shutdown);
        let conn = &mut self.conns[slot];
        for seg in conn.up.segs.drain() {
            if let Seg::Buf { bid, .. } = seg {
                self.pool.give_back(bid);
            }
        }
        conn.up.queued = 0;
        if conn.down.segs.is_empty() && !conn.down.sending && !conn.down.shut {
            conn.down.shut = true;
            conn.inflight += 1;
            self.ring.shutdown_write(Fd::Fixed(conn.client), token);
        }
        if conn.up.eof {
            self.begin_close(slot, CloseReason::Rejected);
        }
    }

    fn clock_tick(&self) -> super::timer::Tick {
        self.now()
    }

    /// With a bandwidth limit on this session's user, how many of `len` bytes may go now
    /// (`Ok(len)` without one); `Err(ticks)` to wait when the direction's bucket is empty.
    /// Grants never exceed the tokens held, so sessions sharing a bucket cannot overdraw
    /// it with their last sends.
    fn bandwidth_grant(&self, slot: usize, dir: Dir, len: u32) -> Result<u32, super::timer::Tick> {
        let Some(bucket) = self.user_bucket(slot, dir) else {
            return Ok(len);
        };
        // One timer tick's worth: a paused relay wakes on ticks, so smaller grants would
        // only add system calls.
        let min_grant = (bucket.rate() as f64 * TICK.as_secs_f64()) as u64;
        match bucket.take_up_to(self.instant, len as u64, min_grant) {
            Ok(granted) => Ok(granted as u32),
            Err(wait) => Err(super::shard::ticks_for(wait)),
        }
    }

    /// The bandwidth bucket of the session's user in `dir`, if the user has a limit there.
    pub(super) fn user_bucket(&self, slot: usize, dir: Dir) -> Option<&TokenBucket> {
        let bandwidth = self.conns[slot].meta.guard.as_ref()?.bandwidth()?;
        match dir {
            Dir::Up => bandwidth.up.as_ref(),
            Dir::Down => bandwidth.down.as_ref(),
        }
    }

    /// Re-arms receives that ran out of buffers, oldest first, while buffers are back.
    /// At most as many as there are free buffers, so the ones re-armed get them.
    pub(super) fn rearm_starved(&mut self) {
        let mut budget = self.pool.available();
        self.rearming = true;
        while budget > 0 {
            let Some(token) = self.starved.pop_front() else {
                break;
            };
            if !self.is_live(token) {
                continue;
            }
            let slot = token.slot() as usize;
            let dir = if token.op() == Some(Op::RecvClient) {
                Dir::Up
            } else {
                Dir::Down
            };
            let pipe = self.conns[slot].pipe(dir);
            if pipe.recv == RecvState::Starved {
                pipe.recv = RecvState::Idle;
                budget -= 1;
                self.progress(slot);
            }
        }
        self.rearming = false;
    }
}

/// The close reason for an error on `dir`'s source side.
pub(super) fn side_error(dir: Dir) -> CloseReason {
    match dir {
        Dir::Up => CloseReason::ClientError,
        Dir::Down => CloseReason::TargetError,
    }
}

pub(super) fn opposite(dir: Dir) -> Dir {
    match dir {
        Dir::Up => Dir::Down,
        Dir::Down => Dir::Up,
    }
}

/// Shortens `gather` to its first `len` bytes.
fn trim_gather(gather: &mut Vec<Slice>, len: u32) {
    let mut left = len;
    gather.retain_mut(|s| {
        if left == 0 {
            return false;
        }
        s.len = s.len.min(left);
        left -= s.len;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(bid: u16, len: u32) -> Slice {
        Slice { bid, off: 0, len }
    }

    #[test]
    fn trimming_a_gather_keeps_exactly_the_leading_bytes() {
        let mut g = vec![slice(1, 100), slice(2, 100), slice(3, 100)];
        trim_gather(&mut g, 150);
        assert_eq!(g, vec![slice(1, 100), slice(2, 50)]);
        trim_gather(&mut g, 150);
        assert_eq!(g, vec![slice(1, 100), slice(2, 50)], "already short enough");
        trim_gather(&mut g, 1);
        assert_eq!(g, vec![slice(1, 1)]);
    }
}
