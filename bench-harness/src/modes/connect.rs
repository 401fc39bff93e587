//! `connect`: full sessions per second with W sessions in flight at once. A session is
//! connect, greeting, (authentication,) request, reply, one S-byte echo through the
//! relay, close; its latency is the whole of it, from `connect()` to the echo's last
//! byte. This is what a client that opens a connection per request pays.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::Token;

use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::Report;
use crate::run::{self, Common, Ctl, Failures, Window, Worker};
use crate::session::{self, Dialer, Progress, Session};
use crate::socks::SetupError;
use crate::stats::{self, Percentiles};
use crate::targets::Targets;

#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub common: Common,
    /// Sessions in flight at once.
    pub workers: usize,
    /// Bytes of the echo each session does.
    pub size: usize,
}

struct Part {
    hist: Histogram<u64>,
    unfinished: u64,
    failures: Failures,
}

pub fn run(cfg: &ConnectConfig) -> Result<Report, Error> {
    if cfg.workers == 0 || cfg.size == 0 {
        return Err(Error::Config(
            "connect needs --workers and --size above 0".into(),
        ));
    }
    let c = &cfg.common;
    let threads = c.threads.clamp(1, cfg.workers);
    let common = Common {
        threads,
        ..c.clone()
    };
    let targets = Targets::start(crate::LOOPBACK, c.cpu(threads))
        .map_err(|e| Error::io("cannot start the echo target", e))?;
    let dialer = Dialer::new(&c.route, targets.echo);
    let pattern = crate::pattern(cfg.size);
    let mut workers: Vec<Worker<Part>> = Vec::new();
    for w in 0..threads {
        let n = common.share(cfg.workers, w);
        let (dialer, pattern, cfg2) = (dialer.clone(), pattern.clone(), cfg.clone());
        workers.push(Box::new(move |ctl: &mut Ctl| {
            worker(&cfg2, &dialer, &pattern, n, ctl)
        }));
    }
    let out = run::execute(&common, workers, None, c.timeout)?;
    drop(targets);

    let mut hist = stats::histogram();
    let mut failures = Failures::default();
    let mut unfinished = 0;
    for p in out.results {
        stats::merge(&mut hist, &p.hist);
        failures.merge(p.failures);
        unfinished += p.unfinished;
    }
    failures.check(c.max_errors)?;
    let window_s = out.window.seconds();
    let ops = hist.len() - unfinished;
    if ops == 0 {
        return Err(Error::Timeout("no session completed in the window".into()));
    }
    Ok(Report {
        setup: format!("{} sessions in flight, {} B echo", cfg.workers, cfg.size),
        route: c.route.describe(),
        unfinished,
        errors: failures.count,
        latency: Percentiles::of(&hist),
        server: out.server,
        histogram: Some(hist),
        ..Report::new("connect", "session", ops, window_s, out.harness)
    }
    .finish())
}

struct Slot {
    session: Option<Session>,
    started: Instant,
    written: usize,
    echoed: usize,
}

fn worker(
    cfg: &ConnectConfig,
    dialer: &Dialer,
    pattern: &[u8],
    n: usize,
    ctl: &mut Ctl,
) -> Result<Part, Error> {
    let mut reactor = Reactor::new(1024).map_err(|e| Error::io("poll", e))?;
    let window = ctl.ready()?;
    let mut part = Part {
        hist: stats::histogram(),
        unfinished: 0,
        failures: Failures::default(),
    };
    let mut slots: Vec<Slot> = (0..n)
        .map(|_| Slot {
            session: None,
            started: window.start,
            written: 0,
            echoed: 0,
        })
        .collect();
    let mut scratch = vec![0u8; pattern.len().max(4096)];
    for (i, slot) in slots.iter_mut().enumerate() {
        begin(slot, i, &reactor, dialer, &mut part)?;
    }
    let timeout = cfg.common.timeout;
    let mut next_timeout_check = Instant::now() + timeout.min(Duration::from_millis(100));
    let mut ready = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= window.drain_end || part.failures.count > cfg.common.max_errors {
            break;
        }
        if now >= window.measure_end && slots.iter().all(|s| s.session.is_none()) {
            break;
        }
        if now >= next_timeout_check {
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.session.is_none() {
                    // A slot whose dial failed outright.
                    again(slot, i, &reactor, dialer, &window, &mut part)?;
                } else if now - slot.started > timeout {
                    slot.session = None;
                    part.failures
                        .note(|| format!("a session took longer than {timeout:?}"));
                    again(slot, i, &reactor, dialer, &window, &mut part)?;
                }
            }
            next_timeout_check = now + timeout.min(Duration::from_millis(100));
        }
        reactor
            .wait(next_timeout_check.min(window.drain_end))
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            if i >= n || slots[i].session.is_none() {
                continue;
            }
            match step(&mut slots[i], dialer, pattern, &mut scratch) {
                Ok(false) => {}
                Ok(true) => {
                    let slot = &mut slots[i];
                    if window.measures(slot.started) {
                        stats::record(&mut part.hist, Instant::now() - slot.started);
                    }
                    // Closing the socket ends the session.
                    slot.session = None;
                    again(slot, i, &reactor, dialer, &window, &mut part)?;
                }
                Err(SetupError::Socks(e)) => return Err(Error::Socks(e)),
                Err(SetupError::Io(e)) => {
                    slots[i].session = None;
                    part.failures.note(|| session::describe(dialer, &e));
                    again(&mut slots[i], i, &reactor, dialer, &window, &mut part)?;
                }
            }
        }
    }
    let end = window.drain_end;
    for s in &slots {
        if s.session.is_some() && window.measures(s.started) {
            stats::record(&mut part.hist, end.saturating_duration_since(s.started));
            part.unfinished += 1;
        }
    }
    Ok(part)
}

/// Starts the next session in the slot while the window lasts.
fn again(
    slot: &mut Slot,
    i: usize,
    reactor: &Reactor,
    dialer: &Dialer,
    window: &Window,
    part: &mut Part,
) -> Result<(), Error> {
    if Instant::now() < window.measure_end {
        begin(slot, i, reactor, dialer, part)?;
    }
    Ok(())
}

fn begin(
    slot: &mut Slot,
    i: usize,
    reactor: &Reactor,
    dialer: &Dialer,
    part: &mut Part,
) -> Result<(), Error> {
    slot.started = Instant::now();
    slot.written = 0;
    slot.echoed = 0;
    match Session::dial(dialer, reactor.registry(), Token(i)) {
        Ok(s) => slot.session = Some(s),
        Err(e) => {
            // The failure is counted; the slot stays empty until the timeout check
            // retries it, so a dead server does not make this loop spin.
            slot.session = None;
            part.failures.note(|| session::describe(dialer, &e));
        }
    }
    Ok(())
}

/// Advances a session; `Ok(true)` once its echo is complete.
fn step(
    slot: &mut Slot,
    dialer: &Dialer,
    pattern: &[u8],
    scratch: &mut [u8],
) -> Result<bool, SetupError> {
    let s = slot.session.as_mut().expect("caller checked");
    if !s.is_open() {
        if s.advance(dialer)? == Progress::Pending {
            return Ok(false);
        }
        if !s.early_data().is_empty() {
            return Err(SetupError::Io(std::io::Error::new(
                ErrorKind::InvalidData,
                "the relay sent data before the echo request",
            )));
        }
    }
    let fresh = slot.written == 0;
    while slot.written < pattern.len() {
        match s.sock.write(&pattern[slot.written..]) {
            Ok(n) => slot.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(SetupError::Io(e)),
        }
    }
    if fresh && slot.written == pattern.len() {
        // No echo can be there yet; its arrival raises a fresh edge.
        return Ok(false);
    }
    loop {
        match s.sock.read(scratch) {
            Ok(0) => {
                return Err(SetupError::Io(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the relay closed the connection before the echo",
                )))
            }
            Ok(n) => {
                let end = slot.echoed + n;
                if end > slot.written || scratch[..n] != pattern[slot.echoed..end] {
                    return Err(SetupError::Io(std::io::Error::new(
                        ErrorKind::InvalidData,
                        "the echo differs from what was sent",
                    )));
                }
                slot.echoed = end;
                if end == pattern.len() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(SetupError::Io(e)),
        }
    }
}
