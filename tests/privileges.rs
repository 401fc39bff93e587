//! Dropping root for real: a child process, started as root, drops to `nobody` with a
//! thread already running, and reports the identity of every thread it has.
//!
//! A plain program (no test harness): the child is this same executable started with
//! `child` as its argument, so the drop happens in a process of its own and the test
//! process stays root.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ringsocks::ops::privileges::{drop_to, lookup};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child();
    }
    // `cargo test -- --list` and name filters, as the standard harness takes them.
    const NAME: &str = "privileges_drop_to_nobody_in_every_thread";
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    match parent() {
        Ok(()) => {
            println!("test {NAME} ... ok");
            println!("1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("test {NAME} ... FAILED\n{why}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("this test must run as root (scripts/test runs it as root)".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("child")
        .output()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let want = [
        ("main.uid", "65534 65534 65534 65534"),
        ("main.gid", "65534 65534 65534 65534"),
        ("main.groups", "65534"),
        ("thread.uid", "65534 65534 65534 65534"),
        ("thread.gid", "65534 65534 65534 65534"),
        ("thread.groups", "65534"),
        ("regain_root", "refused"),
        ("drop_again_to_root", "refused"),
    ];
    for (key, value) in want {
        match report.get(key) {
            Some(got) if *got == value => {}
            got => return Err(format!("{key}: want {value:?}, got {got:?}\n{stdout}")),
        }
    }
    let tasks: usize = report
        .get("tasks")
        .and_then(|n| n.parse().ok())
        .ok_or(format!("no task count\n{stdout}"))?;
    if tasks < 2 {
        return Err(format!(
            "the child had {tasks} threads, expected at least 2"
        ));
    }
    let all = report.get("all_tasks_nobody").copied();
    if all != Some("yes") {
        return Err(format!("all_tasks_nobody: {all:?}\n{stdout}"));
    }
    Ok(())
}

/// The Uid, Gid and Groups lines of a /proc status file: "real effective saved fs".
fn identity(status: &str) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for line in status.lines() {
        for key in ["Uid", "Gid", "Groups"] {
            if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                let v = rest.split_whitespace().collect::<Vec<_>>().join(" ");
                out.insert(
                    match key {
                        "Uid" => "uid",
                        "Gid" => "gid",
                        _ => "groups",
                    },
                    v,
                );
            }
        }
    }
    out
}

fn child() -> ExitCode {
    let id = match lookup("nobody", None) {
        Ok(id) => id,
        Err(e) => {
            println!("error={e}");
            return ExitCode::FAILURE;
        }
    };
    // A thread that exists before the drop, as shard threads would.
    // It reports its own identity when asked, then stays alive until told to finish, so
    // that the task list below includes it.
    let (ask, asked) = mpsc::channel::<()>();
    let (answer, answered) = mpsc::channel::<String>();
    let worker = thread::spawn(move || {
        if asked.recv_timeout(Duration::from_secs(30)).is_ok() {
            let tid = nix::unistd::gettid();
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .unwrap_or_default();
            let _ = answer.send(status);
            let _ = asked.recv_timeout(Duration::from_secs(30));
        }
    });
    if let Err(e) = drop_to(&id) {
        println!("error={e}");
        return ExitCode::FAILURE;
    }
    let _ = ask.send(());
    let thread_status = answered
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default();
    let main_status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    for (who, status) in [("main", &main_status), ("thread", &thread_status)] {
        for (key, value) in identity(status) {
            println!("{who}.{key}={value}");
        }
    }
    // Every task of the process, whatever started it.
    let mut tasks = 0;
    let mut all_nobody = true;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            tasks += 1;
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let ids = identity(&status);
            all_nobody &= ids.get("uid").map(String::as_str) == Some("65534 65534 65534 65534");
        }
    }
    let _ = ask.send(());
    let _ = worker.join();
    println!("tasks={tasks}");
    println!("all_tasks_nobody={}", if all_nobody { "yes" } else { "no" });
    let regain = nix::unistd::setuid(nix::unistd::Uid::from_raw(0));
    println!(
        "regain_root={}",
        if regain.is_ok() { "allowed" } else { "refused" }
    );
    let root = lookup("root", None).expect("root exists");
    let again = drop_to(&root);
    println!(
        "drop_again_to_root={}",
        if again.is_ok() { "allowed" } else { "refused" }
    );
    ExitCode::SUCCESS
}
