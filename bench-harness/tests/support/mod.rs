//! Test support: a small SOCKS5 server to run the harness against, built from threads
//! and blocking std sockets, that records what clients sent and can be told to fail.
#![allow(dead_code)]

pub mod ringsocks;
pub mod stub;

use std::time::Duration;

use bench_harness::run::{Common, Route};
use bench_harness::socks::Auth;

/// Options for a short run: the whole suite must finish in well under a minute on two
/// shared cores.
pub fn quick(route: Route) -> Common {
    let mut c = Common::new(
        route,
        Duration::from_millis(400),
        Duration::from_millis(100),
    );
    c.timeout = Duration::from_secs(3);
    c
}

pub fn via(stub: &stub::Stub) -> Route {
    Route {
        proxy: Some(stub.addr),
        auth: stub.config.auth.clone(),
    }
}

pub fn auth(user: &str, pass: &str) -> Auth {
    Auth {
        user: user.into(),
        pass: pass.into(),
    }
}

use bench_harness::report::Report;

/// Checks the figures every report with latency must satisfy.
pub fn assert_sane(r: &Report) {
    assert!(r.window_s > 0.0, "{r:?}");
    assert!(
        r.ops > 0 && r.ops_per_s > 0.0,
        "no work done: {}",
        r.render()
    );
    assert_eq!(r.errors, 0, "{}", r.render());
    if let Some(p) = r.latency {
        assert!(p.count > 0);
        assert!(p.p50_us > 0.0, "{}", r.render());
        let ordered = [
            p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.p9999_us, p.max_us,
        ];
        assert!(
            ordered.windows(2).all(|w| w[0] <= w[1]),
            "percentiles out of order: {}",
            r.render()
        );
    }
    assert!(r.harness.cpu_s >= 0.0);
}
