//! The server under many, slow and hostile clients: 500 concurrent sessions, slow
//! clients that must not hold others up, and seeded random garbage.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::socks;
use common::wait::read_exact_vec;
use common::{EchoServer, Server, UsersFile};
use ringsocks::proto::{socks5, Address, Event, Handshake, HandshakeConfig, ReplyCode};

/// Opens all sessions first, then uses them, so every one is open at the same time.
#[test]
fn five_hundred_concurrent_sessions_each_get_their_own_bytes() {
    const SESSIONS: usize = 500;
    const PAYLOAD: usize = 8 * 1024;
    let server = Server::start(&[]);
    let echo = EchoServer::start("127.0.0.1:0");
    let mut clients: Vec<TcpStream> = (0..SESSIONS)
        .map(|i| {
            let (c, reply) = socks::socks5_connect(server.addr(), echo.addr(), None);
            assert_eq!(reply.code, ReplyCode::Succeeded, "session {i}: {reply:?}");
            c
        })
        .collect();
    let payload = |i: usize| {
        let mut bytes = vec![0u8; PAYLOAD];
        fastrand::Rng::with_seed(i as u64).fill(&mut bytes);
        bytes
    };
    // Small enough for the socket buffers: all writes complete before any read.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&payload(i))
            .unwrap_or_else(|e| panic!("session {i}: {e}"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let got = read_exact_vec(c, PAYLOAD).unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert!(got == payload(i), "session {i} got someone else's bytes");
    }
    assert_eq!(echo.connections(), SESSIONS);
}

/// How long the slow clients wait between bytes.
const SLOW_PACE: Duration = Duration::from_secs(1);

/// Sends `bytes` one per [`SLOW_PACE`] until they run out or `stop` says so.
fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    stop: &mpsc::Receiver<()>,
    mut after_each: impl FnMut(&mut TcpStream, u8),
) {
    for &b in bytes {
        if stream.write_all(&[b]).is_err() {
            return;
        }
        after_each(stream, b);
        match stop.recv_timeout(SLOW_PACE) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// With one shard, every client shares one event loop: a client mid-handshake and a
/// client mid-relay that each send one byte per second must not delay anyone else.
#[test]
fn clients_sending_one_byte_per_second_do_not_delay_others() {
    const FAST_SESSIONS: usize = 40;
    let server = Server::start(&["--shards", "1", "--handshake-timeout", "60"]);
    let echo = EchoServer::start("127.0.0.1:0");
    let proxy = server.addr();
    let echo_addr = echo.addr();
    let mut latencies = Vec::with_capacity(FAST_SESSIONS);
    thread::scope(|s| {
        // Made in here so that a failing test drops the senders, which stops the slow
        // clients at once instead of after all their bytes.
        let (started_tx, started) = mpsc::channel();
        let (stop_handshake_tx, stop_handshake) = mpsc::channel::<()>();
        let (stop_relay_tx, stop_relay) = mpsc::channel::<()>();
        let started_handshake = started_tx.clone();
        let handshake = socks::socks5_connect_bytes(&Address::from(echo_addr), None);
        s.spawn(move || {
            let mut c = socks::dial(proxy);
            let _ = started_handshake.send(());
            trickle(&mut c, &handshake, &stop_handshake, |_, _| {});
        });
        let started_relay = started_tx;
        s.spawn(move || {
            let mut c = socks::socks5_tunnel(proxy, echo_addr, None);
            let _ = started_relay.send(());
            let text = b"one byte at a time, for as long as the others run";
            trickle(&mut c, text, &stop_relay, |c, b| {
                let back = read_exact_vec(c, 1).expect("the slow session's echo");
                assert_eq!(back, [b], "the slow session's echo changed");
            });
        });
        for _ in 0..2 {
            started
                .recv_timeout(Duration::from_secs(10))
                .expect("the slow clients start");
        }
        let chunk = vec![0x5a; 64 * 1024];
        for i in 0..FAST_SESSIONS {
            let start = Instant::now();
            let mut c = socks::socks5_tunnel(proxy, echo_addr, None);
            c.write_all(&chunk).unwrap();
            let back = read_exact_vec(&mut c, chunk.len())
                .unwrap_or_else(|e| panic!("fast session {i}: {e}"));
            assert!(back == chunk, "fast session {i}: echo changed");
            latencies.push(start.elapsed());
        }
        let _ = stop_handshake_tx.send(());
        let _ = stop_relay_tx.send(());
    });
    latencies.sort();
    let (median, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    eprintln!("fast sessions beside slow clients: median {median:?}, max {max:?}");
    assert!(
        max < SLOW_PACE * 9 / 10,
        "a fast session took {max:?}: slow clients held it up (median {median:?})"
    );
}

// ---- Garbage ----

const GARBAGE_SEED: u64 = 0x6172_6261_6765;
const GARBAGE_CLIENTS: usize = 300;
/// A valid session runs after every this many garbage clients.
const CHECK_EVERY: usize = 20;

/// Random bytes, often behind a valid prefix so that they reach the deeper parsers.
fn garbage(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut noise = vec![0u8; rng.usize(1..=600)];
    rng.fill(&mut noise);
    let prefix: Vec<u8> = match rng.u8(0..7) {
        0 => vec![],
        1 => vec![0x04],
        2 => vec![0x04, 0x01],
        3 => vec![0x05],
        4 => socks::greeting(&[socks5::METHOD_NO_AUTH]),
        5 => [
            socks::greeting(&[socks5::METHOD_NO_AUTH]),
            vec![socks5::VERSION, rng.u8(..), 0x00, rng.u8(0..6)],
        ]
        .concat(),
        _ => [
            socks::greeting(&[socks5::METHOD_USER_PASS]),
            vec![0x01, rng.u8(..)],
        ]
        .concat(),
    };
    [prefix, noise].concat()
}

/// Whether the server could act on `sample` as a request. Garbage must never make the
/// proxy connect (or resolve) anywhere: random addresses are off this machine, and random
/// loopback ports may belong to someone else. The server drives this same sans-IO
/// handshake, so feeding it the sample tells exactly what the server would do. Credentials
/// are always refused: random bytes do not know the password.
fn makes_a_request(sample: &[u8], auth_required: bool) -> bool {
    let mut hs = Handshake::new(HandshakeConfig { auth_required });
    let mut rest = sample;
    // Each round either consumes a whole message or ends the handshake.
    for _ in 0..4 {
        let used = hs.handle_input(rest);
        rest = &rest[used..];
        match hs.poll_event() {
            Some(Event::Request(_)) => return true,
            Some(Event::Credentials(_)) => hs.reject_credentials(),
            None => return false,
        }
        if hs.is_failed() {
            return false;
        }
    }
    false
}

/// How a garbage client leaves.
fn leave(mut stream: TcpStream, how: u8, held: &mut Vec<TcpStream>) {
    match how {
        0 => drop(stream),
        1 => {
            let _ = stream.shutdown(Shutdown::Write);
            drop(stream);
        }
        2 => {
            // A reset instead of a FIN.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        _ => {
            // Stays connected, stuck, until the end of the test (or the handshake timeout).
            let _ = stream.flush();
            held.push(stream);
        }
    }
}

fn garbage_never_stops_the_server(auth: bool) {
    let users = UsersFile::new(&[("garbage-test", "a password no random bytes will find")]);
    let creds = socks::Creds {
        user: "garbage-test",
        pass: "a password no random bytes will find",
    };
    let mut args = vec!["--handshake-timeout", "1"];
    if auth {
        args.extend(["--users", users.arg()]);
    }
    let mut server = Server::start(&args);
    let echo = EchoServer::start("127.0.0.1:0");
    let creds = auth.then_some(creds);
    let mut rng = fastrand::Rng::with_seed(GARBAGE_SEED ^ auth as u64);
    let mut held = Vec::new();
    for i in 0..GARBAGE_CLIENTS {
        let sample = (0..1000)
            .map(|_| garbage(&mut rng))
            .find(|s| !makes_a_request(s, auth))
            .expect("most random samples are not requests");
        let mut c = socks::dial(server.addr());
        // The server may close or reset early: that is its right.
        let _ = c.write_all(&sample);
        leave(c, rng.u8(0..4), &mut held);
        if i % CHECK_EVERY == CHECK_EVERY - 1 {
            let mut ok = socks::socks5_tunnel(server.addr(), echo.addr(), creds);
            ok.write_all(b"still serving").unwrap();
            assert_eq!(
                read_exact_vec(&mut ok, 13).unwrap_or_else(|e| panic!("after {i} garbage: {e}")),
                b"still serving"
            );
        }
    }
    drop(held);
    let mut ok = socks::socks5_tunnel(server.addr(), echo.addr(), creds);
    ok.write_all(b"the end").unwrap();
    assert_eq!(read_exact_vec(&mut ok, 7).unwrap(), b"the end");
    server.assert_healthy();
}

#[test]
fn seeded_garbage_never_stops_the_server() {
    garbage_never_stops_the_server(false);
}

#[test]
fn seeded_garbage_never_stops_the_server_with_passwords() {
    garbage_never_stops_the_server(true);
}
