//! The byte stream bulk transfers carry: the byte at stream offset `k` is `k % 251`, the
//! same values [`crate::pattern`] cuts payloads from. Each byte depends only on its
//! offset, so a reader checks every read on its own, whatever sizes the writes and reads
//! were split into: a relay that drops, duplicates, reorders or alters bytes fails it.

/// The period of the pattern; prime, so it never lines up with buffer sizes.
pub const PERIOD: usize = 251;

/// Writes and checks the stream in pieces of at most `max` bytes.
#[derive(Debug, Clone)]
pub struct Stream {
    /// One pattern long enough that a piece at any offset is one contiguous slice.
    bytes: Box<[u8]>,
    max: usize,
}

impl Stream {
    pub fn new(max: usize) -> Stream {
        Stream {
            bytes: crate::pattern(max + PERIOD),
            max,
        }
    }

    /// The `len` bytes (at most `max`) that start at stream offset `offset`.
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        let from = (offset % PERIOD as u64) as usize;
        &self.bytes[from..from + len.min(self.max)]
    }

    /// The largest piece [`Stream::at`] returns.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether `data` (at most `max` bytes) is what the stream holds at `offset`.
    pub fn matches(&self, offset: u64, data: &[u8]) -> bool {
        data.len() <= self.max && data == self.at(offset, data.len())
    }
}

/// Where a connection stands in the stream: bytes written, or bytes read and checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct Position {
    pub offset: u64,
}

impl Position {
    /// Checks the next `data` (any length) and advances; on a mismatch, says where.
    pub fn check(&mut self, stream: &Stream, data: &[u8]) -> Result<(), String> {
        for piece in data.chunks(stream.max()) {
            if !stream.matches(self.offset, piece) {
                let at = piece
                    .iter()
                    .zip(stream.at(self.offset, piece.len()))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(format!(
                    "stream byte {} differs from what was sent",
                    self.offset + at as u64
                ));
            }
            self.offset += piece.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole stream from offset 0, built the slow way.
    fn reference(len: usize) -> Vec<u8> {
        (0..len).map(|k| (k % PERIOD) as u8).collect()
    }

    #[test]
    fn pieces_at_any_offset_join_into_one_stream() {
        let s = Stream::new(1000);
        let mut joined = Vec::new();
        let mut off = 0u64;
        for len in [1, 250, 251, 252, 999, 1000, 7, 1000] {
            joined.extend_from_slice(s.at(off, len));
            off += len as u64;
        }
        assert_eq!(joined, reference(off as usize));
        assert_eq!(s.at(5, 5000).len(), 1000, "pieces are capped at max");
    }

    #[test]
    fn position_accepts_any_split_and_names_the_first_bad_byte() {
        let s = Stream::new(64);
        let all = reference(10_000);
        let mut r = Position::default();
        for piece in all.chunks(333) {
            r.check(&s, piece).unwrap();
        }
        assert_eq!(r.offset, 10_000);

        let mut bad = reference(500);
        bad[321] ^= 0x40;
        let e = Position::default().check(&s, &bad).unwrap_err();
        assert!(e.contains("byte 321"), "{e}");

        // A dropped byte shifts everything after it.
        let mut dropped = reference(300);
        dropped.remove(100);
        assert!(Position::default().check(&s, &dropped).is_err());
        // The right bytes at the wrong offset (a duplicated piece) fail too.
        let mut r = Position { offset: 10 };
        assert!(r.check(&s, &reference(20)).is_err());
    }
}
