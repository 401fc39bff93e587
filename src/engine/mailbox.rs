//! Messages to a shard from other threads (resolver results, shutdown), with a MSG_RING
//! wake-up so the shard sees them without polling.
//!
//! Any thread may post. Each posting thread keeps a tiny io_uring of its own to send the
//! MSG_RING; a wake-up is sent only when none is pending, so a burst of posts costs one.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types, IoUring};

use super::token::{Op, Token};
use crate::resolve::{Addrs, Notify, ResolveError};

#[derive(Debug)]
pub enum Message {
    Resolved {
        ticket: u64,
        result: Result<Addrs, ResolveError>,
    },
    /// A password check that ran on a worker thread.
    Verified { ticket: u64, ok: bool },
    /// Stop accepting; end when the open sessions have.
    Drain,
    /// Stop accepting and end every session.
    Shutdown,
}

pub struct Mailbox {
    queue: Mutex<Vec<Message>>,
    wake_pending: AtomicBool,
    ring_fd: RawFd,
}

thread_local! {
    static WAKER: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

impl Mailbox {
    pub fn new(ring_fd: RawFd) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            queue: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            ring_fd,
        })
    }

    pub fn post(&self, msg: Message) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            wake(self.ring_fd);
        }
    }

    /// Takes every queued message. Call after a wake-up completion.
    pub fn drain(&self, out: &mut Vec<Message>) {
        // Clear first: a post racing with this drain either lands in this batch or sends
        // a fresh wake-up.
        self.wake_pending.store(false, Ordering::Release);
        out.append(&mut self.queue.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Notify for Mailbox {
    fn resolved(&self, ticket: u64, result: Result<Addrs, ResolveError>) {
        self.post(Message::Resolved { ticket, result });
    }
}

/// Posts a [`Op::Wake`] completion on the ring `ring_fd`.
fn wake(ring_fd: RawFd) {
    WAKER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = IoUring::new(8).ok();
        }
        let Some(ring) = cell.as_mut() else {
            return;
        };
        // Failures only arrive here (success posts nothing), e.g. a ring already closed.
        ring.completion().for_each(drop);
        let e = opcode::MsgRingData::new(types::Fd(ring_fd), 0, Token::new(Op::Wake, 0, 0).0, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS);
        // SAFETY: a MSG_RING entry carries no pointers into memory.
        let pushed = unsafe { ring.submission().push(&e) }.is_ok();
        if pushed {
            let _ = ring.submit();
        }
    });
}
