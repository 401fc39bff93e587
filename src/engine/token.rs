//! `user_data` of every submission: which operation, on which slot, of which generation.
//!
//! ```text
//!  63        56 55               40 39               24 23                        0
//! +------------+-------------------+-------------------+---------------------------+
//! |     op     |    generation     |        aux        |           slot            |
//! +------------+-------------------+-------------------+---------------------------+
//! ```
//!
//! A slot is reused as soon as its connection is freed, while late completions of the old
//! connection can still arrive; the generation tells them apart. `aux` carries what one
//! operation needs beyond its session (the buffer of a datagram send, which UDP socket a
//! receive is on). Listener operations put the listener index in `slot`; wake-ups use
//! [`Op::Wake`] with no slot.

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
    /// Outbound connect.
    Connect,
    /// SHUT_WR toward the client or the target.
    Shutdown,
    /// Cancellation requests (their own completions).
    Cancel,
    /// Completions nobody waits for (close of a freed connection).
    Ignore,
    /// BIND: accept of the one incoming connection.
    BindAccept,
    /// UDP ASSOCIATE: receive on one of the association's sockets (aux: which).
    UdpRecv,
    /// UDP ASSOCIATE: a datagram send (aux: its buffer).
    UdpSend,
    /// UDP ASSOCIATE: the control connection's descriptor installed as a regular one, to
    /// read its local address.
    InstallFd,
    /// The client's direct descriptor installed as a regular one, for splice(2).
    SpliceFd,
    /// Readiness of a spliced direction's source or sink (aux: which, see splice.rs).
    SpliceReady,
}

const OPS: [Op; 18] = [
    Op::Accept,
    Op::Accept,
    Op::Wake,
    Op::PeerName,
    Op::RecvClient,
    Op::RecvTarget,
    Op::SendClient,
    Op::SendTarget,
    Op::Connect,
    Op::Shutdown,
    Op::Cancel,
    Op::Ignore,
    Op::BindAccept,
    Op::UdpRecv,
    Op::UdpSend,
    Op::InstallFd,
    Op::SpliceFd,
    Op::SpliceReady,
];

const SLOT_BITS: u32 = 24;
/// Sessions per shard are capped below this.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
const AUX_SHIFT: u32 = 24;
const GEN_SHIFT: u32 = 40;
const OP_SHIFT: u32 = 56;

/// A packed `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    pub fn new(op: Op, slot: u32, generation: u16) -> Token {
        Token::with_aux(op, slot, generation, 0)
    }

    pub fn with_aux(op: Op, slot: u32, generation: u16, aux: u16) -> Token {
        debug_assert!((slot as usize) < MAX_SLOTS);
        Token(
            ((op as u64) << OP_SHIFT)
                | ((generation as u64) << GEN_SHIFT)
                | ((aux as u64) << AUX_SHIFT)
                | (slot as u64 & ((1 << SLOT_BITS) - 1)),
        )
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

    pub fn aux(self) -> u16 {
        (self.0 >> AUX_SHIFT) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_every_op() {
        for &op in &OPS[1..] {
            let max = MAX_SLOTS as u32 - 1;
            for &(slot, generation, aux) in &[
                (0, 0, 0),
                (1, 1, 1),
                (max, u16::MAX, u16::MAX),
                (12345, 777, 9),
            ] {
                let t = Token::with_aux(op, slot, generation, aux);
                assert_eq!(t.op(), Some(op));
                assert_eq!(t.slot(), slot);
                assert_eq!(t.generation(), generation);
                assert_eq!(t.aux(), aux);
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
