//! Peers that go away abruptly: resets mid-transfer from either side, a target that
//! closes first, clients that vanish mid-handshake, and a destination that never
//! answers. The other side learns promptly, nothing leaks, and the server keeps serving.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::netstat::unclosed_accepted;
use common::socks;
use common::target::{reset, Blackhole};
use common::wait::{is_closed_error, read_until_closed};
use common::{wait_until, Pattern, Server, Target, IO_TIMEOUT};
use ringsocks::proto::{socks5, Address, ReplyCode};

/// What each side offers in a transfer that gets cut short.
const OFFERED: u64 = 1 << 30;
/// What the side that resets sends, and reads (and checks), before the cut.
const UPLOAD: u64 = 1 << 20;
const BEFORE_CUT: u64 = 4 << 20;
/// How soon the other side must learn that its peer is gone.
const PROMPTLY: Duration = Duration::from_secs(2);

/// Reads until the connection ends, by EOF or reset; returns when that was. Panics if it
/// is still open after `within`.
#[track_caller]
fn read_to_end_of(stream: &mut TcpStream, within: Duration) -> Instant {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = within.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "still open after {within:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(e) if is_closed_error(&e) => return Instant::now(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading until the session ends: {e}"),
        }
    }
}

/// A session still works end to end.
#[track_caller]
fn still_serving(server: &Server, target: &Target) {
    let mut c = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut c, &mut far, "after the fault");
}

/// Data flows both ways: the far side offers [`OFFERED`] and reads whatever arrives; the
/// near side sends [`UPLOAD`], checks the first [`BEFORE_CUT`] bytes it gets and resets.
/// The far side must see the session end within [`PROMPTLY`]. (The near side's socket has
/// no other handle, so the reset really happens at that moment.)
fn reset_mid_transfer(client_resets: bool) {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let idle = server.open_fds();
    let client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (far, _) = target.accept();
    let (mut near, far) = if client_resets {
        (client, far)
    } else {
        (far, client)
    };
    let (near_bytes, far_bytes) = (Pattern::new(0x0ff1), Pattern::new(0x0ff2));
    let (cut_at, ended_at) = thread::scope(|s| {
        let mut far_w = far.try_clone().unwrap();
        let mut far_r = far.try_clone().unwrap();
        let far_bytes = &far_bytes;
        // Ends with an error once the session is gone.
        s.spawn(move || far_bytes.write_to(&mut far_w, OFFERED));
        let far_reader = s.spawn(move || read_to_end_of(&mut far_r, IO_TIMEOUT));
        near_bytes
            .write_to(&mut near, UPLOAD)
            .expect("the near side sends");
        far_bytes
            .expect_prefix(&mut near, BEFORE_CUT, None)
            .unwrap_or_else(|e| panic!("the near side's first bytes: {e}"));
        // Taken before the reset: the proxy can end the session on the other CPU before
        // reset() has returned here.
        let cut_at = Instant::now();
        reset(near);
        let ended_at = far_reader.join().unwrap();
        // Unblock the far writer.
        let _ = far.shutdown(Shutdown::Both);
        (cut_at, ended_at)
    });
    assert!(
        ended_at > cut_at,
        "the session ended for the other side before the reset"
    );
    let took = ended_at - cut_at;
    eprintln!(
        "{} reset: the other side saw the end after {took:?}",
        if client_resets { "client" } else { "target" }
    );
    assert!(
        took < PROMPTLY,
        "the other side saw the end only after {took:?}"
    );
    still_serving(&server, &target);
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after the reset"
    );
}

#[test]
fn client_reset_mid_transfer_ends_the_session_for_the_target() {
    reset_mid_transfer(true);
}

#[test]
fn target_reset_mid_transfer_ends_the_session_for_the_client() {
    reset_mid_transfer(false);
}

/// The target sends its answer and closes at once, long before the client has read it:
/// the proxy must deliver every byte, then the EOF.
#[test]
fn target_closing_first_delivers_everything_then_eof() {
    const LEN: u64 = 16 << 20;
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let idle = server.open_fds();
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    let answer = Pattern::new(0xc105e);
    thread::scope(|s| {
        let answer = &answer;
        s.spawn(move || {
            answer.write_to(&mut far, LEN).expect("the target writes");
            drop(far);
        });
        answer
            .expect_from(&mut client, LEN)
            .unwrap_or_else(|e| panic!("the client reads the answer and then EOF: {e}"));
    });
    drop(client);
    still_serving(&server, &target);
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after the session"
    );
}

/// The target closes while the client is still sending: the target's kernel answers the
/// next bytes with a reset, and the client must learn that the session is over.
#[test]
fn target_closing_while_the_client_sends_ends_the_session() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let idle = server.open_fds();
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    let upload = Pattern::new(0x5e4d);
    thread::scope(|s| {
        let mut client_w = client.try_clone().unwrap();
        let upload = &upload;
        s.spawn(move || upload.write_to(&mut client_w, OFFERED));
        upload
            .expect_prefix(&mut far, BEFORE_CUT, None)
            .unwrap_or_else(|e| panic!("the target's first bytes: {e}"));
        drop(far);
        let closed_at = Instant::now();
        let ended = read_to_end_of(&mut client, PROMPTLY).duration_since(closed_at);
        eprintln!("target closed mid-upload: the client saw the end after {ended:?}");
        let _ = client.shutdown(Shutdown::Both);
    });
    drop(client);
    still_serving(&server, &target);
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after the session"
    );
}

/// How a client leaves before its handshake is done.
#[derive(Clone, Copy, Debug)]
enum Vanish {
    /// Part of the greeting, then a FIN.
    PartialGreetingClose,
    /// Part of the greeting, then a reset.
    PartialGreetingReset,
    /// The whole greeting, then a reset before the request.
    GreetingReset,
    /// Greeting and a request for a destination that never answers, then a reset while
    /// the proxy is connecting.
    ConnectingReset,
    /// The same, then a FIN: the client might still want the answer (a request and its
    /// data may well come with a FIN), so the proxy may finish connecting first; it must
    /// still clean up once the connect times out.
    ConnectingClose,
}

const VANISHES: [Vanish; 5] = [
    Vanish::PartialGreetingClose,
    Vanish::PartialGreetingReset,
    Vanish::GreetingReset,
    Vanish::ConnectingReset,
    Vanish::ConnectingClose,
];

fn vanish(proxy: SocketAddr, blackhole: SocketAddr, how: Vanish) {
    let mut c = socks::dial(proxy);
    let greeting = socks::greeting(&[socks5::METHOD_NO_AUTH]);
    let request = socks::socks5_request(socks5::CMD_CONNECT, &Address::Ip(blackhole));
    match how {
        Vanish::PartialGreetingClose | Vanish::PartialGreetingReset => {
            c.write_all(&greeting[..2]).unwrap();
        }
        Vanish::GreetingReset => {
            c.write_all(&greeting).unwrap();
            socks::read_method(&mut c).expect("method selection");
        }
        Vanish::ConnectingReset | Vanish::ConnectingClose => {
            c.write_all(&[greeting, request].concat()).unwrap();
            socks::read_method(&mut c).expect("method selection");
        }
    }
    match how {
        Vanish::PartialGreetingClose | Vanish::ConnectingClose => drop(c),
        _ => reset(c),
    }
}

/// Clients vanish every way [`Vanish`] lists, many times; afterwards the server holds no
/// descriptor, no connection and no session slot of theirs. Slots are what a client reset
/// would leak invisibly (the connection is gone from the kernel's table, and client
/// sockets are direct descriptors, not in the process's table), so the test fills every
/// slot the --max-connections limit allows with working sessions at the end.
#[test]
fn clients_vanishing_mid_handshake_leak_nothing() {
    const ROUNDS: usize = 3;
    /// Clients per kind per round: all of a round's fit under the limit at once, so that
    /// none is turned away for it.
    const EACH: usize = 3;
    const MAX: usize = 16;
    let max = MAX.to_string();
    let server = Server::start(&[
        "--max-connections",
        &max,
        // Long, so that only prompt clean-up passes; the connects are left to time out.
        "--handshake-timeout",
        "30",
        "--connect-timeout",
        "0.5",
    ]);
    let target = Target::bind("127.0.0.1:0");
    let blackhole = Blackhole::open();
    let idle = server.open_fds();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for how in VANISHES {
            for _ in 0..EACH {
                vanish(server.addr(), blackhole.addr(), how);
            }
        }
        assert!(
            wait_until(Duration::from_secs(5), || unclosed_accepted(server.addr())
                .is_empty()
                && server.open_fds() == idle),
            "after vanishing clients: {} descriptors (idle {idle}), unclosed {:?}",
            server.open_fds(),
            unclosed_accepted(server.addr())
        );
    }
    eprintln!(
        "{} vanished clients cleaned up in {:.2} s",
        ROUNDS * VANISHES.len() * EACH,
        start.elapsed().as_secs_f64()
    );
    let mut sessions: Vec<(TcpStream, TcpStream)> = (0..MAX)
        .map(|_| {
            let c = socks::socks5_tunnel(server.addr(), target.addr(), None);
            (c, target.accept().0)
        })
        .collect();
    for (i, (c, far)) in sessions.iter_mut().enumerate() {
        socks::exchange(c, far, &format!("slot {i} after the vanished clients"));
    }
}

/// A client that resets while the proxy is still connecting must not keep the outbound
/// socket until the connect times out.
#[test]
fn client_reset_while_connecting_closes_the_outbound_socket_at_once() {
    let server = Server::start(&["--connect-timeout", "30"]);
    let blackhole = Blackhole::open();
    let idle = server.open_fds();
    let mut c = socks::dial(server.addr());
    let handshake = socks::socks5_connect_bytes(&Address::Ip(blackhole.addr()), None);
    c.write_all(&handshake).unwrap();
    socks::read_method(&mut c).expect("method selection");
    assert!(
        wait_until(Duration::from_secs(5), || server.open_fds() > idle),
        "no outbound socket for the connect"
    );
    reset(c);
    assert_eq!(
        server.wait_open_fds(idle, PROMPTLY),
        idle,
        "descriptors {PROMPTLY:?} after the client reset (the connect timeout is 30 s)"
    );
}

/// The blackhole swallows the SYN: the connect times out after --connect-timeout and the
/// reply is TTL expired (0x06), which clients read as a timeout.
#[test]
fn connect_to_a_blackhole_times_out_with_ttl_expired() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let server = Server::start(&["--connect-timeout", "0.5"]);
    let blackhole = Blackhole::open();
    let idle = server.open_fds();
    let start = Instant::now();
    let (mut c, reply) = socks::socks5_connect(server.addr(), blackhole.addr(), None);
    let took = start.elapsed();
    eprintln!("blackhole connect answered after {took:?}: {reply:?}");
    assert_eq!(reply.code, ReplyCode::TtlExpired, "{reply:?}");
    assert!(
        took >= TIMEOUT - Duration::from_millis(50) && took < TIMEOUT * 4,
        "answered after {took:?}, for a connect timeout of {TIMEOUT:?}"
    );
    let rest = read_until_closed(&mut c, Duration::from_secs(5)).expect("closed after the reply");
    assert!(
        rest.is_empty(),
        "bytes after the failure reply: {rest:02x?}"
    );
    assert_eq!(
        server.wait_open_fds(idle, Duration::from_secs(5)),
        idle,
        "descriptors after the timed-out connect"
    );
}
