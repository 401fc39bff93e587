//! A server that says no is reported as an error, never as a figure: error replies,
//! method rejection, failed authentication, garbage, early close, a dead server, and a
//! relay that alters a byte.

mod support;

use std::process::Command;

use bench_harness::error::{Error, SocksError};
use bench_harness::modes::connect::{self, ConnectConfig};
use bench_harness::modes::latency::{self, LatencyConfig};
use bench_harness::modes::throughput::{self, Direction, ThroughputConfig};
use bench_harness::modes::udp::{self, UdpConfig};
use bench_harness::run::Route;
use ringsocks::proto::ReplyCode;
use support::stub::{Fault, Stub, StubConfig};
use support::{auth, quick, via};

fn faulty(fault: Fault) -> Stub {
    Stub::start(StubConfig { auth: None, fault })
}

fn latency_via(route: Route) -> Result<bench_harness::report::Report, Error> {
    latency::run(&LatencyConfig {
        common: quick(route),
        connections: 2,
        size: 16,
        rate: None,
    })
}

#[test]
fn connect_error_reply_is_an_error() {
    let stub = faulty(Fault::ConnectReply(0x05));
    match latency_via(via(&stub)) {
        Err(Error::Socks(SocksError::Refused { command, code, .. })) => {
            assert_eq!(command, "CONNECT");
            assert_eq!(code, ReplyCode::ConnectionRefused);
        }
        other => panic!("expected REP 0x05 as an error, got {other:?}"),
    }
    // The connect mode too, even though it tolerates transport failures.
    let mut common = quick(via(&stub));
    common.max_errors = 1_000_000;
    let r = connect::run(&ConnectConfig {
        common,
        workers: 2,
        size: 8,
    });
    assert!(
        matches!(r, Err(Error::Socks(SocksError::Refused { .. }))),
        "{r:?}"
    );
}

#[test]
fn udp_associate_refusal_is_an_error() {
    let stub = faulty(Fault::UdpReply(0x07));
    let r = udp::run(&UdpConfig {
        common: quick(via(&stub)),
        associations: 1,
        size: 32,
        flood: false,
        rate: None,
    });
    match r {
        Err(Error::Socks(SocksError::Refused { command, code, .. })) => {
            assert_eq!(command, "UDP ASSOCIATE");
            assert_eq!(code, ReplyCode::CommandNotSupported);
        }
        other => panic!("expected REP 0x07 as an error, got {other:?}"),
    }
}

#[test]
fn method_rejection_and_auth_failure_are_errors() {
    let stub = faulty(Fault::RejectMethods);
    assert!(matches!(
        latency_via(via(&stub)),
        Err(Error::Socks(SocksError::NoAcceptableMethod { .. }))
    ));

    let stub = Stub::start(StubConfig {
        auth: Some(auth("bench", "right")),
        fault: Fault::None,
    });
    // No credentials offered to a server that requires them: 0xFF.
    let mut route = via(&stub);
    route.auth = None;
    assert!(matches!(
        latency_via(route.clone()),
        Err(Error::Socks(SocksError::NoAcceptableMethod { .. }))
    ));
    route.auth = Some(auth("bench", "wrong"));
    assert!(matches!(
        latency_via(route),
        Err(Error::Socks(SocksError::AuthFailed(1)))
    ));
}

#[test]
fn garbage_and_early_close_are_errors() {
    let stub = faulty(Fault::Garbage);
    assert!(matches!(
        latency_via(via(&stub)),
        Err(Error::Socks(SocksError::Malformed { .. }))
    ));
    let stub = faulty(Fault::CloseAfterGreeting);
    assert!(matches!(
        latency_via(via(&stub)),
        Err(Error::Socks(SocksError::Closed { .. }))
    ));
}

#[test]
fn one_altered_byte_fails_a_verified_bulk_run_either_way() {
    for (direction, fault) in [
        (Direction::Upload, Fault::FlipUp(100_000)),
        (Direction::Download, Fault::FlipDown(100_000)),
    ] {
        let stub = faulty(fault);
        let run = |verify| {
            throughput::run(&ThroughputConfig {
                common: quick(via(&stub)),
                connections: 1,
                direction,
                chunk: 16 * 1024,
                verify,
            })
        };
        match run(true) {
            Err(Error::Corrupt(what)) => assert!(what.contains("byte 100000"), "{what}"),
            other => panic!(
                "{direction:?}: expected the altered byte as an error, got {:?}",
                other.map(|r| r.render())
            ),
        }
        // Unverified, the same relay goes unnoticed: the check is what catches it.
        assert!(run(false).is_ok(), "{direction:?}");
    }
}

#[test]
fn one_altered_byte_fails_an_echo_run() {
    let stub = faulty(Fault::FlipUp(100_000));
    let r = latency::run(&LatencyConfig {
        common: quick(via(&stub)),
        connections: 1,
        size: 64 * 1024,
        rate: None,
    });
    assert!(
        matches!(r, Err(Error::Corrupt(_))),
        "{:?}",
        r.map(|r| r.render())
    );
}

#[test]
fn a_dead_server_is_an_error() {
    // Bind and drop: nothing listens on this port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let route = Route {
        proxy: Some(addr),
        auth: None,
    };
    assert!(matches!(latency_via(route.clone()), Err(Error::Io { .. })));
    let r = connect::run(&ConnectConfig {
        common: quick(route),
        workers: 1,
        size: 8,
    });
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
}

/// The binary: an error reply prints one clear line on stderr, no figures on stdout, and
/// exits non-zero.
#[test]
fn binary_exits_non_zero_on_error_reply() {
    let stub = faulty(Fault::ConnectReply(0x05));
    let out = Command::new(env!("CARGO_BIN_EXE_bench-harness"))
        .args(["latency", "--proxy", &stub.addr.to_string()])
        .args(["--duration", "300ms", "--warmup", "0s", "-c", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("error: the SOCKS server refused CONNECT 127.0.0.1:")
            && stderr.contains("REP 0x05 (connection refused)"),
        "{stderr}"
    );
}

#[test]
fn binary_prints_figures_and_json() {
    let stub = faulty(Fault::None);
    let dir = std::env::temp_dir().join(format!("bh-hgrm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("latency.hgrm");
    let out = Command::new(env!("CARGO_BIN_EXE_bench-harness"))
        .args(["latency", "--proxy", &stub.addr.to_string(), "--json"])
        .args(["--duration", "300ms", "--warmup", "100ms", "-c", "2"])
        .arg("--hgrm")
        .arg(&hgrm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "latency");
    assert!(v["ops"].as_u64().unwrap() > 0);
    assert!(v["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.contains("Percentile") && text.contains("#[Max"));
    std::fs::remove_dir_all(&dir).unwrap();
}
