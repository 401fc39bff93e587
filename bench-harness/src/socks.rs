//! The client side of a SOCKS5 handshake, sans-IO, built on ringsocks' own `proto`
//! encoders and parsers, plus a blocking driver for control connections.
//!
//! A [`Script`] holds the encoded greeting, credentials and request once per run; each
//! connection then runs a [`ClientHandshake`], which owns a fixed buffer and allocates
//! nothing. The client waits for each answer before sending the next message, as common
//! clients (curl, browsers) do, so a handshake costs three round trips, four with
//! username/password.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;

use ringsocks::proto::auth::{Credentials, Status};
use ringsocks::proto::socks5::{
    Greeting, MethodSelection, Reply, Request, CMD_CONNECT, CMD_UDP_ASSOCIATE,
    METHOD_NONE_ACCEPTABLE, METHOD_NO_AUTH, METHOD_USER_PASS,
};
use ringsocks::proto::{Address, Parse, ReplyCode};

use crate::error::SocksError;

/// Username and password for RFC 1929.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub user: String,
    pub pass: String,
}

/// The encoded messages of one kind of handshake, shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Script {
    greeting: Vec<u8>,
    credentials: Option<Vec<u8>>,
    request: Vec<u8>,
    command: u8,
    target: SocketAddr,
}

impl Script {
    /// CONNECT to `target`.
    pub fn connect(auth: Option<&Auth>, target: SocketAddr) -> Script {
        Script::new(auth, CMD_CONNECT, target)
    }

    /// UDP ASSOCIATE announcing `client` as the address datagrams will come from.
    pub fn udp_associate(auth: Option<&Auth>, client: SocketAddr) -> Script {
        Script::new(auth, CMD_UDP_ASSOCIATE, client)
    }

    fn new(auth: Option<&Auth>, command: u8, target: SocketAddr) -> Script {
        // Offer exactly one method: with credentials the server must authenticate, so a
        // server that would silently skip authentication cannot skew the comparison.
        let method = if auth.is_some() {
            METHOD_USER_PASS
        } else {
            METHOD_NO_AUTH
        };
        let mut greeting = Vec::new();
        Greeting {
            methods: vec![method],
        }
        .emit(&mut greeting);
        let credentials = auth.map(|a| {
            let mut out = Vec::new();
            Credentials {
                username: a.user.as_bytes().to_vec(),
                password: a.pass.as_bytes().to_vec(),
            }
            .emit(&mut out);
            out
        });
        let mut request = Vec::new();
        Request {
            command,
            address: Address::Ip(target),
        }
        .emit(&mut request);
        Script {
            greeting,
            credentials,
            request,
            command,
            target,
        }
    }

    fn command_name(&self) -> &'static str {
        match self.command {
            CMD_CONNECT => "CONNECT",
            CMD_UDP_ASSOCIATE => "UDP ASSOCIATE",
            _ => "request",
        }
    }

    fn offered(&self) -> &'static str {
        if self.credentials.is_some() {
            "username/password (0x02)"
        } else {
            "no authentication (0x00)"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    SendGreeting,
    AwaitMethod,
    SendCredentials,
    AwaitStatus,
    SendRequest,
    AwaitReply,
    Done,
}

/// What a finished handshake yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// BND.ADDR/BND.PORT of the reply: for UDP ASSOCIATE, where to send datagrams.
    pub bound: Address,
}

/// Room for the longest reply (a domain bound address, 262 bytes) plus early relay data.
const BUF_LEN: usize = 512;

/// One client handshake. Driver loop: write [`ClientHandshake::output`] and report it
/// with [`ClientHandshake::sent`] until it is empty; then read into
/// [`ClientHandshake::input_space`] and report with [`ClientHandshake::received`]; repeat
/// until `received` returns the [`Established`] result. Bytes the server relayed right
/// after its reply are kept and returned by [`ClientHandshake::early_data`].
#[derive(Debug)]
pub struct ClientHandshake {
    step: Step,
    sent: usize,
    buf: [u8; BUF_LEN],
    filled: usize,
    early: Range<usize>,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        ClientHandshake::new()
    }
}

impl ClientHandshake {
    pub fn new() -> ClientHandshake {
        ClientHandshake {
            step: Step::SendGreeting,
            sent: 0,
            buf: [0; BUF_LEN],
            filled: 0,
            early: 0..0,
        }
    }

    /// Bytes still to write for the current step; empty while awaiting an answer.
    pub fn output<'s>(&self, script: &'s Script) -> &'s [u8] {
        let msg: &[u8] = match self.step {
            Step::SendGreeting => &script.greeting,
            Step::SendCredentials => script.credentials.as_deref().unwrap_or(&[]),
            Step::SendRequest => &script.request,
            _ => return &[],
        };
        &msg[self.sent..]
    }

    /// Records that `n` bytes of [`ClientHandshake::output`] were written.
    pub fn sent(&mut self, n: usize, script: &Script) {
        self.sent += n;
        if !self.output(script).is_empty() {
            return;
        }
        self.sent = 0;
        self.step = match self.step {
            Step::SendGreeting => Step::AwaitMethod,
            Step::SendCredentials => Step::AwaitStatus,
            Step::SendRequest => Step::AwaitReply,
            other => other,
        };
    }

    pub fn wants_input(&self) -> bool {
        matches!(
            self.step,
            Step::AwaitMethod | Step::AwaitStatus | Step::AwaitReply
        )
    }

    pub fn input_space(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Early relay data that followed the final reply.
    pub fn early_data(&self) -> &[u8] {
        &self.buf[self.early.clone()]
    }

    fn step_name(&self) -> &'static str {
        match self.step {
            Step::AwaitMethod | Step::SendGreeting => "method selection",
            Step::AwaitStatus | Step::SendCredentials => "authentication status",
            _ => "reply",
        }
    }

    /// Takes `n` freshly read bytes (0 = the server closed the connection).
    pub fn received(
        &mut self,
        n: usize,
        script: &Script,
    ) -> Result<Option<Established>, SocksError> {
        if n == 0 {
            return Err(SocksError::Closed {
                step: self.step_name(),
            });
        }
        self.filled += n;
        loop {
            let input = &self.buf[..self.filled];
            let consumed = match self.step {
                Step::AwaitMethod => {
                    match MethodSelection::parse(input).map_err(|e| self.malformed(e))? {
                        Parse::Incomplete => return self.incomplete(),
                        Parse::Complete { msg, consumed } => {
                            self.step = match msg.method {
                                METHOD_NONE_ACCEPTABLE => {
                                    return Err(SocksError::NoAcceptableMethod {
                                        offered: script.offered(),
                                    })
                                }
                                METHOD_NO_AUTH if script.credentials.is_none() => Step::SendRequest,
                                METHOD_USER_PASS if script.credentials.is_some() => {
                                    Step::SendCredentials
                                }
                                other => return Err(SocksError::UnofferedMethod(other)),
                            };
                            consumed
                        }
                    }
                }
                Step::AwaitStatus => match Status::parse(input).map_err(|e| self.malformed(e))? {
                    Parse::Incomplete => return self.incomplete(),
                    Parse::Complete { msg, consumed } => {
                        if !msg.is_success() {
                            return Err(SocksError::AuthFailed(msg.status));
                        }
                        self.step = Step::SendRequest;
                        consumed
                    }
                },
                Step::AwaitReply => match Reply::parse(input).map_err(|e| self.malformed(e))? {
                    Parse::Incomplete => return self.incomplete(),
                    Parse::Complete { msg, consumed } => {
                        if msg.code != ReplyCode::Succeeded {
                            return Err(SocksError::Refused {
                                command: script.command_name(),
                                target: script.target,
                                code: msg.code,
                            });
                        }
                        self.step = Step::Done;
                        self.early = consumed..self.filled;
                        return Ok(Some(Established { bound: msg.bound }));
                    }
                },
                _ => {
                    return Err(SocksError::Malformed {
                        step: self.step_name(),
                        detail: format!("{n} unexpected bytes before the request was sent"),
                    })
                }
            };
            // A server may answer before we asked (pipelined answers): keep the rest.
            self.buf.copy_within(consumed..self.filled, 0);
            self.filled -= consumed;
            if self.filled > 0 && !self.wants_input() && !self.output(script).is_empty() {
                return Err(SocksError::Malformed {
                    step: self.step_name(),
                    detail: "bytes arrived before the client's next message".into(),
                });
            }
            if self.filled == 0 {
                return Ok(None);
            }
        }
    }

    /// More bytes are needed; with the buffer full they can never complete a message.
    fn incomplete(&self) -> Result<Option<Established>, SocksError> {
        if self.filled == BUF_LEN {
            return Err(SocksError::Malformed {
                step: self.step_name(),
                detail: format!("{BUF_LEN} bytes without a complete message"),
            });
        }
        Ok(None)
    }

    fn malformed(&self, e: ringsocks::proto::Error) -> SocksError {
        let detail = match e {
            ringsocks::proto::Error::UnknownVersion(v)
            | ringsocks::proto::Error::BadRequestVersion(v)
            | ringsocks::proto::Error::BadAuthVersion(v) => format!("version byte {v:#04x}"),
            other => other.to_string(),
        };
        SocksError::Malformed {
            step: self.step_name(),
            detail,
        }
    }
}

/// Why a connection could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// The server said no: fatal for the run.
    Socks(SocksError),
    /// Connect, read or write failed: counted as a transport failure.
    Io(io::Error),
}

impl From<io::Error> for SetupError {
    fn from(e: io::Error) -> Self {
        SetupError::Io(e)
    }
}

impl From<SocksError> for SetupError {
    fn from(e: SocksError) -> Self {
        SetupError::Socks(e)
    }
}

/// Runs a whole handshake on a blocking stream (control connections, tests).
pub fn handshake_blocking(
    stream: &mut TcpStream,
    script: &Script,
) -> Result<Established, SetupError> {
    let mut hs = ClientHandshake::new();
    // Bounded: each pass either writes or reads at least one byte of a bounded exchange,
    // or fails.
    loop {
        let out = hs.output(script);
        if !out.is_empty() {
            stream.write_all(out)?;
            let n = out.len();
            hs.sent(n, script);
            continue;
        }
        let n = stream.read(hs.input_space())?;
        if let Some(done) = hs.received(n, script)? {
            if !hs.early_data().is_empty() {
                return Err(SetupError::Socks(SocksError::Malformed {
                    step: "reply",
                    detail: "data followed the reply on a control connection".into(),
                }));
            }
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn drive(script: &Script, answers: &[u8]) -> Result<Option<Established>, SocksError> {
        let mut hs = ClientHandshake::new();
        let mut fed = 0;
        let mut last = Ok(None);
        // Bounded by the answer length: one byte per turn.
        while fed < answers.len() {
            let out = hs.output(script);
            if !out.is_empty() {
                let n = out.len();
                hs.sent(n, script);
                continue;
            }
            hs.input_space()[0] = answers[fed];
            fed += 1;
            last = hs.received(1, script);
            if last.is_err() || matches!(last, Ok(Some(_))) {
                break;
            }
        }
        last
    }

    #[test]
    fn script_encodes_greeting_credentials_and_request() {
        let auth = Auth {
            user: "u".into(),
            pass: "pw".into(),
        };
        let s = Script::connect(Some(&auth), target());
        assert_eq!(s.greeting, [5, 1, 2]);
        assert_eq!(
            s.credentials.as_deref(),
            Some(&[1, 1, b'u', 2, b'p', b'w'][..])
        );
        assert_eq!(s.request, [5, 1, 0, 1, 127, 0, 0, 1, 0x0f, 0xa0]);
        let s = Script::udp_associate(None, target());
        assert_eq!(s.greeting, [5, 1, 0]);
        assert_eq!(s.request[1], CMD_UDP_ASSOCIATE);
    }

    #[test]
    fn completes_byte_by_byte_and_keeps_early_data() {
        let s = Script::connect(None, target());
        let mut hs = ClientHandshake::new();
        let n = hs.output(&s).len();
        hs.sent(n, &s);
        hs.input_space()[..2].copy_from_slice(&[5, 0]);
        assert_eq!(hs.received(2, &s), Ok(None));
        let n = hs.output(&s).len();
        hs.sent(n, &s);
        let reply = [5, 0, 0, 1, 10, 0, 0, 1, 0, 80, b'h', b'i'];
        hs.input_space()[..reply.len()].copy_from_slice(&reply);
        let done = hs.received(reply.len(), &s).unwrap().unwrap();
        assert_eq!(done.bound, Address::Ip("10.0.0.1:80".parse().unwrap()));
        assert_eq!(hs.early_data(), b"hi");
    }

    #[test]
    fn reports_refused_reply_with_code() {
        let s = Script::connect(None, target());
        let err = drive(&s, &[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            SocksError::Refused {
                command: "CONNECT",
                target: target(),
                code: ReplyCode::ConnectionRefused
            }
        );
        assert!(err.to_string().contains("REP 0x05 (connection refused)"));
    }

    #[test]
    fn reports_method_rejection_and_auth_failure() {
        let s = Script::connect(None, target());
        assert!(matches!(
            drive(&s, &[5, 0xff]),
            Err(SocksError::NoAcceptableMethod { .. })
        ));
        assert_eq!(drive(&s, &[5, 2]), Err(SocksError::UnofferedMethod(2)));
        let auth = Auth {
            user: "u".into(),
            pass: "p".into(),
        };
        let s = Script::connect(Some(&auth), target());
        assert_eq!(drive(&s, &[5, 2, 1, 1]), Err(SocksError::AuthFailed(1)));
    }

    #[test]
    fn reports_garbage_and_early_close() {
        let s = Script::connect(None, target());
        assert!(matches!(
            drive(&s, b"HTTP/1.1 400"),
            Err(SocksError::Malformed { .. })
        ));
        let mut hs = ClientHandshake::new();
        let n = hs.output(&s).len();
        hs.sent(n, &s);
        assert_eq!(
            hs.received(0, &s),
            Err(SocksError::Closed {
                step: "method selection"
            })
        );
    }
}
