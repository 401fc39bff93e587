//! SIGTERM drains: the listeners close at once, open sessions may finish for up to
//! `--drain-timeout`, then the rest are closed and the process exits; a second SIGINT
//! stops at once.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::access_log::{self, str_field, u64_field};
use common::metrics;
use common::socks;
use common::wait::read_until_closed;
use common::{Pattern, Server, Target, Workdir};
use nix::sys::signal::Signal;

const WITHIN: Duration = Duration::from_secs(10);

/// Whether a connect to `addr` is refused (nothing listens). A connect that gets through
/// is closed again at once.
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// An open tunnel and its far end, after one exchange.
fn live_session(server: &Server, target: &Target) -> (TcpStream, TcpStream) {
    let mut near = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut near, &mut far, "before the signal");
    (near, far)
}

#[test]
fn sigterm_stops_accepting_lets_a_transfer_finish_then_exits_0() {
    const UP: u64 = 3 << 20;
    const DOWN: u64 = 2 << 20;
    let work = Workdir::new();
    let log = work.path("access.log");
    let mut server = Server::start(&[
        "--drain-timeout",
        "30",
        "--metrics-listen",
        "127.0.0.1:0",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let maddr = metrics::metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let mut near = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let client = near.local_addr().unwrap();
    let (far, _) = target.accept();
    let up = Pattern::new(1);
    let down = Pattern::new(2);
    // The target checks every byte up, then answers with its own stream and closes.
    let far_side = thread::spawn(move || -> io::Result<()> {
        let mut far = far;
        Pattern::new(1).expect_from(&mut far, UP)?;
        Pattern::new(2).write_to(&mut far, DOWN)?;
        far.shutdown(std::net::Shutdown::Write)
    });
    // A first part before the signal, the rest during the drain.
    let first = up.bytes(1 << 20);
    near.write_all(&first).expect("send the first part");

    server.signal(Signal::SIGTERM);
    assert!(
        common::wait_until(WITHIN, || refused(server.addr())),
        "new connections still accepted after SIGTERM"
    );
    let m = metrics::scrape(maddr);
    assert_eq!(m.get("ringsocks_draining", &[]), 1.0, "{}", m.text);
    assert!(server.is_running(), "exited with a session open");

    let rest = up.bytes(UP as usize);
    near.write_all(&rest[first.len()..])
        .expect("send the rest while draining");
    near.shutdown(std::net::Shutdown::Write).unwrap();
    down.expect_from(&mut near, DOWN)
        .expect("the whole answer arrives while draining");
    far_side
        .join()
        .unwrap()
        .expect("the target got every byte while draining");
    drop(near);

    let status = server
        .wait_exit(WITHIN)
        .expect("the server exits once its last session ends");
    assert!(status.success(), "exit status {status}");
    assert!(
        server.stderr().contains("all sessions finished"),
        "{}",
        server.stderr()
    );
    let entries = access_log::read(&log);
    let e = access_log::for_client(&entries, client);
    assert_eq!(str_field(e, "close"), Some("completed"));
    assert_eq!(u64_field(e, "bytes_up"), UP);
    assert_eq!(u64_field(e, "bytes_down"), DOWN);
}

#[test]
fn after_the_drain_timeout_the_rest_is_closed_and_the_process_exits() {
    let work = Workdir::new();
    let log = work.path("access.log");
    let mut server = Server::start(&[
        "--drain-timeout",
        "1",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let target = Target::bind("127.0.0.1:0");
    let (mut near, mut far) = live_session(&server, &target);
    let client = near.local_addr().unwrap();

    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(WITHIN)
        .expect("the server exits after the drain timeout");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(900),
        "exited {took:?} after SIGTERM, before the 1 s drain timeout"
    );
    assert!(
        server.stderr().contains("drain timeout"),
        "{}",
        server.stderr()
    );
    read_until_closed(&mut near, WITHIN).expect("the client's connection is closed");
    read_until_closed(&mut far, WITHIN).expect("the target's connection is closed");
    let entries = access_log::read(&log);
    let e = access_log::for_client(&entries, client);
    assert_eq!(str_field(e, "close"), Some("shutdown"));
}

#[test]
fn a_second_sigint_stops_at_once() {
    let mut server = Server::start(&["--drain-timeout", "60"]);
    let target = Target::bind("127.0.0.1:0");
    let (mut near, _far) = live_session(&server, &target);

    server.signal(Signal::SIGINT);
    assert!(
        server.wait_stderr("draining", WITHIN),
        "no drain after the first SIGINT:\n{}",
        server.stderr()
    );
    assert!(
        common::wait_until(WITHIN, || refused(server.addr())),
        "new connections still accepted while draining"
    );
    assert!(server.is_running(), "the first SIGINT stopped it");
    let signalled = Instant::now();
    server.signal(Signal::SIGINT);
    let status = server
        .wait_exit(WITHIN)
        .expect("the second SIGINT stops the server");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    read_until_closed(&mut near, WITHIN).expect("the client's connection is closed");
}
