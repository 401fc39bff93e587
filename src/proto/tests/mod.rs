//! Byte-exact tests of every message and of the handshake state machine.
