//! Byte-exact tests of every message and of the handshake state machine.
//!
//! Encoders write into a buffer pre-filled with [`FILL`], so a byte they skip or overwrite
//! shows. Parsers are checked at every prefix: one byte short of a message is incomplete.

mod addr;
mod association;
mod auth;
mod codes;
mod handshake_errors;
mod handshake_flow;
mod invariants;
mod props;
mod socks4;
mod socks5;
mod udp;
mod wire;

use std::fmt::Debug;

use super::{Error, Parse};

/// A byte no encoder writes where the tests look for it.
const FILL: u8 = 0xa5;

/// Runs `emit` on a buffer that already holds [`FILL`] bytes, checks they are untouched,
/// and returns exactly the bytes it appended.
fn emitted(emit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = vec![FILL; 3];
    emit(&mut out);
    assert_eq!(
        out[..3],
        [FILL; 3],
        "an encoder changed bytes before its own"
    );
    out.split_off(3)
}

/// Asserts that `parse` reads `bytes` as exactly one `expected` message, alone or with
/// more bytes behind it, and that every shorter prefix is incomplete.
fn assert_parses<T: Debug + PartialEq + Clone>(
    parse: fn(&[u8]) -> Result<Parse<T>, Error>,
    bytes: &[u8],
    expected: T,
) {
    let complete = Ok(Parse::Complete {
        msg: expected,
        consumed: bytes.len(),
    });
    assert_eq!(parse(bytes), complete);
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[FILL; 5]);
    assert_eq!(parse(&longer), complete, "with bytes after the message");
    assert_incomplete_prefixes(parse, bytes);
}

/// Asserts that `parse` fails with `err` exactly when the last byte of `bytes` arrives:
/// every shorter prefix is incomplete, and more bytes change nothing.
fn assert_fails_at<T: Debug + PartialEq>(
    parse: fn(&[u8]) -> Result<Parse<T>, Error>,
    bytes: &[u8],
    err: Error,
) {
    assert_eq!(parse(bytes), Err(err.clone()));
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[FILL; 5]);
    assert_eq!(parse(&longer), Err(err), "with bytes after the fault");
    assert_incomplete_prefixes(parse, bytes);
}

fn assert_incomplete_prefixes<T: Debug + PartialEq>(
    parse: fn(&[u8]) -> Result<Parse<T>, Error>,
    bytes: &[u8],
) {
    for i in 0..bytes.len() {
        assert_eq!(
            parse(&bytes[..i]),
            Ok(Parse::Incomplete),
            "prefix of {i} bytes"
        );
    }
}
