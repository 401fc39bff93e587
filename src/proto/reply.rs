//! SOCKS5 reply codes (RFC 1928 §6) and how outbound failures map to them.

use std::io;

/// REP of a SOCKS5 reply. SOCKS4 has only "granted" (90) and "rejected" (91); see
/// [`ReplyCode::socks4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    Succeeded,
    GeneralFailure,
    NotAllowed,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    /// What clients read as "timed out".
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
    Unknown(u8),
}

/// SOCKS4 CD: request granted.
pub const SOCKS4_GRANTED: u8 = 90;
/// SOCKS4 CD: request rejected or failed.
pub const SOCKS4_REJECTED: u8 = 91;

impl ReplyCode {
    pub fn to_u8(self) -> u8 {
        match self {
            ReplyCode::Succeeded => 0x00,
            ReplyCode::GeneralFailure => 0x01,
            ReplyCode::NotAllowed => 0x02,
            ReplyCode::NetworkUnreachable => 0x03,
            ReplyCode::HostUnreachable => 0x04,
            ReplyCode::ConnectionRefused => 0x05,
            ReplyCode::TtlExpired => 0x06,
            ReplyCode::CommandNotSupported => 0x07,
            ReplyCode::AddressTypeNotSupported => 0x08,
            ReplyCode::Unknown(v) => v,
        }
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            0x00 => ReplyCode::Succeeded,
            0x01 => ReplyCode::GeneralFailure,
            0x02 => ReplyCode::NotAllowed,
            0x03 => ReplyCode::NetworkUnreachable,
            0x04 => ReplyCode::HostUnreachable,
            0x05 => ReplyCode::ConnectionRefused,
            0x06 => ReplyCode::TtlExpired,
            0x07 => ReplyCode::CommandNotSupported,
            0x08 => ReplyCode::AddressTypeNotSupported,
            other => ReplyCode::Unknown(other),
        }
    }

    /// The SOCKS4 CD byte for this outcome.
    pub fn socks4(self) -> u8 {
        if self == ReplyCode::Succeeded {
            SOCKS4_GRANTED
        } else {
            SOCKS4_REJECTED
        }
    }

    /// The reply for a failed outbound connect (or listen, or bind).
    pub fn from_io_error(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ReplyCode::ConnectionRefused,
            io::ErrorKind::NetworkUnreachable => ReplyCode::NetworkUnreachable,
            io::ErrorKind::HostUnreachable => ReplyCode::HostUnreachable,
            io::ErrorKind::TimedOut => ReplyCode::TtlExpired,
            io::ErrorKind::PermissionDenied => ReplyCode::NotAllowed,
            _ => ReplyCode::GeneralFailure,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ReplyCode::Succeeded => "succeeded",
            ReplyCode::GeneralFailure => "general_failure",
            ReplyCode::NotAllowed => "not_allowed",
            ReplyCode::NetworkUnreachable => "network_unreachable",
            ReplyCode::HostUnreachable => "host_unreachable",
            ReplyCode::ConnectionRefused => "connection_refused",
            ReplyCode::TtlExpired => "ttl_expired",
            ReplyCode::CommandNotSupported => "command_not_supported",
            ReplyCode::AddressTypeNotSupported => "address_type_not_supported",
            ReplyCode::Unknown(_) => "unknown",
        }
    }
}
