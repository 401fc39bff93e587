//! Ten thousand concurrent relayed sessions, each carrying its own bytes both ways while
//! all of them are open.
//!
//! RLIMIT_NOFILE may be capped near 20,000 per process, so the two ends live in two
//! processes: the clients in this one (10,000 sockets), the targets in a Python helper
//! (tests/common/many_target.py, 10,000 sockets in one selector loop). The server holds
//! 10,000 outbound sockets as regular descriptors (accepted clients are direct
//! descriptors), hence its --max-connections.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::socks;
use common::wait::{read_exact_vec, still_open};
use common::{wait_until, Server};
use ringsocks::proto::{Address, ReplyCode};

const SESSIONS: usize = 10_000;
/// Bytes each session sends up and receives down (multiples of the 8-byte unit).
const UP: usize = 2048;
const DOWN: usize = 2048;

const TARGET_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/many_target.py");

/// How long the helper may take to start, and to report after the last session sent.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Session `i`'s bytes going up: unit k is (i, k), two little-endian u32.
fn up_bytes(i: u32) -> Vec<u8> {
    units(UP, |k| (i, k))
}

/// Session `i`'s bytes coming down: unit k is (k, !i).
fn down_bytes(i: u32) -> Vec<u8> {
    units(DOWN, |k| (k, !i))
}

fn units(len: usize, unit: impl Fn(u32) -> (u32, u32)) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for k in 0..(len / 8) as u32 {
        let (a, b) = unit(k);
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

/// The Python helper holding the target ends; killed on drop.
struct Targets {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Targets {
    fn start() -> Targets {
        let mut child = Command::new("python3")
            .args([
                TARGET_SCRIPT,
                &SESSIONS.to_string(),
                &UP.to_string(),
                &DOWN.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3 (the test needs it)");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut targets = Targets {
            child,
            stdin,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let port = targets
            .expect_line("listening")
            .parse()
            .expect("a port number");
        targets.addr.set_port(port);
        targets
    }

    /// The rest of the next stdout line, which must start with `word`.
    fn expect_line(&mut self, word: &str) -> String {
        let line = self
            .lines
            .recv_timeout(HELPER_TIMEOUT)
            .unwrap_or_else(|e| panic!("no `{word}` line from the target helper: {e}"));
        line.strip_prefix(word)
            .unwrap_or_else(|| panic!("expected `{word} ...` from the target helper: {line:?}"))
            .trim()
            .to_string()
    }

    /// Closes its stdin, which ends it, and waits for that.
    fn finish(mut self) {
        drop(self.stdin.take());
        let mut status = None;
        wait_until(HELPER_TIMEOUT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) => assert!(s.success(), "the target helper exited with {s}"),
            None => panic!("the target helper did not exit after its stdin closed"),
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ten_thousand_concurrent_sessions_each_carry_their_own_bytes() {
    let needed = SESSIONS as u64 + 1000;
    let nofile = rlimit::increase_nofile_limit(needed).expect("raise RLIMIT_NOFILE");
    assert!(
        nofile >= needed,
        "this test holds {SESSIONS} client sockets but RLIMIT_NOFILE allows {nofile}: raise \
         the hard limit (ulimit -Hn)"
    );
    let max = (SESSIONS + 2000).to_string();
    let mut server = Server::start(&["--max-connections", &max]);
    let idle = server.open_fds();
    let mut targets = Targets::start();
    let proxy = server.addr();
    let start = Instant::now();

    // Every handshake is written before any reply is read: the server works on all of them
    // at once, and every session is open before any data moves.
    let handshake = socks::socks5_connect_bytes(&Address::Ip(targets.addr), None);
    let mut clients: Vec<TcpStream> = (0..SESSIONS)
        .map(|i| {
            let mut c = socks::dial(proxy);
            c.write_all(&handshake)
                .unwrap_or_else(|e| panic!("session {i}: handshake: {e}"));
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        socks::read_method(c).unwrap_or_else(|e| panic!("session {i}: method: {e}"));
        let reply = socks::read_socks5_reply(c).unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert_eq!(reply.code, ReplyCode::Succeeded, "session {i}: {reply:?}");
    }
    let opened = start.elapsed();
    assert!(
        server.open_fds() >= idle + SESSIONS,
        "{} descriptors with {SESSIONS} sessions open (idle {idle})",
        server.open_fds()
    );

    // Small enough for the socket buffers: every write completes before any read.
    for (i, c) in clients.iter_mut().enumerate() {
        let id = i as u32;
        let mut message = id.to_le_bytes().to_vec();
        message.extend(up_bytes(id));
        c.write_all(&message)
            .unwrap_or_else(|e| panic!("session {i}: send: {e}"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let got = read_exact_vec(c, DOWN).unwrap_or_else(|e| panic!("session {i}: receive: {e}"));
        assert!(
            got == down_bytes(i as u32),
            "session {i} received other bytes"
        );
    }
    let verdict = targets.expect_line("verified");
    assert_eq!(
        verdict,
        format!("{SESSIONS} 0"),
        "the targets' count of sessions with the right bytes, and with wrong ones"
    );
    let closed = clients.iter().filter(|c| !still_open(c)).count();
    assert_eq!(closed, 0, "sessions ended before the test closed them");
    let relayed = start.elapsed();

    drop(clients);
    targets.finish();
    let fds = server.wait_open_fds(idle, Duration::from_secs(30));
    eprintln!(
        "{SESSIONS} sessions: open after {:.2} s, all bytes checked after {:.2} s, closed \
         after {:.2} s",
        opened.as_secs_f64(),
        relayed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(fds, idle, "descriptors after every session closed");
    server.assert_healthy();
}
