//! SOCKS4, SOCKS4a, SOCKS5 (RFC 1928), username/password (RFC 1929) and the SOCKS5 UDP
//! datagram header: parsing, encoding and the server handshake state machine.
//!
//! This layer is sans-IO: bytes go in, decisions and bytes come out. It never touches a
//! socket, a clock or a thread, so every protocol rule is testable without a network.
//!
//! Guarantees for untrusted input: no parser panics on any byte sequence; a parser never
//! reports consuming more than it was given; every variable-length field is capped, so
//! nothing is buffered without bound; every error maps to exactly one wire reply
//! ([`Error::reply`]).
//!
//! Parsers return [`Parse`]: `Incomplete` (give me more bytes) is not an error. Whatever
//! follows a complete message belongs to the caller: after the final request it is
//! pipelined client data that the relay must forward.
#![forbid(unsafe_code)]

mod addr;
pub mod association;
pub mod auth;
pub mod bind;
mod error;
mod handshake;
pub mod proxy_protocol;
mod reply;
pub mod socks4;
pub mod socks5;
pub mod udp;

pub use addr::{Address, MAX_DOMAIN_LEN};
pub use error::{Error, ErrorReply, Field};
pub use handshake::{Command, Event, Handshake, HandshakeConfig, Request, Version};
pub use reply::ReplyCode;

/// The outcome of parsing a message from the front of a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// The buffer holds a valid prefix of a message; more bytes are needed.
    Incomplete,
    /// A whole message, and how many bytes of the buffer it took.
    Complete { msg: T, consumed: usize },
}

impl<T> Parse<T> {
    /// Applies `f` to a complete message, keeping the consumed count.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parse<U> {
        match self {
            Parse::Incomplete => Parse::Incomplete,
            Parse::Complete { msg, consumed } => Parse::Complete {
                msg: f(msg),
                consumed,
            },
        }
    }

    /// Counts `n` more consumed bytes (a header parsed before the inner message).
    pub(crate) fn add(self, n: usize) -> Parse<T> {
        match self {
            Parse::Incomplete => Parse::Incomplete,
            Parse::Complete { msg, consumed } => Parse::Complete {
                msg,
                consumed: consumed + n,
            },
        }
    }
}

/// Returns `Incomplete` from the enclosing parser when `buf` is shorter than `n`.
macro_rules! need {
    ($buf:expr, $n:expr) => {
        if $buf.len() < $n {
            return Ok($crate::proto::Parse::Incomplete);
        }
    };
}
pub(crate) use need;

#[cfg(test)]
mod tests;
