//! Bounded waits: conditions polled until a deadline, and reads that give up.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The longest any single read, write, accept or connect may block in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`wait_until`] looks at its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds or `within` has passed; returns whether it held.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether a read error means the peer closed the connection (as opposed to a timeout).
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads until the peer closes (EOF or reset) and returns what arrived before; fails if
/// the connection is still open after `within`.
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("still open after {within:?} ({} bytes read)", got.len()),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if is_closed_error(&e) => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Asserts that the peer closes the connection within `within` without sending anything
/// more (what must follow a failure reply).
#[track_caller]
pub fn expect_closed(stream: &mut TcpStream, within: Duration) {
    match read_until_closed(stream, within) {
        Ok(extra) => assert!(
            extra.is_empty(),
            "expected a close, got {} more bytes: {:02x?}",
            extra.len(),
            &extra[..extra.len().min(32)]
        ),
        Err(e) => panic!("expected the server to close the connection: {e}"),
    }
}

/// Reads exactly `n` bytes, each read bounded by the stream's own timeout.
pub fn read_exact_vec(stream: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Whether the peer still holds the connection open (no EOF, no reset, nothing to read).
pub fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8];
    let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}
