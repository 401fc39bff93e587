//! Out of descriptors: outbound sockets that cannot be created, and a full connection
//! limit. New clients get a clean refusal, sessions already open keep relaying, the
//! server does not spin meanwhile, and service comes back by itself once descriptors are
//! free again.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::BIN;
use common::socks;
use common::udp::{Declare, Mode, UdpClient, UdpTarget};
use common::wait::{read_exact_vec, read_until_closed};
use common::{expect_closed, wait_until, EchoServer, Server};
use ringsocks::proto::{Address, ReplyCode};

/// Descriptors the lowered limit leaves the server beyond those it holds when idle.
const SPARE_FDS: u64 = 24;

/// The window over which the server's CPU time is measured while it is out of descriptors.
const CPU_WINDOW: Duration = Duration::from_secs(1);

/// CPU time the server may use in [`CPU_WINDOW`] while refusing a client every
/// [`REFUSAL_PACE`]: an idle shard wakes 20 times a second and a refusal is one short
/// handshake, a few milliseconds in all even in a debug build. A loop retrying a failing
/// call would use the whole second.
const CPU_CEILING: Duration = Duration::from_millis(250);

const REFUSAL_PACE: Duration = Duration::from_millis(100);

/// How a CONNECT through the proxy ended.
enum Outcome {
    Open(TcpStream),
    /// A failure reply; the connection is handed over to check how it ends.
    Refused(ReplyCode, TcpStream),
    /// Closed (or reset) before any reply.
    Closed,
}

fn connect(proxy: SocketAddr, dest: SocketAddr) -> Outcome {
    let mut stream = socks::dial(proxy);
    let request = socks::socks5_connect_bytes(&Address::Ip(dest), None);
    if stream.write_all(&request).is_err() {
        return Outcome::Closed;
    }
    let reply = socks::read_method(&mut stream).and_then(|_| socks::read_socks5_reply(&mut stream));
    match reply {
        Ok(r) if r.code == ReplyCode::Succeeded => Outcome::Open(stream),
        Ok(r) => Outcome::Refused(r.code, stream),
        Err(e) if common::wait::is_closed_error(&e) => Outcome::Closed,
        Err(e) => panic!("CONNECT {dest} via {proxy}: {e}"),
    }
}

/// Asserts that a CONNECT is refused cleanly: a failure reply followed by a close, or a
/// close without a reply. Never a hang.
#[track_caller]
fn expect_refused(proxy: SocketAddr, dest: SocketAddr) {
    match connect(proxy, dest) {
        Outcome::Open(_) => panic!("a session opened while the server is out of descriptors"),
        Outcome::Refused(_, mut stream) => expect_closed(&mut stream, Duration::from_secs(5)),
        Outcome::Closed => {}
    }
}

/// A line out and back through an echo session.
#[track_caller]
fn echo(stream: &mut TcpStream, tag: &str) {
    let line = format!("still relaying: {tag}\n");
    stream
        .write_all(line.as_bytes())
        .expect("write to the session");
    let back = read_exact_vec(stream, line.len()).unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert_eq!(back, line.as_bytes(), "{tag}: echo changed");
}

/// Once sessions have closed, `n` new ones must open, each within a bounded wait: the
/// server notices by itself that the closed sessions' resources are free (which takes a
/// moment: each close goes through the echo server and back).
#[track_caller]
fn reopen(proxy: SocketAddr, dest: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for i in 0..n {
        let mut session = None;
        assert!(
            wait_until(Duration::from_secs(5), || match connect(proxy, dest) {
                Outcome::Open(s) => {
                    session = Some(s);
                    true
                }
                _ => false,
            }),
            "session {i} of {n} does not open after sessions closed"
        );
        open.extend(session);
    }
    open
}

/// Refuses a client every [`REFUSAL_PACE`] for [`CPU_WINDOW`] and returns the CPU time
/// the server used meanwhile.
fn cpu_while_refusing(server: &Server, dest: SocketAddr) -> Duration {
    let before = server.cpu_time();
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < CPU_WINDOW {
        expect_refused(server.addr(), dest);
        refused += 1;
        // Pacing the clients: the load here is the point, not a wait for an event.
        std::thread::sleep(REFUSAL_PACE);
    }
    let used = server.cpu_time() - before;
    eprintln!("server CPU while refusing {refused} clients in {CPU_WINDOW:?}: {used:?}");
    used
}

/// Every command that needs a new socket is refused cleanly: CONNECT (outbound socket),
/// BIND (listener), UDP ASSOCIATE (relay socket).
#[track_caller]
fn expect_every_command_refused(proxy: SocketAddr, dest: SocketAddr) {
    expect_refused(proxy, dest);
    let (mut bind, reply) = socks::socks5_bind(proxy, Address::Ip(dest));
    assert_ne!(
        reply.code,
        ReplyCode::Succeeded,
        "BIND while out of descriptors"
    );
    expect_closed(&mut bind, Duration::from_secs(5));
    match UdpClient::try_open(proxy, "127.0.0.1:0", Declare::Zeros) {
        Ok(_) => panic!("UDP ASSOCIATE granted while out of descriptors"),
        Err((reply, mut control)) => {
            assert_ne!(reply.code, ReplyCode::Succeeded);
            expect_closed(&mut control, Duration::from_secs(5));
        }
    }
}

/// The server's RLIMIT_NOFILE is lowered while it runs, to what it holds idle plus
/// [`SPARE_FDS`]. (Lowered at run time because the start-up check keeps 64 descriptors
/// beyond --max-connections, so a limit set before start-up lets --max-connections bite
/// first: see the next test.) Accepted clients are direct descriptors, outside the limit,
/// so they still arrive; each CONNECT needs a regular descriptor for its outbound socket,
/// each UDP association one for its relay socket and one per outbound address family.
#[test]
fn outbound_sockets_running_out_refuse_new_clients_and_service_resumes() {
    let mut server = Server::start(&["--shards", "1", "--max-connections", "1000"]);
    let echo_server = EchoServer::start("127.0.0.1:0");
    let dest = echo_server.addr();
    let udp_target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let udp_dest = Address::Ip(udp_target.addr());
    let idle = server.open_fds();
    // An association in use (its outbound socket exists) and one not used yet (its
    // outbound socket will be wanted while there is none to be had).
    let udp_used = UdpClient::open(server.addr(), "127.0.0.1:0");
    udp_used.round_trip(&udp_dest, b"before the limit");
    let udp_fresh = UdpClient::open(server.addr(), "127.0.0.1:0");
    let limit = idle as u64 + SPARE_FDS;
    rlimit::prlimit(
        server.pid().as_raw(),
        rlimit::Resource::NOFILE,
        Some((limit, limit)),
        None,
    )
    .expect("lower the server's RLIMIT_NOFILE");

    let mut open = Vec::new();
    let mut refusal = None;
    for _ in 0..SPARE_FDS + 16 {
        match connect(server.addr(), dest) {
            Outcome::Open(s) => open.push(s),
            Outcome::Refused(code, s) => {
                refusal = Some((code, s));
                break;
            }
            Outcome::Closed => panic!("closed without a reply after {} sessions", open.len()),
        }
    }
    let Some((code, mut refused)) = refusal else {
        panic!(
            "{} sessions opened under a limit of {limit} descriptors",
            open.len()
        );
    };
    eprintln!(
        "{} sessions opened with {idle} descriptors idle and a limit of {limit}; then {code:?}",
        open.len()
    );
    assert!(
        open.len() as u64 >= SPARE_FDS / 2,
        "refused ({code:?}) after only {} sessions: not for lack of descriptors",
        open.len()
    );
    assert_eq!(
        code,
        ReplyCode::GeneralFailure,
        "the reply to a failed socket()"
    );
    expect_closed(&mut refused, Duration::from_secs(5));
    expect_every_command_refused(server.addr(), dest);
    for (i, s) in open.iter_mut().enumerate() {
        echo(s, &format!("session {i} while out of descriptors"));
    }
    udp_used.round_trip(&udp_dest, b"while out of descriptors");
    // No socket for it: dropped, which must not end the association.
    udp_fresh.send(&udp_dest, b"nowhere to go");

    let used = cpu_while_refusing(&server, dest);
    assert!(
        used < CPU_CEILING,
        "the server used {used:?} of CPU in {CPU_WINDOW:?} while out of descriptors"
    );

    // Freeing descriptors is all it takes. Two are left for the fresh association.
    let freed = open.len() / 2;
    open.truncate(open.len() - freed);
    open.extend(reopen(server.addr(), dest, freed - 2));
    for (i, s) in open.iter_mut().enumerate() {
        echo(s, &format!("session {i} after recovery"));
    }
    udp_fresh.round_trip(&udp_dest, b"after recovery");
    udp_used.round_trip(&udp_dest, b"after recovery");
    drop((open, udp_used, udp_fresh));
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after every session closed"
    );
    server.assert_healthy();
}

/// Here the limit is set before start-up, with the --max-connections the start-up check
/// asks for (64 descriptors to spare): the connection limit is what runs out. A client
/// over the limit must be closed at once rather than left waiting without an answer.
#[test]
fn clients_over_the_connection_limit_are_closed_and_service_resumes() {
    const MAX: usize = 32;
    let nofile = MAX + 64;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg(BIN)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(["--max-connections", &MAX.to_string()]);
    let mut server = Server::spawn(cmd, 1).unwrap_or_else(|e| panic!("start under prlimit: {e}"));
    let echo_server = EchoServer::start("127.0.0.1:0");
    let dest = echo_server.addr();
    let idle = server.open_fds();

    let mut open: Vec<TcpStream> = (0..MAX)
        .map(|i| match connect(server.addr(), dest) {
            Outcome::Open(s) => s,
            _ => panic!("session {i} of {MAX} refused under the limit"),
        })
        .collect();

    // A client that sends nothing must see a plain close.
    let mut silent = socks::dial(server.addr());
    match read_until_closed(&mut silent, Duration::from_secs(2)) {
        Ok(extra) => assert!(
            extra.is_empty(),
            "bytes to a client over the limit: {extra:02x?}"
        ),
        Err(e) => panic!("a client over the limit of {MAX} is not closed: {e}"),
    }
    expect_refused(server.addr(), dest);
    for (i, s) in open.iter_mut().enumerate() {
        echo(s, &format!("session {i} at the limit"));
    }

    let used = cpu_while_refusing(&server, dest);
    assert!(
        used < CPU_CEILING,
        "the server used {used:?} of CPU in {CPU_WINDOW:?} at its connection limit"
    );

    let freed = 8;
    open.truncate(MAX - freed);
    open.extend(reopen(server.addr(), dest, freed));
    for (i, s) in open.iter_mut().enumerate() {
        echo(s, &format!("session {i} after recovery"));
    }
    drop(open);
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after every session closed"
    );
    server.assert_healthy();
}
