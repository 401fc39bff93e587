//! A provided-buffer ring: a pool of equal buffers the kernel picks from when data arrives.
//!
//! An idle connection holds no buffer; a receive takes one only when bytes are there. The
//! pool tracks which buffers userspace holds (handed out by a completion, not yet given
//! back), so a buffer is readable only while the kernel cannot write to it, and giving one
//! back twice is ignored instead of corrupting the ring.
//!
//! The kernel takes ring entries in order, so a ring holding every buffer would cycle
//! through all of them: every buffer's memory gets touched (resident) and none stays
//! in cache. Instead the ring holds a window of buffers, refilled from a stack of the
//! most recently returned ones: the same few hot buffers serve a light load, and the
//! window doubles whenever the ring runs dry while buffers are spare.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::mmap::{page_size, Mapping};

/// Bytes `off..off + len` of buffer `bid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub bid: u16,
    pub off: u32,
    pub len: u32,
}

pub struct BufRing {
    bgid: u16,
    mask: u16,
    entries: u16,
    buf_size: u32,
    ring: Mapping,
    bufs: Mapping,
    /// Next ring index to fill; published to the kernel by [`BufRing::publish`].
    tail: u16,
    published: u16,
    /// One bit per buffer: set while userspace holds it.
    held: Vec<u64>,
    held_count: u32,
    /// Returned buffers not in the ring yet, most recent last.
    spare: Vec<u16>,
    /// Buffers published in the ring and not yet taken by a completion.
    in_ring: u32,
    /// How many buffers the ring is kept filled to.
    window: u32,
    /// A receive found the ring empty since the last publish.
    ran_dry: bool,
    /// Pages of the buffers written so far: the most of the pool that can be resident.
    written: Written,
    /// Which buffer each ring entry holds (by position & mask), and the position each
    /// buffer was last published at: a bundle names only its first buffer, the others
    /// are the entries after it.
    ring_bids: Vec<u16>,
    pos_of: Vec<u16>,
}

/// The ring's first window: enough for the receives of a few busy sessions.
const FIRST_WINDOW: u32 = 64;

impl BufRing {
    /// Maps `entries` buffers of `buf_size` bytes (memory is touched only when used) and
    /// registers them as group `bgid`. `entries` must be a power of two ≤ 32768.
    pub fn new(
        submitter: &io_uring::Submitter<'_>,
        bgid: u16,
        entries: u16,
        buf_size: u32,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768",
            ));
        }
        let ring = Mapping::new(entries as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(entries as usize * buf_size as usize)?;
        // SAFETY: `ring` is a page-aligned mapping of `entries` ring entries that lives
        // as long as this BufRing, which unregisters it (see `unregister`) or outlives
        // every operation of the io_uring it is registered with.
        unsafe {
            submitter.register_buf_ring_with_flags(ring.addr() as u64, entries, bgid, 0)?;
        }
        let mut pool = BufRing {
            bgid,
            mask: entries - 1,
            entries,
            buf_size,
            ring,
            bufs,
            tail: 0,
            published: 0,
            held: vec![u64::MAX; (entries as usize).div_ceil(64)],
            held_count: entries as u32,
            spare: Vec::with_capacity(entries as usize),
            in_ring: 0,
            window: FIRST_WINDOW.min(entries as u32),
            ran_dry: false,
            written: Written::new(entries, buf_size),
            ring_bids: vec![0; entries as usize],
            pos_of: vec![0; entries as usize],
        };
        // Lowest ids on top of the stack, used first.
        for bid in (0..entries).rev() {
            pool.give_back(bid);
        }
        pool.publish();
        Ok(pool)
    }

    pub fn group(&self) -> u16 {
        self.bgid
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Bytes of the pool's pages written so far (by the kernel or by us): an upper bound
    /// of its resident memory, since pages never written take none.
    pub fn written_bytes(&self) -> u64 {
        self.written.bytes()
    }

    /// Buffers the kernel can pick from right now (after the next publish).
    pub fn available(&self) -> u32 {
        self.entries as u32 - self.held_count
    }

    fn is_held(&self, bid: u16) -> bool {
        (bid as usize) < self.entries as usize
            && self.held[bid as usize / 64] & (1 << (bid % 64)) != 0
    }

    /// Records that a completion handed buffer `bid` to userspace, the kernel having
    /// written its first `len` bytes. Returns false for a bid that is out of range or
    /// already held (never expected from the kernel).
    pub fn take(&mut self, bid: u16, len: u32) -> bool {
        if bid >= self.entries || self.is_held(bid) {
            return false;
        }
        self.written.mark(bid, len.min(self.buf_size));
        self.held[bid as usize / 64] |= 1 << (bid % 64);
        self.held_count += 1;
        self.in_ring = self.in_ring.saturating_sub(1);
        true
    }

    /// Takes the buffers a receive of `len` bytes filled, starting with `first` (one
    /// buffer, or a bundle of consecutive ring entries each filled before the next), and
    /// appends them with their lengths to `out`. False if the kernel's report does not
    /// match the ring (then nothing more is taken).
    pub fn take_filled(&mut self, first: u16, len: u32, out: &mut Vec<Slice>) -> bool {
        if first >= self.entries {
            return false;
        }
        let count = len.div_ceil(self.buf_size).max(1);
        let start = self.pos_of[first as usize];
        let mut left = len;
        for i in 0..count as u16 {
            let bid = self.ring_bids[(start.wrapping_add(i) & self.mask) as usize];
            let n = left.min(self.buf_size);
            if !self.take(bid, n) {
                return false;
            }
            out.push(Slice {
                bid,
                off: 0,
                len: n,
            });
            left -= n;
        }
        true
    }

    /// The bytes `off..off + len` of a held buffer; empty if the buffer is not held or the
    /// range is out of bounds.
    pub fn data(&self, bid: u16, off: u32, len: u32) -> &[u8] {
        let end = off as u64 + len as u64;
        if !self.is_held(bid) || end > self.buf_size as u64 {
            return &[];
        }
        let start = bid as usize * self.buf_size as usize + off as usize;
        // SAFETY: the range lies inside the mapping (checked above), and the buffer is
        // held by userspace: the kernel only writes to buffers published in the ring.
        unsafe { std::slice::from_raw_parts(self.bufs.addr().add(start), len as usize) }
    }

    /// Address of byte `off` of a held buffer whose range `off..off + len` is in bounds,
    /// for an operation the kernel reads from.
    pub(super) fn send_ptr(&self, bid: u16, off: u32, len: u32) -> Option<NonNull<u8>> {
        if !self.is_held(bid) || off as u64 + len as u64 > self.buf_size as u64 {
            return None;
        }
        let start = bid as usize * self.buf_size as usize + off as usize;
        // SAFETY: `start` ≤ the mapping's length (checked above), so the pointer is in or
        // one past the mapping, never dereferenced here.
        NonNull::new(unsafe { self.bufs.addr().add(start) })
    }

    /// Copies `bytes` into a held buffer at `off`. False if not held or out of bounds.
    pub fn write(&mut self, bid: u16, off: u32, bytes: &[u8]) -> bool {
        let Some(ptr) = self.send_ptr(bid, off, bytes.len() as u32) else {
            return false;
        };
        self.written.mark(bid, off + bytes.len() as u32);
        // SAFETY: the range is inside the mapping and the buffer is held by userspace, so
        // the kernel is not writing it; `bytes` cannot overlap it (it is borrowed apart).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        true
    }

    /// Returns a held buffer to the pool (the ring gets it at a [`BufRing::publish`]).
    pub fn give_back(&mut self, bid: u16) {
        if !self.is_held(bid) {
            debug_assert!(false, "buffer {bid} given back twice");
            return;
        }
        self.held[bid as usize / 64] &= !(1 << (bid % 64));
        self.held_count -= 1;
        self.spare.push(bid);
    }

    /// A receive found the ring empty: the window grows at the next publish.
    pub fn ran_dry(&mut self) {
        self.ran_dry = true;
    }

    /// Tops the ring up to its window from the most recently returned buffers, and makes
    /// them visible to the kernel.
    pub fn publish(&mut self) {
        if self.ran_dry && !self.spare.is_empty() {
            self.window = (self.window * 2).min(self.entries as u32);
        }
        self.ran_dry = false;
        while self.in_ring < self.window {
            let Some(bid) = self.spare.pop() else {
                break;
            };
            let idx = (self.tail & self.mask) as usize;
            // SAFETY: `idx` < entries, so the entry lies inside the ring mapping; the
            // kernel reads entries only below the published tail, and this one is beyond
            // it. The buffer is not held, so nothing reads it while the kernel may write.
            unsafe {
                let entry = &mut *(self.ring.addr() as *mut BufRingEntry).add(idx);
                entry.set_addr(self.bufs.addr().add(bid as usize * self.buf_size as usize) as u64);
                entry.set_len(self.buf_size);
                entry.set_bid(bid);
            }
            self.ring_bids[idx] = bid;
            self.pos_of[bid as usize] = self.tail;
            self.tail = self.tail.wrapping_add(1);
            self.in_ring += 1;
        }
        if self.published == self.tail {
            return;
        }
        // SAFETY: the tail field lives in the first ring entry of our mapping; the kernel
        // reads it concurrently, hence the atomic release store after the entries.
        unsafe {
            let tail =
                BufRingEntry::tail(self.ring.addr() as *const BufRingEntry) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.published = self.tail;
    }

    /// Unregisters the group; the ring memory may then be freed.
    pub fn unregister(&self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        submitter.unregister_buf_ring(self.bgid)
    }
}

/// Which pages of the buffer mapping have been written. Each buffer keeps how far into
/// it anything was written, so only a write past that mark touches the page bitmap.
struct Written {
    buf_size: u32,
    page_shift: u32,
    reach: Vec<u32>,
    pages: Vec<u64>,
    count: u64,
}

impl Written {
    fn new(entries: u16, buf_size: u32) -> Written {
        let page_shift = page_size().trailing_zeros();
        let total = (entries as u64 * buf_size as u64).div_ceil(1 << page_shift);
        Written {
            buf_size,
            page_shift,
            reach: vec![0; entries as usize],
            pages: vec![0; total.div_ceil(64) as usize],
            count: 0,
        }
    }

    /// Bytes `0..end` of buffer `bid` (in range) have been written.
    fn mark(&mut self, bid: u16, end: u32) {
        let reach = &mut self.reach[bid as usize];
        if end <= *reach {
            return;
        }
        let base = bid as u64 * self.buf_size as u64;
        let first = (base + *reach as u64) >> self.page_shift;
        let last = (base + end as u64 - 1) >> self.page_shift;
        *reach = end;
        for page in first..=last {
            let (word, bit) = ((page / 64) as usize, 1u64 << (page % 64));
            if self.pages[word] & bit == 0 {
                self.pages[word] |= bit;
                self.count += 1;
            }
        }
    }

    fn bytes(&self) -> u64 {
        self.count << self.page_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> io_uring::IoUring {
        io_uring::IoUring::new(8).expect("io_uring available")
    }

    #[test]
    fn starts_with_every_buffer_in_the_kernel() {
        let uring = ring();
        let pool = BufRing::new(&uring.submitter(), 1, 8, 4096).unwrap();
        assert_eq!(pool.available(), 8);
        assert!(
            pool.data(0, 0, 10).is_empty(),
            "kernel-owned buffers are not readable"
        );
        pool.unregister(&uring.submitter()).unwrap();
    }

    #[test]
    fn written_memory_counts_pages_once() {
        let uring = ring();
        let page = page_size() as u64;
        // Buffers of a page and a half: buffer 1 starts in the middle of page 1.
        let size = page as u32 * 3 / 2;
        let mut pool = BufRing::new(&uring.submitter(), 4, 8, size).unwrap();
        assert_eq!(pool.written_bytes(), 0, "publishing writes nothing");
        assert!(pool.take(0, 100));
        assert_eq!(pool.written_bytes(), page);
        pool.give_back(0);
        assert!(pool.take(0, 50), "a shorter fill of the same buffer");
        assert_eq!(pool.written_bytes(), page);
        assert!(
            pool.take(1, 10),
            "buffer 1's first bytes share page 1 with buffer 0's end"
        );
        assert_eq!(pool.written_bytes(), 2 * page);
        assert!(
            pool.write(0, 0, &vec![7; size as usize]),
            "buffer 0 in full"
        );
        assert_eq!(pool.written_bytes(), 2 * page);
        assert!(
            pool.write(1, 0, &vec![7; size as usize]),
            "buffer 1 in full"
        );
        assert_eq!(pool.written_bytes(), 3 * page);
        assert!(pool.take(7, u32::MAX), "a fill is clamped to the buffer");
        assert_eq!(pool.written_bytes(), 5 * page, "buffer 7: pages 10 and 11");
        pool.unregister(&uring.submitter()).unwrap();
    }

    #[test]
    fn take_and_give_back_track_ownership() {
        let uring = ring();
        let mut pool = BufRing::new(&uring.submitter(), 2, 8, 4096).unwrap();
        assert!(pool.take(3, 0));
        assert!(!pool.take(3, 0), "a held buffer cannot be taken again");
        assert!(!pool.take(8, 0), "out of range");
        assert_eq!(pool.available(), 7);
        assert_eq!(pool.data(3, 0, 4096).len(), 4096);
        assert!(pool.data(3, 1, 4096).is_empty(), "range past the end");
        pool.give_back(3);
        pool.publish();
        assert_eq!(pool.available(), 8);
        pool.unregister(&uring.submitter()).unwrap();
    }

    #[test]
    fn rejects_a_count_that_is_not_a_power_of_two() {
        let uring = ring();
        assert!(BufRing::new(&uring.submitter(), 3, 6, 4096).is_err());
    }
}
