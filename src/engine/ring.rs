//! The shard's io_uring: set-up, submission and completion batching, and one builder per
//! operation the engine uses.
//!
//! Every pointer a builder puts into a submission points into memory owned by a
//! [`BufRing`], a [`ScratchPool`] or this `Ring`; the shard keeps all three alive until
//! every operation has completed (it drains before returning from `Shard::run`). That is
//! the invariant behind the one `unsafe` push below, and why the rest of the engine never
//! handles raw pointers.
//!
//! Socket addresses of connects are read by the kernel while it processes the submission
//! (from Linux 6.7 on, connect and sendto copy them at first issue, which happens inside
//! the submitting system call), so they live in a small arena that is reused after each
//! submit.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::{BufRing, Slice};
use super::scratch::{ScratchId, ScratchPool, ADDR_CAP};
use super::token::Token;

/// A socket as io_uring sees it: a direct descriptor (index in the ring's file table) or
/// a regular file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fd {
    Fixed(u32),
    Raw(RawFd),
}

/// Builds an entry with `$fd` as `types::Fixed` or `types::Fd`.
macro_rules! on_fd {
    ($fd:expr, |$f:ident| $build:expr) => {
        match $fd {
            Fd::Fixed(i) => {
                let $f = types::Fixed(i);
                $build
            }
            Fd::Raw(r) => {
                let $f = types::Fd(r);
                $build
            }
        }
    };
}

/// One completion, copied out of the ring so handlers may submit while processing it.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub token: Token,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// Whether a multishot operation stays armed after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer this completion filled.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;

/// The token of operations nobody waits for.
const IGNORE: Token = Token(0);

pub struct Ring {
    uring: IoUring,
    /// The shape of every multishot datagram receive: room for an IPv6 source address,
    /// no control data.
    recvmsg: Box<libc::msghdr>,
    /// Connect addresses of the submissions queued since the last submit.
    addrs: Box<[[u8; ADDR_CAP]; ADDR_ARENA]>,
    addrs_used: usize,
    /// Headers and iovecs of gathered sends queued since the last submit (the kernel
    /// copies both when it takes the submission; the data stays in held buffers).
    msgs: Box<[libc::msghdr]>,
    iovs: Box<[[libc::iovec; MAX_GATHER]]>,
    msgs_used: usize,
    /// Receives fill several buffers at once (IORING_RECVSEND_BUNDLE).
    bundles: bool,
}

/// Buffers one send may gather: a bulk relay's queue drains in fewer system calls.
pub const MAX_GATHER: usize = 8;

/// Connects queued per submit before the queue is flushed early.
const ADDR_ARENA: usize = 64;

/// Where the destination address of a datagram send is stored.
#[derive(Debug, Clone, Copy)]
pub enum DatagramDest {
    /// At the start of the datagram's own buffer.
    InBuffer { len: u32 },
    /// In the reply area of a scratch block.
    Scratch { id: ScratchId, len: u32 },
}

/// Bytes a multishot datagram receive puts before the payload in each buffer: the
/// `io_uring_recvmsg_out` header and the source address area.
pub const DATAGRAM_PREFIX: usize = RECVMSG_OUT_LEN + RECV_NAME_LEN;
/// `struct io_uring_recvmsg_out`: four u32 fields.
const RECVMSG_OUT_LEN: usize = 16;
const RECV_NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

impl Ring {
    /// A ring for one shard thread: only this thread submits (SINGLE_ISSUER), completions
    /// are processed when it asks (DEFER_TASKRUN), no interrupts for task work
    /// (COOP_TASKRUN), and a direct-descriptor table of `files` slots.
    pub fn new(sq_entries: u32, cq_entries: u32, files: u32) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_submit_all()
            .setup_cqsize(cq_entries)
            .build(sq_entries)?;
        uring.submitter().register_files_sparse(files)?;
        // Saves the fd lookup on every enter; not fatal if unsupported.
        let _ = uring.submitter().register_ring_fd();
        let bundles = uring.params().is_feature_recvsend_bundle();
        Ok(Ring {
            uring,
            addrs: Box::new([[0; ADDR_CAP]; ADDR_ARENA]),
            addrs_used: 0,
            // SAFETY: msghdr and iovec are plain C structs for which all-zero is valid.
            msgs: (0..ADDR_ARENA)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect(),
            iovs: (0..ADDR_ARENA)
                .map(|_| {
                    [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; MAX_GATHER]
                })
                .collect(),
            msgs_used: 0,
            bundles,
            recvmsg: Box::new({
                // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
                let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                m.msg_namelen = RECV_NAME_LEN as u32;
                m
            }),
        })
    }

    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.uring.submitter()
    }

    /// The ring's file descriptor, for MSG_RING wake-ups from other threads.
    pub fn raw_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.uring.as_raw_fd()
    }

    /// Room for `n` more entries, flushing the queue to the kernel if needed.
    fn reserve(&mut self, n: usize) {
        let sq = self.uring.submission();
        if sq.capacity() - sq.len() < n {
            drop(sq);
            self.flush();
        }
    }

    /// Hands queued submissions to the kernel now (without waiting).
    fn flush(&mut self) {
        // An error here resurfaces at the next submit_and_wait.
        let _ = self.uring.submit();
        self.addrs_used = 0;
        self.msgs_used = 0;
    }

    fn push(&mut self, entries: &[squeue::Entry]) {
        self.reserve(entries.len());
        let mut sq = self.uring.submission();
        for e in entries {
            // SAFETY: entries come from the builders below, whose pointers point into a
            // BufRing, ScratchPool or this Ring, all kept alive until every operation has
            // completed (module doc). `reserve` made room, so push cannot fail.
            if unsafe { sq.push(e) }.is_err() {
                debug_assert!(false, "submission queue full after reserve");
            }
        }
    }

    /// Submits everything queued and waits for at least one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        let result = self.uring.submitter().submit_with_args(1, &args);
        self.addrs_used = 0;
        self.msgs_used = 0;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted, or completions to reap first: all fine.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Moves up to `max` completions into `out`.
    pub fn drain(&mut self, out: &mut Vec<Completion>, max: usize) {
        let mut cq = self.uring.completion();
        cq.sync();
        for cqe in cq.take(max) {
            out.push(Completion {
                token: Token(cqe.user_data()),
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    pub fn accept_multi(&mut self, listener: RawFd, token: Token) {
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .allocate_file_index(true)
            .build()
            .user_data(token.0);
        self.push(&[e]);
    }

    /// Multishot receive into provided buffers; with bundles, one completion may fill
    /// several (one `recvmsg` in the kernel instead of one per buffer).
    pub fn recv_multi(&mut self, fd: Fd, group: u16, token: Token) {
        let e = if self.bundles {
            on_fd!(fd, |f| opcode::RecvMultiBundle::new(f, group).build())
        } else {
            on_fd!(fd, |f| opcode::RecvMulti::new(f, group).build())
        };
        self.push(&[e.user_data(token.0)]);
    }

    /// Sends held buffer slices, in order, as one `sendmsg`.
    pub fn send_bufs(&mut self, fd: Fd, pool: &BufRing, slices: &[Slice], token: Token) -> bool {
        if let [one] = slices {
            return self.send_buf(fd, pool, one.bid, one.off, one.len, token);
        }
        if slices.is_empty() || slices.len() > MAX_GATHER {
            return false;
        }
        if self.msgs_used == self.msgs.len() {
            self.flush();
        }
        let i = self.msgs_used;
        for (iov, s) in self.iovs[i].iter_mut().zip(slices) {
            let Some(ptr) = pool.send_ptr(s.bid, s.off, s.len) else {
                return false;
            };
            *iov = libc::iovec {
                iov_base: ptr.as_ptr() as *mut libc::c_void,
                iov_len: s.len as usize,
            };
        }
        self.msgs_used += 1;
        let msg = &mut self.msgs[i];
        msg.msg_iov = self.iovs[i].as_mut_ptr();
        msg.msg_iovlen = slices.len();
        let msg = msg as *const libc::msghdr;
        let e = on_fd!(fd, |f| opcode::SendMsg::new(f, msg)
            .flags(SEND_FLAGS as u32)
            .build())
        .user_data(token.0);
        self.push(&[e]);
        true
    }

    /// Sends `len` bytes of held buffer `bid` from `off`. False if the range is not held.
    pub fn send_buf(
        &mut self,
        fd: Fd,
        pool: &BufRing,
        bid: u16,
        off: u32,
        len: u32,
        token: Token,
    ) -> bool {
        let Some(ptr) = pool.send_ptr(bid, off, len) else {
            return false;
        };
        let e = on_fd!(fd, |f| opcode::Send::new(f, ptr.as_ptr(), len)
            .flags(SEND_FLAGS)
            .build())
        .user_data(token.0);
        self.push(&[e]);
        true
    }

    /// Sends bytes `off..off + len` of a scratch block's reply area.
    pub fn send_out(
        &mut self,
        fd: Fd,
        scratch: &ScratchPool,
        id: ScratchId,
        off: usize,
        len: usize,
        token: Token,
    ) {
        let len = len.min(super::scratch::OUT_CAP.saturating_sub(off)) as u32;
        let ptr = scratch.out_ptr(id, off);
        let e = on_fd!(fd, |f| opcode::Send::new(f, ptr, len)
            .flags(SEND_FLAGS)
            .build())
        .user_data(token.0);
        self.push(&[e]);
    }

    /// Connects to `addr`. Its timeout is the shard's (timer wheel, then a cancel): a
    /// linked timeout would cost a submission and a completion on every connect.
    pub fn connect(&mut self, fd: Fd, addr: std::net::SocketAddr, token: Token) {
        if self.addrs_used == ADDR_ARENA {
            self.flush();
        }
        let (raw, len) = super::sockaddr::encode(addr);
        let slot = &mut self.addrs[self.addrs_used];
        *slot = raw;
        let ptr = slot.as_ptr() as *const libc::sockaddr;
        self.addrs_used += 1;
        let e = on_fd!(fd, |f| opcode::Connect::new(f, ptr, len).build()).user_data(token.0);
        self.push(&[e]);
    }

    /// getsockopt(SO_PEERNAME) into the scratch block; the result is the address length.
    /// `len` must be the exact sockaddr size of the socket's family: the kernel refuses a
    /// larger buffer (EINVAL) rather than writing less.
    pub fn peer_name(
        &mut self,
        fd: Fd,
        scratch: &ScratchPool,
        id: ScratchId,
        len: u32,
        token: Token,
    ) {
        let ptr = scratch.peer_ptr(id);
        let e = on_fd!(fd, |f| opcode::GetSockOpt::new(
            f,
            libc::SOL_SOCKET as u32,
            libc::SO_PEERNAME as u32,
            ptr,
            len.min(ADDR_CAP as u32)
        )
        .build())
        .user_data(token.0);
        self.push(&[e]);
    }

    /// SHUT_WR. The kernel always runs it on a worker thread, where it looks the socket
    /// up only then: its session must wait for its completion before closing, or the
    /// shutdown could land on a new socket that reused the slot or descriptor number.
    pub fn shutdown_write(&mut self, fd: Fd, token: Token) {
        let e = on_fd!(fd, |f| opcode::Shutdown::new(f, libc::SHUT_WR).build()).user_data(token.0);
        self.push(&[e]);
    }

    /// One-shot poll for `events` (POLLIN, POLLOUT) on `fd`.
    pub fn poll_once(&mut self, fd: Fd, events: u32, token: Token) {
        let e = on_fd!(fd, |f| opcode::PollAdd::new(f, events).build()).user_data(token.0);
        self.push(&[e]);
    }

    /// Cancels every operation on `fd`.
    pub fn cancel_fd(&mut self, fd: Fd, token: Token) {
        let builder = on_fd!(fd, |f| types::CancelBuilder::fd(f).all());
        let e = opcode::AsyncCancel2::new(builder)
            .build()
            .user_data(token.0);
        self.push(&[e]);
    }

    /// Cancels the operation submitted with `target`.
    pub fn cancel(&mut self, target: Token, token: Token) {
        let e = opcode::AsyncCancel::new(target.0)
            .build()
            .user_data(token.0);
        self.push(&[e]);
    }

    /// Multishot receive of datagrams with their source address.
    pub fn recvmsg_multi(&mut self, fd: Fd, group: u16, token: Token) {
        let msghdr = &*self.recvmsg as *const libc::msghdr;
        let e =
            on_fd!(fd, |f| opcode::RecvMsgMulti::new(f, msghdr, group).build()).user_data(token.0);
        self.push(&[e]);
    }

    /// Reads a filled datagram buffer: (source address, payload offset, payload length).
    /// `None` if the datagram was truncated or the layout is not the expected one.
    pub fn datagram(&self, buf: &[u8]) -> Option<(std::net::SocketAddr, usize, usize)> {
        let out = types::RecvMsgOut::parse(buf, &self.recvmsg).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        let src = super::sockaddr::decode(out.name_data())?;
        let len = out.payload_data().len();
        let off = buf.len() - len;
        (off == DATAGRAM_PREFIX).then_some((src, off, len))
    }

    /// Sends a slice of a held buffer to the address at `dest`.
    pub fn send_datagram(
        &mut self,
        fd: Fd,
        pool: &BufRing,
        slice: Slice,
        dest: DatagramDest,
        scratch: &ScratchPool,
        token: Token,
    ) -> bool {
        let (addr, addr_len) = match dest {
            DatagramDest::InBuffer { len } => match pool.send_ptr(slice.bid, 0, len) {
                Some(p) => (p.as_ptr() as *const libc::sockaddr, len),
                None => return false,
            },
            DatagramDest::Scratch { id, len } => (scratch.reply_ptr(id), len),
        };
        let Some(ptr) = pool.send_ptr(slice.bid, slice.off, slice.len) else {
            return false;
        };
        let e = on_fd!(fd, |f| opcode::Send::new(f, ptr.as_ptr(), slice.len)
            .flags(libc::MSG_NOSIGNAL)
            .dest_addr(addr)
            .dest_addr_len(addr_len)
            .build())
        .user_data(token.0);
        self.push(&[e]);
        true
    }

    /// Accepts one connection on a regular listener; the peer address goes to the scratch
    /// block's peer area (its length to the connect area). The socket is blocking, like
    /// outbound ones (see `sys::outbound`).
    pub fn accept_one(
        &mut self,
        listener: RawFd,
        scratch: &ScratchPool,
        id: ScratchId,
        token: Token,
    ) {
        let (addr, addr_len) = scratch.accept_ptrs(id);
        let e = opcode::Accept::new(types::Fd(listener), addr, addr_len)
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token.0);
        self.push(&[e]);
    }

    /// Installs a direct descriptor as a regular one (result: the new descriptor).
    pub fn install_fixed(&mut self, index: u32, token: Token) {
        let e = opcode::FixedFdInstall::new(types::Fixed(index), 0)
            .build()
            .user_data(token.0);
        self.push(&[e]);
    }

    /// Closes a regular descriptor this ring now owns; only a failure completes.
    pub fn close_raw(&mut self, fd: RawFd) {
        let e = opcode::Close::new(types::Fd(fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(IGNORE.0);
        self.push(&[e]);
    }

    /// Submits what is queued without waiting (the last closes before a shard ends).
    pub fn submit_now(&mut self) {
        self.flush();
    }

    /// Closes a direct descriptor (regular descriptors are closed by dropping their owner).
    pub fn close_fixed(&mut self, index: u32) {
        let e = opcode::Close::new(types::Fixed(index))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(IGNORE.0);
        self.push(&[e]);
    }
}

/// Takes ownership of a descriptor a completion just returned (accept, fixed-fd install).
pub fn adopt(fd: i32) -> Option<socket2::Socket> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is a new descriptor the kernel created for this completion; nothing
    // else in the process knows it, so the Socket is its only owner.
    (fd >= 0).then(|| unsafe { socket2::Socket::from_raw_fd(fd) })
}
