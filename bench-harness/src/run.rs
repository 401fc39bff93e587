//! One measured run: options every mode shares, the measurement window, and the
//! orchestration of worker threads around it.
//!
//! Workers first set up their connections, then report ready. When all are ready the
//! main thread fixes the [`Window`] (warm-up, measurement, drain) and hands it out; the
//! workers run on their own clock, recording only what falls inside the measurement
//! part. The main thread samples the server's and its own CPU at the window's edges,
//! then collects the workers' results.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cost::{self, HarnessCost, ServerCost, ServerSample};
use crate::error::Error;
use crate::reactor;
use crate::socks::Auth;

/// How the harness reaches its targets: directly, or through a SOCKS5 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub proxy: Option<SocketAddr>,
    pub auth: Option<Auth>,
}

impl Route {
    pub fn direct() -> Route {
        Route {
            proxy: None,
            auth: None,
        }
    }

    pub fn describe(&self) -> String {
        match self.proxy {
            Some(p) => format!("socks5://{p}"),
            None => "direct".into(),
        }
    }
}

/// Options every mode takes.
#[derive(Debug, Clone)]
pub struct Common {
    pub route: Route,
    pub duration: Duration,
    pub warmup: Duration,
    /// The server under test, whose CPU and memory are charged to the work done.
    pub pid: Option<u32>,
    /// Client worker threads.
    pub threads: usize,
    /// CPUs the harness threads are pinned to, round-robin; empty = not pinned.
    pub cpus: Vec<usize>,
    /// Bound on connection set-up and on each operation.
    pub timeout: Duration,
    /// Transport failures tolerated before the run is reported as failed.
    pub max_errors: u64,
}

impl Common {
    pub fn new(route: Route, duration: Duration, warmup: Duration) -> Common {
        Common {
            route,
            duration,
            warmup,
            pid: None,
            threads: 1,
            cpus: Vec::new(),
            timeout: Duration::from_secs(5),
            max_errors: 0,
        }
    }

    /// Splits `n` units over the worker threads; the first threads take the remainder.
    pub fn share(&self, n: usize, worker: usize) -> usize {
        let t = self.threads.max(1);
        n / t + usize::from(worker < n % t)
    }

    /// The CPU of harness thread `i` (workers first, targets after them).
    pub fn cpu(&self, i: usize) -> Option<usize> {
        reactor::cpu_for(&self.cpus, i)
    }
}

/// The timeline of a run, fixed once every worker is ready.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub measure_start: Instant,
    pub measure_end: Instant,
    /// After `measure_end`, operations that began inside the window may still finish
    /// until here; nothing new starts.
    pub drain_end: Instant,
}

impl Window {
    pub fn new(start: Instant, warmup: Duration, duration: Duration, drain: Duration) -> Window {
        let measure_start = start + warmup;
        let measure_end = measure_start + duration;
        Window {
            start,
            measure_start,
            measure_end,
            drain_end: measure_end + drain,
        }
    }

    #[inline]
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.measure_end
    }

    pub fn seconds(&self) -> f64 {
        (self.measure_end - self.measure_start).as_secs_f64()
    }
}

/// A worker's link to the main thread.
pub struct Ctl {
    ready: mpsc::Sender<Result<(), Error>>,
    window: mpsc::Receiver<Option<Window>>,
    reported: bool,
}

impl Ctl {
    /// Reports set-up done and blocks until the window is fixed. `Err(Aborted)` when
    /// another worker failed its set-up.
    pub fn ready(&mut self) -> Result<Window, Error> {
        self.reported = true;
        let _ = self.ready.send(Ok(()));
        self.window.recv().ok().flatten().ok_or(Error::Aborted)
    }
}

pub type Worker<R> = Box<dyn FnOnce(&mut Ctl) -> Result<R, Error> + Send>;

/// What the main thread measured around the workers.
#[derive(Debug)]
pub struct Outcome<R> {
    pub window: Window,
    pub results: Vec<R>,
    /// Growth of the sampled counter over the measurement window.
    pub counted: u64,
    pub server: Option<ServerCost>,
    /// The server's tree at the start of the measurement (memory after set-up).
    pub server_at_start: Option<ServerSample>,
    pub harness: HarnessCost,
}

/// Runs `workers` through set-up, the window and the drain. `counter`, if given, is
/// sampled at the measurement edges (bytes a target or the workers count).
pub fn execute<R: Send + 'static>(
    common: &Common,
    workers: Vec<Worker<R>>,
    counter: Option<Arc<AtomicU64>>,
    drain: Duration,
) -> Result<Outcome<R>, Error> {
    if let Some(pid) = common.pid {
        // Fail before any traffic rather than after the whole window.
        cost::sample_server(pid).map_err(|e| {
            Error::io(
                format!("--pid {pid}: cannot read the process from /proc"),
                e,
            )
        })?;
    }
    let n = workers.len();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut window_txs = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for (i, work) in workers.into_iter().enumerate() {
        let (wtx, wrx) = mpsc::channel();
        window_txs.push(wtx);
        let mut ctl = Ctl {
            ready: ready_tx.clone(),
            window: wrx,
            reported: false,
        };
        let handle = reactor::spawn(format!("bh-worker-{i}"), common.cpu(i), move || {
            let result = work(&mut ctl);
            if !ctl.reported {
                // Set-up failed: tell the main thread instead of leaving it waiting.
                let _ = ctl.ready.send(Err(Error::Aborted));
            }
            result
        })
        .map_err(|e| Error::io("cannot start a worker thread", e))?;
        handles.push(handle);
    }
    drop(ready_tx);

    // Set-up of every connection is bounded by the per-operation timeout inside the
    // workers; this bound only guards against a worker that never reports.
    let setup_bound = Instant::now() + common.timeout * 2 + Duration::from_secs(60);
    let mut setup_ok = true;
    for _ in 0..n {
        let left = setup_bound.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            _ => {
                setup_ok = false;
                break;
            }
        }
    }
    if !setup_ok {
        for tx in &window_txs {
            let _ = tx.send(None);
        }
        return Err(first_error(join_all(handles)).unwrap_or(Error::Timeout(
            "workers did not finish connection set-up".into(),
        )));
    }

    let window = Window::new(Instant::now(), common.warmup, common.duration, drain);
    for tx in &window_txs {
        let _ = tx.send(Some(window));
    }

    sleep_until(window.measure_start);
    let read = |c: &Option<Arc<AtomicU64>>| c.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
    let count_a = read(&counter);
    let self_a = cost::sample_self();
    let server_a = common.pid.map(cost::sample_server).transpose();
    sleep_until(window.measure_end);
    let count_b = read(&counter);
    let self_b = cost::sample_self();
    let server_b = common.pid.map(cost::sample_server).transpose();

    let results = join_all(handles);
    if results.iter().any(|r| r.is_err()) {
        return Err(first_error(results).unwrap_or(Error::Aborted));
    }
    let results: Vec<R> = results.into_iter().filter_map(Result::ok).collect();

    let harness_ctx = "cannot read this process's CPU time from /proc";
    let self_a = self_a.map_err(|e| Error::io(harness_ctx, e))?;
    let self_b = self_b.map_err(|e| Error::io(harness_ctx, e))?;
    let server_ctx =
        |pid: Option<u32>| format!("cannot read server pid {} from /proc", pid.unwrap_or(0));
    let server_a = server_a.map_err(|e| Error::io(server_ctx(common.pid), e))?;
    let server_b = server_b.map_err(|e| Error::io(server_ctx(common.pid), e))?;
    let server = match (common.pid, &server_a, &server_b) {
        (Some(pid), Some(a), Some(b)) => Some(ServerCost::between(pid, a, b)),
        _ => None,
    };
    Ok(Outcome {
        window,
        results,
        counted: count_b.saturating_sub(count_a),
        server,
        server_at_start: server_a,
        harness: HarnessCost::between(&self_a, &self_b),
    })
}

fn join_all<R>(handles: Vec<std::thread::JoinHandle<Result<R, Error>>>) -> Vec<Result<R, Error>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Config("a worker thread panicked".into())))
        })
        .collect()
}

/// The most telling error: a real failure before `Aborted` (which only echoes another).
fn first_error<R>(results: Vec<Result<R, Error>>) -> Option<Error> {
    let mut aborted = None;
    for r in results {
        match r {
            Err(Error::Aborted) => aborted = Some(Error::Aborted),
            Err(e) => return Some(e),
            Ok(_) => {}
        }
    }
    aborted
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Tallies transport failures a worker tolerated; becomes an error past the limit.
#[derive(Debug, Default)]
pub struct Failures {
    pub count: u64,
    pub first: Option<String>,
}

impl Failures {
    pub fn note(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }

    pub fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// `Err` when more failed than `allowed`.
    pub fn check(&self, allowed: u64) -> Result<(), Error> {
        if self.count > allowed {
            return Err(Error::Transport {
                failed: self.count,
                allowed,
                first: self.first.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}
