//! Bulk relay without copies through user space.
//!
//! A direction that has carried `SPLICE_AFTER` bytes, or whose unsent bytes reach the
//! high-water mark, is moving bulk data. Once its receive has stopped and its queued
//! buffers are out, it leaves the buffer ring for a pipe of its own: bytes go source → pipe → sink with splice(2), which hands page
//! references along instead of copying every byte into a buffer and back out (about half
//! the CPU of a bulk relay). splice(2) on a socket runs in the calling thread (io_uring
//! would hand every splice to a worker thread), so the shard calls it non-blocking and
//! asks the ring only for readiness: a one-shot poll for input on the source when it is
//! empty, for room on the sink when it is full.
//!
//! splice(2) needs regular descriptors; the client's direct descriptor is installed as
//! one the first time a direction of the session turns bulk. A socket's side of a splice
//! waits unless the socket itself is O_NONBLOCK (SPLICE_F_NONBLOCK covers only the pipe),
//! so both sockets are made non-blocking then; from that point the session's buffer sends
//! carry one buffer each, because a gathered `sendmsg` on an O_NONBLOCK socket can end
//! with a final EAGAIN (see `sys::outbound`). Sessions with a bandwidth limit stay on
//! buffers, whose sends are paced.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};

use std::sync::atomic::Ordering;

use super::conn::{Bulk, ClientFd, Conn, Dir, Phase, RecvState};
use super::relay::{opposite, side_error};
use super::ring::{self, Completion, Fd};
use super::shard::Shard;
use super::token::{Op, Token};
use crate::telemetry::Direction;

/// Bytes a direction relays through buffers before it moves to a pipe: requests and
/// replies stay on the ring, transfers move.
pub const SPLICE_AFTER: u64 = 1 << 20;

/// A pipe smaller than this (the kernel gives unprivileged users small pipes past their
/// page budget, `fs.pipe-user-pages-soft`) would cost more system calls than it saves.
const MIN_PIPE: u32 = 64 * 1024;

/// Splices per direction per call while both ends keep up; then the shard polls and comes
/// back, so one bulk session cannot hold it.
const ROUNDS: usize = 16;

/// A direction relayed through its own pipe.
#[derive(Debug)]
pub struct Spliced {
    r: OwnedFd,
    w: OwnedFd,
    cap: u32,
    /// Bytes in the pipe, not yet spliced to the sink.
    pub held: u32,
    /// A poll for input on the source / for room on the sink is armed.
    src_wait: bool,
    sink_wait: bool,
}

impl Spliced {
    /// A pipe of about `size` bytes (what the kernel grants: it may refuse to grow one past
    /// `fs.pipe-max-size` or a user's page budget, and keep the default).
    fn new(size: u32) -> nix::Result<Spliced> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let _ = fcntl(w.as_fd(), FcntlArg::F_SETPIPE_SZ(size as i32));
        let cap = fcntl(w.as_fd(), FcntlArg::F_GETPIPE_SZ)? as u32;
        if cap < MIN_PIPE {
            return Err(Errno::ENOBUFS);
        }
        Ok(Spliced {
            r,
            w,
            cap,
            held: 0,
            src_wait: false,
            sink_wait: false,
        })
    }
}

/// Which readiness a poll token waits for.
fn poll_aux(dir: Dir, sink: bool) -> u16 {
    (dir == Dir::Down) as u16 | ((sink as u16) << 1)
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

impl Shard {
    /// Whether this session's directions may leave the buffer ring for pipes.
    pub(super) fn may_splice(&self, slot: usize) -> bool {
        let conn = &self.conns[slot];
        self.shared.config.splice_pipe > 0
            && conn.phase == Phase::Relay
            && conn.target.is_some()
            && !matches!(conn.client_fd, ClientFd::Failed)
            && conn
                .meta
                .guard
                .as_ref()
                .and_then(|g| g.bandwidth())
                .is_none()
    }

    /// Moves a bulk direction to a pipe once its receive has stopped and its queue is
    /// out. False while that is not yet possible (the caller keeps relaying from buffers
    /// without re-arming the receive).
    pub(super) fn start_splice(&mut self, slot: usize, dir: Dir) -> bool {
        let conn = &mut self.conns[slot];
        let pipe = conn.pipe(dir);
        let idle = pipe.recv == RecvState::Idle && pipe.segs.is_empty();
        if !idle || pipe.sending || pipe.eof {
            return false;
        }
        match conn.client_fd {
            ClientFd::Ready(_) => {}
            ClientFd::Installing => return false,
            ClientFd::Failed => {
                self.refuse_splice(slot, dir);
                return false;
            }
            ClientFd::None => {
                if !self.reserve_fds(1) {
                    self.conns[slot].client_fd = ClientFd::Failed;
                    self.refuse_splice(slot, dir);
                    return false;
                }
                let conn = &mut self.conns[slot];
                conn.client_fd = ClientFd::Installing;
                conn.inflight += 1;
                let client = conn.client;
                let token = self.token(slot, Op::SpliceFd);
                self.ring.install_fixed(client, token);
                return false;
            }
        }
        let made = if self.reserve_fds(2) {
            Spliced::new(self.shared.config.splice_pipe).inspect_err(|_| self.release_fds(2))
        } else {
            Err(Errno::EMFILE)
        };
        match made {
            Ok(spliced) => {
                self.conns[slot].pipe(dir).spliced = Some(Box::new(spliced));
                self.stats.spliced();
                self.pump_spliced(slot, dir);
                true
            }
            Err(e) => {
                log::debug!("no pipe for a bulk relay, staying on buffers: {e}");
                self.refuse_splice(slot, dir);
                false
            }
        }
    }

    /// A bulk direction stays on relay buffers for want of descriptors or a pipe.
    fn refuse_splice(&mut self, slot: usize, dir: Dir) {
        let pipe = self.conns[slot].pipe(dir);
        if pipe.bulk != Bulk::Refused {
            pipe.bulk = Bulk::Refused;
            self.stats.splice_refused();
        }
    }

    /// Takes `n` descriptors for splicing if sessions leave room for them.
    fn reserve_fds(&self, n: usize) -> bool {
        let shared = &self.shared;
        let held = shared.splice_fds.fetch_add(n, Ordering::Relaxed) + n;
        let sessions = shared.active.load(Ordering::Relaxed);
        if sessions + held > shared.config.descriptor_room {
            shared.splice_fds.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release_fds(&self, n: usize) {
        self.shared.splice_fds.fetch_sub(n, Ordering::Relaxed);
    }

    /// Gives back a freed session's splicing descriptors (closed as it is dropped).
    pub(super) fn release_splice_fds(&self, conn: &Conn) {
        let client = matches!(conn.client_fd, ClientFd::Ready(_)) as usize;
        let pipes = [&conn.up, &conn.down]
            .iter()
            .filter(|p| p.spliced.is_some())
            .count();
        let n = client + 2 * pipes;
        if n > 0 {
            self.release_fds(n);
        }
    }

    /// The client's regular descriptor arrived (or could not be made).
    pub(super) fn on_splice_fd(&mut self, slot: usize, c: Completion) {
        let conn = &mut self.conns[slot];
        let client =
            ring::adopt(c.result).ok_or_else(|| std::io::Error::from_raw_os_error(-c.result));
        let ready = client.and_then(|client| {
            client.set_nonblocking(true)?;
            if let Some(target) = &conn.target {
                target.set_nonblocking(true)?;
            }
            Ok(client)
        });
        conn.client_fd = match ready {
            Ok(client) => ClientFd::Ready(client.into()),
            Err(e) => {
                log::debug!("client descriptor for splicing: {e}");
                ClientFd::Failed
            }
        };
        if matches!(conn.client_fd, ClientFd::Failed) {
            self.release_fds(1);
            // The direction waiting for it stays on buffers; the other finds out if it
            // ever turns bulk.
            for dir in [Dir::Up, Dir::Down] {
                if self.conns[slot].pipe(dir).bulk == Bulk::Moving {
                    self.refuse_splice(slot, dir);
                }
            }
        }
    }

    /// A readiness poll of a spliced direction completed.
    pub(super) fn on_splice_ready(&mut self, slot: usize, c: Completion) {
        let aux = c.token.aux();
        let dir = if aux & 1 == 0 { Dir::Up } else { Dir::Down };
        if let Some(sp) = self.conns[slot].pipe(dir).spliced.as_mut() {
            if aux & 2 == 0 {
                sp.src_wait = false;
            } else {
                sp.sink_wait = false;
            }
        }
    }

    /// Moves what the source and the pipe hold as far as the sink takes it.
    pub(super) fn pump_spliced(&mut self, slot: usize, dir: Dir) {
        let now = self.now();
        let conn = &mut self.conns[slot];
        let (Phase::Relay, Some(target), ClientFd::Ready(client_fd)) =
            (conn.phase, conn.target.as_ref(), &conn.client_fd)
        else {
            return;
        };
        let (src, sink) = match dir {
            Dir::Up => (client_fd.as_fd(), target.as_fd()),
            Dir::Down => (target.as_fd(), client_fd.as_fd()),
        };
        let pipe = match dir {
            Dir::Up => &mut conn.up,
            Dir::Down => &mut conn.down,
        };
        let Some(sp) = pipe.spliced.as_mut() else {
            return;
        };
        let armed = (sp.sink_wait, sp.src_wait);
        let mut moved = 0u64;
        let mut failed = None;
        for _ in 0..ROUNDS {
            let mut progressed = false;
            // Out first: it makes room in the pipe.
            if sp.held > 0 && !sp.sink_wait {
                match splice(&sp.r, None, sink, None, sp.held as usize, flags()) {
                    Ok(n) if n > 0 => {
                        sp.held -= n as u32;
                        moved += n as u64;
                        progressed = true;
                    }
                    Err(Errno::EAGAIN) => sp.sink_wait = true,
                    Err(Errno::EINTR) => progressed = true,
                    Ok(_) | Err(_) => {
                        failed = Some(side_error(opposite(dir)));
                        break;
                    }
                }
            }
            if !pipe.eof && !sp.src_wait && sp.held < sp.cap {
                let room = (sp.cap - sp.held) as usize;
                match splice(src, None, &sp.w, None, room, flags()) {
                    Ok(0) => pipe.eof = true,
                    Ok(n) => {
                        sp.held += n as u32;
                        progressed = true;
                    }
                    // With bytes in the pipe, EAGAIN may mean the pipe is out of slots
                    // rather than the socket out of data: draining it tells.
                    Err(Errno::EAGAIN) if sp.held == 0 => sp.src_wait = true,
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(_) => {
                        failed = Some(side_error(dir));
                        break;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if failed.is_none() && !sp.sink_wait && !sp.src_wait {
            // Nothing armed would bring this direction back while it has work: poll the
            // side that has it (a ready socket completes the poll at once).
            if sp.held > 0 {
                sp.sink_wait = true;
            } else if !pipe.eof {
                sp.src_wait = true;
            }
        }
        // Polls to arm: the waits that began in this call.
        let new_sink = sp.sink_wait && !armed.0;
        let new_src = sp.src_wait && !armed.1;
        if moved > 0 {
            pipe.relayed += moved;
            conn.last_active = now;
            let direction = match dir {
                Dir::Up => Direction::Up,
                Dir::Down => Direction::Down,
            };
            self.stats.relayed(direction, moved);
        }
        if let Some(reason) = failed {
            self.begin_close(slot, reason);
            return;
        }
        let finished = pipe.eof && sp.held == 0;
        if new_sink {
            self.arm_splice_poll(slot, dir, true);
        }
        if new_src {
            self.arm_splice_poll(slot, dir, false);
        }
        // EOF found here, not in a completion: relay the half-close now.
        if finished {
            self.drive_relay(slot);
        }
    }

    fn arm_splice_poll(&mut self, slot: usize, dir: Dir, sink: bool) {
        let conn = &mut self.conns[slot];
        let on_client = (dir == Dir::Up) != sink;
        let fd = if on_client {
            Fd::Fixed(conn.client)
        } else {
            match conn.target.as_ref() {
                Some(t) => Fd::Raw(std::os::fd::AsRawFd::as_raw_fd(t)),
                None => return,
            }
        };
        let events = if sink { libc::POLLOUT } else { libc::POLLIN };
        conn.inflight += 1;
        let token = Token::with_aux(
            Op::SpliceReady,
            slot as u32,
            self.gens[slot],
            poll_aux(dir, sink),
        );
        self.ring.poll_once(fd, events as u32, token);
    }
}
