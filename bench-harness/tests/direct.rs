//! Every mode over the direct path (no SOCKS server): sane, non-zero figures.

mod support;

use bench_harness::modes::connect::{self, ConnectConfig};
use bench_harness::modes::idle::{self, IdleConfig};
use bench_harness::modes::latency::{self, LatencyConfig};
use bench_harness::modes::throughput::{self, Direction, ThroughputConfig};
use bench_harness::modes::udp::{self, UdpConfig};
use bench_harness::run::Route;
use support::{assert_sane, quick};

#[test]
fn throughput_moves_bytes_both_ways() {
    for direction in [Direction::Upload, Direction::Download] {
        let r = throughput::run(&ThroughputConfig {
            common: quick(Route::direct()),
            connections: 2,
            direction,
            chunk: 65536,
            verify: true,
        })
        .unwrap();
        assert_sane(&r);
        assert!(r.gbit_per_s.unwrap() > 0.01, "{}", r.render());
        assert_eq!(r.route, "direct");
        assert!(r.server.is_none());
    }
}

#[test]
fn closed_loop_latency_records_every_request() {
    let r = latency::run(&LatencyConfig {
        common: quick(Route::direct()),
        connections: 4,
        size: 100,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    let p = r.latency.unwrap();
    assert_eq!(p.count, r.ops);
    // Loopback round trips take microseconds, not seconds.
    assert!(p.p50_us < 100_000.0, "{}", r.render());
}

#[test]
fn open_loop_latency_keeps_the_rate() {
    let rate = 2000.0;
    let r = latency::run(&LatencyConfig {
        common: quick(Route::direct()),
        connections: 4,
        size: 64,
        rate: Some(rate),
    })
    .unwrap();
    assert_sane(&r);
    // The schedule fixes the count: rate × window, give or take the edges.
    let expected = rate * r.window_s;
    assert!(
        (r.ops as f64 + r.unfinished as f64 - expected).abs() <= expected * 0.02 + 4.0,
        "expected ~{expected} requests: {}",
        r.render()
    );
}

#[test]
fn connect_counts_whole_sessions() {
    let r = connect::run(&ConnectConfig {
        common: quick(Route::direct()),
        workers: 2,
        size: 16,
    })
    .unwrap();
    assert_sane(&r);
    assert_eq!(r.unit, "session");
}

#[test]
fn udp_ping_pong_and_flood() {
    let r = udp::run(&UdpConfig {
        common: quick(Route::direct()),
        associations: 2,
        size: 64,
        flood: false,
        rate: None,
    })
    .unwrap();
    assert_sane(&r);
    assert_eq!(
        r.loss,
        Some(0.0),
        "loopback ping-pong loses nothing: {}",
        r.render()
    );

    let r = udp::run(&UdpConfig {
        common: quick(Route::direct()),
        associations: 2,
        size: 64,
        flood: true,
        rate: Some(5000.0),
    })
    .unwrap();
    assert_sane(&r);
    let sent = r.sent.unwrap() as f64;
    assert!(
        (sent - 5000.0 * r.window_s).abs() < 5000.0 * r.window_s * 0.05 + 10.0,
        "{}",
        r.render()
    );
    assert!(r.loss.unwrap() < 0.5, "{}", r.render());
}

#[test]
fn idle_holds_connections() {
    let r = idle::run(&IdleConfig {
        common: quick(Route::direct()),
        connections: 50,
        concurrency: 10,
        baseline: None,
    })
    .unwrap();
    assert_eq!(r.ops, 50);
    assert_eq!(r.errors, 0);
}
