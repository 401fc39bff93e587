//! `idle`: K relayed connections that carry one echo each and then stay idle, and what
//! they cost the server: memory per connection (RSS and PSS growth over the count, read
//! before any connection and again after the warm-up has let the server settle) and the
//! CPU an idle connection still costs (timers, keep-alives) over the window.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::cost;
use crate::error::Error;
use crate::reactor::Reactor;
use crate::report::{PerConnection, Report};
use crate::run::{self, Common, Ctl, Failures, Worker};
use crate::session::{self, Dialer, Session};
use crate::targets::Targets;

#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub common: Common,
    pub connections: usize,
    /// Connections in set-up at once.
    pub concurrency: usize,
    /// The server's (RSS, PSS) to measure growth from. `None`: read it just before
    /// this run. A server keeps memory it freed (thread stacks, malloc arenas, forked
    /// children), so after earlier runs growth is understated; `compare` passes the
    /// reading it took before its first run.
    pub baseline: Option<(u64, u64)>,
}

pub fn run(cfg: &IdleConfig) -> Result<Report, Error> {
    if cfg.connections == 0 {
        return Err(Error::Config("idle needs --connections above 0".into()));
    }
    crate::raise_nofile();
    // Client and target side of each connection, plus a margin for the rest.
    let need = 2 * cfg.connections as u64 + 64;
    if crate::nofile_limit() < need {
        return Err(Error::Config(format!(
            "{} connections need {need} open files here, and the limit is {} (raise ulimit -n)",
            cfg.connections,
            crate::nofile_limit()
        )));
    }
    let c = &cfg.common;
    let threads = c.threads.clamp(1, cfg.connections);
    let common = Common {
        threads,
        ..c.clone()
    };
    let targets = Targets::start(crate::LOOPBACK, c.cpu(threads))
        .map_err(|e| Error::io("cannot start the echo target", e))?;
    let dialer = Dialer::new(&c.route, targets.echo);
    let before = match (c.pid, cfg.baseline) {
        (Some(_), Some(b)) => Some(b),
        (Some(pid), None) => {
            let s = cost::sample_server(pid)
                .map_err(|e| Error::io(format!("cannot read server pid {pid} from /proc"), e))?;
            Some((s.rss, s.pss))
        }
        (None, _) => None,
    };
    let mut workers: Vec<Worker<Failures>> = Vec::new();
    for w in 0..threads {
        let n = common.share(cfg.connections, w);
        let parallel = common.share(cfg.concurrency.max(threads), w).max(1);
        let (dialer, cfg2) = (dialer.clone(), cfg.clone());
        workers.push(Box::new(move |ctl: &mut Ctl| {
            worker(&cfg2, &dialer, n, parallel, ctl)
        }));
    }
    let t0 = Instant::now();
    let out = run::execute(&common, workers, None, Duration::ZERO)?;
    let setup_s = (out.window.start - t0).as_secs_f64();
    drop(targets);

    let mut failures = Failures::default();
    for f in out.results {
        failures.merge(f);
    }
    failures.check(c.max_errors)?;
    let k = cfg.connections as u64;
    let per_connection = match (before, out.server_at_start) {
        (Some((rss, pss)), Some(a)) => Some(PerConnection {
            connections: k,
            rss_before: rss,
            pss_before: pss,
            rss_after: a.rss,
            pss_after: a.pss,
            rss_per_conn: (a.rss as f64 - rss as f64) / k as f64,
            pss_per_conn: (a.pss as f64 - pss as f64) / k as f64,
        }),
        _ => None,
    };
    let mut report = Report {
        setup: format!(
            "{} idle connections, opened {} at a time in {setup_s:.2} s",
            cfg.connections, cfg.concurrency
        ),
        route: c.route.describe(),
        errors: failures.count,
        server: out.server,
        per_connection,
        ops_per_s: k as f64 / setup_s.max(1e-9),
        ..Report::new("idle", "connection", k, out.window.seconds(), out.harness)
    }
    .finish();
    // CPU per connection over an idle window is not a per-operation cost.
    report.server_us_per_op = None;
    Ok(report)
}

fn worker(
    cfg: &IdleConfig,
    dialer: &Dialer,
    n: usize,
    parallel: usize,
    ctl: &mut Ctl,
) -> Result<Failures, Error> {
    let timeout = cfg.common.timeout;
    let mut reactor = Reactor::new(1024).map_err(|e| Error::io("poll", e))?;
    let mut sessions = session::open_all(&mut reactor, dialer, n, parallel, timeout)?;
    echo_once(&mut reactor, &mut sessions, timeout)?;
    let window = ctl.ready()?;
    let mut failures = Failures::default();
    let mut closed = vec![false; n];
    let mut scratch = [0u8; 64];
    let mut ready = Vec::with_capacity(1024);
    // Nothing should happen now; any readiness is the server closing a connection.
    while Instant::now() < window.measure_end {
        reactor
            .wait(window.measure_end)
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
        for &i in &ready {
            if i >= n || closed[i] {
                continue;
            }
            match sessions[i].sock.read(&mut scratch) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Ok(0) => {
                    closed[i] = true;
                    failures.note(|| "the server closed an idle connection".into());
                }
                Ok(m) => {
                    return Err(Error::Corrupt(format!(
                        "{m} bytes arrived on an idle connection"
                    )))
                }
                Err(e) => {
                    closed[i] = true;
                    failures.note(|| format!("idle connection: {e}"));
                }
            }
        }
    }
    Ok(failures)
}

/// One byte through every connection and back, so each is known to be relayed end to
/// end (a server may connect to the target lazily).
fn echo_once(
    reactor: &mut Reactor,
    sessions: &mut [Session],
    timeout: Duration,
) -> Result<(), Error> {
    const PING: u8 = 0x5a;
    let n = sessions.len();
    let mut done = vec![false; n];
    let mut left = n;
    for s in sessions.iter_mut() {
        if !s.early_data().is_empty() {
            return Err(Error::Corrupt(
                "data arrived before the echo request".into(),
            ));
        }
        // One byte always fits in a fresh socket's send buffer.
        match s.sock.write(&[PING]) {
            Ok(1) => {}
            Ok(_) => return Err(Error::Corrupt("could not send the echo byte".into())),
            Err(e) => return Err(Error::io("echo on a fresh connection", e)),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut ready: Vec<usize> = (0..n).collect();
    // Bounded by the deadline.
    while left > 0 {
        for &i in &ready {
            if i >= n || done[i] {
                continue;
            }
            let mut b = [0u8; 2];
            match sessions[i].sock.read(&mut b) {
                Ok(1) if b[0] == PING => {
                    done[i] = true;
                    left -= 1;
                }
                Ok(0) => {
                    return Err(Error::io(
                        "echo on a fresh connection",
                        std::io::Error::new(ErrorKind::UnexpectedEof, "closed by the relay"),
                    ))
                }
                Ok(_) => return Err(Error::Corrupt("the echo byte came back wrong".into())),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io("echo on a fresh connection", e)),
            }
        }
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "{left} of {n} connections did not echo within {timeout:?}"
            )));
        }
        reactor
            .wait(deadline.min(Instant::now() + Duration::from_millis(100)))
            .map_err(|e| Error::io("poll", e))?;
        ready.clear();
        ready.extend(reactor.tokens().map(|t| t.0));
    }
    Ok(())
}
