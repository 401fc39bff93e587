use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::*;
use crate::proto::{Command, ReplyCode};
use crate::telemetry::testutil::{promtool_check, samples, value};
use crate::telemetry::{AccessEntry, AccessLog, LogDest};

/// Two shards with known traffic, rules with awkward labels, a resolver and an access log.
fn populated() -> (Sources, AccessLog) {
    let a = Arc::new(ShardStats::new(0));
    let b = Arc::new(ShardStats::new(1));
    // Shard 0: a CONNECT that succeeded and one refused by a rule; one still in handshake.
    for _ in 0..3 {
        a.session_opened();
    }
    a.session_request(Command::Connect);
    a.handshake_time(Duration::from_micros(700));
    a.connect_time(Duration::from_millis(3));
    a.relayed(Direction::Up, 100);
    a.relayed(Direction::Down, 4000);
    a.session_closed(
        Some(Command::Connect),
        Some(ReplyCode::Succeeded),
        CloseReason::Completed,
    );
    a.session_request(Command::Connect);
    a.session_closed(
        Some(Command::Connect),
        Some(ReplyCode::NotAllowed),
        CloseReason::Rejected,
    );
    a.loop_turn(0);
    a.loop_turn(5);
    a.buffers_exhausted(Pool::Relay);
    a.buffers_written(Pool::Relay, 1 << 20);
    a.buffers_written(Pool::Relay, 1 << 10);
    a.stale_completion();
    // Shard 1: a UDP association still open, a failed login, a limit.
    b.session_opened();
    b.session_request(Command::UdpAssociate);
    b.udp_relayed(Direction::Up, 30);
    b.udp_relayed(Direction::Down, 60);
    b.udp_dropped(UdpDrop::Fragment);
    b.session_opened();
    b.auth_failed();
    b.session_closed(None, None, CloseReason::HandshakeError);
    b.limit_hit(Limit::ClientRate);
    b.handshake_time(Duration::from_secs(20));
    b.loop_turn(2000);
    let rules = RuleRegistry::new(2);
    let counters = rules.install(["deny \"internal\"", "back\\slash\nrule", "default"]);
    counters.rejected(0, 0);
    counters.rejected(1, 0);
    counters.rejected(1, 2);
    let resolver = crate::resolve::ResolverStats::default();
    resolver.cache_hits.store(7, Ordering::Relaxed);
    resolver.timeouts.store(2, Ordering::Relaxed);
    let log = AccessLog::with_capacity(LogDest::Stderr, 1).unwrap();
    let process = ProcessStats::default();
    process.reload_succeeded();
    process.reload_failed();
    process.reload_failed();
    process.set_draining(true);
    let sources = Sources {
        shards: vec![a, b],
        rules: Some(rules),
        resolver: Some(Arc::new(resolver)),
        access_log: Some(log.stats()),
        process: Arc::new(process),
    };
    (sources, log)
}

fn rendered(sources: &Sources) -> String {
    let mut out = String::new();
    render(sources, &mut out);
    out
}

#[test]
fn exposition_passes_promtool() {
    let (sources, _log) = populated();
    promtool_check(&rendered(&sources));
}

#[test]
fn exposition_of_a_fresh_server_passes_promtool() {
    let sources = Sources::new(vec![Arc::new(ShardStats::new(0))]);
    promtool_check(&rendered(&sources));
}

#[test]
fn values_after_known_increments() {
    let (sources, log) = populated();
    log.record(AccessEntry {
        shard: 0,
        client: "127.0.0.1:1".parse().unwrap(),
        via: None,
        user: None,
        command: None,
        target: None,
        connected: None,
        outbound: None,
        reply: None,
        bytes_up: 0,
        bytes_down: 0,
        duration: Duration::ZERO,
        close: CloseReason::ClientClosed,
    });
    assert!(log.flush());
    let s = samples(&rendered(&sources));
    let v = |key: &str| value(&s, key);
    assert_eq!(v("ringsocks_shards"), 2.0);
    assert_eq!(v("ringsocks_connections_accepted_total"), 5.0);
    assert_eq!(v(r#"ringsocks_sessions_active{command="handshake"}"#), 1.0);
    assert_eq!(v(r#"ringsocks_sessions_active{command="connect"}"#), 0.0);
    assert_eq!(v(r#"ringsocks_sessions_active{command="udp"}"#), 1.0);
    assert_eq!(
        v(r#"ringsocks_sessions_total{command="connect",reply="succeeded"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_sessions_total{command="connect",reply="not_allowed"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_sessions_total{command="none",reply="none"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_sessions_total{command="udp",reply="succeeded"}"#),
        0.0
    );
    assert_eq!(
        v(r#"ringsocks_session_closes_total{reason="rejected"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_session_closes_total{reason="handshake_error"}"#),
        1.0
    );
    assert_eq!(v("ringsocks_auth_failures_total"), 1.0);
    assert_eq!(v(r#"ringsocks_bytes_total{direction="up"}"#), 100.0);
    assert_eq!(v(r#"ringsocks_bytes_total{direction="down"}"#), 4000.0);
    assert_eq!(v(r#"ringsocks_udp_datagrams_total{direction="up"}"#), 1.0);
    assert_eq!(v(r#"ringsocks_udp_bytes_total{direction="down"}"#), 60.0);
    assert_eq!(v(r#"ringsocks_udp_dropped_total{reason="fragment"}"#), 1.0);
    assert_eq!(
        v(r#"ringsocks_udp_dropped_total{reason="not_from_client"}"#),
        0.0
    );
    assert_eq!(v(r#"ringsocks_limit_hits_total{limit="client_rate"}"#), 1.0);
    assert_eq!(
        v(r#"ringsocks_rejects_total{rule="deny \"internal\""}"#),
        2.0
    );
    assert_eq!(
        v(r#"ringsocks_rejects_total{rule="back\\slash\nrule"}"#),
        0.0
    );
    assert_eq!(v(r#"ringsocks_rejects_total{rule="default"}"#), 1.0);
    // Histograms: cumulative buckets, sum in seconds, count.
    let h = "ringsocks_handshake_duration_seconds";
    assert_eq!(v(&format!(r#"{h}_bucket{{le="0.0005"}}"#)), 0.0);
    assert_eq!(v(&format!(r#"{h}_bucket{{le="0.001"}}"#)), 1.0);
    assert_eq!(v(&format!(r#"{h}_bucket{{le="10"}}"#)), 1.0);
    assert_eq!(v(&format!(r#"{h}_bucket{{le="+Inf"}}"#)), 2.0);
    assert_eq!(v(&format!("{h}_count")), 2.0);
    assert!((v(&format!("{h}_sum")) - 20.0007).abs() < 1e-9);
    let c = "ringsocks_connect_duration_seconds";
    assert_eq!(v(&format!(r#"{c}_bucket{{le="0.0025"}}"#)), 0.0);
    assert_eq!(v(&format!(r#"{c}_bucket{{le="0.005"}}"#)), 1.0);
    // Per-shard loop figures.
    assert_eq!(v(r#"ringsocks_loop_turns_total{shard="0"}"#), 2.0);
    assert_eq!(v(r#"ringsocks_loop_turns_total{shard="1"}"#), 1.0);
    assert_eq!(v(r#"ringsocks_loop_completions_total{shard="1"}"#), 2000.0);
    let p = "ringsocks_loop_completions_per_turn_bucket";
    assert_eq!(v(&format!(r#"{p}{{shard="0",le="0"}}"#)), 1.0);
    assert_eq!(v(&format!(r#"{p}{{shard="0",le="8"}}"#)), 2.0);
    assert_eq!(v(&format!(r#"{p}{{shard="1",le="1024"}}"#)), 0.0);
    assert_eq!(v(&format!(r#"{p}{{shard="1",le="+Inf"}}"#)), 1.0);
    assert_eq!(
        v(r#"ringsocks_buffer_ring_exhausted_total{shard="0",pool="relay"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_buffer_ring_exhausted_total{shard="0",pool="udp"}"#),
        0.0
    );
    assert_eq!(
        v(r#"ringsocks_buffer_pool_written_bytes{shard="0",pool="relay"}"#),
        (1 << 20) as f64,
        "the figure never goes down"
    );
    assert_eq!(v(r#"ringsocks_stale_completions_total{shard="0"}"#), 1.0);
    assert_eq!(v(r#"ringsocks_shard_sessions_active{shard="0"}"#), 1.0);
    assert_eq!(v(r#"ringsocks_shard_sessions_active{shard="1"}"#), 1.0);
    // Resolver, access log, process.
    assert_eq!(v("ringsocks_dns_cache_hits_total"), 7.0);
    assert_eq!(v(r#"ringsocks_dns_failures_total{reason="timeout"}"#), 2.0);
    assert_eq!(v("ringsocks_access_log_lines_total"), 1.0);
    assert_eq!(v("ringsocks_access_log_dropped_total"), 0.0);
    assert_eq!(
        v(r#"ringsocks_config_reloads_total{result="success"}"#),
        1.0
    );
    assert_eq!(
        v(r#"ringsocks_config_reloads_total{result="failure"}"#),
        2.0
    );
    assert_eq!(v("ringsocks_draining"), 1.0);
    assert!(v("ringsocks_start_time_seconds") > 1.7e9);
}

#[test]
fn every_family_has_help_and_type_once() {
    let (sources, _log) = populated();
    let text = rendered(&sources);
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(name.starts_with("ringsocks_"), "{name}");
        assert!(seen.insert(name.to_string()), "{name} declared twice");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    assert!(seen.len() > 30, "{} families", seen.len());
}

#[test]
fn a_reader_sees_monotonic_values_while_a_shard_writes() {
    const N: u64 = 200_000;
    let stats = Arc::new(ShardStats::new(0));
    let sources = Sources::new(vec![stats.clone()]);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        thread::spawn(move || {
            for _ in 0..N {
                stats.relayed(Direction::Up, 1);
                stats.loop_turn(1);
            }
            done.store(true, Ordering::Release);
        })
    };
    let key = r#"ringsocks_bytes_total{direction="up"}"#;
    let count = r#"ringsocks_loop_completions_per_turn_count{shard="0"}"#;
    let mut last = 0.0;
    let mut reads = 0;
    // Bounded: the writer finishes in well under a second; 100,000 renders is far beyond.
    while !done.load(Ordering::Acquire) && reads < 100_000 {
        let s = samples(&rendered(&sources));
        let now = value(&s, key);
        assert!(now >= last && now <= N as f64, "{last} then {now}");
        assert!(value(&s, count) <= N as f64);
        last = now;
        reads += 1;
    }
    writer.join().unwrap();
    let s = samples(&rendered(&sources));
    assert_eq!(value(&s, key), N as f64, "no increment lost");
    assert_eq!(value(&s, count), N as f64);
    assert!(reads > 0, "the reader ran while the writer wrote");
}
