//! The server under test as a child process: started with its real command line, its
//! ports learnt from the `listening on ADDR:PORT` lines it prints, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::wait::wait_until;

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringsocks");

/// How long start-up may take before the test gives up (a debug build on a busy machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a process that was told to stop, or that should fail at start-up, may take.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

const LISTENING_PREFIX: &str = "listening on ";

/// A running ringsocks. Dropping it kills the process; if the test is failing, the
/// server's stderr is printed so the failure explains itself.
pub struct Server {
    child: Child,
    addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts ringsocks with `args`, adding `--listen 127.0.0.1:0` when `args` has no
    /// `--listen`. Panics (with the server's stderr) if it does not come up.
    #[track_caller]
    pub fn start(args: &[&str]) -> Server {
        match Server::try_start(args) {
            Ok(server) => server,
            Err(e) => panic!("ringsocks did not start: {e}"),
        }
    }

    /// Like [`Server::start`], with the reason as an error.
    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        let (cmd, listeners) = Server::command(args);
        Server::spawn(cmd, listeners)
    }

    /// The command [`Server::start`] runs for `args` (for a test to add to, e.g. its
    /// environment), and how many `listening on` lines it announces: one per `--listen`
    /// and `--proxy-protocol-listen`.
    pub fn command(args: &[&str]) -> (Command, usize) {
        let mut all: Vec<&str> = Vec::new();
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let listeners = all
            .iter()
            .filter(|a| **a == "--listen" || **a == "--proxy-protocol-listen")
            .count();
        let mut cmd = Command::new(BIN);
        cmd.args(&all);
        (cmd, listeners)
    }

    /// Spawns `cmd` and waits for `listeners` announcements on its stdout.
    pub fn spawn(mut cmd: Command, listeners: usize) -> Result<Server, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "1");
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = {
            let pipe = child.stderr.take().expect("stderr is piped");
            let sink = Arc::clone(&stderr);
            thread::spawn(move || collect(pipe, &sink))
        };
        let stdout = Arc::new(Mutex::new(String::new()));
        let (lines, stdout_reader) = read_lines(
            child.stdout.take().expect("stdout is piped"),
            Arc::clone(&stdout),
        );
        let mut server = Server {
            child,
            addrs: Vec::new(),
            stderr,
            stdout,
            stderr_reader: Some(stderr_reader),
            stdout_reader: Some(stdout_reader),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while server.addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                        let addr = addr.trim().parse().map_err(|e| {
                            format!("bad announcement {line:?}: {e}\n{}", server.stderr())
                        })?;
                        server.addrs.push(addr);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} of {listeners} `listening on` lines after {START_TIMEOUT:?}; \
                         stderr:\n{}",
                        server.addrs.len(),
                        server.stderr()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit(EXIT_TIMEOUT);
                    return Err(format!(
                        "stdout closed after {} of {listeners} `listening on` lines, \
                         exit {status:?}; stderr:\n{}",
                        server.addrs.len(),
                        server.stderr()
                    ));
                }
            }
        }
        Ok(server)
    }

    /// Starts ringsocks with a plain listener on 127.0.0.1 (`addrs()[0]`) and a PROXY
    /// protocol listener on 127.0.0.1 (`addrs()[1]`) that trusts `trusted`, plus `args`.
    ///
    /// The PROXY protocol listener gets a port found free, not port 0: the server takes
    /// two listeners on 127.0.0.1:0 for one given twice. A port found free can be taken
    /// before the server binds it, so a few are tried.
    #[track_caller]
    pub fn start_proxy_protocol(trusted: &str, args: &[&str]) -> Server {
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let proxied = format!("127.0.0.1:{port}");
            let mut all = vec![
                "--listen",
                "127.0.0.1:0",
                "--proxy-protocol-listen",
                &proxied,
                "--proxy-trusted",
                trusted,
            ];
            all.extend_from_slice(args);
            match Server::try_start(&all) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("ringsocks did not start: {last}");
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listening address, in the order of the `--listen` flags.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// How many file descriptors the process holds (its /proc/PID/fd entries).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("read the server's fd table: {e}"))
    }

    /// The process's resident set size, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_else(|e| panic!("read the server's status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// CPU time (user and system, all threads) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .unwrap_or_else(|e| panic!("read the server's stat: {e}"));
        // The command name (field 2) is in parentheses and may hold spaces; utime and
        // stime are fields 14 and 15, i.e. the 12th and 13th after the name.
        let after_name = &stat[stat.rfind(')').expect("a command name") + 1..];
        let fields: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("utime and stime are numbers"))
            .collect();
        // In USER_HZ ticks, which the kernel fixes at 100 per second for user space.
        Duration::from_millis((fields[0] + fields[1]) * 10)
    }

    /// Waits up to `within` until the process holds exactly `want` descriptors; returns
    /// the last count seen.
    pub fn wait_open_fds(&self, want: usize, within: Duration) -> usize {
        let mut seen = self.open_fds();
        wait_until(within, || {
            seen = self.open_fds();
            seen == want
        });
        seen
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `within` for a stdout line starting with `prefix`; returns the rest of
    /// the first such line.
    pub fn wait_stdout_line(&self, prefix: &str, within: Duration) -> Option<String> {
        let find = || {
            let out = self.stdout.lock().unwrap();
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_string)
        };
        wait_until(within, || find().is_some());
        find()
    }

    /// Waits up to `within` for a line of stderr holding every one of `parts`; returns
    /// whether one came (log lines may trail the reply the client already has).
    pub fn wait_log(&self, parts: &[&str], within: Duration) -> bool {
        wait_until(within, || {
            self.stderr()
                .lines()
                .any(|line| parts.iter().all(|p| line.contains(p)))
        })
    }

    /// Waits up to `within` until the server's stderr contains `needle`; returns whether
    /// it did.
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.stderr().contains(needle))
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).expect("signal the server");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(within, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            // The pipes close with the process; collect the rest of stderr.
            if let Some(h) = self.stderr_reader.take() {
                let _ = h.join();
            }
        }
        status
    }

    /// Asserts the server is alive and has not logged a panic.
    #[track_caller]
    pub fn assert_healthy(&mut self) {
        assert!(
            self.is_running(),
            "ringsocks exited: {:?}\nstderr:\n{}",
            self.child.try_wait(),
            self.stderr()
        );
        let err = self.stderr();
        assert!(!err.contains("panicked"), "ringsocks panicked:\n{err}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        if let Some(h) = self.stdout_reader.take() {
            let _ = h.join();
        }
        if thread::panicking() {
            eprintln!("--- ringsocks stderr ---\n{}--- end ---", self.stderr());
        }
    }
}

/// Appends everything from `pipe` to `sink`, until EOF.
fn collect(mut pipe: impl Read, sink: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        sink.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Forwards stdout lines to a channel, and keeps them all in `kept`, draining the pipe
/// until EOF so the server never blocks on a full pipe.
fn read_lines(pipe: ChildStdout, kept: Arc<Mutex<String>>) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            {
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
            // The receiver goes away once start-up is over.
            let _ = tx.send(line);
        }
    });
    (rx, handle)
}

/// Runs ringsocks with `args`, expecting it to exit by itself within [`EXIT_TIMEOUT`]
/// (a start-up failure).
#[track_caller]
pub fn run_to_exit(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_BACKTRACE", "1");
    run_bounded(cmd, EXIT_TIMEOUT)
}

/// Runs `cmd` to its end and returns its output; kills it and panics if it is still
/// running after `within`.
#[track_caller]
pub fn run_bounded(cmd: Command, within: Duration) -> Output {
    run_bounded_with_input(cmd, None, within)
}

/// [`run_bounded`], with `input` written to the command's stdin (then closed).
pub fn run_bounded_with_input(mut cmd: Command, input: Option<&[u8]>, within: Duration) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        pipe.write_all(input).expect("write the command's input");
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || read_all(stdout));
    let err_reader = thread::spawn(move || read_all(stderr));
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        panic!(
            "{cmd:?} still running after {within:?}; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `ringsocks hash-password` with `input` on stdin; returns the one line it prints,
/// an argon2id hash.
#[track_caller]
pub fn hash_password(input: &str) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("hash-password");
    // A debug build takes about a second for one hash.
    let out = run_bounded_with_input(cmd, Some(input.as_bytes()), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let hash = text.trim_end().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

fn read_all(mut pipe: impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = pipe.read_to_end(&mut buf);
    buf
}

/// A `--users` file in a temporary directory, removed on drop.
pub struct UsersFile {
    file: tempfile::NamedTempFile,
}

impl UsersFile {
    /// A file with one `user:password` line per pair.
    pub fn new(users: &[(&str, &str)]) -> UsersFile {
        let text: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        UsersFile::with_text(&text)
    }

    /// A file with exactly `text` in it.
    pub fn with_text(text: &str) -> UsersFile {
        let mut file = tempfile::NamedTempFile::new().expect("create users file");
        file.write_all(text.as_bytes()).expect("write users file");
        file.flush().expect("flush users file");
        UsersFile { file }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The path as a flag value.
    pub fn arg(&self) -> &str {
        self.path().to_str().expect("temporary paths are UTF-8")
    }
}
