//! Ending a session: cancel what is in flight, wait for the last completion, then close and
//! free. `close()` alone cancels nothing, and a slot or buffer reused before the last
//! completion would receive someone else's bytes. The session's counters and access-log
//! line are written when it is freed.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::Ordering;

use super::conn::{Conn, Phase, Seg};
use super::ring::Fd;
use super::shard::Shard;
use super::token::Op;
use crate::proto::ReplyCode;
use crate::telemetry::{AccessEntry, CloseReason};

impl Shard {
    /// Starts ending a session for `reason` (the first reason given is the one logged).
    pub(super) fn begin_close(&mut self, slot: usize, reason: CloseReason) {
        self.conns[slot].meta.closing(reason);
        if self.conns[slot].phase == Phase::Closing {
            return;
        }
        let cancel = self.token(slot, Op::Cancel);
        self.cancel_attempts(slot);
        let conn = &mut self.conns[slot];
        conn.phase = Phase::Closing;
        if conn.inflight == 0 {
            return;
        }
        conn.inflight += 1;
        self.ring.cancel_fd(Fd::Fixed(conn.client), cancel);
        let others = conn
            .target
            .iter()
            .chain(conn.bind_listener.iter())
            .map(|s| Fd::Raw(s.as_raw_fd()))
            .chain(conn.udp.iter().flat_map(|u| u.fds()));
        for fd in others {
            conn.inflight += 1;
            self.ring.cancel_fd(fd, cancel);
        }
    }

    /// Frees a closing session whose last completion has arrived.
    pub(super) fn free(&mut self, slot: usize) {
        let mut conn = self.conns.remove(slot);
        debug_assert_eq!(conn.inflight, 0);
        self.release_splice_fds(&conn);
        if let Some(target) = conn.target.take() {
            // Closed by the ring with the turn's other submissions: no system call here.
            self.ring.close_raw(target.into_raw_fd());
        }
        for seg in conn.up.segs.iter().chain(conn.down.segs.iter()) {
            if let Seg::Buf { bid, .. } = *seg {
                self.pool.give_back(bid);
            }
        }
        if let Some(udp) = &conn.udp {
            for bid in udp.pending_buffers() {
                self.udp_pool.give_back(bid);
            }
        }
        self.ring.close_fixed(conn.client);
        if let Some(id) = conn.scratch {
            self.scratch.release(id);
        }
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        self.record_session(conn);
    }

    /// Counts a finished session and writes its access-log line.
    fn record_session(&mut self, conn: Conn) {
        let meta = &conn.meta;
        let close = meta.close.unwrap_or(CloseReason::Completed);
        self.stats.session_closed(meta.command, meta.reply, close);
        let Some(log) = &self.shared.access_log else {
            return;
        };
        let Some(client) = meta.client.or(conn.peer) else {
            return;
        };
        let (up, down) = match &conn.udp {
            Some(udp) => (udp.bytes_up, udp.bytes_down),
            None => (conn.up.relayed, conn.down.relayed),
        };
        let meta = conn.meta;
        log.record(AccessEntry {
            shard: self.index,
            client,
            via: if meta.proxied { conn.peer } else { None },
            user: meta.user.map(String::from),
            command: meta.command,
            target: meta.target,
            connected: meta.connected,
            outbound: meta.outbound,
            reply: meta.reply,
            bytes_up: up,
            bytes_down: down,
            duration: self.instant.saturating_duration_since(meta.accepted_at),
            close,
        });
    }

    /// The current phase's deadline has passed.
    pub(super) fn on_deadline(&mut self, slot: usize) {
        match self.conns[slot].phase {
            Phase::ProxyHeader | Phase::Handshake | Phase::UdpSetup => {
                self.begin_close(slot, CloseReason::HandshakeTimeout)
            }
            Phase::Relay | Phase::Udp => self.begin_close(slot, CloseReason::IdleTimeout),
            Phase::Linger => self.begin_close(slot, CloseReason::Rejected),
            Phase::Resolving => self.reject(slot, ReplyCode::HostUnreachable),
            Phase::Connecting => self.connect_deadline(slot),
            Phase::BindWait => self.bind_timed_out(slot),
            Phase::Closing => {}
        }
    }
}
