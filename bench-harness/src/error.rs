//! What can end a run: the SOCKS server said no (always fatal, never a number), the
//! transport failed too often, or the harness itself could not do its job.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use ringsocks::proto::ReplyCode;

/// A SOCKS server refused or misbehaved during a handshake. The harness never turns one
/// of these into a figure: a benchmark of a server that says no measures nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksError {
    /// METHOD 0xFF: none of the offered methods is acceptable.
    NoAcceptableMethod { offered: &'static str },
    /// The server chose a method the client never offered.
    UnofferedMethod(u8),
    /// RFC 1929 STATUS other than 0.
    AuthFailed(u8),
    /// A reply with REP other than 0.
    Refused {
        command: &'static str,
        target: SocketAddr,
        code: ReplyCode,
    },
    /// Bytes that are not the message this step expects.
    Malformed { step: &'static str, detail: String },
    /// The server closed the connection before the handshake finished.
    Closed { step: &'static str },
}

impl fmt::Display for SocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksError::NoAcceptableMethod { offered } => write!(
                f,
                "the SOCKS server accepted none of the offered methods (METHOD 0xff; offered {offered})"
            ),
            SocksError::UnofferedMethod(m) => {
                write!(f, "the SOCKS server chose method {m:#04x}, which was not offered")
            }
            SocksError::AuthFailed(status) => write!(
                f,
                "the SOCKS server rejected the username/password (RFC 1929 STATUS {status:#04x})"
            ),
            SocksError::Refused {
                command,
                target,
                code,
            } => {
                // UDP ASSOCIATE names the client's own address, not a destination.
                let joint = if *command == "UDP ASSOCIATE" { " for " } else { " " };
                write!(
                    f,
                    "the SOCKS server refused {command}{joint}{target}: REP {:#04x} ({})",
                    code.to_u8(),
                    code.name().replace('_', " ")
                )
            }
            SocksError::Malformed { step, detail } => {
                write!(f, "malformed SOCKS {step} from the server: {detail}")
            }
            SocksError::Closed { step } => {
                write!(f, "the SOCKS server closed the connection while the client awaited its {step}")
            }
        }
    }
}

impl std::error::Error for SocksError {}

/// Why a run produced no figures.
#[derive(Debug)]
pub enum Error {
    /// The server answered a handshake with an error or with bytes that are not SOCKS.
    Socks(SocksError),
    /// More sessions failed on the transport than `--max-errors` allows.
    Transport {
        failed: u64,
        allowed: u64,
        first: String,
    },
    /// An operation the harness needs (bind, connect during set-up, /proc) failed.
    Io { context: String, source: io::Error },
    /// Set-up did not finish in time.
    Timeout(String),
    /// A bad option value.
    Config(String),
    /// The echoed bytes differ from the bytes sent: the relay corrupts data.
    Corrupt(String),
    /// Another worker failed first; this one stopped without a result of its own.
    Aborted,
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Socks(e) => e.fmt(f),
            Error::Transport {
                failed,
                allowed,
                first,
            } => write!(
                f,
                "{failed} operations failed (allowed: {allowed}, see --max-errors); first failure: {first}"
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Timeout(what) => write!(f, "timed out: {what}"),
            Error::Config(what) => f.write_str(what),
            Error::Corrupt(what) => write!(f, "data corrupted in transit: {what}"),
            Error::Aborted => f.write_str("aborted because another worker failed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SocksError> for Error {
    fn from(e: SocksError) -> Self {
        Error::Socks(e)
    }
}
