//! Every mode through ringsocks itself, in this process: sane figures, and its answers
//! to the harness's handshakes are the RFC ones.

mod support;

use bench_harness::error::{Error, SocksError};
use bench_harness::modes::connect::{self, ConnectConfig};
use bench_harness::modes::idle::{self, IdleConfig};
use bench_harness::modes::latency::{self, LatencyConfig};
use bench_harness::modes::throughput::{self, Direction, ThroughputConfig};
use bench_harness::modes::udp::{self, UdpConfig};
use support::ringsocks::Ringsocks;
use support::{assert_sane, auth, quick};

#[test]
fn latency_closed_and_open_loop() {
    let rs = Ringsocks::start(None);
    let mut common = quick(rs.route());
    common.pid = Some(std::process::id());
    let r = latency::run(&LatencyConfig {
        common: common.clone(),
        connections: 4,
        size: 64,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    assert!(r.server_us_per_op.unwrap() > 0.0);
    let r = latency::run(&LatencyConfig {
        common,
        connections: 4,
        size: 64,
        rate: Some(2000.0),
    })
    .unwrap();
    assert_sane(&r);
}

#[test]
fn throughput_both_ways_every_byte_verified() {
    let rs = Ringsocks::start(None);
    for direction in [Direction::Upload, Direction::Download] {
        let r = throughput::run(&ThroughputConfig {
            common: quick(rs.route()),
            connections: 2,
            direction,
            chunk: 65536,
            verify: true,
        })
        .unwrap();
        assert_sane(&r);
        assert!(r.gbit_per_s.unwrap() > 0.01, "{}", r.render());
    }
}

#[test]
fn connect_with_and_without_authentication() {
    let rs = Ringsocks::start(Some(auth("bench", "s3cret")));
    let r = connect::run(&ConnectConfig {
        common: quick(rs.route()),
        workers: 2,
        size: 16,
    })
    .unwrap();
    assert_sane(&r);

    let mut wrong = rs.route();
    wrong.auth = Some(auth("bench", "wrong"));
    let r = connect::run(&ConnectConfig {
        common: quick(wrong),
        workers: 1,
        size: 16,
    });
    assert!(
        matches!(r, Err(Error::Socks(SocksError::AuthFailed(_)))),
        "{r:?}"
    );
    let mut none = rs.route();
    none.auth = None;
    let r = connect::run(&ConnectConfig {
        common: quick(none),
        workers: 1,
        size: 16,
    });
    assert!(
        matches!(r, Err(Error::Socks(SocksError::NoAcceptableMethod { .. }))),
        "{r:?}"
    );
}

#[test]
fn udp_ping_pong_and_flood() {
    let rs = Ringsocks::start(None);
    let r = udp::run(&UdpConfig {
        common: quick(rs.route()),
        associations: 2,
        size: 64,
        flood: false,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    assert_eq!(r.loss, Some(0.0), "{}", r.render());
    let r = udp::run(&UdpConfig {
        common: quick(rs.route()),
        associations: 2,
        size: 64,
        flood: true,
        rate: Some(5000.0),
    })
    .unwrap();
    assert_sane(&r);
    assert!(r.loss.unwrap() < 0.5, "{}", r.render());
}

#[test]
fn idle_connections_stay_open() {
    let rs = Ringsocks::start(None);
    let r = idle::run(&IdleConfig {
        common: quick(rs.route()),
        connections: 100,
        concurrency: 16,
        baseline: None,
    })
    .unwrap();
    assert_eq!((r.ops, r.errors), (100, 0));
}
