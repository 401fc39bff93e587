//! The server side of a SOCKS handshake, as a sans-IO state machine.
//!
//! Call order, for a driver that owns the socket:
//!
//! 1. [`Handshake::handle_input`] with every chunk of bytes the client sends. It returns how
//!    many it consumed. It stops consuming when it has an event for the driver, when the
//!    handshake is over, or when it failed; bytes it did not consume are the driver's:
//!    keep them and offer them again after the decision (they may be the next message), or,
//!    once [`Handshake::is_established`], relay them as pipelined data.
//! 2. [`Handshake::poll_transmit`] after every call: bytes to send to the client.
//! 3. [`Handshake::poll_event`]: a decision to make. Credentials come back through
//!    [`Handshake::accept_credentials`] or [`Handshake::reject_credentials`]; a request
//!    through [`Handshake::grant`] or [`Handshake::reject`] (and for BIND, a second
//!    [`Handshake::grant_bind_peer`] or [`Handshake::reject`]).
//! 4. [`Handshake::is_failed`]: flush what `poll_transmit` gave, then close.
//!
//! Partial messages are kept inside (at most [`MAX_MESSAGE_LEN`] bytes), so a driver can
//! feed one byte at a time. Time is not tracked here: the driver owns the deadline.

use std::mem;
use std::net::SocketAddr;

use super::auth::{self, Credentials};
use super::error::ErrorReply;
use super::{socks4, socks5, Address, Error, Parse, ReplyCode};

/// The longest handshake message: a SOCKS4a request with a 255-byte user id and host.
pub const MAX_MESSAGE_LEN: usize = 8 + (socks4::MAX_FIELD_LEN + 1) * 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Socks4,
    Socks5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Connect => "connect",
            Command::Bind => "bind",
            Command::UdpAssociate => "udp",
        }
    }
}

/// A parsed request, waiting for a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    pub command: Command,
    /// The destination, with IP literals already turned into IP addresses.
    pub address: Address,
    /// The RFC 1929 username that authenticated this session, if any.
    pub user: Option<Vec<u8>>,
    /// The SOCKS4 USERID field (unauthenticated), if any.
    pub user_id: Option<Vec<u8>>,
}

/// A decision the driver must make before the handshake goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Credentials(Credentials),
    Request(Request),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HandshakeConfig {
    /// Require RFC 1929 username/password; SOCKS4 is then refused.
    pub auth_required: bool,
}

#[derive(Debug)]
enum State {
    AwaitGreeting,
    AwaitCredentials,
    AwaitCredentialsVerdict { user: Vec<u8> },
    AwaitRequest { user: Option<Vec<u8>> },
    AwaitVerdict { version: Version, command: Command },
    AwaitBindPeer { version: Version },
    Established,
    Failed(Error),
}

#[derive(Debug)]
pub struct Handshake {
    config: HandshakeConfig,
    state: State,
    /// A message prefix that arrived without its end.
    partial: Vec<u8>,
    output: Vec<u8>,
    event: Option<Event>,
}

impl Handshake {
    pub fn new(config: HandshakeConfig) -> Handshake {
        Handshake {
            config,
            state: State::AwaitGreeting,
            partial: Vec::new(),
            output: Vec::new(),
            event: None,
        }
    }

    /// Consumes client bytes; see the module documentation for what the rest means.
    pub fn handle_input(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() && self.wants_input() {
            let rest = &input[used..];
            if self.partial.is_empty() {
                match self.step(rest) {
                    Some(n) => used += n,
                    None => {
                        self.partial.extend_from_slice(rest);
                        used = input.len();
                    }
                }
            } else {
                let held = self.partial.len();
                let take = rest.len().min(MAX_MESSAGE_LEN.saturating_sub(held));
                let mut joined = mem::take(&mut self.partial);
                joined.extend_from_slice(&rest[..take]);
                match self.step(&joined) {
                    // A held prefix was incomplete, so the message ends in the new bytes.
                    Some(n) => used += n.saturating_sub(held),
                    None if take == 0 => {
                        // Unreachable with correct parsers: every message fits the cap.
                        self.fail(Error::TooLong(super::Field::Message));
                    }
                    None => {
                        self.partial = joined;
                        used += take;
                    }
                }
            }
        }
        used
    }

    /// Appends the bytes to send to the client.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// Whether bytes are waiting for [`Handshake::poll_transmit`].
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    /// The handshake succeeded: what follows is relayed.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// The handshake failed: flush the output, then close.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    pub fn error(&self) -> Option<&Error> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    pub fn accept_credentials(&mut self) {
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitCredentialsVerdict { user } => {
                auth::Status {
                    status: auth::STATUS_SUCCESS,
                }
                .emit(&mut self.output);
                self.state = State::AwaitRequest { user: Some(user) };
            }
            other => self.misuse(other),
        }
    }

    pub fn reject_credentials(&mut self) {
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitCredentialsVerdict { .. } => self.fail(Error::AuthFailed),
            other => self.misuse(other),
        }
    }

    /// Grants the request: `bound` is the outbound socket's local address (CONNECT), the
    /// listening address (BIND, first reply) or the relay address (UDP ASSOCIATE).
    pub fn grant(&mut self, bound: SocketAddr) {
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitVerdict { version, command } => {
                self.emit_reply(version, ReplyCode::Succeeded, bound);
                self.state = match command {
                    Command::Bind => State::AwaitBindPeer { version },
                    Command::Connect | Command::UdpAssociate => State::Established,
                };
            }
            other => self.misuse(other),
        }
    }

    /// The second BIND reply: `peer` connected.
    pub fn grant_bind_peer(&mut self, peer: SocketAddr) {
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitBindPeer { version } => {
                self.emit_reply(version, ReplyCode::Succeeded, peer);
                self.state = State::Established;
            }
            other => self.misuse(other),
        }
    }

    /// Refuses the request (or a BIND still waiting for its peer) with `code`. A success
    /// code cannot refuse anything: it is sent as a general failure.
    pub fn reject(&mut self, code: ReplyCode) {
        let code = match code.to_u8() {
            0 => ReplyCode::GeneralFailure,
            _ => code,
        };
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitVerdict { version, .. } | State::AwaitBindPeer { version } => {
                self.emit_failure(version, code);
                self.state = State::Failed(Error::Rejected(code));
            }
            other => self.misuse(other),
        }
    }

    fn wants_input(&self) -> bool {
        self.event.is_none()
            && matches!(
                self.state,
                State::AwaitGreeting | State::AwaitCredentials | State::AwaitRequest { .. }
            )
    }

    /// Parses one message for the current state. `None`: the message is incomplete.
    fn step(&mut self, buf: &[u8]) -> Option<usize> {
        match self.try_step(buf) {
            Ok(Parse::Incomplete) => None,
            Ok(Parse::Complete { consumed, .. }) => Some(consumed),
            Err(e) => {
                self.fail(e);
                Some(0)
            }
        }
    }

    fn try_step(&mut self, buf: &[u8]) -> Result<Parse<()>, Error> {
        match mem::replace(&mut self.state, State::AwaitGreeting) {
            State::AwaitGreeting => match buf.first() {
                Some(&socks4::VERSION) => self.on_socks4(buf),
                _ => self.on_greeting(buf),
            },
            State::AwaitCredentials => {
                self.state = State::AwaitCredentials;
                let parsed = Credentials::parse(buf)?;
                if let Parse::Complete { msg, .. } = &parsed {
                    self.state = State::AwaitCredentialsVerdict {
                        user: msg.username.clone(),
                    };
                }
                Ok(parsed.map(|creds| self.event = Some(Event::Credentials(creds))))
            }
            State::AwaitRequest { user } => {
                let parsed = socks5::Request::parse(buf);
                self.state = State::AwaitRequest { user: user.clone() };
                let (req, consumed) = match parsed? {
                    Parse::Incomplete => return Ok(Parse::Incomplete),
                    Parse::Complete { msg, consumed } => (msg, consumed),
                };
                let command = match req.command {
                    socks5::CMD_CONNECT => Command::Connect,
                    socks5::CMD_BIND => Command::Bind,
                    socks5::CMD_UDP_ASSOCIATE => Command::UdpAssociate,
                    other => return Err(Error::UnknownCommand(other)),
                };
                self.request(Request {
                    version: Version::Socks5,
                    command,
                    address: req.address.normalized(),
                    user,
                    user_id: None,
                });
                Ok(Parse::Complete { msg: (), consumed })
            }
            other => {
                // wants_input() keeps every other state out of here.
                self.state = other;
                Ok(Parse::Complete {
                    msg: (),
                    consumed: 0,
                })
            }
        }
    }

    fn on_greeting(&mut self, buf: &[u8]) -> Result<Parse<()>, Error> {
        let (greeting, consumed) = match socks5::Greeting::parse(buf)? {
            Parse::Incomplete => return Ok(Parse::Incomplete),
            Parse::Complete { msg, consumed } => (msg, consumed),
        };
        let wanted = if self.config.auth_required {
            socks5::METHOD_USER_PASS
        } else {
            socks5::METHOD_NO_AUTH
        };
        if !greeting.methods.contains(&wanted) {
            return Err(Error::NoAcceptableMethod);
        }
        socks5::MethodSelection { method: wanted }.emit(&mut self.output);
        self.state = if self.config.auth_required {
            State::AwaitCredentials
        } else {
            State::AwaitRequest { user: None }
        };
        Ok(Parse::Complete { msg: (), consumed })
    }

    fn on_socks4(&mut self, buf: &[u8]) -> Result<Parse<()>, Error> {
        // Until the request is complete, stay where a SOCKS4 request is parsed from.
        self.state = State::AwaitGreeting;
        let (req, consumed) = match socks4::Request::parse(buf) {
            Ok(Parse::Incomplete) => return Ok(Parse::Incomplete),
            Ok(Parse::Complete { msg, consumed }) => (msg, consumed),
            Err(e) => return Err(self.socks4_error(e)),
        };
        let command = match req.command {
            socks4::CMD_CONNECT => Command::Connect,
            socks4::CMD_BIND => Command::Bind,
            other => return Err(self.socks4_error(Error::UnknownCommand(other))),
        };
        if self.config.auth_required {
            return Err(self.socks4_error(Error::Socks4NeedsAuth));
        }
        self.request(Request {
            version: Version::Socks4,
            command,
            address: req.address.normalized(),
            user: None,
            user_id: Some(req.user_id),
        });
        Ok(Parse::Complete { msg: (), consumed })
    }

    /// Errors of a SOCKS4 request are answered in SOCKS4: remember the version.
    fn socks4_error(&mut self, e: Error) -> Error {
        self.state = State::AwaitVerdict {
            version: Version::Socks4,
            command: Command::Connect,
        };
        e
    }

    fn request(&mut self, req: Request) {
        self.state = State::AwaitVerdict {
            version: req.version,
            command: req.command,
        };
        self.event = Some(Event::Request(req));
    }

    /// Records a fatal error and queues its reply, in the version the client speaks.
    fn fail(&mut self, e: Error) {
        let version = match self.state {
            State::AwaitVerdict { version, .. } | State::AwaitBindPeer { version } => version,
            _ => Version::Socks5,
        };
        match e.reply() {
            ErrorReply::None => {}
            ErrorReply::NoAcceptableMethod => socks5::MethodSelection {
                method: socks5::METHOD_NONE_ACCEPTABLE,
            }
            .emit(&mut self.output),
            ErrorReply::AuthFailure => auth::Status {
                status: auth::STATUS_FAILURE,
            }
            .emit(&mut self.output),
            ErrorReply::Request(code) => self.emit_failure(version, code),
        }
        self.event = None;
        self.state = State::Failed(e);
    }

    fn emit_reply(&mut self, version: Version, code: ReplyCode, bound: SocketAddr) {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; clients expect ATYP 1.
        let bound = match bound {
            SocketAddr::V6(sa) => match sa.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), sa.port()),
                None => bound,
            },
            v4 => v4,
        };
        match version {
            Version::Socks4 => socks4::Reply::new(code, Some(bound)).emit(&mut self.output),
            Version::Socks5 => socks5::Reply {
                code,
                bound: Address::Ip(bound),
            }
            .emit(&mut self.output),
        }
    }

    fn emit_failure(&mut self, version: Version, code: ReplyCode) {
        match version {
            Version::Socks4 => socks4::Reply::new(code, None).emit(&mut self.output),
            Version::Socks5 => socks5::Reply::failure(code).emit(&mut self.output),
        }
    }

    /// A decision that does not fit the state: a driver bug. Debug builds stop here;
    /// release builds keep the state, so the driver's own timeout ends the session.
    fn misuse(&mut self, state: State) {
        debug_assert!(false, "handshake decision in state {state:?}");
        self.state = state;
    }
}
