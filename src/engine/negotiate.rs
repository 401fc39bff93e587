//! Engine side of the SOCKS handshake: feeds received bytes to [`crate::proto::Handshake`],
//! queues its replies, and carries its decisions (credentials, requests) out and back.

use super::conn::{Phase, Seg};
use super::shard::Shard;
use crate::proto::{Error, ErrorReply, Event, ReplyCode};
use crate::telemetry::CloseReason;

impl Shard {
    pub(super) fn drive_handshake(&mut self, slot: usize) {
        loop {
            self.feed_handshake(slot);
            self.flush_handshake(slot);
            let conn = &mut self.conns[slot];
            if conn.phase != Phase::Handshake {
                return;
            }
            let Some(hs) = conn.handshake.as_mut() else {
                return;
            };
            if hs.is_failed() {
                self.after_failure(slot);
                return;
            }
            match hs.poll_event() {
                Some(Event::Credentials(creds)) => {
                    self.on_credentials(slot, creds);
                }
                Some(Event::Request(req)) => {
                    self.on_request(slot, req);
                    return;
                }
                None => {
                    let conn = &self.conns[slot];
                    if conn.up.eof && conn.up.segs.is_empty() {
                        // The client closed before finishing its handshake.
                        self.begin_close(slot, CloseReason::ClientClosed);
                    }
                    return;
                }
            }
        }
    }

    /// Offers queued client bytes to the handshake until it stops taking them.
    fn feed_handshake(&mut self, slot: usize) {
        let Shard { conns, pool, .. } = self;
        let conn = &mut conns[slot];
        let Some(hs) = conn.handshake.as_mut() else {
            return;
        };
        while let Some(&Seg::Buf { bid, off, len }) = conn.up.segs.front() {
            let taken = hs.handle_input(pool.data(bid, off, len)) as u32;
            if taken == 0 {
                break;
            }
            conn.up.queued -= taken;
            let front = conn.up.segs.front_mut().expect("checked above");
            front.advance(taken);
            if front.len() == 0 {
                conn.up.segs.pop_front();
                pool.give_back(bid);
            }
            if taken < len {
                break;
            }
        }
    }

    /// Moves handshake output into the scratch reply area and queues it for the client.
    pub(super) fn flush_handshake(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        let Some(hs) = conn.handshake.as_mut() else {
            return;
        };
        self.out.clear();
        hs.poll_transmit(&mut self.out);
        if self.out.is_empty() {
            return;
        }
        let at = conn.out_len as usize;
        let written = conn
            .scratch
            .is_some_and(|id| self.scratch.write_out(id, at, &self.out));
        if !written {
            // Cannot happen: a handshake's replies fit OUT_CAP.
            debug_assert!(false, "handshake replies overflow the reply area");
            self.begin_close(slot, CloseReason::HandshakeError);
            return;
        }
        let len = self.out.len() as u8;
        conn.out_len += len;
        conn.down.segs.push_back(Seg::Out { off: at as u8, len });
        conn.down.queued += len as u32;
    }

    /// The success reply is queued: send it and start relaying. Neither the handshake nor
    /// the connect plan is read again, and an idle relayed session should not keep them.
    pub(super) fn enter_relay(&mut self, slot: usize) {
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

    /// Refuses the pending request with `code`.
    pub(super) fn reject(&mut self, slot: usize, code: ReplyCode) {
        if let Some(hs) = self.conns[slot].handshake.as_mut() {
            hs.reject(code);
        }
        self.flush_handshake(slot);
        self.after_failure(slot);
    }

    /// After a failed handshake: linger while the reply goes out, or close at once when
    /// there is no reply to send.
    fn after_failure(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        let error = conn.handshake.as_ref().and_then(|hs| hs.error()).cloned();
        if let Some(e) = &error {
            if let ErrorReply::Request(code) = e.reply() {
                conn.meta.reply.get_or_insert(code);
            }
            if matches!(e, Error::AuthFailed | Error::Socks4NeedsAuth) {
                self.stats.auth_failed();
            }
        }
        let reason = if matches!(error, Some(Error::Rejected(_))) {
            CloseReason::Rejected
        } else {
            CloseReason::HandshakeError
        };
        conn.meta.closing(reason);
        if conn.down.segs.is_empty() && !conn.down.sending {
            self.begin_close(slot, reason);
            return;
        }
        conn.phase = Phase::Linger;
        let at = self.now() + self.ticks.linger;
        self.set_deadline(slot, at);
    }

    pub(super) fn peer_name(&self, slot: usize) -> String {
        self.conns[slot]
            .peer
            .map_or_else(|| "unknown peer".to_string(), |p| p.to_string())
    }
}
