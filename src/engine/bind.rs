//! BIND: listen on the proxy's address facing the expected peer, answer with that address,
//! accept one connection within the connect timeout, vet its source, answer again with the
//! peer's address, then relay as CONNECT does.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use super::conn::{Phase, Plan};
use super::ring::{self, Completion, Fd};
use super::shard::Shard;
use super::sys;
use super::token::Op;
use crate::proto::{bind, ReplyCode};
use crate::resolve::Addrs;

impl Shard {
    /// Opens the BIND listener for a peer expected from `expected`.
    pub(super) fn bind_listen(&mut self, slot: usize, expected: Addrs) {
        // The rules see BIND's expected peer as its destination.
        let port = match &self.conns[slot].meta.target {
            Some(target) => target.port(),
            None => 0,
        };
        if let Some(&peer) = expected.first() {
            let decision = self.check_target(slot, peer, port);
            if !decision.allow {
                self.denied(slot, &decision, &peer.to_string());
                self.reject(slot, ReplyCode::NotAllowed);
                return;
            }
        }
        let ip = match self.bind_ip(slot, &expected) {
            Ok(ip) => ip,
            Err(e) => {
                log::debug!("BIND address for {}: {e}", self.peer_name(slot));
                self.reject(slot, ReplyCode::from_io_error(&e));
                return;
            }
        };
        let listener = match sys::bind_listener(ip) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("BIND listener on {ip}: {e}");
                self.reject(slot, ReplyCode::from_io_error(&e));
                return;
            }
        };
        let Ok(addr) = sys::local_addr(&listener) else {
            self.reject(slot, ReplyCode::GeneralFailure);
            return;
        };
        let token = self.token(slot, Op::BindAccept);
        let conn = &mut self.conns[slot];
        let fd = listener.as_raw_fd();
        conn.bind_listener = Some(listener);
        conn.plan = Some(Box::new(Plan::new(expected, 0)));
        if let Some(hs) = conn.handshake.as_mut() {
            hs.grant(addr);
        }
        conn.phase = Phase::BindWait;
        conn.inflight += 1;
        let Some(id) = conn.scratch else {
            self.reject(slot, ReplyCode::GeneralFailure);
            return;
        };
        self.ring.accept_one(fd, &self.scratch, id, token);
        self.flush_handshake(slot);
        let at = self.now() + self.ticks.connect;
        self.set_deadline(slot, at);
    }

    /// The proxy's address facing the expected peer (or the client, when any peer will do).
    fn bind_ip(&self, slot: usize, expected: &Addrs) -> std::io::Result<IpAddr> {
        if let Some(ip) = self.shared.config.bind_addr {
            return Ok(ip);
        }
        let conn = &self.conns[slot];
        let toward = match expected.first() {
            Some(ip) if !ip.is_unspecified() => *ip,
            _ => {
                let listener = self.listeners[conn.listener as usize].addr.ip();
                if !listener.is_unspecified() {
                    return Ok(listener);
                }
                conn.peer
                    .map(|p| p.ip())
                    .ok_or_else(|| std::io::Error::other("client address unknown"))?
            }
        };
        sys::route_source(toward)
    }

    pub(super) fn on_bind_accept(&mut self, slot: usize, c: Completion) {
        let accepted = ring::adopt(c.result);
        let conn = &mut self.conns[slot];
        if conn.phase != Phase::BindWait {
            return;
        }
        let Some(sock) = accepted else {
            let code = if c.result == -libc::ECANCELED {
                ReplyCode::TtlExpired
            } else {
                ReplyCode::from_io_error(&std::io::Error::from_raw_os_error(-c.result))
            };
            self.reject(slot, code);
            return;
        };
        // One connection only.
        conn.bind_listener = None;
        let peer = conn.scratch.and_then(|id| self.scratch.accepted_peer(id));
        let allowed = match (&conn.plan, peer) {
            (Some(plan), Some(peer)) => bind::peer_allowed(&plan.addrs, peer.ip()),
            _ => false,
        };
        let Some(peer) = peer.filter(|_| allowed) else {
            log::info!(
                "BIND for {}: refused peer {:?}",
                self.peer_name(slot),
                peer.map(|p| p.to_string())
            );
            self.reject(slot, ReplyCode::NotAllowed);
            return;
        };
        let _ = sock.set_nodelay(true);
        conn.meta.connected = Some(peer);
        conn.meta.outbound = sys::local_addr(&sock).ok();
        conn.meta.reply = Some(ReplyCode::Succeeded);
        conn.target = Some(sock);
        if let Some(hs) = conn.handshake.as_mut() {
            hs.grant_bind_peer(peer);
        }
        self.enter_relay(slot);
    }

    /// No peer came in time: stop listening and send the failing second reply.
    pub(super) fn bind_timed_out(&mut self, slot: usize) {
        let cancel = self.token(slot, Op::Cancel);
        let conn = &mut self.conns[slot];
        if let Some(listener) = &conn.bind_listener {
            conn.inflight += 1;
            self.ring.cancel_fd(Fd::Raw(listener.as_raw_fd()), cancel);
        }
        self.reject(slot, ReplyCode::TtlExpired);
    }
}
