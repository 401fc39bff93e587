//! Test payloads: seeded pseudo-random byte streams of any length, and their SHA-256.
//!
//! A stream repeats one random block whose length (1 MiB + 13) is not a power of two, so
//! the block edges drift across the relay's buffer edges: a lost, repeated or reordered
//! buffer shows as a difference.

use std::fmt;
use std::io::{self, Read, Write};

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
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) if got == len => return Ok(()),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("stream ended after {got} of {len} bytes"),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("after {got} of {len} bytes: {e}"),
                    ))
                }
            };
            if got + n as u64 > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than the {len} bytes sent"),
                ));
            }
            let mut checked = 0;
            while checked < n {
                let want = self.slice_at(got, n - checked);
                let have = &buf[checked..checked + want.len()];
                if have != want {
                    let i = have.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("stream differs at byte {}", got + i as u64),
                    ));
                }
                checked += want.len();
                got += want.len() as u64;
            }
        }
    }
}
