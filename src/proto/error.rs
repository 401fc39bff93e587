//! Protocol errors, typed by what the peer did wrong, and the one place that maps each to
//! the reply a client gets.

use std::fmt;

use super::ReplyCode;

/// A variable-length field that has a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// SOCKS4 USERID (NUL-terminated).
    Socks4UserId,
    /// SOCKS4a host name (NUL-terminated).
    Socks4Host,
    /// A whole handshake message.
    Message,
}

/// Why a handshake cannot go on. Every variant is fatal: the handshake sends the reply
/// [`Error::reply`] names (if any), then the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The first byte is neither 4 nor 5: not a SOCKS client.
    UnknownVersion(u8),
    /// A SOCKS5 request whose VER is not 5.
    BadRequestVersion(u8),
    /// A SOCKS5 greeting with NMETHODS = 0.
    NoMethodsOffered,
    /// None of the offered methods is acceptable.
    NoAcceptableMethod,
    /// An RFC 1929 sub-negotiation whose VER is not 1.
    BadAuthVersion(u8),
    /// Username/password refused.
    AuthFailed,
    /// SOCKS4 carries no password, and this server requires one.
    Socks4NeedsAuth,
    /// CMD is not CONNECT, BIND or UDP ASSOCIATE (or not CONNECT/BIND in SOCKS4).
    UnknownCommand(u8),
    /// ATYP is not 1, 3 or 4.
    UnknownAddressType(u8),
    /// A domain address of length 0.
    EmptyDomain,
    /// A domain name with bytes that are not printable ASCII.
    InvalidDomain,
    /// A field ran past its cap.
    TooLong(Field),
    /// The driver refused the request (policy, resolution or outbound failure).
    Rejected(ReplyCode),
}

/// What a client receives when its handshake fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReply {
    /// Close without sending anything (the peer does not speak SOCKS).
    None,
    /// SOCKS5 method selection with METHOD = 0xFF.
    NoAcceptableMethod,
    /// RFC 1929 status byte other than 0.
    AuthFailure,
    /// A SOCKS5 reply (or, for SOCKS4, "request rejected") with this code.
    Request(ReplyCode),
}

impl Error {
    /// The reply for this error, in one place.
    pub fn reply(&self) -> ErrorReply {
        match self {
            Error::UnknownVersion(_) => ErrorReply::None,
            Error::NoMethodsOffered | Error::NoAcceptableMethod => ErrorReply::NoAcceptableMethod,
            Error::BadAuthVersion(_) | Error::AuthFailed => ErrorReply::AuthFailure,
            Error::Socks4NeedsAuth => ErrorReply::Request(ReplyCode::NotAllowed),
            Error::BadRequestVersion(_) => ErrorReply::Request(ReplyCode::GeneralFailure),
            Error::UnknownCommand(_) => ErrorReply::Request(ReplyCode::CommandNotSupported),
            Error::UnknownAddressType(_) => ErrorReply::Request(ReplyCode::AddressTypeNotSupported),
            Error::EmptyDomain | Error::InvalidDomain => {
                ErrorReply::Request(ReplyCode::HostUnreachable)
            }
            Error::TooLong(_) => ErrorReply::Request(ReplyCode::GeneralFailure),
            Error::Rejected(code) => ErrorReply::Request(*code),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownVersion(v) => write!(f, "not a SOCKS client (first byte {v:#04x})"),
            Error::BadRequestVersion(v) => write!(f, "SOCKS5 request with version {v:#04x}"),
            Error::NoMethodsOffered => f.write_str("greeting offers no methods"),
            Error::NoAcceptableMethod => f.write_str("no acceptable authentication method"),
            Error::BadAuthVersion(v) => write!(f, "auth sub-negotiation version {v:#04x}"),
            Error::AuthFailed => f.write_str("authentication failed"),
            Error::Socks4NeedsAuth => f.write_str("SOCKS4 refused: authentication required"),
            Error::UnknownCommand(c) => write!(f, "unknown command {c:#04x}"),
            Error::UnknownAddressType(a) => write!(f, "unknown address type {a:#04x}"),
            Error::EmptyDomain => f.write_str("empty domain name"),
            Error::InvalidDomain => f.write_str("domain name with non-printable bytes"),
            Error::TooLong(Field::Socks4UserId) => f.write_str("SOCKS4 user id too long"),
            Error::TooLong(Field::Socks4Host) => f.write_str("SOCKS4a host name too long"),
            Error::TooLong(Field::Message) => f.write_str("handshake message too long"),
            Error::Rejected(code) => write!(f, "request rejected: {}", code.name()),
        }
    }
}

impl std::error::Error for Error {}
