//! The state of one client session, as the shard's slab holds it.

use std::net::SocketAddr;

use socket2::{SockRef, Socket};

use std::time::Instant;

use super::scratch::ScratchId;
use super::segs::SegQueue;
use super::splice::Spliced;
use super::timer::Tick;
use super::udp::Association;
use crate::policy::{LimitHit, SessionGuard};
use crate::proto::{Address, Command, Handshake, ReplyCode};
use crate::resolve::Addrs;
use crate::telemetry::CloseReason;

/// Bytes waiting to be sent: a part of a provided buffer, or of the reply area of the
/// connection's scratch block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Buf { bid: u16, off: u32, len: u32 },
    Out { off: u8, len: u8 },
}

impl Seg {
    pub fn len(&self) -> u32 {
        match *self {
            Seg::Buf { len, .. } => len,
            Seg::Out { len, .. } => len as u32,
        }
    }

    /// Drops the first `n` bytes (n ≤ len).
    pub fn advance(&mut self, n: u32) {
        match self {
            Seg::Buf { off, len, .. } => {
                *off += n;
                *len -= n;
            }
            Seg::Out { off, len } => {
                *off += n as u8;
                *len -= n as u8;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecvState {
    /// No receive armed.
    #[default]
    Idle,
    /// A multishot receive is armed.
    Armed,
    /// Armed, and a cancel is on its way (backpressure).
    Cancelling,
    /// Ended with ENOBUFS; waits on the shard's starved list for buffers.
    Starved,
}

/// One direction of the session: bytes from a source socket on their way to a sink.
#[derive(Debug, Default)]
pub struct Pipe {
    pub segs: SegQueue,
    /// Bytes in `segs`.
    pub queued: u32,
    pub recv: RecvState,
    /// A send is in flight (at most one per direction, so bytes stay in order).
    pub sending: bool,
    /// The source sent EOF.
    pub eof: bool,
    /// A bandwidth limit holds sends until this tick.
    pub paused_until: Tick,
    /// SHUT_WR was issued on the sink.
    pub shut: bool,
    /// Bytes delivered to the sink.
    pub relayed: u64,
    /// Whether this direction moves, or has failed to move, to a pipe.
    pub bulk: Bulk,
    /// Relayed through a pipe (splice.rs) instead of relay buffers.
    pub spliced: Option<Box<Spliced>>,
}

impl Pipe {
    /// Bytes taken from the source and not yet given to the sink.
    pub fn in_transit(&self) -> bool {
        !self.segs.is_empty() || self.sending || self.spliced.as_ref().is_some_and(|s| s.held > 0)
    }
}

/// A direction's way from relay buffers to a pipe (splice.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bulk {
    /// On buffers, not (yet) bulk.
    #[default]
    No,
    /// Bulk: its receive stays stopped until its queue is out, then it moves.
    Moving,
    /// Could not move (no descriptors to spare, no pipe): stays on buffers for good.
    Refused,
}

/// The client socket as a regular descriptor, which splice(2) needs; made on demand.
#[derive(Debug, Default)]
pub enum ClientFd {
    #[default]
    None,
    Installing,
    Ready(std::os::fd::OwnedFd),
    /// Could not be made (descriptor limit): the session stays on relay buffers.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the PROXY protocol header a balancer sends first.
    ProxyHeader,
    /// Reading and answering the SOCKS handshake.
    Handshake,
    /// Waiting for the resolver.
    Resolving,
    /// Outbound connect in flight.
    Connecting,
    /// UDP ASSOCIATE: learning the control connection's local address.
    UdpSetup,
    /// UDP ASSOCIATE: relaying datagrams while the control connection stays open.
    Udp,
    /// BIND: listening for the one incoming connection.
    BindWait,
    /// Relaying both ways.
    Relay,
    /// A failure reply was sent: wait briefly for the client to close, discarding input,
    /// so closing does not reset the connection before the reply is read.
    Linger,
    /// Cancelling operations; freed when none is left in flight.
    Closing,
}

/// Where an outbound connect goes: the addresses in the order they are tried, and the
/// attempts racing (RFC 8305). For BIND, the addresses the incoming peer may come from.
#[derive(Debug)]
pub struct Plan {
    pub addrs: Addrs,
    pub next: usize,
    pub port: u16,
    /// Connect attempts, by index (the `aux` of their tokens); `None` once ended.
    pub attempts: Vec<Option<Attempt>>,
    /// Attempts in flight.
    pub running: u8,
    /// The reply if every attempt fails: the last failure seen.
    pub last_error: crate::proto::ReplyCode,
    /// When the next attempt starts if none has succeeded by then.
    pub next_at: Tick,
    /// When the first attempt started, until connecting is over and timed.
    pub started: Option<Instant>,
}

/// One outbound connect in flight.
#[derive(Debug)]
pub struct Attempt {
    pub sock: Socket,
    pub addr: SocketAddr,
    /// When it times out (the connect timeout after it started).
    pub expires: Tick,
    /// Its connect is being cancelled (timed out).
    pub cancelled: bool,
}

impl Plan {
    pub fn new(addrs: Addrs, port: u16) -> Plan {
        Plan {
            addrs,
            next: 0,
            port,
            attempts: Vec::new(),
            running: 0,
            last_error: crate::proto::ReplyCode::HostUnreachable,
            next_at: 0,
            started: None,
        }
    }
}

/// What a session is, for policy, limits, logs and metrics: set as it becomes known,
/// read when the session ends.
#[derive(Debug)]
pub struct Meta {
    pub accepted_at: Instant,
    /// The client: what a PROXY protocol header carried, else the TCP peer.
    pub client: Option<SocketAddr>,
    /// A PROXY protocol header named the client; the TCP peer is the balancer.
    pub proxied: bool,
    /// The authenticated user (without a session id) and the session id.
    pub user: Option<Box<str>>,
    pub session: Option<Box<str>>,
    /// The request's command, once read.
    pub command: Option<Command>,
    /// The destination as asked.
    pub target: Option<Address>,
    /// Where the session connected (CONNECT), or the peer that came in (BIND).
    pub connected: Option<SocketAddr>,
    /// The outbound socket's local address.
    pub outbound: Option<SocketAddr>,
    pub reply: Option<ReplyCode>,
    pub close: Option<CloseReason>,
    /// A limit refused this session; the request gets its reply.
    pub limit_hit: Option<LimitHit>,
    /// The session's share of the limits, given back when the session is freed.
    pub guard: Option<SessionGuard>,
    /// A PROXY protocol header split across receives.
    pub proxy_header: Vec<u8>,
}

impl Meta {
    pub fn new(accepted_at: Instant) -> Meta {
        Meta {
            accepted_at,
            client: None,
            proxied: false,
            user: None,
            session: None,
            command: None,
            target: None,
            connected: None,
            outbound: None,
            reply: None,
            close: None,
            limit_hit: None,
            guard: None,
            proxy_header: Vec::new(),
        }
    }

    /// Records why the session ends; the first reason given wins.
    pub fn closing(&mut self, reason: CloseReason) {
        self.close.get_or_insert(reason);
    }
}

#[derive(Debug)]
pub struct Conn {
    pub phase: Phase,
    pub meta: Box<Meta>,
    /// Direct descriptor of the client socket.
    pub client: u32,
    /// The same socket as a regular descriptor, for splicing.
    pub client_fd: ClientFd,
    /// Index of the listener that accepted it.
    pub listener: u16,
    pub target: Option<Socket>,
    pub peer: Option<SocketAddr>,
    /// The scratch block, released once the handshake replies are out (UDP
    /// associations keep it for the reply address).
    pub scratch: Option<ScratchId>,
    /// Bytes of the scratch reply area used so far.
    pub out_len: u8,
    pub handshake: Option<Box<Handshake>>,
    pub plan: Option<Box<Plan>>,
    pub udp: Option<Box<Association>>,
    /// BIND: the socket listening for the peer.
    pub bind_listener: Option<Socket>,
    /// Submissions whose final completion has not arrived yet.
    pub inflight: u16,
    /// Client → target.
    pub up: Pipe,
    /// Target → client (and handshake replies).
    pub down: Pipe,
    /// When the current phase times out (Relay: computed from `last_active`).
    pub deadline: Tick,
    /// The tick of this connection's timer-wheel entry, 0 if none.
    pub timer_at: Tick,
    pub last_active: Tick,
}

/// Which way data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up,
    Down,
}

impl Conn {
    pub fn pipe(&mut self, dir: Dir) -> &mut Pipe {
        match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        }
    }

    /// The socket `dir` writes to, where it is a plain descriptor (the target, or the
    /// client once installed as one for splicing) rather than a ring-only one.
    pub fn plain_sink(&self, dir: Dir) -> Option<SockRef<'_>> {
        match (dir, &self.client_fd) {
            (Dir::Up, _) => self.target.as_ref().map(SockRef::from),
            (Dir::Down, ClientFd::Ready(fd)) => Some(SockRef::from(fd)),
            (Dir::Down, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session, idle ones included, holds a `Conn` in its shard's slab: growing it
    /// grows the memory per idle connection.
    #[test]
    fn a_session_state_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 256, "Conn grew to {size} bytes");
    }
}
