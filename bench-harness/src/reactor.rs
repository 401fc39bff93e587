//! The event loop every harness thread runs: a mio `Poll` (epoll, edge-triggered) plus a
//! timerfd for deadlines.
//!
//! Why this shape: the harness shares two cores with the server under test, so it must
//! spend as little CPU per operation as it can and never become the bottleneck. A few
//! threads each multiplex hundreds or thousands of non-blocking sockets through one
//! epoll set; there is no thread per connection, no async runtime and no allocation per
//! request (buffers are allocated at set-up and reused). io_uring would save a few
//! syscalls more, but epoll is what every SOCKS server's clients use, it is portable to
//! any kernel the servers under test run on, and the harness's own cost is reported with
//! every run, so a run where it was the bottleneck shows it.
//!
//! epoll's timeout has millisecond resolution, too coarse for an open-loop schedule of
//! thousands of requests per second per thread (a late send is charged to the server as
//! latency). Deadlines therefore go through a timerfd, which has nanosecond resolution.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// The token of the reactor's own timer; never handed to a socket.
pub const TIMER: Token = Token(usize::MAX);

/// One thread's poll set and deadline timer.
pub struct Reactor {
    poll: Poll,
    events: Events,
    timer: OwnedFd,
    armed: Option<Instant>,
}

impl Reactor {
    pub fn new(event_capacity: usize) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        poll.registry()
            .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(event_capacity),
            timer,
            armed: None,
        })
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Waits until some socket is ready or `deadline` passes. Returns the number of
    /// socket events, read with [`Reactor::events`].
    pub fn wait(&mut self, deadline: Instant) -> io::Result<usize> {
        let now = Instant::now();
        let timeout = if deadline <= now {
            Duration::ZERO
        } else {
            if self.armed != Some(deadline) {
                let rel = deadline - now;
                let spec = Itimerspec {
                    it_interval: Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    },
                    it_value: Timespec {
                        tv_sec: rel.as_secs() as _,
                        tv_nsec: rel.subsec_nanos() as _,
                    },
                };
                timerfd_settime(self.timer.as_fd(), TimerfdTimerFlags::empty(), &spec)?;
                self.armed = Some(deadline);
            }
            // A fallback only: the timerfd fires first.
            deadline - now + Duration::from_millis(2)
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut n = 0;
        for ev in self.events.iter() {
            if ev.token() == TIMER {
                let mut expirations = [0u8; 8];
                // Clears the expiration count; WouldBlock means it was already read.
                let _ = rustix::io::read(self.timer.as_fd(), &mut expirations);
                self.armed = None;
            } else {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Tokens of the sockets that became ready in the last [`Reactor::wait`].
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.events
            .iter()
            .map(|e| e.token())
            .filter(|&t| t != TIMER)
    }
}

/// Spawns a named harness thread, pinned to `cpu` when given.
pub fn spawn<T: Send + 'static>(
    name: String,
    cpu: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    thread::Builder::new().name(name).spawn(move || {
        if let Some(id) = cpu {
            // Pinning is best effort: a CPU outside the allowed set leaves the thread
            // where the scheduler put it, and the CPU list was validated at start-up.
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        f()
    })
}

/// The CPU for the `i`-th harness thread: round-robin over `cpus`.
pub fn cpu_for(cpus: &[usize], i: usize) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[i % cpus.len()])
}

/// Parses "0", "0,2", "0-3" or a mix into a CPU list, checked against the CPUs this
/// process may run on.
pub fn parse_cpus(spec: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("--cpus: '{s}' is not a CPU number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err(format!("--cpus: empty range '{part}'"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(parse(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("--cpus: no CPU given".into());
    }
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {bad} is not available to this process (allowed: {allowed:?})"
        ));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_wakes_at_a_sub_millisecond_deadline() {
        let mut r = Reactor::new(8).unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_micros(300);
        // Bounded: the deadline is 300 µs away and each wait returns at it (or earlier on
        // a spurious wake-up).
        for _ in 0..100 {
            r.wait(deadline).unwrap();
            if Instant::now() >= deadline {
                break;
            }
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_micros(300));
        assert!(waited < Duration::from_millis(200), "{waited:?}");
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpus("0").unwrap(), vec![0]);
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("100000").is_err());
        assert_eq!(cpu_for(&[0, 1], 3), Some(1));
        assert_eq!(cpu_for(&[], 3), None);
    }
}
