//! Small per-connection blocks the kernel reads or writes: handshake replies being sent,
//! the client address from SO_PEERNAME or accept, where UDP replies go.
//!
//! Blocks live in chunks that are never freed or moved while the shard runs, so a block
//! handed to the kernel stays valid memory even if a connection is freed too early. Only
//! the block's data could then be wrong, never memory safety.

use std::cell::UnsafeCell;
use std::net::SocketAddr;

use super::sockaddr;

/// Room for every handshake reply of one session (at most 2 + 2 + 22 + 22 bytes).
pub const OUT_CAP: usize = 64;
pub const ADDR_CAP: usize = std::mem::size_of::<libc::sockaddr_storage>();

#[repr(C)]
struct Block {
    out: [u8; OUT_CAP],
    reply: [u8; ADDR_CAP],
    peer: [u8; ADDR_CAP],
    /// accept's in/out address length.
    peer_len: libc::socklen_t,
}

const CHUNK: usize = 64;

/// A block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScratchId(u32);

#[derive(Default)]
pub struct ScratchPool {
    chunks: Vec<Box<[UnsafeCell<Block>]>>,
    free: Vec<u32>,
}

impl ScratchPool {
    pub fn alloc(&mut self) -> ScratchId {
        if let Some(id) = self.free.pop() {
            return ScratchId(id);
        }
        let base = (self.chunks.len() * CHUNK) as u32;
        let chunk = (0..CHUNK)
            .map(|_| {
                UnsafeCell::new(Block {
                    out: [0; OUT_CAP],
                    reply: [0; ADDR_CAP],
                    peer: [0; ADDR_CAP],
                    peer_len: 0,
                })
            })
            .collect();
        self.chunks.push(chunk);
        self.free.extend((base + 1..base + CHUNK as u32).rev());
        ScratchId(base)
    }

    pub fn release(&mut self, id: ScratchId) {
        debug_assert!(!self.free.contains(&id.0), "scratch block released twice");
        self.free.push(id.0);
    }

    fn block(&self, id: ScratchId) -> *mut Block {
        let i = id.0 as usize;
        self.chunks[i / CHUNK][i % CHUNK].get()
    }

    /// Copies `bytes` into the reply area at `at`. Returns false if they do not fit.
    pub fn write_out(&mut self, id: ScratchId, at: usize, bytes: &[u8]) -> bool {
        if at + bytes.len() > OUT_CAP {
            return false;
        }
        // SAFETY: in bounds (checked); the kernel may be reading an earlier range of this
        // area for a send in flight, never the range written here, which no send covers yet.
        unsafe {
            let out = std::ptr::addr_of_mut!((*self.block(id)).out) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.add(at), bytes.len());
        }
        true
    }

    pub(super) fn out_ptr(&self, id: ScratchId, off: usize) -> *const u8 {
        let off = off.min(OUT_CAP);
        // SAFETY: `off` ≤ OUT_CAP keeps the pointer within (or one past) the area.
        unsafe { (std::ptr::addr_of!((*self.block(id)).out) as *const u8).add(off) }
    }

    /// Stores `addr` as the sockaddr UDP replies are sent to; returns its length.
    pub fn set_reply_addr(&mut self, id: ScratchId, addr: SocketAddr) -> u32 {
        let (raw, len) = sockaddr::encode(addr);
        // SAFETY: the area is ADDR_CAP bytes and `raw` is exactly that. The kernel copies
        // a send's address while the send is submitted, so sends already submitted keep
        // their own copy.
        unsafe { *std::ptr::addr_of_mut!((*self.block(id)).reply) = raw };
        len
    }

    pub(super) fn reply_ptr(&self, id: ScratchId) -> *const libc::sockaddr {
        // SAFETY: a pointer into a live block, not dereferenced here.
        unsafe { std::ptr::addr_of!((*self.block(id)).reply) as *const libc::sockaddr }
    }

    pub(super) fn peer_ptr(&self, id: ScratchId) -> *mut libc::c_void {
        // SAFETY: a pointer into a live block, not dereferenced here.
        unsafe { std::ptr::addr_of_mut!((*self.block(id)).peer) as *mut libc::c_void }
    }

    /// Pointers for an accept that writes the peer's address into the peer area.
    pub(super) fn accept_ptrs(&self, id: ScratchId) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        let block = self.block(id);
        // SAFETY: the block is live; the length is set before the kernel reads it, and no
        // operation touching this area is in flight while a new accept is prepared.
        unsafe {
            *std::ptr::addr_of_mut!((*block).peer_len) = ADDR_CAP as libc::socklen_t;
            (
                std::ptr::addr_of_mut!((*block).peer) as *mut libc::sockaddr,
                std::ptr::addr_of_mut!((*block).peer_len),
            )
        }
    }

    /// Decodes the address an accept wrote.
    pub fn accepted_peer(&self, id: ScratchId) -> Option<SocketAddr> {
        // SAFETY: the accept has completed, so nothing writes the length concurrently.
        let len = unsafe { *std::ptr::addr_of!((*self.block(id)).peer_len) };
        self.peer_addr(id, len as usize)
    }

    /// Decodes the SO_PEERNAME result the kernel wrote (`len` bytes).
    pub fn peer_addr(&self, id: ScratchId, len: usize) -> Option<SocketAddr> {
        // SAFETY: the getsockopt that wrote this area has completed (its completion is
        // how the caller learned `len`), so nothing writes it concurrently.
        let raw = unsafe { *std::ptr::addr_of!((*self.block(id)).peer) };
        sockaddr::decode(&raw[..len.min(ADDR_CAP)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_stable() {
        let mut pool = ScratchPool::default();
        let a = pool.alloc();
        let p = pool.out_ptr(a, 0);
        let ids: Vec<_> = (0..200).map(|_| pool.alloc()).collect();
        assert_eq!(
            pool.out_ptr(a, 0),
            p,
            "growing the pool never moves a block"
        );
        pool.release(ids[5]);
        assert_eq!(pool.alloc(), ids[5]);
    }

    #[test]
    fn reply_area_is_bounded() {
        let mut pool = ScratchPool::default();
        let id = pool.alloc();
        assert!(pool.write_out(id, 0, &[1; OUT_CAP]));
        assert!(!pool.write_out(id, 1, &[1; OUT_CAP]));
    }
}
