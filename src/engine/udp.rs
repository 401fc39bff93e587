//! UDP ASSOCIATE: a client-facing socket on the address the client reached us on, and one
//! outbound socket per address family, created on first use.
//!
//! Datagrams are received by multishot receives into the shard's UDP buffer pool and sent
//! from the same buffer: a client datagram goes out as its payload (the SOCKS header
//! skipped), a reply goes back with its SOCKS header written in place in front of the
//! payload. No payload is copied. Sends of one loop turn reach the kernel in the turn's one
//! submission. The association ends with its control connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::Socket;

use std::sync::Arc;

use super::admission::apply_egress;
use super::bufring::Slice;
use super::conn::{Dir, Phase, RecvState, Seg};
use super::ring::{self, Completion, DatagramDest, Fd, DATAGRAM_PREFIX};
use super::shard::Shard;
use super::sockaddr;
use super::sys;
use super::token::{Op, Token};
use crate::policy::Egress;
use crate::proto::association::{self, ClientMatch, Outbound, MAX_REPLY_HEADER};
use crate::proto::{Address, ReplyCode};
use crate::resolve::{Addrs, ResolveError};
use crate::telemetry::{CloseReason, Direction, Limit, Pool, UdpDrop};

/// Socket indexes within an association (the `aux` of its receive tokens).
const CLIENT: usize = 0;
const REMOTE_V4: usize = 1;
const REMOTE_V6: usize = 2;

/// A datagram waiting for its destination name to resolve.
#[derive(Debug)]
pub struct Pending {
    ticket: u16,
    bid: u16,
    off: u32,
    len: u32,
    port: u16,
    /// The name it was sent to: rules see it.
    host: Box<str>,
}

#[derive(Debug)]
pub struct Association {
    matcher: ClientMatch,
    /// Where the client sends (BND.ADDR), once opened.
    client_sock: Option<Socket>,
    /// Outbound sockets: IPv4, IPv6.
    remote: [Option<Socket>; 2],
    recv: [RecvState; 3],
    /// The client's latest source address: replies go there. Its sockaddr is kept in the
    /// session's scratch block (connect area), `reply_len` bytes long.
    reply_to: Option<SocketAddr>,
    reply_len: u32,
    /// Buffers held: sends in flight and datagrams waiting for resolution.
    held: u32,
    pending: Vec<Pending>,
    next_ticket: u16,
    /// Payload bytes relayed each way, for the access log.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// How outbound sockets are set up (the rule or user egress in force at ASSOCIATE).
    egress: Option<Arc<Egress>>,
}

impl Association {
    fn fd(&self, i: usize) -> Option<Fd> {
        let sock = match i {
            CLIENT => self.client_sock.as_ref(),
            _ => self.remote[i - 1].as_ref(),
        };
        sock.map(|s| Fd::Raw(s.as_raw_fd()))
    }

    /// Every socket of the association, for cancellation.
    pub fn fds(&self) -> impl Iterator<Item = Fd> + '_ {
        (0..3).filter_map(|i| self.fd(i))
    }

    /// Buffers to give back when the association is freed.
    pub fn pending_buffers(&self) -> impl Iterator<Item = u16> + '_ {
        self.pending.iter().map(|p| p.bid)
    }
}

fn canonical(sa: SocketAddr) -> SocketAddr {
    match sa {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => sa,
        },
        v4 => v4,
    }
}

impl Shard {
    /// Buffers one association may hold before its receives pause: one flooding client
    /// cannot take the pool from the others.
    fn udp_held_max(&self) -> u32 {
        (self.udp_pool.entries() as u32 / 8).max(16)
    }

    pub(super) fn udp_associate(
        &mut self,
        slot: usize,
        declared: &Address,
        egress: Option<Arc<Egress>>,
    ) {
        let Some(peer) = self.conns[slot].peer else {
            self.reject(slot, ReplyCode::GeneralFailure);
            return;
        };
        self.conns[slot].udp = Some(Box::new(Association {
            matcher: ClientMatch::new(declared, peer.ip()),
            client_sock: None,
            remote: [None, None],
            recv: [RecvState::Idle; 3],
            reply_to: None,
            reply_len: 0,
            held: 0,
            pending: Vec::new(),
            next_ticket: 0,
            bytes_up: 0,
            bytes_down: 0,
            egress,
        }));
        let listener_ip = self.listeners[self.conns[slot].listener as usize].addr.ip();
        match self.shared.config.udp_bind {
            Some(ip) => self.udp_open(slot, ip),
            None if !listener_ip.is_unspecified() => self.udp_open(slot, listener_ip),
            None => {
                // A wildcard listener: the control connection's own local address is the
                // one the client can reach. Read it from a regular descriptor.
                let token = self.token(slot, Op::InstallFd);
                let conn = &mut self.conns[slot];
                conn.phase = Phase::UdpSetup;
                conn.inflight += 1;
                self.ring.install_fixed(conn.client, token);
            }
        }
    }

    pub(super) fn on_install_fd(&mut self, slot: usize, c: Completion) {
        let local = ring::adopt(c.result).map(|sock| sys::local_addr(&sock));
        if self.conns[slot].phase != Phase::UdpSetup {
            return;
        }
        match local {
            Some(Ok(addr)) => self.udp_open(slot, addr.ip()),
            _ => self.reject(slot, ReplyCode::GeneralFailure),
        }
    }

    fn udp_open(&mut self, slot: usize, ip: IpAddr) {
        let cfg = &self.shared.config;
        let sock = match sys::udp_socket_in_range(ip, cfg.udp_port_range) {
            Ok(sock) => sock,
            Err(e) => {
                log::warn!("UDP relay socket on {ip}: {e}");
                self.reject(slot, ReplyCode::from_io_error(&e));
                return;
            }
        };
        let bound = match sys::local_addr(&sock) {
            Ok(addr) => addr,
            Err(_) => {
                self.reject(slot, ReplyCode::GeneralFailure);
                return;
            }
        };
        let advertised = SocketAddr::new(cfg.udp_public.unwrap_or(bound.ip()), bound.port());
        let conn = &mut self.conns[slot];
        let Some(assoc) = conn.udp.as_mut() else {
            return;
        };
        assoc.client_sock = Some(sock);
        if let Some(declared) = assoc.matcher.declared() {
            assoc.reply_to = Some(declared);
            if let Some(id) = conn.scratch {
                assoc.reply_len = self.scratch.set_reply_addr(id, declared);
            }
        }
        conn.meta.outbound = Some(bound);
        conn.meta.reply = Some(ReplyCode::Succeeded);
        if let Some(hs) = conn.handshake.as_mut() {
            hs.grant(advertised);
        }
        self.flush_handshake(slot);
        let now = self.now();
        let conn = &mut self.conns[slot];
        conn.handshake = None;
        conn.phase = Phase::Udp;
        conn.last_active = now;
        let at = now + self.ticks.udp_idle;
        self.set_deadline(slot, at);
    }

    /// Keeps the association's receives armed while it holds few buffers, and ends it when
    /// the control connection closes.
    pub(super) fn drive_udp(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        // Bytes on the control connection mean nothing after ASSOCIATE.
        for seg in conn.up.segs.drain() {
            if let Seg::Buf { bid, .. } = seg {
                self.pool.give_back(bid);
            }
        }
        conn.up.queued = 0;
        if conn.up.eof {
            self.begin_close(slot, CloseReason::Completed);
            return;
        }
        let max = self.udp_held_max();
        for i in 0..3 {
            let token = Token::with_aux(Op::UdpRecv, slot as u32, self.gens[slot], i as u16);
            let conn = &mut self.conns[slot];
            let Some(assoc) = conn.udp.as_mut() else {
                return;
            };
            let Some(fd) = assoc.fd(i) else {
                continue;
            };
            match assoc.recv[i] {
                RecvState::Idle if assoc.held < max => {
                    assoc.recv[i] = RecvState::Armed;
                    conn.inflight += 1;
                    self.ring.recvmsg_multi(fd, self.udp_pool.group(), token);
                }
                RecvState::Armed if assoc.held >= max => {
                    assoc.recv[i] = RecvState::Cancelling;
                    conn.inflight += 1;
                    self.ring.cancel(token, self.token(slot, Op::Cancel));
                }
                _ => {}
            }
        }
    }

    pub(super) fn on_udp_recv(&mut self, slot: usize, c: Completion) {
        let i = (c.token.aux() as usize).min(REMOTE_V6);
        let phase = self.conns[slot].phase;
        let Some(assoc) = self.conns[slot].udp.as_mut() else {
            return;
        };
        if !c.more() {
            assoc.recv[i] = RecvState::Idle;
        }
        if c.result < 0 {
            match -c.result {
                libc::ENOBUFS => {
                    assoc.recv[i] = RecvState::Starved;
                    self.udp_starved.push_back(c.token);
                    self.udp_pool.ran_dry();
                    self.stats.buffers_exhausted(Pool::Udp);
                }
                libc::ECANCELED => {}
                e => {
                    log::debug!("UDP receive: {}", std::io::Error::from_raw_os_error(e));
                    self.begin_close(slot, CloseReason::ClientError);
                }
            }
            return;
        }
        let Some(bid) = c.buffer() else {
            return;
        };
        if !self.udp_pool.take(bid, c.result.max(0) as u32) {
            return;
        }
        let parsed = self
            .ring
            .datagram(self.udp_pool.data(bid, 0, c.result as u32));
        let Some((src, off, len)) = parsed.filter(|_| phase == Phase::Udp) else {
            self.udp_drop(bid, UdpDrop::TooLarge);
            return;
        };
        self.conns[slot].last_active = self.now();
        if i == CLIENT {
            self.client_datagram(slot, bid, src, off, len);
        } else {
            self.remote_datagram(slot, bid, src, off, len);
        }
    }

    fn udp_drop(&mut self, bid: u16, why: UdpDrop) {
        self.udp_pool.give_back(bid);
        self.stats.udp_dropped(why);
    }

    /// Takes `len` bytes of datagram `bid` from the user's bandwidth in `dir`. False when
    /// the limit has no room for them: the datagram is then dropped and counted, as UDP has
    /// no way to be paused.
    fn udp_charge(&mut self, slot: usize, dir: Dir, bid: u16, len: u32) -> bool {
        let within = self
            .user_bucket(slot, dir)
            .is_none_or(|b| b.take(self.instant, len as u64).is_ok());
        if !within {
            self.stats.limit_hit(Limit::UserBandwidth);
            self.udp_drop(bid, UdpDrop::Bandwidth);
        }
        within
    }

    fn client_datagram(&mut self, slot: usize, bid: u16, src: SocketAddr, off: usize, len: usize) {
        let conn = &mut self.conns[slot];
        let Some(assoc) = conn.udp.as_mut() else {
            return;
        };
        if !assoc.matcher.is_client(src) {
            self.udp_drop(bid, UdpDrop::NotFromClient);
            return;
        }
        if assoc.reply_to != Some(src) {
            assoc.reply_to = Some(src);
            if let Some(id) = conn.scratch {
                assoc.reply_len = self.scratch.set_reply_addr(id, src);
            }
        }
        let datagram = self.udp_pool.data(bid, off as u32, len as u32);
        let Outbound { dest, payload } = match association::client_datagram(datagram) {
            Ok(out) => out,
            Err(why) => {
                log::debug!("UDP datagram from {src} dropped: {}", why.name());
                self.udp_drop(
                    bid,
                    match why {
                        association::Drop::Fragment => UdpDrop::Fragment,
                        association::Drop::Malformed => UdpDrop::Malformed,
                    },
                );
                return;
            }
        };
        let (p_off, p_len) = ((off + payload.start) as u32, payload.len() as u32);
        if p_len > self.shared.config.udp_max_payload {
            self.udp_drop(bid, UdpDrop::TooLarge);
            return;
        }
        match dest {
            Address::Ip(sa) => self.send_remote(slot, bid, p_off, p_len, sa, None),
            Address::Domain(host, port) => match self.shared.resolver.cached(&host) {
                Some(Ok(addrs)) => self.send_remote(
                    slot,
                    bid,
                    p_off,
                    p_len,
                    SocketAddr::new(addrs[0], port),
                    Some(&host),
                ),
                Some(Err(_)) => self.udp_drop(bid, UdpDrop::NoRoute),
                None => self.await_name(slot, bid, p_off, p_len, &host, port),
            },
        }
    }

    fn await_name(&mut self, slot: usize, bid: u16, off: u32, len: u32, host: &str, port: u16) {
        let max = self.udp_held_max();
        let generation = self.gens[slot];
        let Some(assoc) = self.conns[slot].udp.as_mut() else {
            return;
        };
        if assoc.held >= max {
            self.udp_drop(bid, UdpDrop::OverLimit);
            return;
        }
        let ticket = assoc.next_ticket;
        assoc.next_ticket = assoc.next_ticket.wrapping_add(1);
        assoc.held += 1;
        assoc.pending.push(Pending {
            ticket,
            bid,
            off,
            len,
            port,
            host: host.into(),
        });
        let key = Token::with_aux(Op::Ignore, slot as u32, generation, ticket);
        self.shared
            .resolver
            .resolve(host, key.0, self.mailbox.clone());
    }

    pub(super) fn udp_resolved(
        &mut self,
        slot: usize,
        ticket: u16,
        result: Result<Addrs, ResolveError>,
    ) {
        let Some(assoc) = self.conns[slot].udp.as_mut() else {
            return;
        };
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) =
            assoc.pending.drain(..).partition(|p| p.ticket == ticket);
        assoc.pending = waiting;
        assoc.held -= ready.len() as u32;
        for p in ready {
            match &result {
                Ok(addrs) if !addrs.is_empty() => self.send_remote(
                    slot,
                    p.bid,
                    p.off,
                    p.len,
                    SocketAddr::new(addrs[0], p.port),
                    Some(&p.host),
                ),
                _ => self.udp_drop(p.bid, UdpDrop::NoRoute),
            }
        }
    }

    /// Sends a client payload to its destination through the outbound socket of its family.
    fn send_remote(
        &mut self,
        slot: usize,
        bid: u16,
        off: u32,
        len: u32,
        dest: SocketAddr,
        domain: Option<&str>,
    ) {
        let dest = canonical(dest);
        // Every datagram's destination is checked against the rules.
        let decision = self.check_dest(slot, dest.ip(), dest.port(), domain);
        if !decision.allow {
            self.count_denial(&decision);
            log::debug!("UDP datagram to {dest} denied: {}", decision.reason());
            self.udp_drop(bid, UdpDrop::Denied);
            return;
        }
        if !self.udp_charge(slot, Dir::Up, bid, len) {
            return;
        }
        let socket = if dest.is_ipv4() { REMOTE_V4 } else { REMOTE_V6 };
        let family = socket - 1;
        let token = Token::with_aux(Op::UdpSend, slot as u32, self.gens[slot], bid);
        let session = self.conns[slot].meta.session.clone();
        let conn = &mut self.conns[slot];
        let Some(assoc) = conn.udp.as_mut() else {
            self.udp_pool.give_back(bid);
            return;
        };
        if assoc.remote[family].is_none() {
            let any = if family == 0 {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            } else {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
            };
            let egress = assoc.egress.clone();
            let opened = sys::udp_unbound(any).and_then(|sock| {
                if !apply_egress(&sock, egress.as_deref(), family == 1, session.as_deref())? {
                    sock.bind(&any.into())?;
                }
                Ok(sock)
            });
            match opened {
                Ok(sock) => assoc.remote[family] = Some(sock),
                Err(e) => {
                    log::warn!("outbound UDP socket: {e}");
                    self.udp_drop(bid, UdpDrop::NoRoute);
                    return;
                }
            }
        }
        let Some(fd) = assoc.fd(socket) else {
            self.udp_pool.give_back(bid);
            return;
        };
        let (raw, addr_len) = sockaddr::encode(dest);
        if !self.udp_pool.write(bid, 0, &raw[..addr_len as usize]) {
            self.udp_drop(bid, UdpDrop::NoRoute);
            return;
        }
        assoc.held += 1;
        assoc.bytes_up += len as u64;
        self.stats.udp_relayed(Direction::Up, len as u64);
        conn.inflight += 1;
        let dest = DatagramDest::InBuffer { len: addr_len };
        let slice = Slice { bid, off, len };
        if !self
            .ring
            .send_datagram(fd, &self.udp_pool, slice, dest, &self.scratch, token)
        {
            self.udp_sent(slot, bid);
            self.conns[slot].inflight -= 1;
        }
    }

    /// Sends a remote's datagram to the client, with the SOCKS header written in place.
    fn remote_datagram(&mut self, slot: usize, bid: u16, src: SocketAddr, off: usize, len: usize) {
        let token = Token::with_aux(Op::UdpSend, slot as u32, self.gens[slot], bid);
        let scratch = self.conns[slot].scratch;
        if len as u32 > self.shared.config.udp_max_payload {
            self.udp_drop(bid, UdpDrop::TooLarge);
            return;
        }
        if !self.udp_charge(slot, Dir::Down, bid, len as u32) {
            return;
        }
        let conn = &mut self.conns[slot];
        let Some(assoc) = conn.udp.as_mut() else {
            self.udp_pool.give_back(bid);
            return;
        };
        let (Some(_), Some(fd), Some(scratch)) = (assoc.reply_to, assoc.fd(CLIENT), scratch) else {
            // The client has not sent anything yet: nowhere to deliver.
            self.udp_drop(bid, UdpDrop::NoRoute);
            return;
        };
        let mut room = [0u8; MAX_REPLY_HEADER];
        let n = association::reply_header(src, &mut room);
        debug_assert!(off == DATAGRAM_PREFIX && n <= off);
        let start = (off - n) as u32;
        if !self
            .udp_pool
            .write(bid, start, &room[MAX_REPLY_HEADER - n..])
        {
            self.udp_drop(bid, UdpDrop::NoRoute);
            return;
        }
        assoc.held += 1;
        assoc.bytes_down += len as u64;
        self.stats.udp_relayed(Direction::Down, len as u64);
        conn.inflight += 1;
        let dest = DatagramDest::Scratch {
            id: scratch,
            len: assoc.reply_len,
        };
        let total = (len + n) as u32;
        let slice = Slice {
            bid,
            off: start,
            len: total,
        };
        if !self
            .ring
            .send_datagram(fd, &self.udp_pool, slice, dest, &self.scratch, token)
        {
            self.udp_sent(slot, bid);
            self.conns[slot].inflight -= 1;
        }
    }

    pub(super) fn on_udp_send(&mut self, slot: usize, c: Completion) {
        if c.result < 0 {
            // The network refused it (no route, say): the datagram is lost, as a full
            // queue further on would lose it, and counted.
            log::debug!("UDP send: {}", std::io::Error::from_raw_os_error(-c.result));
            self.stats.udp_dropped(UdpDrop::SendFailed);
        }
        self.udp_sent(slot, c.token.aux());
    }

    fn udp_sent(&mut self, slot: usize, bid: u16) {
        self.udp_pool.give_back(bid);
        if let Some(assoc) = self.conns[slot].udp.as_mut() {
            assoc.held = assoc.held.saturating_sub(1);
        }
    }

    /// Re-arms UDP receives that ran out of buffers.
    pub(super) fn rearm_udp_starved(&mut self) {
        let reserve = (self.udp_pool.entries() as u32 / 8).max(1);
        while self.udp_pool.available() >= reserve {
            let Some(token) = self.udp_starved.pop_front() else {
                return;
            };
            if !self.is_live(token) {
                continue;
            }
            let slot = token.slot() as usize;
            let i = (token.aux() as usize).min(REMOTE_V6);
            if let Some(assoc) = self.conns[slot].udp.as_mut() {
                if assoc.recv[i] == RecvState::Starved {
                    assoc.recv[i] = RecvState::Idle;
                    self.progress(slot);
                }
            }
        }
    }
}
