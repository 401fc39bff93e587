//! The relay once CONNECT succeeded: bulk data both ways, half-close both ways, IPv6
//! targets, and the bound address the reply reports.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

use common::data::both_ways;
use common::socks;
use common::{Pattern, Server, Target};
use ringsocks::proto::{Address, ReplyCode};

/// Reads to a clean EOF (a reset is a failure here); every read is bounded by the
/// stream's timeout.
#[track_caller]
fn read_to_eof(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e} after {} bytes", got.len()));
    got
}

#[test]
fn sixty_four_mib_each_way_arrive_intact() {
    const LEN: u64 = 64 << 20;
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (far, _) = target.accept();
    let start = Instant::now();
    both_ways(&client, &far, 0x5550, LEN).unwrap_or_else(|e| panic!("{e}"));
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "64 MiB each way in {secs:.2} s ({:.0} MiB/s per direction)",
        64.0 / secs
    );
}

#[test]
fn client_half_close_reaches_the_target_which_can_still_answer() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    let request = b"all I have to say";
    client.write_all(request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_eof(&mut far, "target reads to the client's EOF"),
        request
    );
    // The way back stays open after the EOF: a whole response follows it.
    let answer = Pattern::new(7).bytes(3 << 20);
    far.write_all(&answer)
        .expect("the target answers after EOF");
    drop(far);
    let got = read_to_eof(&mut client, "client reads the answer");
    assert!(
        got == answer,
        "answer arrived changed ({} bytes)",
        got.len()
    );
}

#[test]
fn target_half_close_reaches_the_client_which_can_still_send() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    let banner = b"the target is done talking";
    far.write_all(banner).unwrap();
    far.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_eof(&mut client, "client reads to the target's EOF"),
        banner
    );
    let upload = Pattern::new(8).bytes(3 << 20);
    client
        .write_all(&upload)
        .expect("the client sends after EOF");
    drop(client);
    let got = read_to_eof(&mut far, "target reads the upload");
    assert!(
        got == upload,
        "upload arrived changed ({} bytes)",
        got.len()
    );
}

/// The reply's BND.ADDR/BND.PORT is the outbound socket's local address, i.e. the source
/// address the target sees.
fn assert_bound_is_outbound(bound: SocketAddr, seen_by_target: SocketAddr) {
    assert_eq!(
        bound, seen_by_target,
        "BND.ADDR/PORT is not the proxy's side of the outbound connection"
    );
}

#[test]
fn socks5_bound_address_is_the_outbound_socket() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let (_client, reply) = socks::socks5_connect(server.addr(), target.addr(), None);
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (_far, peer) = target.accept();
    let Address::Ip(bound) = reply.bound else {
        panic!("BND.ADDR must be an IP: {reply:?}");
    };
    assert_bound_is_outbound(bound, peer);
}

#[test]
fn socks5_by_name_bound_address_is_the_outbound_socket() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let name = Address::Domain("localhost".into(), target.addr().port());
    let (_client, reply) = socks::socks5_connect(server.addr(), name, None);
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (_far, peer) = target.accept();
    let Address::Ip(bound) = reply.bound else {
        panic!("BND.ADDR must be an IP: {reply:?}");
    };
    assert_bound_is_outbound(bound, peer);
}

#[test]
fn socks4_bound_address_is_the_outbound_socket() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let (_client, reply) = socks::socks4_connect(server.addr(), target.addr(), b"");
    assert_eq!(reply.code, 90, "{reply:?}");
    let (_far, peer) = target.accept();
    assert_bound_is_outbound(SocketAddr::V4(reply.bound), peer);
}

#[test]
fn ipv6_target_relays_and_reports_an_ipv6_bound_address() {
    let server = Server::start(&[]);
    let target = Target::bind("[::1]:0");
    let (mut client, reply) = socks::socks5_connect(server.addr(), target.addr(), None);
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, peer) = target.accept();
    let Address::Ip(bound) = reply.bound else {
        panic!("BND.ADDR must be an IP: {reply:?}");
    };
    assert!(bound.is_ipv6(), "an IPv6 outbound socket: {bound}");
    assert_bound_is_outbound(bound, peer);
    socks::exchange(&mut client, &mut far, "ipv6 target");
}

#[test]
fn ipv6_listener_serves_clients() {
    let server = Server::start(&["--listen", "[::1]:0"]);
    assert!(server.addr().is_ipv6(), "announced {}", server.addr());
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "ipv6 listener");
}

#[test]
fn target_closing_ends_the_session_for_the_client() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (far, _) = target.accept();
    drop(far);
    assert!(read_to_eof(&mut client, "client waits for the close").is_empty());
    // Now the client's side closes too, and the proxy has nothing left to relay.
    drop(client);
    let mut again = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut again, &mut far, "next session");
}
