//! The PROXY protocol header (v1 or v2) a balancer sends before the client's bytes, on
//! listeners configured for it. The header's source address becomes the client's address
//! for rules, limits and logs; the balancer stays the connection's peer (logged as `via`).

use super::conn::{Phase, Seg};
use super::shard::Shard;
use crate::proto::proxy_protocol::{Header, MAX_HEADER_LEN};
use crate::proto::Parse;
use crate::telemetry::CloseReason;

impl Shard {
    pub(super) fn drive_proxy_header(&mut self, slot: usize) {
        let Shard { conns, pool, .. } = self;
        let conn = &mut conns[slot];
        // The source must be vetted (SO_PEERNAME) before its header is believed.
        if conn.peer.is_none() {
            return;
        }
        // Gather the header: it may span receives, and is at most MAX_HEADER_LEN bytes.
        let mut parsed = None;
        while let Some(&Seg::Buf { bid, off, len }) = conn.up.segs.front() {
            let held = conn.meta.proxy_header.len();
            let take = (len as usize).min(MAX_HEADER_LEN.saturating_sub(held));
            conn.meta
                .proxy_header
                .extend_from_slice(pool.data(bid, off, take as u32));
            match Header::parse(&conn.meta.proxy_header) {
                Ok(Parse::Complete { msg, consumed }) => {
                    // Bytes past the header belong to the handshake: leave them queued.
                    let used = (consumed - held) as u32;
                    conn.up.queued -= used;
                    let front = conn.up.segs.front_mut().expect("checked above");
                    front.advance(used);
                    if front.len() == 0 {
                        conn.up.segs.pop_front();
                        pool.give_back(bid);
                    }
                    parsed = Some(Ok(msg));
                    break;
                }
                Ok(Parse::Incomplete) if take == len as usize => {
                    conn.up.queued -= len;
                    conn.up.segs.pop_front();
                    pool.give_back(bid);
                }
                Ok(Parse::Incomplete) => {
                    parsed = Some(Err("header longer than the protocol allows".to_string()));
                    break;
                }
                Err(e) => {
                    parsed = Some(Err(e.to_string()));
                    break;
                }
            }
        }
        match parsed {
            None if conn.up.eof => self.begin_close(slot, CloseReason::ClientClosed),
            None => {}
            Some(Err(why)) => {
                log::info!("PROXY protocol header from {}: {why}", self.peer_name(slot));
                self.begin_close(slot, CloseReason::HandshakeError);
            }
            Some(Ok(header)) => {
                let conn = &mut self.conns[slot];
                conn.meta.proxy_header = Vec::new();
                conn.meta.proxied = true;
                // A LOCAL header (a health check) or an unknown family: the balancer
                // itself is the client.
                let client = header.source().or(conn.peer);
                conn.phase = Phase::Handshake;
                self.admit_client(slot, client);
            }
        }
    }
}
