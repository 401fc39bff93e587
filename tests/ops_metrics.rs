//! `--metrics-listen`: the Prometheus endpoint scraped after known traffic, every figure
//! checked against what the test did, and the exposition checked by `promtool`.

mod common;

use std::time::Duration;

use common::metrics::{self, Metrics};
use common::socks::{self, Creds};
use common::target::closed_port;
use common::udp::{Declare, Mode, UdpClient, UdpTarget};
use common::{Server, Target, Workdir};
use ringsocks::proto::{socks5, Address, ReplyCode};

const SETTLE: Duration = Duration::from_secs(10);

const ALICE: Creds = Creds {
    user: "alice",
    pass: "alice-pw",
};
const LIMITED: Creds = Creds {
    user: "limited",
    pass: "limited-pw",
};

/// Byte counts of the CONNECT sessions that relay: (up, down).
const TRANSFERS: [(usize, usize); 3] = [(1_007, 3_011), (20_000, 7), (65_537, 131_072)];

/// A metric, the labels its series must have, and the value their sum must be.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The sum of every series of `name`.
fn total(m: &Metrics, name: &str) -> f64 {
    m.get(name, &[])
}

#[test]
fn scrape_after_known_traffic_counts_exactly_that_traffic() {
    let work = Workdir::new();
    let open = Target::bind("127.0.0.1:0");
    let denied = Target::bind("127.0.0.1:0");
    let users = work.write(
        "users",
        &format!(
            "{}:{}\n{}:{}\n",
            ALICE.user, ALICE.pass, LIMITED.user, LIMITED.pass
        ),
    );
    let config = work.write(
        "ringsocks.toml",
        &format!(
            "users = {users:?}\n\n\
             [[rule]]\nname = \"deny-port\"\naction = \"deny\"\nports = [{}]\n\n\
             [[rule]]\naction = \"allow\"\nports = [1]\n\n\
             [per-user.limited]\nmax-sessions = 1\n",
            denied.addr().port()
        ),
    );
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--shards",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let maddr = metrics::metrics_addr(&server);
    let idle = metrics::scrape(maddr);
    assert_eq!(total(&idle, "ringsocks_connections_accepted_total"), 0.0);
    assert_eq!(idle.get("ringsocks_shards", &[]), 2.0);

    // CONNECT sessions that relay known bytes and complete.
    for (up, down) in TRANSFERS {
        let client = socks::socks5_tunnel(server.addr(), open.addr(), Some(ALICE));
        let (far, _) = open.accept();
        socks::transfer_and_close(client, far, up, down);
    }
    // A user at their session limit: the first session relays, the second is refused.
    let held = socks::socks5_tunnel(server.addr(), open.addr(), Some(LIMITED));
    let (held_far, _) = open.accept();
    let (_second, reply) = socks::socks5_connect(server.addr(), open.addr(), Some(LIMITED));
    assert_eq!(reply.code, ReplyCode::NotAllowed, "over the user's limit");
    socks::transfer_and_close(held, held_far, 5, 6);
    // Refused by the target's host, and denied by a rule.
    let (_c, reply) = socks::socks5_connect(server.addr(), closed_port("127.0.0.1"), Some(ALICE));
    assert_eq!(reply.code, ReplyCode::ConnectionRefused);
    let (_c, reply) = socks::socks5_connect(server.addr(), denied.addr(), Some(ALICE));
    assert_eq!(reply.code, ReplyCode::NotAllowed, "rule deny-port");
    assert!(
        denied.try_accept(Duration::from_millis(200)).is_none(),
        "a denied CONNECT reached its target"
    );
    // A wrong password.
    let mut bad = socks::dial(server.addr());
    let refused = socks::socks5_handshake(
        &mut bad,
        socks5::CMD_CONNECT,
        &open.addr().into(),
        Some(Creds {
            user: "alice",
            pass: "wrong",
        }),
    );
    assert!(
        refused.is_err(),
        "a wrong password got through: {refused:?}"
    );
    drop(bad);
    // A UDP association relaying three datagrams each way.
    let echo = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let udp = UdpClient::try_open_as(server.addr(), "127.0.0.1:0", Declare::Zeros, Some(ALICE))
        .unwrap_or_else(|(reply, _)| panic!("UDP ASSOCIATE refused: {reply:?}"));
    let dest = Address::Ip(echo.addr());
    for len in [100, 200, 300] {
        udp.round_trip(&dest, &vec![0x5a; len]);
    }
    drop(udp);

    let sessions = 3 + 2 + 2 + 1 + 1;
    let m = metrics::scrape_until(maddr, SETTLE, |m| {
        total(m, "ringsocks_sessions_total") >= sessions as f64
            && total(m, "ringsocks_sessions_active") == 0.0
    });
    let up: usize = TRANSFERS.iter().map(|t| t.0).sum::<usize>() + 5;
    let down: usize = TRANSFERS.iter().map(|t| t.1).sum::<usize>() + 6;
    let want: &[Expected] = &[
        ("ringsocks_connections_accepted_total", &[], sessions as f64),
        ("ringsocks_sessions_total", &[], sessions as f64),
        (
            "ringsocks_sessions_total",
            &[("command", "connect"), ("reply", "succeeded")],
            4.0,
        ),
        (
            "ringsocks_sessions_total",
            &[("command", "connect"), ("reply", "not_allowed")],
            2.0,
        ),
        (
            "ringsocks_sessions_total",
            &[("command", "connect"), ("reply", "connection_refused")],
            1.0,
        ),
        (
            "ringsocks_sessions_total",
            &[("command", "udp"), ("reply", "succeeded")],
            1.0,
        ),
        (
            "ringsocks_sessions_total",
            &[("command", "none"), ("reply", "none")],
            1.0,
        ),
        ("ringsocks_sessions_active", &[], 0.0),
        ("ringsocks_shard_sessions_active", &[], 0.0),
        (
            "ringsocks_session_closes_total",
            &[("reason", "completed")],
            5.0,
        ),
        (
            "ringsocks_session_closes_total",
            &[("reason", "rejected")],
            3.0,
        ),
        (
            "ringsocks_session_closes_total",
            &[("reason", "handshake_error")],
            1.0,
        ),
        ("ringsocks_auth_failures_total", &[], 1.0),
        ("ringsocks_bytes_total", &[("direction", "up")], up as f64),
        (
            "ringsocks_bytes_total",
            &[("direction", "down")],
            down as f64,
        ),
        ("ringsocks_udp_datagrams_total", &[("direction", "up")], 3.0),
        (
            "ringsocks_udp_datagrams_total",
            &[("direction", "down")],
            3.0,
        ),
        ("ringsocks_udp_bytes_total", &[("direction", "up")], 600.0),
        ("ringsocks_udp_bytes_total", &[("direction", "down")], 600.0),
        ("ringsocks_udp_dropped_total", &[], 0.0),
        ("ringsocks_rejects_total", &[("rule", "deny-port")], 1.0),
        ("ringsocks_rejects_total", &[], 1.0),
        (
            "ringsocks_limit_hits_total",
            &[("limit", "user_sessions")],
            1.0,
        ),
        ("ringsocks_limit_hits_total", &[], 1.0),
        // Every session that sent a request; connects: 4 relayed, 1 refused.
        ("ringsocks_handshake_duration_seconds_count", &[], 8.0),
        ("ringsocks_connect_duration_seconds_count", &[], 5.0),
        ("ringsocks_stale_completions_total", &[], 0.0),
        ("ringsocks_draining", &[], 0.0),
        ("ringsocks_shards", &[], 2.0),
    ];
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(name, labels, value)| {
            let got = m.get(name, labels);
            (got != *value).then(|| format!("{name}{labels:?}: want {value}, got {got}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\n--- scrape ---\n{}",
        wrong.join("\n"),
        m.text
    );

    // Both rules have a series (the second, unnamed, by its position), and the default.
    for rule in ["deny-port", "rule 2", "default"] {
        assert_eq!(
            m.series("ringsocks_rejects_total", &[("rule", rule)])
                .count(),
            1,
            "series for rule {rule:?}:\n{}",
            m.text
        );
    }
    assert_eq!(
        m.get(
            "ringsocks_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for (name, kind) in [
        ("ringsocks_sessions_total", "counter"),
        ("ringsocks_sessions_active", "gauge"),
        ("ringsocks_bytes_total", "counter"),
        ("ringsocks_handshake_duration_seconds", "histogram"),
        ("ringsocks_connect_duration_seconds", "histogram"),
        ("ringsocks_loop_completions_per_turn", "histogram"),
        ("ringsocks_draining", "gauge"),
    ] {
        assert_eq!(m.type_of(name), Some(kind), "# TYPE of {name}");
    }
    assert_histograms_consistent(&m);
    // The per-shard series of both shards.
    for shard in ["0", "1"] {
        assert!(
            m.get("ringsocks_loop_turns_total", &[("shard", shard)]) > 0.0,
            "shard {shard} never turned:\n{}",
            m.text
        );
    }
    let started = m.get("ringsocks_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && now - started < 300.0,
        "start time {started} vs now {now}"
    );
    metrics::promtool_check(&m.text);
}

/// Buckets never decrease, and `+Inf` equals `_count`, for every histogram series.
fn assert_histograms_consistent(m: &Metrics) {
    let bases: Vec<&str> = m
        .samples
        .iter()
        .filter_map(|s| s.name.strip_suffix("_bucket"))
        .collect();
    assert!(!bases.is_empty(), "no histogram in:\n{}", m.text);
    for base in bases {
        let bucket = format!("{base}_bucket");
        let buckets: Vec<_> = m.series(&bucket, &[]).collect();
        let mut groups: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
        for b in buckets {
            let mut key = b.labels.clone();
            let le = key.remove("le").expect("a bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            groups
                .entry(format!("{key:?}"))
                .or_default()
                .push((le, b.value));
        }
        for (key, mut points) in groups {
            points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                points.windows(2).all(|w| w[0].1 <= w[1].1),
                "{bucket}{key} decreases: {points:?}"
            );
            let inf = points.last().expect("buckets");
            assert_eq!(inf.0, f64::INFINITY, "{bucket}{key} lacks +Inf");
            let count: f64 = m
                .samples
                .iter()
                .filter(|s| s.name == format!("{base}_count") && format!("{:?}", s.labels) == key)
                .map(|s| s.value)
                .sum();
            assert_eq!(inf.1, count, "{bucket}{key}: +Inf vs _count");
        }
    }
}

#[test]
fn other_paths_are_not_found_and_an_idle_server_passes_promtool() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0", "--shards", "1"]);
    let maddr = metrics::metrics_addr(&server);
    let resp = metrics::get(maddr, "/");
    assert_eq!(resp.status, 404, "{}", resp.head);
    let resp = metrics::get(maddr, "/metricsx");
    assert_eq!(resp.status, 404, "{}", resp.head);
    let m = metrics::scrape(maddr);
    assert_eq!(m.get("ringsocks_shards", &[]), 1.0);
    assert_eq!(total(&m, "ringsocks_sessions_total"), 0.0);
    metrics::promtool_check(&m.text);
    // A scrape is not a session.
    let m = metrics::scrape(maddr);
    assert_eq!(total(&m, "ringsocks_connections_accepted_total"), 0.0);
}
