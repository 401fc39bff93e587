//! `throughput`: N connections moving bulk data one way, upload (client → sink) or
//! download (source → client), in Gbit/s and server CPU-seconds per GiB.
//!
//! Bytes are counted where they arrive: at the sink for upload, at the client for
//! download, sampled at the window's edges, so bytes parked in socket buffers are never
//! counted as moved.
//!
//! Every connection carries the [`Stream`], so with `--verify` the reader (sink or
//! client) compares every byte with what was sent and a relay that alters, drops or
//! duplicates bytes fails the run. Off by default: the comparison costs harness CPU.
//! Writers, and readers when not verifying, move bytes by splice (see zero_copy.rs), so
//! the harness's core is not what limits a fast server.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::Report;
use crate::run::{self, Common, Ctl, Failures, Worker};
use crate::session::{self, Dialer};
use crate::stream::{Position, Stream};
use crate::targets::Targets;
use crate::zero_copy::{Drain, Feeder, Template};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ThroughputConfig {
    pub common: Common,
    pub connections: usize,
    pub direction: Direction,
    /// Bytes per write or read call.
    pub chunk: usize,
    /// Compare every byte that arrives with the stream that was sent.
    pub verify: bool,
}

/// Why a connection stopped moving bytes.
enum Fault {
    /// Tolerated up to `--max-errors`.
    Transport(String),
    /// Never tolerated.
    Corrupt(String),
}

pub fn run(cfg: &ThroughputConfig) -> Result<Report, Error> {
    if cfg.connections == 0 || cfg.chunk == 0 {
        return Err(Error::Config(
            "throughput needs --connections and --chunk above 0".into(),
        ));
    }
    let c = &cfg.common;
    let threads = c.threads.clamp(1, cfg.connections);
    let common = Common {
        threads,
        ..c.clone()
    };
    let targets = if cfg.verify {
        Targets::start_checking(crate::LOOPBACK, c.cpu(threads))
    } else {
        Targets::start(crate::LOOPBACK, c.cpu(threads))
    }
    .map_err(|e| Error::io("cannot start the targets", e))?;
    let target = match cfg.direction {
        Direction::Upload => targets.sink,
        Direction::Download => targets.source,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let dialer = Dialer::new(&c.route, target);
    let mut workers: Vec<Worker<Failures>> = Vec::new();
    for w in 0..threads {
        let n = common.share(cfg.connections, w);
        let (dialer, counter, cfg2) = (dialer.clone(), counter.clone(), cfg.clone());
        workers.push(Box::new(move |ctl: &mut Ctl| {
            worker(&cfg2, &dialer, n, &counter, ctl)
        }));
    }
    // Upload is counted by the sink, download by the workers.
    let sampled = match cfg.direction {
        Direction::Upload => targets.counters.sink_bytes.clone(),
        Direction::Download => counter,
    };
    let out = run::execute(&common, workers, Some(sampled), Duration::ZERO)?;
    let counters = targets.counters.clone();
    drop(targets);
    let corrupt = counters.corrupt.load(Ordering::Relaxed);
    if corrupt > 0 {
        let first = counters
            .first_corruption
            .lock()
            .expect("not poisoned")
            .take();
        return Err(Error::Corrupt(format!(
            "{corrupt} upload connection(s) reached the sink altered; first: {}",
            first.unwrap_or_default()
        )));
    }

    let mut failures = Failures::default();
    for f in out.results {
        failures.merge(f);
    }
    failures.check(c.max_errors)?;
    let window_s = out.window.seconds();
    let bytes = out.counted;
    if bytes == 0 {
        return Err(Error::Timeout("no byte moved in the window".into()));
    }
    Ok(Report {
        setup: format!(
            "{} connections, {}, {}",
            cfg.connections,
            cfg.direction.name(),
            if cfg.verify {
                format!(
                    "written by splice, read {} B at a time, every byte verified",
                    cfg.chunk
                )
            } else {
                "written and read by splice".to_string()
            }
        ),
        route: c.route.describe(),
        bytes,
        gbit_per_s: Some(bytes as f64 * 8.0 / window_s / 1e9),
        errors: failures.count,
        server: out.server,
        ..Report::new("throughput", "byte", bytes, window_s, out.harness)
    }
    .finish())
}

fn worker(
    cfg: &ThroughputConfig,
    dialer: &Dialer,
    n: usize,
    counter: &AtomicU64,
    ctl: &mut Ctl,
) -> Result<Failures, Error> {
    let mut reactor = Reactor::new(1024).map_err(|e| Error::io("poll", e))?;
    let mut sessions = session::open_all(&mut reactor, dialer, n, 256, cfg.common.timeout)?;
    let stream = Stream::new(cfg.chunk);
    // Per connection: stream bytes written (upload) or read and checked (download).
    let mut progress = vec![Position::default(); n];
    if cfg.direction == Direction::Download {
        for (s, p) in sessions.iter().zip(&mut progress) {
            // The stream's first bytes may have come with the server's reply.
            let early = s.early_data();
            counter.fetch_add(early.len() as u64, Ordering::Relaxed);
            if cfg.verify {
                p.check(&stream, early).map_err(Error::Corrupt)?;
            }
        }
    }
    // Zero-copy movers where they can be set up; plain reads and writes otherwise.
    let template = (cfg.direction == Direction::Upload)
        .then(|| Template::new(&stream).ok())
        .flatten();
    // A feeder's bytes are the stream's; a drain never shows them, so verifying reads
    // them into memory instead.
    let drains_ok = cfg.direction == Direction::Download && !cfg.verify;
    let mut feeders: Vec<Option<Feeder>> = Vec::with_capacity(n);
    let mut drains: Vec<Option<Drain>> = Vec::with_capacity(n);
    for at in &progress {
        feeders.push(template.as_ref().and_then(|t| Feeder::new(t, at).ok()));
        drains.push(drains_ok.then(|| Drain::new().ok()).flatten());
    }
    let window = ctl.ready()?;
    let mut buf = vec![0u8; cfg.chunk];
    let mut failures = Failures::default();
    let mut dead = vec![false; n];
    let mut ready: Vec<usize> = (0..n).collect();
    // Every connection starts writing (or reading) at once; then readiness drives it.
    loop {
        for &i in &ready {
            if i >= n || dead[i] {
                continue;
            }
            let sock = &mut sessions[i].sock;
            let at = &mut progress[i];
            let result = match (cfg.direction, &mut feeders[i], &mut drains[i]) {
                (Direction::Upload, Some(feeder), _) => feeder
                    .write(&*sock, at)
                    .map_err(|e| Fault::Transport(format!("splice: {e}"))),
                (Direction::Upload, None, _) => write_until_blocked(sock, &stream, at),
                (Direction::Download, _, Some(drain)) => {
                    match drain.read(&*sock, |k| {
                        counter.fetch_add(k, Ordering::Relaxed);
                    }) {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            Err(Fault::Transport("the relay closed the connection".into()))
                        }
                        Err(e) => Err(Fault::Transport(format!("splice: {e}"))),
                    }
                }
                (Direction::Download, _, None) => {
                    let check = cfg.verify.then_some(&stream);
                    read_until_blocked(sock, &mut buf, counter, check, at)
                }
            };
            match result {
                Ok(()) => {}
                Err(Fault::Transport(what)) => {
                    dead[i] = true;
                    failures.note(|| what);
                }
                Err(Fault::Corrupt(what)) => return Err(Error::Corrupt(what)),
            }
        }
        if Instant::now() >= window.measure_end || failures.count > cfg.common.max_errors {
            break;
        }
        reactor
            .wait(window.measure_end)
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
    }
    Ok(failures)
}

fn write_until_blocked(
    sock: &mut mio::net::TcpStream,
    stream: &Stream,
    at: &mut Position,
) -> Result<(), Fault> {
    loop {
        match sock.write(stream.at(at.offset, stream.max())) {
            Ok(n) => at.offset += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Fault::Transport(format!("write: {e}"))),
        }
    }
}

/// Reads what the socket holds; with `check`, compares it with the stream at `at`.
fn read_until_blocked(
    sock: &mut mio::net::TcpStream,
    buf: &mut [u8],
    counter: &AtomicU64,
    check: Option<&Stream>,
    at: &mut Position,
) -> Result<(), Fault> {
    loop {
        match sock.read(buf) {
            Ok(0) => return Err(Fault::Transport("the relay closed the connection".into())),
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(stream) = check {
                    at.check(stream, &buf[..n]).map_err(Fault::Corrupt)?;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Fault::Transport(format!("read: {e}"))),
        }
    }
}
