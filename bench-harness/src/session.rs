//! A non-blocking TCP connection to a target, directly or through the SOCKS5 server:
//! connect, then (through a server) the client handshake, driven by readiness events.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::error::Error;
use crate::reactor::Reactor;
use crate::run::Route;
use crate::socks::{ClientHandshake, Script, SetupError};

/// Where and how sessions of one run connect; built once per run.
#[derive(Debug, Clone)]
pub struct Dialer {
    proxy: Option<SocketAddr>,
    script: Script,
    pub target: SocketAddr,
}

impl Dialer {
    /// CONNECTs to `target` over `route`.
    pub fn new(route: &Route, target: SocketAddr) -> Dialer {
        Dialer {
            proxy: route.proxy,
            script: Script::connect(route.auth.as_ref(), target),
            target,
        }
    }

    /// The address the TCP connection goes to.
    pub fn first_hop(&self) -> SocketAddr {
        self.proxy.unwrap_or(self.target)
    }

    pub fn via_proxy(&self) -> bool {
        self.proxy.is_some()
    }
}

#[derive(Debug)]
enum State {
    Connecting,
    Handshaking,
    Open,
}

/// One connection and its set-up state. The handshake buffer lives inline, so a session
/// costs no allocation beyond its socket.
#[derive(Debug)]
pub struct Session {
    pub sock: TcpStream,
    state: State,
    hs: ClientHandshake,
}

/// The outcome of [`Session::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Pending,
    /// Ready for relay traffic; [`Session::early_data`] holds bytes that came with the
    /// server's reply.
    Open,
}

impl Session {
    /// Starts a connection and registers it for read and write readiness.
    pub fn dial(dialer: &Dialer, registry: &Registry, token: Token) -> io::Result<Session> {
        let mut sock = TcpStream::connect(dialer.first_hop())?;
        sock.set_nodelay(true)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Session {
            sock,
            state: State::Connecting,
            hs: ClientHandshake::new(),
        })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Bytes relayed along with the server's reply (empty on the direct path).
    pub fn early_data(&self) -> &[u8] {
        self.hs.early_data()
    }

    /// Moves set-up forward as far as the socket allows. Call on every readiness event
    /// until it returns `Open`.
    pub fn advance(&mut self, dialer: &Dialer) -> Result<Progress, SetupError> {
        if let State::Connecting = self.state {
            if let Some(e) = self.sock.take_error()? {
                return Err(SetupError::Io(e));
            }
            match self.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(Progress::Pending),
                Err(e) => return Err(SetupError::Io(e)),
            }
            self.state = if dialer.via_proxy() {
                State::Handshaking
            } else {
                State::Open
            };
        }
        if let State::Open = self.state {
            return Ok(Progress::Open);
        }
        // Bounded: every pass writes or reads bytes of a bounded exchange, or returns.
        loop {
            let out = self.hs.output(&dialer.script);
            if !out.is_empty() {
                match self.sock.write(out) {
                    Ok(n) => {
                        self.hs.sent(n, &dialer.script);
                        if self.hs.output(&dialer.script).is_empty() {
                            // The answer cannot be there yet, and its arrival raises a
                            // fresh readiness edge: save the read that would block.
                            return Ok(Progress::Pending);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Progress::Pending),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(SetupError::Io(e)),
                }
                continue;
            }
            let space = self.hs.input_space().len();
            match self.sock.read(self.hs.input_space()) {
                Ok(n) => {
                    if self.hs.received(n, &dialer.script)?.is_some() {
                        self.state = State::Open;
                        return Ok(Progress::Open);
                    }
                    if n < space && !self.hs.output(&dialer.script).is_empty() {
                        continue;
                    }
                    if n < space {
                        // A short read drained the socket; more data raises a new edge.
                        return Ok(Progress::Pending);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Progress::Pending),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(SetupError::Io(e)),
            }
        }
    }
}

/// Describes a set-up failure for the failure tally.
pub fn describe(dialer: &Dialer, e: &io::Error) -> String {
    if dialer.via_proxy() {
        format!("connection to the SOCKS server {}: {e}", dialer.first_hop())
    } else {
        format!("connection to the target {}: {e}", dialer.target)
    }
}

/// Opens `count` sessions, at most `parallel` in set-up at once, tokens `0..count`.
/// A SOCKS refusal is fatal; so is any transport failure, since a mode needs all of its
/// connections. Bounded by `timeout` per connection.
pub fn open_all(
    reactor: &mut Reactor,
    dialer: &Dialer,
    count: usize,
    parallel: usize,
    timeout: Duration,
) -> Result<Vec<Session>, Error> {
    let mut sessions: Vec<Session> = Vec::with_capacity(count);
    let mut open = 0;
    let mut ready = Vec::with_capacity(1024);
    let mut last_progress = Instant::now();
    while open < count {
        // Keep `parallel` set-ups in flight.
        while sessions.len() < count && sessions.len() - open < parallel.max(1) {
            let token = Token(sessions.len());
            let s = Session::dial(dialer, reactor.registry(), token)
                .map_err(|e| Error::io(describe(dialer, &e), e))?;
            sessions.push(s);
        }
        if last_progress.elapsed() > timeout {
            return Err(Error::Timeout(format!(
                "{} of {count} connections to {} open after {timeout:?} without progress",
                open,
                dialer.first_hop()
            )));
        }
        reactor
            .wait(Instant::now() + Duration::from_millis(50))
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            let Some(s) = sessions.get_mut(i) else {
                continue;
            };
            if s.is_open() {
                continue;
            }
            match s.advance(dialer) {
                Ok(Progress::Open) => {
                    open += 1;
                    last_progress = Instant::now();
                }
                Ok(Progress::Pending) => {}
                Err(SetupError::Socks(e)) => return Err(Error::Socks(e)),
                Err(SetupError::Io(e)) => return Err(Error::io(describe(dialer, &e), e)),
            }
        }
    }
    Ok(sessions)
}
