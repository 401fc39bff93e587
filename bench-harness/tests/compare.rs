//! The compare mode: alternating runs against several servers and the direct path,
//! medians in a Markdown table, every run in JSON lines, SVG percentile charts.

mod support;

use std::time::Duration;

use bench_harness::compare::{self, CaseSpec, CompareConfig, ServerSpec};
use bench_harness::run::{Common, Route};
use support::stub::{Fault, Stub, StubConfig};

#[test]
fn compares_servers_and_reports_unsupported_cases() {
    let good = Stub::start(StubConfig::plain());
    let no_udp = Stub::start(StubConfig {
        auth: None,
        fault: Fault::UdpReply(0x07),
    });
    let out = std::env::temp_dir().join(format!("bh-compare-{}", std::process::id()));
    let mut base = Common::new(
        Route::direct(),
        Duration::from_millis(300),
        Duration::from_millis(50),
    );
    base.timeout = Duration::from_secs(3);
    let cfg = CompareConfig {
        base,
        servers: vec![
            ServerSpec::direct(),
            ServerSpec::parse(&format!("stub={}", good.addr)).unwrap(),
            ServerSpec::parse(&format!(
                "no-udp={},pid={}",
                no_udp.addr,
                std::process::id()
            ))
            .unwrap(),
        ],
        cases: vec![
            CaseSpec::parse("latency:conns=2").unwrap(),
            CaseSpec::parse("udp:assoc=1").unwrap(),
        ],
        repeats: 2,
        out: out.clone(),
    };
    let mut log = Vec::new();
    let results = compare::run(&cfg, &mut log).unwrap();
    let log = String::from_utf8(log).unwrap();

    // Every case ran against every server, twice; the servers alternated.
    assert_eq!(log.matches(" via ").count(), 12, "{log}");
    assert!(log.contains("[1/12] latency:conns=2 via direct"), "{log}");
    assert!(log.contains("[7/12] latency:conns=2 via stub"), "{log}");
    for server_runs in &results.runs[0] {
        assert_eq!(server_runs.len(), 2);
        assert!(server_runs.iter().all(|r| r.is_ok()), "{server_runs:?}");
    }
    // The server without UDP ASSOCIATE shows its refusal, not a number.
    let udp_no = &results.runs[1][2];
    assert!(udp_no
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.contains("REP 0x07"))));

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("## latency:conns=2") && md.contains("## udp:assoc=1"),
        "{md}"
    );
    assert!(md.contains("| server | runs | req/s | p50 µs |"), "{md}");
    assert!(md.contains("| stub | 2 |"), "{md}");
    assert!(
        md.contains("| no-udp | 0 | failed: the SOCKS server refused UDP ASSOCIATE"),
        "{md}"
    );

    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines.iter().filter(|v| v["ok"] == false).count(), 2);
    // The server given with a pid has its cost in every successful run.
    assert!(lines
        .iter()
        .filter(|v| v["server"] == "no-udp" && v["ok"] == true)
        .all(|v| v["report"]["server"]["cpu_s"].as_f64().is_some()));

    let svg = std::fs::read_to_string(out.join("latency_conns_2.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3, "one curve per server");
    let svg = std::fs::read_to_string(out.join("udp_assoc_1.svg")).unwrap();
    assert_eq!(
        svg.matches("<polyline").count(),
        2,
        "no curve for the refusing server"
    );
    assert!(out.join("latency_conns_2-stub.hgrm").exists());
    std::fs::remove_dir_all(&out).unwrap();
}
