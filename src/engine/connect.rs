//! The outbound side of CONNECT: name resolution (off the shard), then connects with
//! linked timeouts, raced as RFC 8305 (Happy Eyeballs) describes: a new attempt starts
//! when the previous one fails or after the connection attempt delay, the first to
//! succeed wins and the others are cancelled.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::admission::apply_egress;
use super::conn::{Attempt, Phase, Plan};
use super::ring::{Completion, Fd};
use super::shard::{ticks_for, Shard};
use super::sys;
use super::token::{Op, Token};
use crate::policy::order;
use crate::proto::{Command, ReplyCode};
use crate::resolve::{Addrs, ResolveError};

impl Shard {
    pub(super) fn resolve(&mut self, slot: usize, host: &str, port: u16) {
        match self.shared.resolver.cached(host) {
            Some(Ok(addrs)) => self.resolved(slot, addrs, port),
            Some(Err(e)) => self.resolve_failed(slot, host, &e),
            None => {
                let conn = &mut self.conns[slot];
                conn.phase = Phase::Resolving;
                conn.plan = Some(Box::new(Plan::new(Addrs::from([]), port)));
                let at = self.now() + self.ticks.connect;
                self.set_deadline(slot, at);
                let ticket = self.token(slot, Op::Ignore).0;
                self.shared
                    .resolver
                    .resolve(host, ticket, self.mailbox.clone());
            }
        }
    }

    pub(super) fn on_resolved(&mut self, ticket: Token, result: Result<Addrs, ResolveError>) {
        if !self.is_live(ticket) {
            return;
        }
        let slot = ticket.slot() as usize;
        match self.conns[slot].phase {
            Phase::Resolving => {}
            Phase::Udp => {
                self.udp_resolved(slot, ticket.aux(), result);
                self.progress(slot);
                return;
            }
            _ => return,
        }
        let port = self.conns[slot].plan.as_ref().map_or(0, |p| p.port);
        match result {
            Ok(addrs) if !addrs.is_empty() => self.resolved(slot, addrs, port),
            Ok(_) => self.resolve_failed(slot, "name", &ResolveError::NotFound),
            Err(e) => self.resolve_failed(slot, "name", &e),
        }
        self.progress(slot);
    }

    fn resolve_failed(&mut self, slot: usize, host: &str, e: &ResolveError) {
        log::debug!("resolving {host} for {}: {e}", self.peer_name(slot));
        self.reject(slot, ReplyCode::HostUnreachable);
    }

    /// The destination is known: connect to it, or for BIND, wait for it.
    pub(super) fn resolved(&mut self, slot: usize, addrs: Addrs, port: u16) {
        match self.conns[slot].meta.command {
            Some(Command::Bind) => self.bind_listen(slot, addrs),
            _ => {
                let prefer = self.shared.policy.load().policy.prefer;
                let ordered = Addrs::from(order(&addrs, prefer));
                let mut plan = Plan::new(ordered, port);
                plan.started = Some(self.instant);
                self.conns[slot].plan = Some(Box::new(plan));
                self.conns[slot].phase = Phase::Connecting;
                if !self.start_attempt(slot) {
                    let code = self.conns[slot]
                        .plan
                        .as_ref()
                        .map_or(ReplyCode::HostUnreachable, |p| p.last_error);
                    self.reject(slot, code);
                }
            }
        }
    }

    /// Starts a connect to the next planned address. False when none is left to try.
    fn start_attempt(&mut self, slot: usize) -> bool {
        let now = self.now();
        let generation = self.gens[slot];
        loop {
            let Some(plan) = self.conns[slot].plan.as_mut() else {
                return false;
            };
            let Some(&ip) = plan.addrs.get(plan.next) else {
                return false;
            };
            plan.next += 1;
            let addr = SocketAddr::new(ip, plan.port);
            // Rules apply to the address actually connected to, names resolved.
            let decision = self.check_target(slot, ip, addr.port());
            if !decision.allow {
                self.denied(slot, &decision, &addr.to_string());
                if let Some(plan) = self.conns[slot].plan.as_mut() {
                    plan.last_error = ReplyCode::NotAllowed;
                }
                continue;
            }
            let sock = sys::outbound(addr).and_then(|sock| {
                apply_egress(
                    &sock,
                    decision.egress.as_deref(),
                    ip.is_ipv6(),
                    self.session_id(slot),
                )
                .map(|_| sock)
            });
            let conn = &mut self.conns[slot];
            let plan = conn.plan.as_mut().expect("checked above");
            let sock = match sock {
                Ok(sock) => sock,
                Err(e) => {
                    plan.last_error = ReplyCode::from_io_error(&e);
                    if self.clock >= self.quiet_until {
                        // Out of descriptors, every client would log this: once a second.
                        log::warn!("outbound socket for {addr}: {e} (repeats muted for 1 s)");
                        self.quiet_until = self.clock + ticks_for(Duration::from_secs(1));
                    }
                    continue;
                }
            };
            let attempt = plan.attempts.len() as u16;
            let fd = Fd::Raw(sock.as_raw_fd());
            plan.attempts.push(Some(Attempt {
                sock,
                addr,
                expires: now + self.ticks.connect,
                cancelled: false,
            }));
            plan.running += 1;
            plan.next_at = now + self.ticks.attempt_delay;
            conn.inflight += 1;
            let token = Token::with_aux(Op::Connect, slot as u32, generation, attempt);
            self.ring.connect(fd, addr, token);
            self.connect_wake(slot);
            return true;
        }
    }

    pub(super) fn on_connect(&mut self, slot: usize, c: Completion) {
        let attempt = c.token.aux() as usize;
        let connecting = self.conns[slot].phase == Phase::Connecting;
        let Some(plan) = self.conns[slot].plan.as_mut() else {
            return;
        };
        let Some(Attempt { sock, addr, .. }) =
            plan.attempts.get_mut(attempt).and_then(Option::take)
        else {
            return;
        };
        plan.running = plan.running.saturating_sub(1);
        if !connecting {
            self.deferred_close.push(sock);
            return;
        }
        let addr = Some(addr);
        if c.result < 0 {
            // ECANCELED here means the attempt timed out (see connect_deadline).
            plan.last_error = if c.result == -libc::ECANCELED {
                ReplyCode::TtlExpired
            } else {
                ReplyCode::from_io_error(&io::Error::from_raw_os_error(-c.result))
            };
            self.deferred_close.push(sock);
            if !self.start_attempt(slot)
                && self.conns[slot]
                    .plan
                    .as_ref()
                    .is_some_and(|p| p.running == 0)
            {
                let code = self.conns[slot]
                    .plan
                    .as_ref()
                    .map_or(ReplyCode::GeneralFailure, |p| p.last_error);
                self.connect_finished(slot);
                self.reject(slot, code);
            }
            return;
        }
        let local = match sys::local_addr(&sock) {
            Ok(local) => local,
            Err(_) => {
                self.deferred_close.push(sock);
                self.reject(slot, ReplyCode::GeneralFailure);
                return;
            }
        };
        self.cancel_attempts(slot);
        self.connect_finished(slot);
        let conn = &mut self.conns[slot];
        conn.meta.connected = addr;
        conn.meta.outbound = Some(local);
        conn.meta.reply = Some(ReplyCode::Succeeded);
        conn.target = Some(sock);
        if let Some(hs) = conn.handshake.as_mut() {
            hs.grant(local);
        }
        // Completions of the attempts cancelled above find no plan and are dropped.
        self.enter_relay(slot);
    }

    /// Records how long connecting took (first attempt to success or final failure).
    fn connect_finished(&mut self, slot: usize) {
        let plan = self.conns[slot].plan.as_mut();
        if let Some(started) = plan.and_then(|p| p.started.take()) {
            self.stats
                .connect_time(self.instant.saturating_duration_since(started));
        }
    }

    /// Cancels the connect attempts still in flight; their sockets close after the
    /// cancellation has been submitted.
    pub(super) fn cancel_attempts(&mut self, slot: usize) {
        let cancel = self.token(slot, Op::Cancel);
        let conn = &mut self.conns[slot];
        let Some(plan) = conn.plan.as_mut() else {
            return;
        };
        for attempt in plan.attempts.iter_mut().filter_map(Option::take) {
            conn.inflight += 1;
            self.ring
                .cancel_fd(Fd::Raw(attempt.sock.as_raw_fd()), cancel);
            self.deferred_close.push(attempt.sock);
        }
    }

    /// Sets the session's deadline to the next thing due while connecting: the next
    /// attempt's start, or the earliest timeout of one in flight.
    fn connect_wake(&mut self, slot: usize) {
        let now = self.now();
        let Some(plan) = self.conns[slot].plan.as_ref() else {
            return;
        };
        let next = (plan.next < plan.addrs.len()).then_some(plan.next_at);
        let expiry = plan
            .attempts
            .iter()
            .flatten()
            .filter(|a| !a.cancelled)
            .map(|a| a.expires)
            .min();
        // Everything in flight is being cancelled: look again shortly.
        let at = next.into_iter().chain(expiry).min().unwrap_or(now + 2);
        self.set_deadline(slot, at);
    }

    /// The connection attempt delay passed, or attempts reached the connect timeout.
    pub(super) fn connect_deadline(&mut self, slot: usize) {
        let now = self.now();
        let Some(plan) = self.conns[slot].plan.as_ref() else {
            return;
        };
        if plan.next < plan.addrs.len() && plan.next_at <= now && self.start_attempt(slot) {
            return;
        }
        let cancel = self.token(slot, Op::Cancel);
        let conn = &mut self.conns[slot];
        let Some(plan) = conn.plan.as_mut() else {
            return;
        };
        for attempt in plan.attempts.iter_mut().flatten() {
            if !attempt.cancelled && attempt.expires <= now {
                // Its connect completes with ECANCELED, answered as a timeout.
                attempt.cancelled = true;
                conn.inflight += 1;
                self.ring
                    .cancel_fd(Fd::Raw(attempt.sock.as_raw_fd()), cancel);
            }
        }
        if plan.running == 0 {
            let code = plan.last_error;
            self.connect_finished(slot);
            self.reject(slot, code);
        } else {
            self.connect_wake(slot);
        }
    }
}
