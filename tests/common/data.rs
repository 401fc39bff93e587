//! Test payloads: seeded pseudo-random byte streams of any length, and their SHA-256.
//!
//! A stream repeats one random block whose length (1 MiB + 13) is not a power of two, so
//! the block edges drift across the relay's buffer edges: a lost, repeated or reordered
//! buffer shows as a difference.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BLOCK_LEN: usize = (1 << 20) + 13;

/// The bytes one read or write moves at most.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest([u8; 32]);

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(bytes).into())
}

/// A seeded stream of pseudo-random bytes.
pub struct Pattern {
    block: Vec<u8>,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut block = vec![0u8; BLOCK_LEN];
        rng.fill(&mut block);
        Pattern { block }
    }

    /// The first `len` bytes of the stream.
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let take = (len - out.len()).min(self.block.len());
            out.extend_from_slice(&self.block[..take]);
        }
        out
    }

    /// The stream's bytes from `offset` on, at most `max` of them, without wrapping.
    fn slice_at(&self, offset: u64, max: usize) -> &[u8] {
        let at = (offset % BLOCK_LEN as u64) as usize;
        &self.block[at..(at + max).min(BLOCK_LEN)]
    }

    /// Writes the first `len` bytes of the stream to `w`.
    pub fn write_to(&self, w: &mut impl Write, len: u64) -> io::Result<()> {
        let mut sent = 0u64;
        while sent < len {
            let chunk = self.slice_at(sent, (len - sent).min(CHUNK as u64) as usize);
            w.write_all(chunk)?;
            sent += chunk.len() as u64;
        }
        w.flush()
    }

    /// Reads `r` to EOF and checks that it carried exactly the first `len` bytes of the
    /// stream. Byte-exact comparison is stronger than a checksum, says where a stream
    /// went wrong, and stays fast in a debug build (hashing 64 MiB there takes seconds).
    pub fn expect_from(&self, r: &mut impl Read, len: u64) -> io::Result<()> {
        let mut check = Check::new(self, len);
        let mut buf = vec![0u8; CHUNK];
        loop {
            match read_some(r, &mut buf, check.got)? {
                0 if check.got == len => return Ok(()),
                0 => return Err(check.short()),
                n => check.bytes(&buf[..n])?,
            }
        }
    }

    /// Reads the first `len` bytes of the stream from `r` (the peer may send more) and
    /// checks them, at no more than `rate` bytes per second when a rate is given: a slow
    /// reader. Reads never ask for more than `len` bytes.
    pub fn expect_prefix(&self, r: &mut impl Read, len: u64, rate: Option<u64>) -> io::Result<()> {
        let mut check = Check::new(self, len);
        let mut buf = vec![0u8; CHUNK];
        let start = Instant::now();
        while check.got < len {
            let want = (len - check.got).min(CHUNK as u64) as usize;
            match read_some(r, &mut buf[..want], check.got)? {
                0 => return Err(check.short()),
                n => check.bytes(&buf[..n])?,
            }
            if let Some(rate) = rate {
                // Pacing is the behaviour under test here, not a wait for an event.
                let due = Duration::from_secs_f64(check.got as f64 / rate as f64);
                if let Some(ahead) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
        Ok(())
    }
}

/// Compares received bytes with a [`Pattern`], keeping count.
struct Check<'a> {
    pattern: &'a Pattern,
    len: u64,
    got: u64,
}

impl<'a> Check<'a> {
    fn new(pattern: &'a Pattern, len: u64) -> Check<'a> {
        Check {
            pattern,
            len,
            got: 0,
        }
    }

    fn bytes(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.got + bytes.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than the {} bytes sent", self.len),
            ));
        }
        while !bytes.is_empty() {
            let want = self.pattern.slice_at(self.got, bytes.len());
            let (have, rest) = bytes.split_at(want.len());
            if have != want {
                let i = have.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("stream differs at byte {}", self.got + i as u64),
                ));
            }
            self.got += want.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    fn short(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream ended after {} of {} bytes", self.got, self.len),
        )
    }
}

/// One read, retried on EINTR; errors say how far the stream had got.
fn read_some(r: &mut impl Read, buf: &mut [u8], got: u64) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("after {got} bytes: {e}"))),
            Ok(n) => return Ok(n),
        }
    }
}

/// Sends `len` bytes each way through a session at once (client end, target end), each
/// side half-closing after its last byte, and checks every byte that arrives.
pub fn both_ways(client: &TcpStream, far: &TcpStream, seed: u64, len: u64) -> Result<(), String> {
    let (up, down) = (Pattern::new(seed), Pattern::new(!seed));
    thread::scope(|s| {
        let send_up = s.spawn(|| {
            up.write_to(&mut { client }, len)?;
            client.shutdown(Shutdown::Write)
        });
        let send_down = s.spawn(|| {
            down.write_to(&mut { far }, len)?;
            far.shutdown(Shutdown::Write)
        });
        let recv_up = s.spawn(|| up.expect_from(&mut { far }, len));
        let got_down = down.expect_from(&mut { client }, len);
        let results = [
            ("target to client", got_down),
            ("client to target", recv_up.join().unwrap()),
            ("client sends", send_up.join().unwrap()),
            ("target sends", send_down.join().unwrap()),
        ];
        match results.into_iter().find(|(_, r)| r.is_err()) {
            Some((what, Err(e))) => Err(format!("{what}: {e}")),
            _ => Ok(()),
        }
    })
}
