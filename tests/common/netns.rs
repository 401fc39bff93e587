//! Network namespaces for tests that need addresses, routes and interfaces loopback alone
//! does not give: a public-looking target, source addresses, a routed IPv6 prefix,
//! interfaces, firewall marks.
//!
//! A network namespace belongs to a thread, not to a process: `unshare(CLONE_NEWNET)` on a
//! thread moves that thread alone, and everything it then creates (sockets, threads,
//! child processes such as the server under test and `ip`) lives in the new namespace. So
//! [`in_netns`] runs the test body on a thread of its own that unshares first; the test
//! harness's threads and every other test stay where they were, and the namespace goes
//! away with the last socket and process in it. Nothing in it can reach another machine:
//! it starts with loopback alone (checked before anything is set up), and the veth pairs
//! tests add lead only to other namespaces of the same test. Needs root (CAP_SYS_ADMIN),
//! which the test machines and CI have, and iproute2.

use std::process::Command;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use nix::sched::{unshare, CloneFlags};

/// Runs `body` in a fresh network namespace whose loopback is up, after running each of
/// `setup` there as `ip` arguments (`"addr add 198.51.100.1/32 dev lo"`).
pub fn in_netns<T: Send>(setup: &[&str], body: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            enter_fresh_netns();
            for args in setup {
                ip(args);
            }
            body()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into a new network namespace, checks it is isolated and
/// brings loopback up.
fn enter_fresh_netns() {
    unshare(CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("unshare(CLONE_NEWNET): {e} (the policy tests need root)"));
    let interfaces = interfaces();
    assert_eq!(
        interfaces,
        ["lo"],
        "a fresh network namespace must hold loopback alone; refusing to go on"
    );
    ip("link set lo up");
}

/// Runs `ip` with whitespace-separated `args` in the calling thread's namespace; panics
/// with its stderr when it fails.
#[track_caller]
pub fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .unwrap_or_else(|e| panic!("run `ip {args}` (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {args}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The interfaces of the calling thread's namespace (`/proc/thread-self`: `/proc/self`
/// would show the main thread's namespace).
pub fn interfaces() -> Vec<String> {
    net_dev().into_iter().map(|(name, _)| name).collect()
}

/// Packets sent by `dev` so far, in the calling thread's namespace.
#[track_caller]
pub fn tx_packets(dev: &str) -> u64 {
    net_dev()
        .into_iter()
        .find(|(name, _)| name == dev)
        .unwrap_or_else(|| panic!("no interface {dev} here"))
        .1
}

/// (name, transmitted packets) per interface, from `/proc/thread-self/net/dev`.
fn net_dev() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .expect("read /proc/thread-self/net/dev");
    // Two header lines, then `name: 8 receive fields, 8 transmit fields`.
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let tx = fields.split_whitespace().nth(9)?.parse().ok()?;
            Some((name.trim().to_string(), tx))
        })
        .collect()
}

type Job = Box<dyn FnOnce() + Send>;

/// A second namespace, for peers on the far side of a veth pair: a thread parked in it
/// that runs what it is given there. `ip link ... netns PID` takes its thread id.
pub struct PeerNetns {
    tid: i32,
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl PeerNetns {
    /// A fresh namespace with loopback up.
    pub fn start() -> PeerNetns {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            enter_fresh_netns();
            tid_tx.send(thread_id()).expect("the starter waits");
            serve(&queue);
        });
        let tid = tid_rx
            .recv()
            .unwrap_or_else(|_| panic!("the peer namespace thread died while starting"));
        PeerNetns {
            tid,
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// The thread id to name this namespace by (`ip link set DEV netns TID`).
    pub fn pid(&self) -> i32 {
        self.tid
    }

    /// Runs `f` inside the namespace and returns its result (a panic in `f` panics here).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(result);
        });
        self.jobs
            .as_ref()
            .expect("running")
            .send(job)
            .expect("the peer namespace thread is running");
        match rx.recv().expect("the peer namespace thread answers") {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for PeerNetns {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(queue: &Receiver<Job>) {
    // Ends when the owner drops its sender.
    while let Ok(job) = queue.recv() {
        job();
    }
}

/// The calling thread's id, from `/proc/thread-self` (a link to `PID/task/TID`).
fn thread_id() -> i32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/thread-self link {link:?}"))
}
