//! Every mode through a SOCKS5 server (the in-process stub): sane figures, and the
//! handshakes and datagram headers the server received are the ones RFC 1928/1929 ask.

mod support;

use std::sync::atomic::Ordering;

use bench_harness::modes::connect::{self, ConnectConfig};
use bench_harness::modes::latency::{self, LatencyConfig};
use bench_harness::modes::throughput::{self, Direction, ThroughputConfig};
use bench_harness::modes::udp::{self, UdpConfig};
use ringsocks::proto::socks5::{CMD_CONNECT, CMD_UDP_ASSOCIATE};
use ringsocks::proto::Address;
use support::stub::{Stub, StubConfig};
use support::{assert_sane, auth, quick, via};

fn assert_connects_to_loopback(stub: &Stub) {
    let seen = stub.seen.lock().unwrap();
    assert!(!seen.requests.is_empty());
    for (cmd, addr) in &seen.requests {
        assert_eq!(*cmd, CMD_CONNECT);
        // The targets are the harness's own, on 127.0.0.1, given as an IPv4 address.
        match addr {
            Address::Ip(a) => assert!(a.ip().is_loopback() && a.port() != 0, "{a}"),
            other => panic!("request for {other}, expected an IP address"),
        }
    }
    for g in &seen.greetings {
        assert_eq!(g, &[0x00], "no-auth client offers exactly method 0");
    }
}

#[test]
fn latency_through_socks_with_server_cost() {
    let stub = Stub::start(StubConfig::plain());
    let mut common = quick(via(&stub));
    // The stub runs in this process, so this process is the server to account.
    common.pid = Some(std::process::id());
    let r = latency::run(&LatencyConfig {
        common,
        connections: 3,
        size: 200,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    assert_eq!(r.route, format!("socks5://{}", stub.addr));
    let server = r.server.expect("--pid given");
    assert!(
        server.cpu_s > 0.0 && server.rss_bytes > 0 && server.pss_bytes > 0,
        "{server:?}"
    );
    assert!(r.server_us_per_op.unwrap() > 0.0);
    // One handshake per connection, all before the window.
    assert_eq!(stub.counts.sessions.load(Ordering::Relaxed), 3);
    assert_connects_to_loopback(&stub);
}

#[test]
fn open_loop_through_socks() {
    let stub = Stub::start(StubConfig::plain());
    let r = latency::run(&LatencyConfig {
        common: quick(via(&stub)),
        connections: 2,
        size: 32,
        rate: Some(1000.0),
    })
    .unwrap();
    assert_sane(&r);
}

#[test]
fn throughput_through_socks_reports_cost_per_gib() {
    let stub = Stub::start(StubConfig::plain());
    for direction in [Direction::Upload, Direction::Download] {
        let mut common = quick(via(&stub));
        common.pid = Some(std::process::id());
        let r = throughput::run(&ThroughputConfig {
            common,
            connections: 2,
            direction,
            chunk: 32 * 1024,
            verify: false,
        })
        .unwrap();
        assert_sane(&r);
        assert!(r.gbit_per_s.unwrap() > 0.001, "{}", r.render());
        assert!(r.server_s_per_gib.unwrap() > 0.0, "{}", r.render());
    }
    assert_connects_to_loopback(&stub);
}

#[test]
fn connect_with_username_password() {
    let stub = Stub::start(StubConfig {
        auth: Some(auth("bench", "s3cret")),
        ..StubConfig::plain()
    });
    let r = connect::run(&ConnectConfig {
        common: quick(via(&stub)),
        workers: 2,
        size: 8,
    })
    .unwrap();
    assert_sane(&r);
    // Every session did the whole handshake, including the ones cut by the window's end.
    assert!(stub.counts.sessions.load(Ordering::Relaxed) >= r.ops);
    assert_eq!(stub.counts.auth_failures.load(Ordering::Relaxed), 0);
    let seen = stub.seen.lock().unwrap();
    assert!(
        seen.greetings.iter().all(|g| g == &[0x02]),
        "{:?}",
        seen.greetings
    );
    assert!(seen
        .credentials
        .iter()
        .all(|(u, p)| u == b"bench" && p == b"s3cret"));
}

#[test]
fn udp_associate_ping_pong_and_flood() {
    let stub = Stub::start(StubConfig::plain());
    let r = udp::run(&UdpConfig {
        common: quick(via(&stub)),
        associations: 2,
        size: 48,
        flood: false,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    assert_eq!(stub.counts.associations.load(Ordering::Relaxed), 2);
    {
        let seen = stub.seen.lock().unwrap();
        // ASSOCIATE announces the client's own UDP address, not 0.0.0.0.
        for (cmd, addr) in &seen.requests {
            assert_eq!(*cmd, CMD_UDP_ASSOCIATE);
            assert!(matches!(addr, Address::Ip(a) if a.ip().is_loopback() && a.port() != 0));
        }
        // Datagrams carry FRAG 0 and the echo target's address.
        assert!(!seen.udp_headers.is_empty());
        for h in &seen.udp_headers {
            assert_eq!(h.frag, 0);
            assert!(matches!(&h.address, Address::Ip(a) if a.ip().is_loopback()));
        }
    }

    let r = udp::run(&UdpConfig {
        common: quick(via(&stub)),
        associations: 2,
        size: 48,
        flood: true,
        rate: Some(3000.0),
    })
    .unwrap();
    assert_sane(&r);
    assert!(
        r.sent.unwrap() > 0 && r.loss.unwrap() < 0.5,
        "{}",
        r.render()
    );
}
