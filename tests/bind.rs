//! BIND (SOCKS4 and SOCKS5) against the real server: the two replies, the relay that
//! follows with half-closes, a refused wrong peer, the accept timeout and `--bind-addr`.

mod common;

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::socks;
use common::target::prepare;
use common::wait::read_until_closed;
use common::{expect_closed, wait_until, Server, IO_TIMEOUT};
use ringsocks::proto::{Address, ReplyCode};
use socket2::{Domain, Socket, Type};

/// SOCKS4 CD bytes.
const SOCKS4_GRANTED: u8 = 90;
const SOCKS4_REJECTED: u8 = 91;

/// The port the client tells the proxy the peer will connect from (only its IP counts).
const PEER_PORT: u16 = 20;

fn expected(ip: &str) -> SocketAddr {
    format!("{ip}:{PEER_PORT}").parse().unwrap()
}

/// A connection to `to` from the local address `from` (port 0: any).
#[track_caller]
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: SocketAddr = from.parse().unwrap();
    let sock = Socket::new(Domain::for_address(from), Type::STREAM, None).unwrap();
    sock.bind(&from.into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    sock.connect_timeout(&to.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
    let stream = TcpStream::from(sock);
    prepare(&stream);
    stream
}

/// The first reply's address as a place to connect to: specific, with a port.
#[track_caller]
fn listening(bound: &Address) -> SocketAddr {
    let Address::Ip(addr) = bound else {
        panic!("BND.ADDR is a name: {bound}");
    };
    assert!(
        !addr.ip().is_unspecified(),
        "BND.ADDR is the wildcard: {addr}"
    );
    assert_ne!(addr.port(), 0, "BND.PORT is 0");
    *addr
}

/// Waits until nothing accepts at `addr` any more (the BIND listener is closed).
fn wait_refused(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(5), || {
        matches!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
    })
}

/// Data both ways, then half-closes: the client's EOF reaches the peer, which still
/// answers; the peer's EOF then reaches the client.
#[track_caller]
fn relay_with_half_close(client: &mut TcpStream, peer: &mut TcpStream) {
    socks::exchange(client, peer, "bind relay");
    client.write_all(b"last words from the client").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = read_until_closed(peer, IO_TIMEOUT).expect("the peer reads to EOF");
    assert_eq!(got, b"last words from the client");
    peer.write_all(b"the peer answers after EOF").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let got = read_until_closed(client, IO_TIMEOUT).expect("the client reads to EOF");
    assert_eq!(got, b"the peer answers after EOF");
}

// ---- Successful flows ----

#[test]
fn socks5_bind_replies_twice_and_relays_with_half_close() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("127.0.0.1"));
    assert_eq!(first.code, ReplyCode::Succeeded, "first reply {first:?}");
    let at = listening(&first.bound);
    assert_eq!(at.ip(), server.addr().ip(), "the address facing the peer");
    let mut peer = connect_from("127.0.0.1:0", at);
    let second = socks::read_socks5_reply(&mut client).expect("second reply");
    assert_eq!(second.code, ReplyCode::Succeeded, "second reply {second:?}");
    assert_eq!(
        second.bound,
        Address::Ip(peer.local_addr().unwrap()),
        "the peer's address"
    );
    // One connection only: the listener is gone.
    assert!(wait_refused(at), "the BIND listener {at} still accepts");
    relay_with_half_close(&mut client, &mut peer);
}

#[test]
fn socks4_bind_replies_twice_and_relays_with_half_close() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks4_bind(server.addr(), expected("127.0.0.1"), b"ftp");
    assert_eq!(first.code, SOCKS4_GRANTED, "first reply {first:?}");
    let at = listening(&Address::Ip(first.bound.into()));
    let mut peer = connect_from("127.0.0.1:0", at);
    let second = socks::read_socks4_reply(&mut client).expect("second reply");
    assert_eq!(second.code, SOCKS4_GRANTED, "second reply {second:?}");
    assert_eq!(SocketAddr::from(second.bound), peer.local_addr().unwrap());
    relay_with_half_close(&mut client, &mut peer);
}

#[test]
fn peer_half_close_reaches_the_client_which_can_still_send() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("127.0.0.1"));
    let mut peer = connect_from("127.0.0.1:0", listening(&first.bound));
    assert_eq!(
        socks::read_socks5_reply(&mut client).unwrap().code,
        ReplyCode::Succeeded
    );
    peer.write_all(b"file listing").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_until_closed(&mut client, IO_TIMEOUT).unwrap(),
        b"file listing"
    );
    client.write_all(b"thanks").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut peer, IO_TIMEOUT).unwrap(), b"thanks");
}

#[test]
fn socks5_bind_over_ipv6() {
    let server = Server::start(&["--listen", "[::1]:0"]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("[::1]"));
    assert_eq!(first.code, ReplyCode::Succeeded);
    let at = listening(&first.bound);
    assert!(at.is_ipv6(), "an IPv6 peer is awaited on IPv6: {at}");
    let mut peer = connect_from("[::1]:0", at);
    let second = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(second.bound, Address::Ip(peer.local_addr().unwrap()));
    socks::exchange(&mut client, &mut peer, "bind ipv6");
}

#[test]
fn socks4a_bind_expects_the_peer_by_name() {
    let server = Server::start(&[]);
    let name = Address::Domain("localhost".into(), PEER_PORT);
    let (mut client, first) = socks::socks4_bind(server.addr(), name, b"ftp");
    assert_eq!(first.code, SOCKS4_GRANTED);
    let mut peer = connect_from("127.0.0.1:0", listening(&Address::Ip(first.bound.into())));
    let second = socks::read_socks4_reply(&mut client).unwrap();
    assert_eq!(second.code, SOCKS4_GRANTED, "localhost is 127.0.0.1");
    socks::exchange(&mut client, &mut peer, "bind by name");
}

#[test]
fn unspecified_dst_addr_accepts_any_peer() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("0.0.0.0"));
    assert_eq!(first.code, ReplyCode::Succeeded);
    let mut peer = connect_from("127.0.0.2:0", listening(&first.bound));
    let second = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(second.code, ReplyCode::Succeeded);
    assert_eq!(second.bound, Address::Ip(peer.local_addr().unwrap()));
    socks::exchange(&mut client, &mut peer, "any peer");
}

#[test]
fn bind_addr_flag_sets_the_listening_address() {
    let server = Server::start(&["--bind-addr", "127.0.0.3"]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("127.0.0.1"));
    assert_eq!(first.code, ReplyCode::Succeeded);
    let at = listening(&first.bound);
    assert_eq!(at.ip().to_string(), "127.0.0.3");
    let mut peer = connect_from("127.0.0.1:0", at);
    assert_eq!(
        socks::read_socks5_reply(&mut client).unwrap().code,
        ReplyCode::Succeeded
    );
    socks::exchange(&mut client, &mut peer, "bind-addr");
    let (_, first) = socks::socks4_bind(server.addr(), expected("127.0.0.1"), b"");
    assert_eq!(first.bound.ip().to_string(), "127.0.0.3", "SOCKS4 too");
}

// ---- Refusals ----

/// The peer connects from 127.0.0.2 while the client said 127.0.0.1.
#[test]
fn socks5_wrong_peer_is_refused_and_disconnected() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks5_bind(server.addr(), expected("127.0.0.1"));
    let at = listening(&first.bound);
    let mut intruder = connect_from("127.0.0.2:0", at);
    let second = socks::read_socks5_reply(&mut client).expect("second reply");
    assert_eq!(
        second.code,
        ReplyCode::NotAllowed,
        "second reply {second:?}"
    );
    expect_closed(&mut intruder, IO_TIMEOUT);
    expect_closed(&mut client, IO_TIMEOUT);
    assert!(wait_refused(at), "the BIND listener {at} still accepts");
}

#[test]
fn socks4_wrong_peer_is_refused_and_disconnected() {
    let server = Server::start(&[]);
    let (mut client, first) = socks::socks4_bind(server.addr(), expected("127.0.0.1"), b"");
    let at = listening(&Address::Ip(first.bound.into()));
    let mut intruder = connect_from("127.0.0.2:0", at);
    let second = socks::read_socks4_reply(&mut client).expect("second reply");
    assert_eq!(second.code, SOCKS4_REJECTED, "second reply {second:?}");
    expect_closed(&mut intruder, IO_TIMEOUT);
    expect_closed(&mut client, IO_TIMEOUT);
}

/// `--connect-timeout 0.5` bounds the wait for the peer.
fn timed_out_second_reply<R>(
    first: impl FnOnce(SocketAddr) -> (TcpStream, SocketAddr),
    second: impl FnOnce(&mut TcpStream) -> R,
) -> (R, Duration, SocketAddr) {
    let server = Server::start(&["--connect-timeout", "0.5"]);
    let (mut client, at) = first(server.addr());
    let start = Instant::now();
    let reply = second(&mut client);
    let waited = start.elapsed();
    eprintln!("BIND timed out after {waited:?}");
    expect_closed(&mut client, IO_TIMEOUT);
    assert!(
        wait_refused(at),
        "the BIND listener {at} outlived its timeout"
    );
    (reply, waited, at)
}

#[test]
fn socks5_bind_times_out_with_ttl_expired() {
    let (reply, waited, _) = timed_out_second_reply(
        |proxy| {
            let (client, first) = socks::socks5_bind(proxy, expected("127.0.0.1"));
            (client, listening(&first.bound))
        },
        |c| socks::read_socks5_reply(c).expect("second reply"),
    );
    assert_eq!(reply.code, ReplyCode::TtlExpired, "second reply {reply:?}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "timed out after {waited:?}, not about 0.5 s"
    );
}

#[test]
fn socks4_bind_times_out_rejected() {
    let (reply, waited, _) = timed_out_second_reply(
        |proxy| {
            let (client, first) = socks::socks4_bind(proxy, expected("127.0.0.1"), b"");
            (client, listening(&Address::Ip(first.bound.into())))
        },
        |c| socks::read_socks4_reply(c).expect("second reply"),
    );
    assert_eq!(reply.code, SOCKS4_REJECTED);
    assert!(
        waited < Duration::from_secs(5),
        "timed out after {waited:?}"
    );
}

#[test]
fn client_leaving_before_the_peer_closes_the_listener() {
    let mut server = Server::start(&[]);
    let (client, first) = socks::socks5_bind(server.addr(), expected("127.0.0.1"));
    let at = listening(&first.bound);
    drop(client);
    assert!(
        wait_refused(at),
        "the BIND listener {at} outlived its client"
    );
    server.assert_healthy();
}
