//! The idle mode's memory figures, alone in its own test binary: the "server" here is
//! this process (the stub), and concurrent tests would move its memory.

mod support;

use std::sync::atomic::Ordering;

use bench_harness::modes::idle::{self, IdleConfig};
use support::stub::{Stub, StubConfig};
use support::{quick, via};

#[test]
fn idle_measures_memory_per_connection() {
    let stub = Stub::start(StubConfig::plain());
    let mut common = quick(via(&stub));
    common.pid = Some(std::process::id());
    let r = idle::run(&IdleConfig {
        common,
        connections: 40,
        concurrency: 8,
        baseline: None,
    })
    .unwrap();
    assert_eq!((r.ops, r.errors), (40, 0));
    let m = r.per_connection.expect("--pid given");
    assert_eq!(m.connections, 40);
    assert!(m.rss_before > 0 && m.rss_after > 0);
    // Every stub connection holds threads and stacks: memory grows.
    assert!(m.rss_per_conn > 0.0, "{m:?}");
    assert_eq!(stub.counts.connects.load(Ordering::Relaxed), 40);

    // A given baseline (compare takes one before its first run) replaces the reading
    // before the run. In the same test: a concurrent test would move this process's
    // memory under the first measurement.
    let mut common = quick(via(&stub));
    common.pid = Some(std::process::id());
    let r = idle::run(&IdleConfig {
        common,
        connections: 10,
        concurrency: 10,
        baseline: Some((4096, 2048)),
    })
    .unwrap();
    let m = r.per_connection.expect("--pid given");
    assert_eq!((m.rss_before, m.pss_before), (4096, 2048));
    assert!((m.rss_per_conn - (m.rss_after as f64 - 4096.0) / 10.0).abs() < 1e-6);
}
