//! `user_data` of every submission: which operation, on which slot, of which generation.
//!
//! ```text
//!  63        56 55        48 47               32 31                              0
//! +------------+------------+-------------------+---------------------------------+
//! |     op     |  reserved  |    generation     |              slot               |
//! +------------+------------+-------------------+---------------------------------+
//! ```
//!
//! A slot is reused as soon as its connection is freed, while late completions of the old
//! connection can still arrive; the generation tells them apart. Listener operations put
//! the listener index in `slot`; wake-ups use [`Op::Wake`] with no slot.

/// What a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Multishot accept on listener `slot`.
    Accept = 1,
    /// A cross-thread wake-up (MSG_RING).
    Wake,
    /// SO_PEERNAME of the accepted client.
    PeerName,
    /// Receive from the client / the target.
    RecvClient,
    RecvTarget,
    /// Send to the client / the target.
    SendClient,
    SendTarget,
    /// Outbound connect and its linked timeout.
    Connect,
    ConnectTimeout,
    /// SHUT_WR toward the client / the target.
    ShutClient,
    ShutTarget,
    /// Cancellation requests (their own completions).
    Cancel,
    /// Completions nobody waits for (close of a freed connection).
    Ignore,
    /// BIND: accept of the one incoming connection.
    BindAccept,
    /// UDP ASSOCIATE: receive on / send from the relay socket.
    UdpRecv,
    UdpSend,
}

const OPS: [Op; 17] = [
    Op::Accept,
    Op::Accept,
    Op::Wake,
    Op::PeerName,
    Op::RecvClient,
    Op::RecvTarget,
    Op::SendClient,
    Op::SendTarget,
    Op::Connect,
    Op::ConnectTimeout,
    Op::ShutClient,
    Op::ShutTarget,
    Op::Cancel,
    Op::Ignore,
    Op::BindAccept,
    Op::UdpRecv,
    Op::UdpSend,
];

const SLOT_BITS: u32 = 32;
const GEN_SHIFT: u32 = 32;
const OP_SHIFT: u32 = 56;

/// A packed `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    pub fn new(op: Op, slot: u32, generation: u16) -> Token {
        Token(((op as u64) << OP_SHIFT) | ((generation as u64) << GEN_SHIFT) | slot as u64)
    }

    /// The operation, or `None` for a value no submission of ours carries.
    pub fn op(self) -> Option<Op> {
        let v = (self.0 >> OP_SHIFT) as usize;
        if v == 0 {
            return None;
        }
        OPS.get(v).copied()
    }

    pub fn slot(self) -> u32 {
        (self.0 & ((1u64 << SLOT_BITS) - 1)) as u32
    }

    pub fn generation(self) -> u16 {
        (self.0 >> GEN_SHIFT) as u16
    }

    /// The same slot and generation with another operation.
    pub fn with_op(self, op: Op) -> Token {
        Token::new(op, self.slot(), self.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_every_op() {
        for &op in &OPS[1..] {
            for &(slot, generation) in &[(0, 0), (1, 1), (u32::MAX, u16::MAX), (12345, 777)] {
                let t = Token::new(op, slot, generation);
                assert_eq!(t.op(), Some(op));
                assert_eq!(t.slot(), slot);
                assert_eq!(t.generation(), generation);
            }
        }
    }

    #[test]
    fn foreign_values_have_no_op() {
        assert_eq!(Token(0).op(), None);
        assert_eq!(Token(0xff << OP_SHIFT).op(), None);
    }

    #[test]
    fn op_table_matches_discriminants() {
        for (i, op) in OPS.iter().enumerate().skip(1) {
            assert_eq!(*op as usize, i);
        }
    }
}
