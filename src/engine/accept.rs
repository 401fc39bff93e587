//! New clients: multishot accept into direct descriptors, then the first receive and the
//! SO_PEERNAME query, submitted together.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use std::net::SocketAddr;

use super::conn::{ClientFd, Conn, Meta, Phase, Pipe, RecvState};
use super::ring::{Completion, Fd};
use super::shard::Shard;
use super::token::{Op, Token};
use crate::policy::LimitHit;
use crate::proto::{Handshake, HandshakeConfig};
use crate::telemetry::{CloseReason, Limit};

impl Shard {
    pub(super) fn arm_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            self.arm_listener(i);
        }
    }

    fn arm_listener(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        let Some(sock) = &l.sock else {
            return;
        };
        if l.armed || self.stopping {
            return;
        }
        l.armed = true;
        l.rearm_at = None;
        let fd = sock.as_raw_fd();
        self.ring
            .accept_multi(fd, Token::new(Op::Accept, i as u32, 0));
    }

    /// Re-arms listeners whose back-off after an accept error has passed.
    pub(super) fn retry_listeners(&mut self) {
        let now = self.now();
        for i in 0..self.listeners.len() {
            if matches!(self.listeners[i].rearm_at, Some(at) if at <= now) {
                self.arm_listener(i);
            }
        }
    }

    pub(super) fn on_accept(&mut self, c: Completion) {
        let i = c.token.slot() as usize;
        if i >= self.listeners.len() {
            return;
        }
        if !c.more() {
            self.listeners[i].armed = false;
        }
        if c.result < 0 {
            self.on_accept_error(i, c.result);
            return;
        }
        let fixed = c.result as u32;
        if !c.more() {
            self.arm_listener(i);
        }
        let limit = self.shared.config.max_connections;
        let full = self.conns.len() + 1 >= super::token::MAX_SLOTS;
        if self.stopping || full || self.shared.active.load(Ordering::Relaxed) >= limit {
            // Over the limit: close at once; the client sees the connection end.
            if !self.stopping {
                self.stats.limit_hit(Limit::Sessions);
            }
            self.ring.close_fixed(fixed);
            return;
        }
        self.start_session(fixed, i);
    }

    fn on_accept_error(&mut self, i: usize, errno: i32) {
        match -errno {
            libc::ECANCELED => {}
            // Transient per-connection failures: the next client is fine.
            libc::ECONNABORTED | libc::EINTR | libc::EAGAIN => self.arm_listener(i),
            e => {
                // Out of descriptors or memory: back off one tick instead of spinning,
                // existing sessions keep running meanwhile.
                log::warn!(
                    "accept on {}: {}; retrying",
                    self.listeners[i].addr,
                    std::io::Error::from_raw_os_error(e)
                );
                self.listeners[i].rearm_at = Some(self.now() + 1);
            }
        }
    }

    fn start_session(&mut self, fixed: u32, listener: usize) {
        let v6 = self.listeners[listener].addr.is_ipv6();
        let proxied = matches!(
            self.shared.config.proxy_protocol.get(listener),
            Some(Some(_))
        );
        let auth_required = self.shared.policy.load().policy.auth_required();
        let scratch = self.scratch.alloc();
        let now = self.now();
        let slot = self.insert(Conn {
            phase: if proxied {
                Phase::ProxyHeader
            } else {
                Phase::Handshake
            },
            meta: Box::new(Meta::new(self.instant)),
            client: fixed,
            client_fd: ClientFd::None,
            listener: listener as u16,
            target: None,
            peer: None,
            scratch: Some(scratch),
            out_len: 0,
            handshake: Some(Box::new(Handshake::new(HandshakeConfig { auth_required }))),
            plan: None,
            udp: None,
            bind_listener: None,
            inflight: 2,
            up: Pipe {
                recv: RecvState::Armed,
                ..Pipe::default()
            },
            down: Pipe::default(),
            deadline: 0,
            timer_at: 0,
            last_active: now,
        });
        self.stats.session_opened();
        let client = Fd::Fixed(fixed);
        let len = if v6 {
            std::mem::size_of::<libc::sockaddr_in6>()
        } else {
            std::mem::size_of::<libc::sockaddr_in>()
        };
        let token = self.token(slot, Op::PeerName);
        self.ring
            .peer_name(client, &self.scratch, scratch, len as u32, token);
        self.ring
            .recv_multi(client, self.pool.group(), self.token(slot, Op::RecvClient));
        let at = now + self.ticks.handshake;
        self.set_deadline(slot, at);
    }

    pub(super) fn on_peer_name(&mut self, slot: usize, c: Completion) {
        let conn = &mut self.conns[slot];
        if c.result > 0 {
            if let Some(id) = conn.scratch {
                conn.peer = self.scratch.peer_addr(id, c.result as usize);
            }
        } else {
            log::debug!(
                "SO_PEERNAME failed: {}",
                std::io::Error::from_raw_os_error(-c.result)
            );
        }
        if conn.phase != Phase::ProxyHeader {
            // No PROXY header: the TCP peer is the client.
            let peer = conn.peer;
            self.admit_client(slot, peer);
            return;
        }
        let trusted = match &self
            .shared
            .config
            .proxy_protocol
            .get(conn.listener as usize)
        {
            Some(Some(nets)) => conn.peer.is_some_and(|p| nets.contains(p.ip())),
            _ => false,
        };
        if !trusted {
            log::info!(
                "PROXY protocol listener: {} is not a trusted source; closing",
                self.peer_name(slot)
            );
            self.begin_close(slot, CloseReason::HandshakeError);
        }
    }

    /// The client's address is known: count the session against the per-client limits.
    /// A refusal is answered when the request arrives, so the client gets a SOCKS reply.
    pub(super) fn admit_client(&mut self, slot: usize, client: Option<SocketAddr>) {
        let active = self.shared.policy.load();
        let meta = &mut self.conns[slot].meta;
        meta.client = client;
        let Some(client) = client else {
            return;
        };
        match self
            .shared
            .limiter
            .admit(&active.policy.limits, client.ip(), self.instant)
        {
            Ok(guard) => meta.guard = Some(guard),
            Err(hit) => {
                meta.limit_hit = Some(hit);
                self.stats.limit_hit(limit_label(hit));
            }
        }
    }
}

/// The metrics label of a limit.
pub(super) fn limit_label(hit: LimitHit) -> Limit {
    match hit {
        LimitHit::Sessions => Limit::Sessions,
        LimitHit::SessionsPerIp => Limit::ClientSessions,
        LimitHit::NewSessionsPerIp => Limit::ClientRate,
        LimitHit::SessionsPerUser => Limit::UserSessions,
        LimitHit::BandwidthUp | LimitHit::BandwidthDown => Limit::UserBandwidth,
    }
}
