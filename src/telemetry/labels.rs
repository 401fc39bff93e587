//! The label values of the metrics and the access log: small closed sets, each an enum
//! whose discriminant indexes its counter array.

use crate::proto::{Command, ReplyCode};

macro_rules! labels {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)+];
            pub const COUNT: usize = Self::ALL.len();

            /// The label value (also the access log's value).
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }

            #[inline]
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }
    };
}

labels! {
    /// Which way bytes flow: up is client to target.
    Direction {
        Up => "up",
        Down => "down",
    }
}

labels! {
    /// Why a UDP datagram was not relayed.
    UdpDrop {
        /// Arrived on the relay socket from an address that is not the client's.
        NotFromClient => "not_from_client",
        /// FRAG ≠ 0 (no reassembly).
        Fragment => "fragment",
        /// The SOCKS UDP header does not parse.
        Malformed => "malformed",
        /// Larger than a datagram buffer.
        TooLarge => "too_large",
        /// Nowhere to send it: the name did not resolve, no outbound socket, or a reply
        /// before the client's first datagram.
        NoRoute => "no_route",
        /// A rule denies the destination.
        Denied => "denied",
        /// Too many datagrams held (waiting for a name, or in flight).
        OverLimit => "over_limit",
        /// The kernel refused the send (no route to the destination, say).
        SendFailed => "send_failed",
        /// Over the user's bandwidth limit in its direction.
        Bandwidth => "bandwidth",
    }
}

labels! {
    /// A limit that refused or paused something.
    Limit {
        /// Concurrent sessions, all clients.
        Sessions => "sessions",
        /// Concurrent sessions of one user.
        UserSessions => "user_sessions",
        /// Concurrent sessions from one client IP.
        ClientSessions => "client_sessions",
        /// New sessions per second from one client IP.
        ClientRate => "client_rate",
        /// A user's bandwidth: the relay paused.
        UserBandwidth => "user_bandwidth",
    }
}

labels! {
    /// A shard's provided-buffer pool.
    Pool {
        Relay => "relay",
        Udp => "udp",
    }
}

labels! {
    /// Why a session ended.
    CloseReason {
        /// Both directions finished (or, for UDP ASSOCIATE and BIND, the client closed).
        Completed => "completed",
        /// The client closed before its request was complete.
        ClientClosed => "client_closed",
        /// A protocol violation, or failed authentication.
        HandshakeError => "handshake_error",
        HandshakeTimeout => "handshake_timeout",
        /// A failure reply was sent (rule, limit, resolution, connect).
        Rejected => "rejected",
        IdleTimeout => "idle_timeout",
        /// Reset or I/O error on the client side.
        ClientError => "client_error",
        /// Reset or I/O error on the target side.
        TargetError => "target_error",
        /// The server stopped (or the drain timeout passed) while the session was open.
        Shutdown => "shutdown",
    }
}

/// Where a session stands for the active-sessions gauge: 0 is still in the handshake, then
/// one per command.
pub(crate) const STATES: [&str; 4] = ["handshake", "connect", "bind", "udp"];

#[inline]
pub(crate) fn state_index(command: Option<Command>) -> usize {
    match command {
        None => 0,
        Some(Command::Connect) => 1,
        Some(Command::Bind) => 2,
        Some(Command::UdpAssociate) => 3,
    }
}

/// Command label of a finished session: "none" when no request was read.
pub(crate) const COMMANDS: [&str; 4] = ["none", "connect", "bind", "udp"];

/// Reply label values: the RFC 1928 codes by their names, any other code, and "none" for
/// a session that got no reply.
pub(crate) const REPLIES: [&str; 11] = [
    "succeeded",
    "general_failure",
    "not_allowed",
    "network_unreachable",
    "host_unreachable",
    "connection_refused",
    "ttl_expired",
    "command_not_supported",
    "address_type_not_supported",
    "unknown",
    "none",
];

#[inline]
pub(crate) fn reply_index(reply: Option<ReplyCode>) -> usize {
    match reply {
        None => 10,
        Some(ReplyCode::Unknown(_)) => 9,
        Some(code) => code.to_u8() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_labels_match_the_proto_names() {
        for v in 0..=8u8 {
            let code = ReplyCode::from_u8(v);
            assert_eq!(REPLIES[reply_index(Some(code))], code.name());
        }
        let odd = ReplyCode::Unknown(0x42);
        assert_eq!(REPLIES[reply_index(Some(odd))], odd.name());
        assert_eq!(REPLIES[reply_index(None)], "none");
    }

    #[test]
    fn command_labels_match_the_proto_names() {
        for c in [Command::Connect, Command::Bind, Command::UdpAssociate] {
            assert_eq!(STATES[state_index(Some(c))], c.name());
            assert_eq!(COMMANDS[state_index(Some(c))], c.name());
        }
    }

    #[test]
    fn indexes_are_dense() {
        for (i, d) in UdpDrop::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
