//! The systemd notification protocol against a socket the test owns: READY=1 once
//! serving, RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload (applied or
//! refused), STOPPING=1 when the drain begins.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::thread;
use std::time::Duration;

use common::notify::NotifySocket;
use common::socks;
use common::{Server, Target, Workdir};
use nix::sys::signal::Signal;
use nix::time::{clock_gettime, ClockId};

const WITHIN: Duration = Duration::from_secs(10);

fn monotonic_usec() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000
}

/// The microseconds of a `RELOADING=1\nMONOTONIC_USEC=N` message; panics on anything else.
#[track_caller]
fn reloading_usec(msg: &str) -> u64 {
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{msg:?}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("MONOTONIC_USEC must follow RELOADING=1: {msg:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("MONOTONIC_USEC is a number ({e}): {msg:?}"));
    assert_eq!(lines.next(), None, "{msg:?}");
    usec
}

/// Sends SIGHUP and checks RELOADING=1 (stamped between the signal and its receipt), then
/// READY=1.
#[track_caller]
fn expect_reload_notifications(server: &Server, notify: &NotifySocket) {
    let before = monotonic_usec();
    server.signal(Signal::SIGHUP);
    let msg = notify.next_state(WITHIN);
    let after = monotonic_usec();
    let usec = reloading_usec(&msg);
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC {usec} outside [{before}, {after}]"
    );
    assert_eq!(notify.next_state(WITHIN), "READY=1", "after the reload");
}

#[test]
fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let notify = NotifySocket::bind();
    let work = Workdir::new();
    let config = work.write("ringsocks.toml", "idle-timeout = 60\n");
    // A fixed port, so the test can use it the moment READY=1 arrives, before it has
    // read the `listening on` line.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (mut cmd, listeners) = Server::command(&[
        "--listen",
        &listen,
        "--config",
        config.to_str().unwrap(),
        "--drain-timeout",
        "5",
    ]);
    cmd.env("NOTIFY_SOCKET", notify.env_value());
    let starting = thread::spawn(move || Server::spawn(cmd, listeners));

    assert_eq!(
        notify.next_state(WITHIN),
        "READY=1",
        "the first notification"
    );
    // READY=1 means serving: a session works right away, no retry.
    let target = Target::bind("127.0.0.1:0");
    let proxy: SocketAddr = listen.parse().unwrap();
    let mut client = socks::socks5_tunnel(proxy, target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "at READY=1");
    drop((client, far));
    let mut server = starting
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("ringsocks did not start: {e}"));
    assert_eq!(server.addr(), proxy);

    // A reload that applies, then one that is refused: both end in READY=1.
    work.write("ringsocks.toml", "idle-timeout = 30\n");
    expect_reload_notifications(&server, &notify);
    work.write("ringsocks.toml", "idle-timeout = \"never\"\n");
    expect_reload_notifications(&server, &notify);
    assert!(
        server.wait_stderr("reload failed", WITHIN),
        "{}",
        server.stderr()
    );
    server.assert_healthy();

    server.signal(Signal::SIGTERM);
    assert_eq!(notify.next_state(WITHIN), "STOPPING=1", "on SIGTERM");
    let status = server.wait_exit(WITHIN).expect("exits after the drain");
    assert!(status.success(), "exit status {status}");
    let after: Vec<String> = notify
        .pending()
        .into_iter()
        .filter(|m| !m.starts_with("STATUS="))
        .collect();
    assert!(after.is_empty(), "after STOPPING=1: {after:?}");
}

#[test]
fn a_status_line_says_the_server_is_serving() {
    let notify = NotifySocket::bind();
    let (mut cmd, listeners) = Server::command(&["--shards", "2"]);
    cmd.env("NOTIFY_SOCKET", notify.env_value());
    let _server = Server::spawn(cmd, listeners).expect("ringsocks starts");
    let mut seen = Vec::new();
    let found = common::wait_until(WITHIN, || {
        seen.extend(notify.pending());
        seen.iter().any(|m| m.starts_with("STATUS="))
    });
    assert!(found, "no STATUS= notification: {seen:?}");
    let status = seen.iter().find(|m| m.starts_with("STATUS=")).unwrap();
    assert_eq!(status.lines().count(), 1, "{status:?}");
    assert!(status.contains("serving"), "{status:?}");
}

#[test]
fn an_abstract_notify_socket_works_too() {
    let name = format!("ringsocks-ops-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(&name).unwrap())
        .expect("bind an abstract socket");
    sock.set_read_timeout(Some(WITHIN)).unwrap();
    let (mut cmd, listeners) = Server::command(&[]);
    cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    let _server = Server::spawn(cmd, listeners).expect("ringsocks starts");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification within 10 s");
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn an_unusable_notify_socket_value_fails_start_up() {
    let mut cmd = std::process::Command::new(common::server::BIN);
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", "relative/path");
    let out = common::server::run_bounded(cmd, WITHIN);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("NOTIFY_SOCKET"), "{err}");
}
