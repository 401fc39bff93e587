//! What a run cost, read from /proc: the server's CPU time and memory (its whole process
//! tree, since Dante forks children), and the harness's own CPU time per thread.
//!
//! CPU time is utime + stime of every process in the tree plus cutime + cstime (children
//! that exited and were reaped during the window are charged there). A child reaped
//! during the window is charged its whole life, a small overcount on a forking server.
//! Memory is RSS and PSS from /proc/PID/smaps_rollup, summed over the tree; PSS divides
//! shared pages among the processes that map them, so it does not count a forked
//! server's shared pages once per child.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use procfs::process::{all_processes, Process};
use serde::Serialize;

fn proc_err(e: procfs::ProcError) -> io::Error {
    match e {
        procfs::ProcError::Io(e, _) => e,
        procfs::ProcError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        other => io::Error::other(other.to_string()),
    }
}

fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / procfs::ticks_per_second() as f64
}

/// The process `root` and all its descendants.
pub fn process_tree(root: u32) -> io::Result<Vec<i32>> {
    let root = root as i32;
    // Fails clearly when the PID does not exist.
    Process::new(root)
        .and_then(|p| p.stat())
        .map_err(proc_err)?;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in all_processes().map_err(proc_err)?.flatten() {
        if let Ok(stat) = p.stat() {
            children.entry(stat.ppid).or_default().push(stat.pid);
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    // Bounded by the number of processes on the machine.
    while i < tree.len() {
        if let Some(kids) = children.get(&tree[i]) {
            tree.extend(kids.iter().copied().filter(|k| *k != root));
        }
        i += 1;
    }
    tree.sort_unstable();
    tree.dedup();
    Ok(tree)
}

/// One reading of a server's tree.
#[derive(Debug, Clone, Copy)]
pub struct ServerSample {
    pub at: Instant,
    pub cpu_ticks: u64,
    pub processes: usize,
    pub rss: u64,
    pub pss: u64,
}

/// Reads CPU time and memory of `root`'s tree. Processes that exit while being read are
/// skipped; `root` itself must exist.
pub fn sample_server(root: u32) -> io::Result<ServerSample> {
    let pids = process_tree(root)?;
    let at = Instant::now();
    let mut s = ServerSample {
        at,
        cpu_ticks: 0,
        processes: 0,
        rss: 0,
        pss: 0,
    };
    for pid in pids {
        let Ok(p) = Process::new(pid) else { continue };
        let Ok(stat) = p.stat() else { continue };
        s.processes += 1;
        s.cpu_ticks +=
            stat.utime + stat.stime + stat.cutime.max(0) as u64 + stat.cstime.max(0) as u64;
        if let Ok(rollup) = p.smaps_rollup() {
            if let Some(m) = rollup.memory_map_rollup.0.first() {
                s.rss += m.extension.map.get("Rss").copied().unwrap_or(0);
                s.pss += m.extension.map.get("Pss").copied().unwrap_or(0);
            }
        }
    }
    Ok(s)
}

/// The server's cost over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerCost {
    pub pid: u32,
    pub processes: usize,
    /// CPU-seconds used in the window.
    pub cpu_s: f64,
    /// Average cores busy: cpu_s / window.
    pub cores: f64,
    /// RSS and PSS at the end of the window, bytes.
    pub rss_bytes: u64,
    pub pss_bytes: u64,
}

impl ServerCost {
    pub fn between(pid: u32, a: &ServerSample, b: &ServerSample) -> ServerCost {
        let cpu_s = ticks_to_secs(b.cpu_ticks.saturating_sub(a.cpu_ticks));
        let window = (b.at - a.at).as_secs_f64().max(1e-9);
        ServerCost {
            pid,
            processes: b.processes,
            cpu_s,
            cores: cpu_s / window,
            rss_bytes: b.rss,
            pss_bytes: b.pss,
        }
    }
}

/// CPU ticks of every thread of this process, by thread name, plus the process total
/// (which includes threads that already exited).
#[derive(Debug, Clone)]
pub struct SelfSample {
    pub at: Instant,
    pub total_ticks: u64,
    pub threads: Vec<(i32, String, u64)>,
}

pub fn sample_self() -> io::Result<SelfSample> {
    let me = Process::myself().map_err(proc_err)?;
    let stat = me.stat().map_err(proc_err)?;
    let mut threads = Vec::new();
    for task in me.tasks().map_err(proc_err)?.flatten() {
        if let Ok(s) = task.stat() {
            threads.push((s.pid, s.comm, s.utime + s.stime));
        }
    }
    Ok(SelfSample {
        at: Instant::now(),
        total_ticks: stat.utime + stat.stime,
        threads,
    })
}

/// The harness's own cost over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HarnessCost {
    pub cpu_s: f64,
    pub cores: f64,
    /// The busiest harness thread and the share of one core it used.
    pub busiest_thread: String,
    pub busiest_share: f64,
}

impl HarnessCost {
    pub fn between(a: &SelfSample, b: &SelfSample) -> HarnessCost {
        let window = (b.at - a.at).as_secs_f64().max(1e-9);
        let cpu_s = ticks_to_secs(b.total_ticks.saturating_sub(a.total_ticks));
        let mut busiest = (String::new(), 0.0);
        for (tid, name, ticks) in &b.threads {
            let before = a
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, t)| *t);
            let share = ticks_to_secs(ticks.saturating_sub(before)) / window;
            if share > busiest.1 {
                busiest = (name.clone(), share);
            }
        }
        HarnessCost {
            cpu_s,
            cores: cpu_s / window,
            busiest_thread: busiest.0,
            busiest_share: busiest.1,
        }
    }

    /// A harness thread that was busy this much of the time may have been the limit.
    pub fn saturated(&self) -> bool {
        self.busiest_share >= 0.9
    }
}

/// How long a CPU tick is; figures over shorter windows are coarse.
pub fn tick() -> Duration {
    Duration::from_secs_f64(1.0 / procfs::ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn tree_includes_children_and_counts_their_cpu() {
        let me = std::process::id();
        let before = sample_server(me).unwrap();
        // A child that burns ~0.3 s of CPU and then waits to be read.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; read x")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let grown = loop {
            let s = sample_server(me).unwrap();
            let tree = process_tree(me).unwrap();
            assert!(tree.contains(&(child.id() as i32)));
            if s.cpu_ticks >= before.cpu_ticks + 10 || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(grown.processes >= 2);
        assert!(grown.rss > 0 && grown.pss > 0);
        let cost = ServerCost::between(me, &before, &grown);
        assert!(cost.cpu_s >= 0.1, "{cost:?}");
    }

    #[test]
    fn missing_pid_is_an_error() {
        // PIDs are capped well below this on Linux.
        assert!(sample_server(u32::MAX / 2).is_err());
    }

    #[test]
    fn self_sample_names_threads() {
        let s = sample_self().unwrap();
        assert!(!s.threads.is_empty());
    }
}
