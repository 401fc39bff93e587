//! `throughput`: N connections moving bulk data one way, upload (client → sink) or
//! download (source → client), in Gbit/s and server CPU-seconds per GiB.
//!
//! Bytes are counted where they arrive: at the sink for upload, at the client for
//! download, sampled at the window's edges, so bytes parked in socket buffers are never
//! counted as moved.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::Report;
use crate::run::{self, Common, Ctl, Failures, Worker};
use crate::session::{self, Dialer};
use crate::targets::Targets;

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
    let targets = Targets::start(crate::LOOPBACK, c.cpu(threads))
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
    drop(targets);

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
        mode: "throughput",
        setup: format!(
            "{} connections, {}, {} B writes",
            cfg.connections,
            cfg.direction.name(),
            cfg.chunk
        ),
        route: c.route.describe(),
        window_s,
        unit: "byte",
        ops: bytes,
        ops_per_s: bytes as f64 / window_s,
        bytes,
        gbit_per_s: Some(bytes as f64 * 8.0 / window_s / 1e9),
        sent: None,
        loss: None,
        unfinished: 0,
        errors: failures.count,
        latency: None,
        send_lag: None,
        server: out.server,
        server_us_per_op: None,
        server_s_per_gib: None,
        per_connection: None,
        harness: out.harness,
        warnings: Vec::new(),
        histogram: None,
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
    if cfg.direction == Direction::Download {
        let early: usize = sessions.iter().map(|s| s.early_data().len()).sum();
        counter.fetch_add(early as u64, Ordering::Relaxed);
    }
    let window = ctl.ready()?;
    let pattern = crate::pattern(cfg.chunk);
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
            let result = match cfg.direction {
                Direction::Upload => write_until_blocked(sock, &pattern),
                Direction::Download => read_until_blocked(sock, &mut buf, counter),
            };
            if let Err(what) = result {
                dead[i] = true;
                failures.note(|| what);
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

fn write_until_blocked(sock: &mut mio::net::TcpStream, data: &[u8]) -> Result<(), String> {
    loop {
        match sock.write(data) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
}

fn read_until_blocked(
    sock: &mut mio::net::TcpStream,
    buf: &mut [u8],
    counter: &AtomicU64,
) -> Result<(), String> {
    loop {
        match sock.read(buf) {
            Ok(0) => return Err("the relay closed the connection".into()),
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
