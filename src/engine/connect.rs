//! The outbound side of CONNECT: name resolution (off the shard), then a connect with a
//! linked timeout to each resolved address in turn until one answers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::conn::{Phase, Plan};
use super::ring::{Completion, Fd};
use super::shard::Shard;
use super::sys;
use super::token::{Op, Token};
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
                conn.plan = Some(Box::new(Plan {
                    addrs: Addrs::from([]),
                    next: 0,
                    port,
                }));
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
        match self.conns[slot].command {
            Command::Bind => self.bind_listen(slot, addrs),
            _ => self.connect_to(slot, addrs, port),
        }
    }

    fn connect_to(&mut self, slot: usize, addrs: Addrs, port: u16) {
        self.conns[slot].plan = Some(Box::new(Plan {
            addrs,
            next: 0,
            port,
        }));
        self.connect_next(slot, ReplyCode::HostUnreachable);
    }

    /// Starts a connect to the next planned address; when none is left, rejects the
    /// request with `last` (the failure of the previous attempt).
    fn connect_next(&mut self, slot: usize, mut last: ReplyCode) {
        loop {
            let conn = &mut self.conns[slot];
            conn.target = None;
            let Some(plan) = conn.plan.as_mut() else {
                self.reject(slot, last);
                return;
            };
            let Some(&ip) = plan.addrs.get(plan.next) else {
                self.reject(slot, last);
                return;
            };
            plan.next += 1;
            let addr = SocketAddr::new(ip, plan.port);
            match sys::outbound(addr) {
                Ok(sock) => {
                    let fd = Fd::Raw(sock.as_raw_fd());
                    conn.target = Some(sock);
                    conn.phase = Phase::Connecting;
                    conn.inflight += 2;
                    let id = conn.scratch;
                    let len = self.scratch.set_connect_addr(id, addr);
                    let (t, tt) = (
                        self.token(slot, Op::Connect),
                        self.token(slot, Op::ConnectTimeout),
                    );
                    self.ring.connect(fd, &self.scratch, id, len, t, tt);
                    // The linked timeout ends the attempt; this only backs it up.
                    let at = self.now() + self.ticks.connect + 2;
                    self.set_deadline(slot, at);
                    return;
                }
                Err(e) => {
                    log::warn!("outbound socket for {addr}: {e}");
                    last = ReplyCode::from_io_error(&e);
                }
            }
        }
    }

    pub(super) fn on_connect(&mut self, slot: usize, c: Completion) {
        if self.conns[slot].phase != Phase::Connecting {
            return;
        }
        if c.result < 0 {
            let code = if c.result == -libc::ECANCELED {
                ReplyCode::TtlExpired
            } else {
                ReplyCode::from_io_error(&io::Error::from_raw_os_error(-c.result))
            };
            self.connect_next(slot, code);
            return;
        }
        let conn = &mut self.conns[slot];
        let local = conn.target.as_ref().map(sys::local_addr);
        let Some(Ok(local)) = local else {
            self.connect_next(slot, ReplyCode::GeneralFailure);
            return;
        };
        if let Some(hs) = conn.handshake.as_mut() {
            hs.grant(local);
        }
        self.flush_handshake(slot);
        let now = self.now();
        let conn = &mut self.conns[slot];
        conn.handshake = None;
        conn.plan = None;
        conn.phase = Phase::Relay;
        conn.last_active = now;
        let at = now + self.ticks.idle;
        self.set_deadline(slot, at);
    }
}
