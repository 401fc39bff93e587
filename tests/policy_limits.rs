//! Limits against the real server: concurrent sessions per client address and per user,
//! new sessions per second per client address (REP 0x02 and a log line beyond them, while
//! others are still served), and bandwidth per user in each direction, where a transfer
//! must take the time the token bucket allows, measured, and UDP datagrams beyond it are
//! dropped and counted.
//!
//! On loopback: 127.0.0.2 is "another client address".

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::{metrics_addr, scrape_until, Metrics};
use common::policy::{self, LOG_WAIT};
use common::socks::{self, Creds};
use common::udp::{Declare, Mode, UdpClient, UdpTarget};
use common::{
    expect_closed, wait_until, EchoServer, Pattern, Server, Target, UsersFile, IO_TIMEOUT,
};
use ringsocks::proto::{socks5, Address, ReplyCode};

const SECOND_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const FIRST_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A SOCKS5 CONNECT from `from`, returning the stream and the reply.
fn connect_from(
    from: IpAddr,
    proxy: SocketAddr,
    target: SocketAddr,
    creds: Option<Creds>,
) -> (TcpStream, socks5::Reply) {
    let mut stream = socks::dial_from(from, proxy);
    let reply = socks::socks5_handshake(&mut stream, socks5::CMD_CONNECT, &target.into(), creds)
        .unwrap_or_else(|e| panic!("CONNECT from {from}: {e}"));
    (stream, reply)
}

/// Asserts a refusal by a limit: REP 0x02, a close, and the log line naming the limit.
#[track_caller]
fn assert_over_limit(server: &Server, mut stream: TcpStream, reply: &socks5::Reply, limit: &str) {
    assert_eq!(reply.code, ReplyCode::NotAllowed, "over {limit}: {reply:?}");
    expect_closed(&mut stream, IO_TIMEOUT);
    let words = format!("refused: {limit} limit");
    assert!(
        server.wait_log(&[&words], LOG_WAIT),
        "no log line `{words}`:\n{}",
        server.stderr()
    );
}

/// Retries a CONNECT until it succeeds (a limit freed by a close is given back a moment
/// after the client sees the close); panics after `within`.
#[track_caller]
fn connects_again(
    from: IpAddr,
    proxy: SocketAddr,
    target: SocketAddr,
    creds: Option<Creds>,
    within: Duration,
) -> TcpStream {
    let mut stream = None;
    let ok = wait_until(within, || {
        let (s, reply) = connect_from(from, proxy, target, creds);
        let ok = reply.code == ReplyCode::Succeeded;
        stream = ok.then_some(s);
        ok
    });
    assert!(ok, "CONNECT from {from} still refused after {within:?}");
    stream.expect("set on success")
}

#[test]
fn sessions_per_client_address() {
    let server = Server::start(&["--max-sessions-per-ip", "2"]);
    let target = EchoServer::start("127.0.0.1:0");
    let first = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let _second = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (stream, reply) = connect_from(FIRST_CLIENT, server.addr(), target.addr(), None);
    assert_over_limit(&server, stream, &reply, "sessions_per_ip");

    // Another address is counted on its own.
    let (_other, reply) = connect_from(SECOND_CLIENT, server.addr(), target.addr(), None);
    assert_eq!(reply.code, ReplyCode::Succeeded, "127.0.0.2: {reply:?}");

    // A session that ends gives its place back.
    drop(first);
    let _again = connects_again(
        FIRST_CLIENT,
        server.addr(),
        target.addr(),
        None,
        Duration::from_secs(5),
    );
}

#[test]
fn new_sessions_per_second_per_client_address() {
    // Refusals need the tries to outrun the refill: 12 in under 3 s at 3 a second.
    const RATE: usize = 3;
    const TRIES: usize = 12;
    let server = Server::start(&["--max-new-sessions-per-ip-per-sec", &RATE.to_string()]);
    let target = EchoServer::start("127.0.0.1:0");
    let start = Instant::now();
    let mut refused = Vec::new();
    let mut granted = 0;
    for _ in 0..TRIES {
        let (stream, reply) = connect_from(FIRST_CLIENT, server.addr(), target.addr(), None);
        if reply.code == ReplyCode::Succeeded {
            granted += 1;
        } else {
            refused.push((stream, reply));
        }
    }
    let took = start.elapsed().as_secs_f64();
    // A burst of one second's worth, then RATE a second: what the elapsed time allows.
    let allowed = RATE + (took * RATE as f64).floor() as usize;
    assert!(
        granted >= RATE.min(TRIES) && granted <= allowed,
        "{granted} of {TRIES} sessions in {took:.3} s at {RATE}/s"
    );
    assert!(
        !refused.is_empty(),
        "all {TRIES} sessions in {took:.3} s were granted at {RATE}/s"
    );
    for (stream, reply) in refused {
        assert_over_limit(&server, stream, &reply, "new_sessions_per_ip");
    }
    // Another address has its own bucket.
    let (_other, reply) = connect_from(SECOND_CLIENT, server.addr(), target.addr(), None);
    assert_eq!(reply.code, ReplyCode::Succeeded, "127.0.0.2: {reply:?}");
    // The bucket refills (one session every 1/RATE s).
    let _later = connects_again(
        FIRST_CLIENT,
        server.addr(),
        target.addr(),
        None,
        Duration::from_secs(5),
    );
}

#[test]
fn sessions_per_user_with_a_per_user_override() {
    let users = UsersFile::new(&[("alice", "a"), ("bob", "b")]);
    let toml = format!(
        "users = \"{}\"\nmax-sessions-per-user = 2\n\n[per-user.bob]\nmax-sessions = 1\n",
        users.arg()
    );
    let (server, _file) = policy::start(&toml, &[]);
    let target = EchoServer::start("127.0.0.1:0");
    let alice = Some(Creds {
        user: "alice",
        pass: "a",
    });
    let bob = Some(Creds {
        user: "bob",
        pass: "b",
    });

    let first = socks::socks5_tunnel(server.addr(), target.addr(), alice);
    let _second = socks::socks5_tunnel(server.addr(), target.addr(), alice);
    let (stream, reply) = connect_from(FIRST_CLIENT, server.addr(), target.addr(), alice);
    assert_over_limit(&server, stream, &reply, "sessions_per_user");

    // Bob has his own count, and his own limit of one.
    let _bob = socks::socks5_tunnel(server.addr(), target.addr(), bob);
    let (stream, reply) = connect_from(SECOND_CLIENT, server.addr(), target.addr(), bob);
    assert_over_limit(&server, stream, &reply, "sessions_per_user");

    // Session ids do not make a user someone else.
    let alice_session = Some(Creds {
        user: "alice-session-x",
        pass: "a",
    });
    let (stream, reply) = connect_from(SECOND_CLIENT, server.addr(), target.addr(), alice_session);
    assert_over_limit(&server, stream, &reply, "sessions_per_user");

    drop(first);
    let _again = connects_again(
        FIRST_CLIENT,
        server.addr(),
        target.addr(),
        alice,
        Duration::from_secs(5),
    );
}

/// The bandwidth rate of these tests, bytes per second.
const RATE: u64 = 256 * 1024;
/// Bytes each transfer carries in all.
const TOTAL: u64 = 768 * 1024;

/// How long `total` bytes take through a full bucket of `rate` bytes a second holding one
/// second's worth (src/policy/bucket.rs): the first `rate` bytes go at once, the rest at
/// the rate.
fn expected(total: u64, rate: u64) -> Duration {
    Duration::from_secs_f64(total.saturating_sub(rate) as f64 / rate as f64)
}

/// Asserts `took` is the bucket's time for `total` bytes: never less than it (less one
/// timer tick, since the server's pauses end on 50 ms ticks), and not much more. The upper
/// bound is loose because a busy machine delays every wake-up of a paused relay; it still
/// catches a relay that stays paused, or bytes charged twice.
#[track_caller]
fn assert_rate(took: Duration, total: u64, what: &str) {
    let want = expected(total, RATE);
    let low = want - Duration::from_millis(60);
    let high = want.mul_f64(1.5) + Duration::from_millis(1000);
    assert!(
        took >= low && took <= high,
        "{what}: {total} bytes at {RATE} B/s took {took:?}; the bucket allows {want:?} \
         (accepted {low:?} to {high:?})"
    );
}

struct Limited {
    server: Server,
    target: Target,
    _users: UsersFile,
}

fn limited(direction: &str) -> Limited {
    let users = UsersFile::new(&[("alice", "a")]);
    let flag = format!("--bandwidth-per-user-{direction}");
    let rate = format!("{}KiB", RATE / 1024);
    let server = Server::start(&["--users", users.arg(), &flag, &rate]);
    Limited {
        server,
        target: Target::bind("127.0.0.1:0"),
        _users: users,
    }
}

const ALICE: Option<Creds<'static>> = Some(Creds {
    user: "alice",
    pass: "a",
});

/// Sends `len` pattern bytes from `from` to `to` and returns the time until `to` had
/// them all.
fn timed_transfer(mut from: TcpStream, mut to: TcpStream, len: u64, seed: u64) -> Duration {
    let start = Instant::now();
    let writer = thread::spawn(move || {
        Pattern::new(seed)
            .write_to(&mut from, len)
            .expect("write the transfer");
        from
    });
    Pattern::new(seed)
        .expect_prefix(&mut to, len, None)
        .expect("the transfer arrives intact");
    let took = start.elapsed();
    writer.join().expect("the writer");
    took
}

#[test]
fn bandwidth_per_user_up() {
    let l = limited("up");
    let client = socks::socks5_tunnel(l.server.addr(), l.target.addr(), ALICE);
    let (far, _) = l.target.accept();
    let took = timed_transfer(client, far, TOTAL, 1);
    assert_rate(took, TOTAL, "client to target");
}

#[test]
fn bandwidth_per_user_down() {
    let l = limited("down");
    let client = socks::socks5_tunnel(l.server.addr(), l.target.addr(), ALICE);
    let (far, _) = l.target.accept();
    let took = timed_transfer(far, client, TOTAL, 2);
    assert_rate(took, TOTAL, "target to client");
}

#[test]
fn bandwidth_per_user_is_shared_by_the_users_sessions() {
    let l = limited("up");
    let half = TOTAL / 2;
    let transfers: Vec<_> = (0..2)
        .map(|i| {
            let client = socks::socks5_tunnel(l.server.addr(), l.target.addr(), ALICE);
            let (far, _) = l.target.accept();
            (client, far, i)
        })
        .collect();
    let start = Instant::now();
    let runs: Vec<_> = transfers
        .into_iter()
        .map(|(client, far, i)| thread::spawn(move || timed_transfer(client, far, half, 10 + i)))
        .collect();
    for run in runs {
        run.join().expect("a transfer");
    }
    // Each alone would take (half - RATE) / RATE; together they share one bucket.
    assert_rate(start.elapsed(), TOTAL, "two sessions together");
}

/// Datagrams of the UDP burst, and their size: 64 KiB against a 16 KiB bucket.
const BURST: u64 = 64;
const DATAGRAM: usize = 1024;

#[test]
fn bandwidth_per_user_drops_udp_beyond_the_limit() {
    let users = UsersFile::new(&[("alice", "a")]);
    let server = Server::start(&[
        "--users",
        users.arg(),
        "--bandwidth-per-user-up",
        "16KiB",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let metrics = metrics_addr(&server);
    let client = UdpClient::try_open_as(server.addr(), "127.0.0.1:0", Declare::Zeros, ALICE)
        .unwrap_or_else(|reply| panic!("UDP ASSOCIATE refused: {reply:?}"));
    let sink = UdpTarget::start("127.0.0.1:0", Mode::Sink);
    for i in 0..BURST {
        client.send(&Address::Ip(sink.addr()), &[i as u8; DATAGRAM]);
    }
    let dropped =
        |m: &Metrics| m.get("ringsocks_udp_dropped_total", &[("reason", "bandwidth")]) as u64;
    // Every datagram ends up relayed or dropped for bandwidth, nothing else.
    let m = scrape_until(metrics, Duration::from_secs(10), |m| {
        sink.received() + dropped(m) >= BURST
    });
    let (relayed, dropped) = (sink.received(), dropped(&m));
    assert_eq!(
        relayed + dropped,
        BURST,
        "{relayed} relayed, {dropped} dropped"
    );
    // The bucket starts with one second's worth (16 datagrams) and refills at 16 a
    // second; the burst takes far less than a second to send.
    assert!(
        (16..=BURST / 2).contains(&relayed),
        "{relayed} of {BURST} datagrams relayed under a 16 KiB/s limit"
    );
}
