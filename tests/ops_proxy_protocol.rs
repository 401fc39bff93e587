//! `--proxy-protocol-listen`: a balancer's PROXY protocol v1/v2 header carries the real
//! client's address, which the rules, the limits and the access log then use; a header
//! from an untrusted source, a missing header or a malformed one closes the connection.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::access_log::{self, str_field};
use common::metrics;
use common::proxy_header;
use common::socks;
use common::{Server, Target, Workdir};
use ringsocks::proto::{socks5, Address, ReplyCode};

const WITHIN: Duration = Duration::from_secs(10);

/// A server with a plain listener and a PROXY protocol listener trusting 127.0.0.1 only,
/// logging to `work`/access.log, with a rule that denies the client 127.0.0.66.
fn start(work: &Workdir, extra: &[&str]) -> (Server, SocketAddr) {
    let config = work.write(
        "ringsocks.toml",
        "[[rule]]\nname = \"banned-client\"\naction = \"deny\"\nclients = [\"127.0.0.66/32\"]\n",
    );
    let log = work.arg("access.log");
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--access-log",
        &log,
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let server = Server::start_proxy_protocol("127.0.0.1/32", &args);
    let proxied = server.addrs()[1];
    (server, proxied)
}

#[test]
fn both_listeners_may_take_port_0() {
    // Port 0 asks for any free port: two such listeners are two listeners, not one given
    // twice.
    let server = Server::try_start(&[
        "--listen",
        "127.0.0.1:0",
        "--proxy-protocol-listen",
        "127.0.0.1:0",
        "--proxy-trusted",
        "127.0.0.1/32",
    ])
    .unwrap_or_else(|e| panic!("a plain and a PROXY protocol listener on port 0: {e}"));
    assert_eq!(server.addrs().len(), 2);
    assert_ne!(server.addrs()[0], server.addrs()[1]);
}

/// Header, greeting and CONNECT request in one write; returns the stream and the reply.
fn connect_behind(
    listener: SocketAddr,
    header: &[u8],
    target: SocketAddr,
) -> (TcpStream, socks5::Reply) {
    let mut stream = socks::dial(listener);
    let mut bytes = header.to_vec();
    bytes.extend(socks::socks5_connect_bytes(&Address::Ip(target), None));
    stream.write_all(&bytes).expect("send header and handshake");
    let method = socks::read_method(&mut stream).expect("a method selection");
    assert_eq!(method, socks5::METHOD_NO_AUTH);
    let reply = socks::read_socks5_reply(&mut stream).expect("a reply");
    (stream, reply)
}

fn carried(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn v1_and_v2_headers_pipelined_with_the_handshake_carry_the_client() {
    let work = Workdir::new();
    let (server, listener) = start(&work, &[]);
    let target = Target::bind("127.0.0.1:0");
    // An address-only v2 header, one with TLVs (a unique id and a NOOP), and IPv6.
    let cases = [
        ("v1", carried("127.0.0.50", 4050)),
        ("v2", carried("127.0.0.51", 4051)),
        ("v2 with TLVs", carried("127.0.0.52", 4052)),
        ("v1 TCP6", carried("::1", 4053)),
        ("v2 IPv6", carried("::1", 4054)),
    ];
    let mut vias = Vec::new();
    for (kind, client) in cases {
        let dst = if client.is_ipv4() {
            listener
        } else {
            carried("::1", listener.port())
        };
        let header = match kind {
            "v1" | "v1 TCP6" => proxy_header::v1(client, dst),
            "v2" | "v2 IPv6" => proxy_header::v2(client, dst, &[]),
            _ => proxy_header::v2(client, dst, &[(0x05, b"req-0001"), (0x04, &[0; 7])]),
        };
        let (mut near, reply) = connect_behind(listener, &header, target.addr());
        assert_eq!(reply.code, ReplyCode::Succeeded, "{kind}: {reply:?}");
        vias.push(near.local_addr().unwrap());
        let (mut far, _) = target.accept();
        socks::exchange(&mut near, &mut far, kind);
    }
    let entries = access_log::wait_entries(&work.path("access.log"), cases.len(), WITHIN);
    for ((kind, client), via) in cases.iter().zip(&vias) {
        let e = access_log::for_client(&entries, *client);
        let via = via.to_string();
        assert_eq!(
            str_field(e, "via"),
            Some(via.as_str()),
            "{kind}: the balancer"
        );
        assert_eq!(str_field(e, "reply"), Some("succeeded"), "{kind}");
    }
    drop(server);
}

#[test]
fn a_header_split_over_many_writes_is_gathered() {
    let work = Workdir::new();
    let (_server, listener) = start(&work, &[]);
    let target = Target::bind("127.0.0.1:0");
    let client = carried("127.0.0.53", 4055);
    for header in [
        proxy_header::v1(client, listener),
        proxy_header::v2(client, listener, &[(0x05, b"split")]),
    ] {
        let mut stream = socks::dial(listener);
        for byte in &header {
            stream.write_all(&[*byte]).expect("one byte of the header");
        }
        let reply = socks::socks5_handshake(
            &mut stream,
            socks5::CMD_CONNECT,
            &target.addr().into(),
            None,
        )
        .expect("the handshake after a split header");
        assert_eq!(reply.code, ReplyCode::Succeeded);
        let (mut far, _) = target.accept();
        socks::exchange(&mut stream, &mut far, "after a split header");
    }
}

#[test]
fn rules_see_the_carried_client() {
    let work = Workdir::new();
    let (server, listener) = start(&work, &[]);
    let maddr = metrics::metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let banned = carried("127.0.0.66", 4066);
    for header in [
        proxy_header::v1(banned, listener),
        proxy_header::v2(banned, listener, &[]),
    ] {
        let (_stream, reply) = connect_behind(listener, &header, target.addr());
        assert_eq!(reply.code, ReplyCode::NotAllowed, "a banned client");
    }
    assert!(
        target.try_accept(Duration::from_millis(200)).is_none(),
        "a denied CONNECT reached its target"
    );
    // The same balancer carrying another client, and the balancer's own address on the
    // plain listener, are allowed: the rule matched the carried address.
    let other = carried("127.0.0.67", 4067);
    let (_stream, reply) = connect_behind(
        listener,
        &proxy_header::v2(other, listener, &[]),
        target.addr(),
    );
    assert_eq!(reply.code, ReplyCode::Succeeded);
    let _far = target.accept();
    let (_stream, reply) = socks::socks5_connect(server.addrs()[0], target.addr(), None);
    assert_eq!(reply.code, ReplyCode::Succeeded);
    let _far = target.accept();

    let m = metrics::scrape_until(maddr, WITHIN, |m| {
        m.get("ringsocks_rejects_total", &[("rule", "banned-client")]) >= 2.0
    });
    assert_eq!(
        m.get("ringsocks_rejects_total", &[("rule", "banned-client")]),
        2.0,
        "{}",
        m.text
    );
    let entries = access_log::wait_entries(&work.path("access.log"), 2, WITHIN);
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| str_field(e, "reply") == Some("not_allowed"))
        .collect();
    assert_eq!(denied.len(), 2, "{entries:#?}");
    for e in denied {
        assert_eq!(str_field(e, "client"), Some("127.0.0.66:4066"), "{e}");
    }
}

#[test]
fn limits_count_the_carried_client() {
    let work = Workdir::new();
    let (server, listener) = start(&work, &["--max-sessions-per-ip", "1"]);
    let maddr = metrics::metrics_addr(&server);
    let target = Target::bind("127.0.0.1:0");
    let a = carried("127.0.0.77", 4077);
    let b = carried("127.0.0.78", 4078);
    let (mut first, reply) =
        connect_behind(listener, &proxy_header::v2(a, listener, &[]), target.addr());
    assert_eq!(reply.code, ReplyCode::Succeeded);
    let (mut first_far, _) = target.accept();
    // Another client through the same balancer (same real peer address) is not limited.
    let (_second, reply) = connect_behind(listener, &proxy_header::v1(b, listener), target.addr());
    assert_eq!(
        reply.code,
        ReplyCode::Succeeded,
        "a different carried client shares the balancer's address"
    );
    let _second_far = target.accept();
    // The first client again: over its limit.
    let a_again = carried("127.0.0.77", 4079);
    let (_third, reply) = connect_behind(
        listener,
        &proxy_header::v2(a_again, listener, &[]),
        target.addr(),
    );
    assert_eq!(
        reply.code,
        ReplyCode::NotAllowed,
        "127.0.0.77 is at its limit"
    );
    let m = metrics::scrape(maddr);
    assert_eq!(
        m.get(
            "ringsocks_limit_hits_total",
            &[("limit", "client_sessions")]
        ),
        1.0,
        "{}",
        m.text
    );
    socks::exchange(&mut first, &mut first_far, "the first session is untouched");
}

/// Sends `bytes` to `listener` from `source` and expects the connection closed with
/// nothing sent back.
#[track_caller]
fn expect_refused(listener: SocketAddr, source: IpAddr, bytes: &[u8], what: &str) {
    let mut stream = socks::dial_from(source, listener);
    // The server may close before all is written; that is the point.
    let _ = stream.write_all(bytes);
    let mut got = Vec::new();
    stream.set_read_timeout(Some(WITHIN)).unwrap();
    match stream.read_to_end(&mut got) {
        Ok(_) => assert!(got.is_empty(), "{what}: the server answered {got:02x?}"),
        Err(e) => assert!(
            common::wait::is_closed_error(&e),
            "{what}: still open or failed otherwise: {e}"
        ),
    }
}

#[test]
fn untrusted_sources_and_bad_or_missing_headers_are_closed() {
    let work = Workdir::new();
    let (server, listener) = start(&work, &[]);
    let target = Target::bind("127.0.0.1:0");
    let handshake = socks::socks5_connect_bytes(&Address::Ip(target.addr()), None);
    let trusted: IpAddr = "127.0.0.1".parse().unwrap();
    let untrusted: IpAddr = "127.0.0.2".parse().unwrap();
    let client = carried("127.0.0.60", 4060);

    for header in [
        proxy_header::v1(client, listener),
        proxy_header::v2(client, listener, &[]),
    ] {
        let bytes = [header, handshake.clone()].concat();
        expect_refused(
            listener,
            untrusted,
            &bytes,
            "a header from an untrusted source",
        );
    }
    expect_refused(listener, trusted, &handshake, "no header");
    let garbage: [(&str, Vec<u8>); 5] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "a v1 line with a bad address",
            b"PROXY TCP4 127.0.0.999 127.0.0.1 1 2\r\n".to_vec(),
        ),
        ("a v1 line without CRLF", [b'P'; 120].to_vec()),
        (
            "a wrong v2 signature",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c".to_vec(),
        ),
        (
            "a v2 header with version 3",
            [
                &proxy_header::V2_SIGNATURE[..],
                &[0x31, 0x11, 0, 12],
                &[0; 12],
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in garbage {
        let bytes = [bytes, handshake.clone()].concat();
        expect_refused(listener, trusted, &bytes, what);
    }
    assert!(
        target.try_accept(Duration::from_millis(200)).is_none(),
        "a refused connection reached the target"
    );
    // The plain listener is not affected: 127.0.0.2 is served there.
    let mut stream = socks::dial_from(untrusted, server.addrs()[0]);
    let reply = socks::socks5_handshake(
        &mut stream,
        socks5::CMD_CONNECT,
        &target.addr().into(),
        None,
    )
    .expect("the plain listener serves");
    assert_eq!(reply.code, ReplyCode::Succeeded);
    let (mut far, _) = target.accept();
    socks::exchange(&mut stream, &mut far, "plain listener");
    drop((stream, far));
    // Every refused connection was logged as a handshake error from its real peer.
    let log = work.path("access.log");
    let entries = access_log::wait_entries(&log, 9, WITHIN);
    let errors = entries
        .iter()
        .filter(|e| str_field(e, "close") == Some("handshake_error"))
        .count();
    assert_eq!(errors, 8, "{entries:#?}");
}

#[test]
fn a_v2_local_header_is_served_as_the_balancer_itself() {
    let work = Workdir::new();
    let (_server, listener) = start(&work, &[]);
    let target = Target::bind("127.0.0.1:0");
    let (mut near, reply) = connect_behind(listener, &proxy_header::v2_local(), target.addr());
    assert_eq!(reply.code, ReplyCode::Succeeded);
    let me = near.local_addr().unwrap();
    let (mut far, _) = target.accept();
    socks::exchange(&mut near, &mut far, "LOCAL");
    drop((near, far));
    let entries = access_log::wait_entries(&work.path("access.log"), 1, WITHIN);
    access_log::for_client(&entries, me);
}
