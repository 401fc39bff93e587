//! One shard: a thread with its own ring, listeners, buffers, timers and sessions. Nothing
//! here is shared with other shards on the hot path.
//!
//! The loop: publish returned buffers, submit everything queued and wait for completions
//! (one system call), dispatch each completion by operation, advance the timer wheel,
//! repeat. Handlers never block and never wait; they queue submissions.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::Socket;

use super::bufring::BufRing;
use super::conn::{Conn, Dir, Phase};
use super::mailbox::{Mailbox, Message};
use super::ring::{Completion, Ring};
use super::scratch::ScratchPool;
use super::timer::{Tick, TimerWheel};
use super::token::{Op, Token};
use super::EngineConfig;
use crate::policy::{Limiter, Policy};
use crate::resolve::Resolver;
use crate::telemetry::{AccessLog, CloseReason, Pool, RuleCounters, ShardStats};
use crate::workers::Workers;
use arc_swap::ArcSwap;

/// Timer resolution. Timeouts are configured in (fractions of) seconds; 50 ms keeps an
/// idle shard to 20 wake-ups a second.
pub const TICK: Duration = Duration::from_millis(50);

/// Completions handled per loop turn before timers and submissions get their turn again.
/// Large enough that a full turn amortises the enter system call, small enough that a
/// flood of one kind cannot delay timers by more than a few milliseconds.
const COMPLETIONS_PER_TURN: usize = 1024;

/// RFC 8305's recommended connection attempt delay.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How long a rejected client gets to read its reply and close before it is cut off.
const LINGER: Duration = Duration::from_secs(2);

/// The policy in force and its reject counters, replaced together on reload.
pub struct Active {
    pub policy: Arc<Policy>,
    pub rejects: Arc<RuleCounters>,
}

/// What every shard of one server shares: configuration, policy, limits, resolver,
/// workers, the access log and the global session count.
pub struct Shared {
    pub config: EngineConfig,
    pub resolver: Resolver,
    pub active: AtomicUsize,
    /// Regular descriptors held for splicing (client descriptors and pipes), all shards.
    pub splice_fds: AtomicUsize,
    pub policy: ArcSwap<Active>,
    pub limiter: Arc<Limiter>,
    pub access_log: Option<Arc<AccessLog>>,
    pub workers: Workers,
}

pub(super) struct Listener {
    /// `None` once closed (draining or stopping).
    pub sock: Option<Socket>,
    pub addr: std::net::SocketAddr,
    pub armed: bool,
    /// After an accept error, wait until this tick before re-arming (no busy loop when
    /// descriptors or memory run out).
    pub rearm_at: Option<Tick>,
}

/// Timeouts converted to ticks.
pub(super) struct Ticks {
    pub handshake: Tick,
    pub connect: Tick,
    pub idle: Tick,
    pub udp_idle: Tick,
    pub linger: Tick,
    /// RFC 8305 connection attempt delay.
    pub attempt_delay: Tick,
}

pub struct Shard {
    pub(super) index: usize,
    pub(super) stats: Arc<ShardStats>,
    pub(super) ring: Ring,
    pub(super) pool: BufRing,
    pub(super) udp_pool: BufRing,
    pub(super) scratch: ScratchPool,
    pub(super) conns: Slab<Conn>,
    pub(super) gens: Vec<u16>,
    pub(super) listeners: Vec<Listener>,
    pub(super) timers: TimerWheel,
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) shared: Arc<Shared>,
    /// Receives that ran out of buffers, re-armed as buffers come back.
    pub(super) starved: VecDeque<Token>,
    /// Set while starved receives are being re-armed, so they arm instead of queueing.
    pub(super) rearming: bool,
    /// Sockets to close once the submissions queued so far (cancellations naming their
    /// descriptors) have reached the kernel, so a descriptor number is never reused
    /// while a cancellation for it is still queued.
    pub(super) deferred_close: Vec<Socket>,
    pub(super) udp_starved: VecDeque<Token>,
    pub(super) stopping: bool,
    pub(super) ticks: Ticks,
    /// Reused for handshake output, buffers a receive filled, and buffers a send gathers.
    pub(super) out: Vec<u8>,
    pub(super) filled: Vec<super::bufring::Slice>,
    pub(super) gather: Vec<super::bufring::Slice>,
    epoch: Instant,
    /// The current tick and instant, read once per loop turn before completions are
    /// handled, so deadlines set while handling them count from now.
    pub(super) clock: Tick,
    pub(super) instant: Instant,
    /// Repeated warnings stay quiet until this tick.
    pub(super) quiet_until: Tick,
}

pub(super) fn ticks_for(d: Duration) -> Tick {
    d.as_millis().div_ceil(TICK.as_millis()).max(1) as Tick
}

impl Shard {
    /// Builds a shard on the calling thread (the ring belongs to the thread that uses it).
    pub fn new(
        index: usize,
        stats: Arc<ShardStats>,
        shared: Arc<Shared>,
        listeners: Vec<(Socket, std::net::SocketAddr)>,
    ) -> io::Result<Shard> {
        let cfg = &shared.config;
        let sq = 4096;
        let ring = Ring::new(sq, sq * 4, cfg.files_per_shard)?;
        let pool = BufRing::new(&ring.submitter(), 0, cfg.buffer_count, cfg.buffer_size)?;
        let udp_pool = BufRing::new(
            &ring.submitter(),
            1,
            cfg.udp_buffer_count,
            cfg.udp_buffer_size,
        )?;
        let mailbox = Mailbox::new(ring.raw_fd());
        Ok(Shard {
            index,
            stats,
            ticks: Ticks {
                handshake: ticks_for(cfg.handshake_timeout),
                connect: ticks_for(cfg.connect_timeout),
                idle: ticks_for(cfg.idle_timeout),
                udp_idle: ticks_for(cfg.udp_idle_timeout),
                linger: ticks_for(LINGER),
                attempt_delay: ticks_for(ATTEMPT_DELAY),
            },
            ring,
            pool,
            udp_pool,
            scratch: ScratchPool::default(),
            conns: Slab::new(),
            gens: Vec::new(),
            listeners: listeners
                .into_iter()
                .map(|(sock, addr)| Listener {
                    sock: Some(sock),
                    addr,
                    armed: false,
                    rearm_at: None,
                })
                .collect(),
            timers: TimerWheel::new(4096),
            mailbox,
            shared,
            starved: VecDeque::new(),
            rearming: false,
            deferred_close: Vec::new(),
            udp_starved: VecDeque::new(),
            stopping: false,
            out: Vec::with_capacity(64),
            filled: Vec::with_capacity(64),
            gather: Vec::with_capacity(super::ring::MAX_GATHER),
            epoch: Instant::now(),
            clock: 0,
            instant: Instant::now(),
            quiet_until: 0,
        })
    }

    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    pub(super) fn now(&self) -> Tick {
        self.clock
    }

    /// Runs until shutdown, then returns once every operation has completed.
    pub fn run(mut self) -> io::Result<()> {
        self.arm_listeners();
        let mut completions = Vec::with_capacity(COMPLETIONS_PER_TURN);
        let mut fired = Vec::new();
        loop {
            self.pool.publish();
            self.udp_pool.publish();
            self.stats
                .buffers_written(Pool::Relay, self.pool.written_bytes());
            self.stats
                .buffers_written(Pool::Udp, self.udp_pool.written_bytes());
            let wait = if self.timers.is_empty() && self.stopping {
                Duration::from_millis(10)
            } else {
                TICK
            };
            self.ring.submit_and_wait(wait)?;
            self.deferred_close.clear();
            self.instant = Instant::now();
            self.clock = ((self.instant - self.epoch).as_millis() / TICK.as_millis()) as Tick;
            self.ring.drain(&mut completions, COMPLETIONS_PER_TURN);
            self.stats.loop_turn(completions.len());
            for c in completions.drain(..) {
                self.dispatch(c);
            }
            let now = self.clock;
            if now > self.timers.now() {
                self.timers.advance(now, &mut fired);
                for key in fired.drain(..) {
                    self.on_timer(Token(key));
                }
                self.retry_listeners();
            }
            self.rearm_starved();
            self.rearm_udp_starved();
            if self.stopping && self.conns.is_empty() {
                break;
            }
        }
        self.ring.submit_now();
        let _ = self.pool.unregister(&self.ring.submitter());
        let _ = self.udp_pool.unregister(&self.ring.submitter());
        Ok(())
    }

    fn dispatch(&mut self, c: Completion) {
        let Some(op) = c.token.op() else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(c),
            Op::Wake => self.on_wake(),
            Op::Ignore => {}
            _ => self.dispatch_conn(op, c),
        }
    }

    pub(super) fn is_live(&self, token: Token) -> bool {
        let slot = token.slot() as usize;
        self.conns.contains(slot) && self.gens.get(slot) == Some(&token.generation())
    }

    fn dispatch_conn(&mut self, op: Op, c: Completion) {
        let slot = c.token.slot() as usize;
        if !self.is_live(c.token) {
            // Never expected: a slot is freed only when nothing is in flight. Keep the
            // buffer pool whole anyway.
            if let Some(bid) = c.buffer() {
                if self.pool.take(bid, c.result.max(0) as u32) {
                    self.pool.give_back(bid);
                }
            }
            log::debug!("stale completion {:?} result {}", op, c.result);
            self.stats.stale_completion();
            return;
        }
        if !c.more() {
            let conn = &mut self.conns[slot];
            conn.inflight = conn.inflight.saturating_sub(1);
        }
        match op {
            Op::PeerName => self.on_peer_name(slot, c),
            Op::RecvClient => self.on_recv(slot, Dir::Up, c),
            Op::RecvTarget => self.on_recv(slot, Dir::Down, c),
            Op::SendClient => self.on_send(slot, Dir::Down, c),
            Op::SendTarget => self.on_send(slot, Dir::Up, c),
            Op::Connect => self.on_connect(slot, c),
            Op::BindAccept => self.on_bind_accept(slot, c),
            Op::UdpRecv => self.on_udp_recv(slot, c),
            Op::UdpSend => self.on_udp_send(slot, c),
            Op::InstallFd => self.on_install_fd(slot, c),
            Op::SpliceFd => self.on_splice_fd(slot, c),
            Op::SpliceReady => self.on_splice_ready(slot, c),
            Op::Cancel | Op::Shutdown => {}
            Op::Accept | Op::Wake | Op::Ignore => {}
        }
        self.progress(slot);
    }

    /// Takes the session as far as it can go after any event.
    pub(super) fn progress(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let mut phase = conn.phase;
        // A phase change gets the new phase's driver at once (bounded: phases only move
        // forward, handshake → relay → closing at most).
        for _ in 0..4 {
            match phase {
                Phase::ProxyHeader => self.drive_proxy_header(slot),
                Phase::Handshake => self.drive_handshake(slot),
                Phase::Relay => self.drive_relay(slot),
                Phase::Linger => self.drive_linger(slot),
                Phase::Udp => self.drive_udp(slot),
                Phase::Resolving
                | Phase::Connecting
                | Phase::UdpSetup
                | Phase::BindWait
                | Phase::Closing => {}
            }
            if self.conns[slot].phase == phase {
                break;
            }
            phase = self.conns[slot].phase;
        }
        if self.conns[slot].phase != Phase::Closing {
            self.pump(slot, Dir::Up);
            self.pump(slot, Dir::Down);
        }
        let conn = &self.conns[slot];
        if conn.phase == Phase::Closing && conn.inflight == 0 {
            self.free(slot);
        }
    }

    fn on_wake(&mut self) {
        let mut msgs = Vec::new();
        self.mailbox.drain(&mut msgs);
        for msg in msgs {
            match msg {
                Message::Resolved { ticket, result } => self.on_resolved(Token(ticket), result),
                Message::Verified { ticket, ok } => self.on_verified(Token(ticket), ok),
                Message::Drain => self.stop_accepting(),
                Message::Shutdown => self.shutdown(),
            }
        }
    }

    /// Stops accepting: cancels the accepts and closes the listeners (after the
    /// cancellation reaches the kernel), so new clients go to other shards or processes.
    /// Open sessions go on; the shard ends when the last one does.
    fn stop_accepting(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for l in &mut self.listeners {
            if let Some(sock) = l.sock.take() {
                if l.armed {
                    let fd = super::ring::Fd::Raw(std::os::fd::AsRawFd::as_raw_fd(&sock));
                    self.ring.cancel_fd(fd, Token::new(Op::Ignore, 0, 0));
                }
                l.armed = false;
                self.deferred_close.push(sock);
            }
        }
    }

    /// Stops accepting and ends every session.
    fn shutdown(&mut self) {
        self.stop_accepting();
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.begin_close(slot, CloseReason::Shutdown);
            self.progress(slot);
        }
    }

    /// Sets the deadline of the current phase, making sure a wheel entry will look at it.
    pub(super) fn set_deadline(&mut self, slot: usize, at: Tick) {
        let key = self.token(slot, Op::Ignore).0;
        let conn = &mut self.conns[slot];
        conn.deadline = at;
        if conn.timer_at == 0 || at < conn.timer_at {
            conn.timer_at = at;
            self.timers.schedule(at, key);
        }
    }

    fn on_timer(&mut self, key: Token) {
        if !self.is_live(key) {
            return;
        }
        let slot = key.slot() as usize;
        let now = self.now();
        let (idle, udp_idle) = (self.ticks.idle, self.ticks.udp_idle);
        let conn = &mut self.conns[slot];
        if conn.timer_at > now {
            // An earlier entry was replaced by this later one; that one will fire.
            return;
        }
        conn.timer_at = 0;
        let mut resume = false;
        match conn.phase {
            Phase::Relay => {
                conn.deadline = conn.last_active + idle;
                // A direction paused by a bandwidth limit wakes the session when due.
                for pipe in [&mut conn.up, &mut conn.down] {
                    if pipe.paused_until > now {
                        conn.deadline = conn.deadline.min(pipe.paused_until);
                    } else if pipe.paused_until != 0 {
                        pipe.paused_until = 0;
                        resume = true;
                    }
                }
            }
            Phase::Udp => conn.deadline = conn.last_active + udp_idle,
            _ => {}
        }
        if conn.deadline > now {
            let at = conn.deadline;
            self.set_deadline(slot, at);
            if resume {
                self.progress(slot);
            }
            return;
        }
        self.on_deadline(slot);
        self.progress(slot);
    }

    pub(super) fn token(&self, slot: usize, op: Op) -> Token {
        Token::new(op, slot as u32, self.gens[slot])
    }

    /// Inserts a session; the slot's generation is what its tokens carry.
    pub(super) fn insert(&mut self, conn: Conn) -> usize {
        let slot = self.conns.insert(conn);
        if slot >= self.gens.len() {
            self.gens.resize(slot + 1, 0);
        }
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        slot
    }
}
