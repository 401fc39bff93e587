//! `latency`: C connections of request/response ping-pong with S-byte messages to the
//! echo target, one request in flight per connection.
//!
//! Closed loop: each response triggers the next request, and latency runs from the
//! actual send. Open loop (`--rate`): every request has an intended send time on a fixed
//! schedule (rate / C per connection, connections staggered), and latency runs from that
//! intended time, as wrk2 does. When the server stalls, the requests that should have
//! been sent meanwhile queue up behind the stall and each carries its share of it, so a
//! stall shows in the tail instead of hiding in the few requests that happened to be in
//! flight (coordinated omission). Requests scheduled inside the window still unsent or
//! unanswered when the drain ends are recorded with their wait so far.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::Report;
use crate::run::{self, Common, Ctl, Failures, Window, Worker};
use crate::session::{self, Dialer, Session};
use crate::stats::{self, Percentiles};
use crate::targets::Targets;

#[derive(Debug, Clone)]
pub struct LatencyConfig {
    pub common: Common,
    pub connections: usize,
    pub size: usize,
    /// Requests per second over all connections; `None` = closed loop.
    pub rate: Option<f64>,
}

/// Per-worker result.
struct Part {
    hist: Histogram<u64>,
    /// Open loop: how late the harness woke for a scheduled send on an idle connection
    /// (its own scheduling delay, apart from any queueing behind the server).
    lag: Histogram<u64>,
    unfinished: u64,
    failures: Failures,
}

pub fn run(cfg: &LatencyConfig) -> Result<Report, Error> {
    if cfg.connections == 0 || cfg.size == 0 {
        return Err(Error::Config(
            "latency needs --connections and --size above 0".into(),
        ));
    }
    if let Some(r) = cfg.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err(Error::Config("--rate must be a positive number".into()));
        }
    }
    let c = &cfg.common;
    let threads = c.threads.clamp(1, cfg.connections);
    let targets = Targets::start(crate::LOOPBACK, c.cpu(threads))
        .map_err(|e| Error::io("cannot start the echo target", e))?;
    let dialer = Dialer::new(&c.route, targets.echo);
    let pattern = crate::pattern(cfg.size);
    let mut workers: Vec<Worker<Part>> = Vec::new();
    let mut first = 0;
    let common = Common {
        threads,
        ..c.clone()
    };
    for w in 0..threads {
        let n = common.share(cfg.connections, w);
        let (dialer, pattern, cfg2) = (dialer.clone(), pattern.clone(), cfg.clone());
        let base = first;
        workers.push(Box::new(move |ctl: &mut Ctl| {
            worker(&cfg2, &dialer, &pattern, base, n, ctl)
        }));
        first += n;
    }
    let drain = cfg.common.timeout.min(Duration::from_secs(2));
    let out = run::execute(&common, workers, None, drain)?;
    drop(targets);

    let mut hist = stats::histogram();
    let mut lag = stats::histogram();
    let mut failures = Failures::default();
    let mut unfinished = 0;
    for p in out.results {
        stats::merge(&mut hist, &p.hist);
        stats::merge(&mut lag, &p.lag);
        failures.merge(p.failures);
        unfinished += p.unfinished;
    }
    failures.check(c.max_errors)?;
    let window_s = out.window.seconds();
    let ops = hist.len() - unfinished;
    let setup = match cfg.rate {
        Some(r) => format!(
            "{} connections, {} B messages, open loop at {r} req/s",
            cfg.connections, cfg.size
        ),
        None => format!(
            "{} connections, {} B messages, closed loop",
            cfg.connections, cfg.size
        ),
    };
    let mut warnings = Vec::new();
    if let Some(r) = cfg.rate {
        let achieved = ops as f64 / window_s;
        if achieved < 0.95 * r {
            warnings.push(format!(
                "achieved {achieved:.0} req/s of the {r} req/s asked: the server (or the harness) could not keep up, and the latency tail shows the queueing"
            ));
        }
    }
    let send_lag = Percentiles::of(&lag);
    if let Some(l) = send_lag.filter(|l| l.p99_us > 1000.0) {
        warnings.push(format!(
            "the harness woke late for 1% of its scheduled sends by over {:.0} µs: the machine is busy, and the latency above includes that delay",
            l.p99_us
        ));
    }
    if ops == 0 {
        return Err(Error::Timeout("no request completed in the window".into()));
    }
    Ok(Report {
        setup,
        route: c.route.describe(),
        unfinished,
        errors: failures.count,
        latency: Percentiles::of(&hist),
        send_lag,
        server: out.server,
        warnings,
        histogram: Some(hist),
        ..Report::new("latency", "request", ops, window_s, out.harness)
    }
    .finish())
}

struct Pinger {
    session: Session,
    /// Intended send time of the request in flight.
    in_flight: Option<Instant>,
    written: usize,
    echoed: usize,
    /// Open loop: intended time of the next request.
    next: Instant,
    dead: bool,
}

fn worker(
    cfg: &LatencyConfig,
    dialer: &Dialer,
    pattern: &[u8],
    base: usize,
    n: usize,
    ctl: &mut Ctl,
) -> Result<Part, Error> {
    let timeout = cfg.common.timeout;
    let mut reactor = Reactor::new(1024).map_err(|e| Error::io("poll", e))?;
    let sessions = session::open_all(&mut reactor, dialer, n, 256, timeout)?;
    if sessions.iter().any(|s| !s.early_data().is_empty()) {
        return Err(Error::Corrupt(
            "the echo target's relay sent data before any request".into(),
        ));
    }
    let window = ctl.ready()?;
    let now = Instant::now();
    // Open loop: the whole run's schedule is one request every 1/rate, dealt out to
    // connections in turn, so connection i starts at i/rate and repeats every C/rate.
    let period = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r));
    let mut pingers: Vec<Pinger> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| Pinger {
            session,
            in_flight: None,
            written: 0,
            echoed: 0,
            next: match cfg.rate {
                Some(r) => window.start + Duration::from_secs_f64((base + i) as f64 / r),
                None => now,
            },
            dead: false,
        })
        .collect();
    let mut part = Part {
        hist: stats::histogram(),
        lag: stats::histogram(),
        unfinished: 0,
        failures: Failures::default(),
    };
    let mut scratch = vec![0u8; cfg.size.max(64 * 1024)];
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::with_capacity(n);
    for (i, p) in pingers.iter().enumerate() {
        due.push(Reverse((p.next, i)));
    }
    let mut ready = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= window.drain_end {
            break;
        }
        // Start every request whose time has come (closed loop: all are due at once).
        while let Some(&Reverse((t, i))) = due.peek() {
            if t > now {
                break;
            }
            due.pop();
            if t < window.measure_end && !pingers[i].dead {
                if period.is_some() && window.measures(t) {
                    stats::record(&mut part.lag, now - t);
                }
                start(&mut pingers[i], t);
                pump(
                    &mut pingers[i],
                    i,
                    pattern,
                    &mut scratch,
                    &window,
                    period,
                    &mut due,
                    &mut part,
                )?;
            }
        }
        let all_idle = pingers.iter().all(|p| p.in_flight.is_none() || p.dead);
        if now >= window.measure_end && all_idle && due.is_empty() {
            break;
        }
        let deadline = due
            .peek()
            .map_or(window.drain_end, |r| r.0 .0.min(window.drain_end));
        reactor.wait(deadline).map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            if i < pingers.len() && !pingers[i].dead {
                pump(
                    &mut pingers[i],
                    i,
                    pattern,
                    &mut scratch,
                    &window,
                    period,
                    &mut due,
                    &mut part,
                )?;
            }
        }
        if part.failures.count > cfg.common.max_errors {
            break;
        }
    }
    // What the drain left: requests in flight, and (open loop) requests that were
    // scheduled inside the window but never sent because their connection was stuck.
    for p in &mut pingers {
        if let Some(t) = p.in_flight.take() {
            if window.measures(t) {
                stats::record(&mut part.hist, window.drain_end - t);
                part.unfinished += 1;
            }
            if let Some(period) = period {
                p.next = t + period;
            }
        }
        if let Some(period) = period {
            // Bounded by rate × duration.
            while p.next < window.measure_end {
                if window.measures(p.next) {
                    stats::record(&mut part.hist, window.drain_end - p.next);
                    part.unfinished += 1;
                }
                p.next += period;
            }
        }
    }
    Ok(part)
}

fn start(p: &mut Pinger, intended: Instant) {
    p.in_flight = Some(intended);
    p.written = 0;
    p.echoed = 0;
}

/// Writes and reads what the socket allows; on a complete echo records the latency and
/// schedules the next request.
#[allow(clippy::too_many_arguments)]
fn pump(
    p: &mut Pinger,
    i: usize,
    pattern: &[u8],
    scratch: &mut [u8],
    window: &Window,
    period: Option<Duration>,
    due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    part: &mut Part,
) -> Result<(), Error> {
    let size = pattern.len();
    // Bounded: a request is sent again only after its echo completed, and each pass
    // moves bytes or returns.
    loop {
        let Some(intended) = p.in_flight else {
            // Nothing in flight: drain stray readiness (EOF shows here).
            return read_idle(p, scratch, part);
        };
        let fresh = p.written == 0;
        while p.written < size {
            match p.session.sock.write(&pattern[p.written..]) {
                Ok(n) => p.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return fail(p, part, format!("write: {e}")),
            }
        }
        if fresh && p.written == size {
            // The whole request went out in this call, so no echo can have been read
            // yet and its arrival raises a fresh readiness edge: skip the read that
            // would only block. (Linux epoll signals every arrival on a TCP socket.)
            return Ok(());
        }
        loop {
            match p.session.sock.read(scratch) {
                Ok(0) => return fail(p, part, "the relay closed the connection".into()),
                Ok(n) => {
                    let end = p.echoed + n;
                    if end > p.written || scratch[..n] != pattern[p.echoed..end] {
                        return Err(Error::Corrupt(format!(
                            "echo bytes {}..{end} differ from what was sent",
                            p.echoed
                        )));
                    }
                    p.echoed = end;
                    if p.echoed == size {
                        break;
                    }
                    if n < scratch.len() && p.written == size {
                        // Short read: drained; the rest raises a new edge.
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return fail(p, part, format!("read: {e}")),
            }
        }
        let now = Instant::now();
        if window.measures(intended) {
            stats::record(&mut part.hist, now - intended);
        }
        p.in_flight = None;
        let next = match period {
            Some(period) => intended + period,
            None => now,
        };
        p.next = next;
        if next >= window.measure_end {
            return Ok(());
        }
        if next > now {
            due.push(Reverse((next, i)));
            return Ok(());
        }
        // Due already (closed loop, or an open-loop backlog): send at once.
        start(p, next);
    }
}

fn read_idle(p: &mut Pinger, scratch: &mut [u8], part: &mut Part) -> Result<(), Error> {
    match p.session.sock.read(scratch) {
        Ok(0) => fail(p, part, "the relay closed the connection".into()),
        Ok(n) => Err(Error::Corrupt(format!(
            "{n} bytes arrived with no request in flight"
        ))),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(e) => fail(p, part, format!("read: {e}")),
    }
}

fn fail(p: &mut Pinger, part: &mut Part, what: String) -> Result<(), Error> {
    p.dead = true;
    p.in_flight = None;
    part.failures.note(|| what);
    Ok(())
}
