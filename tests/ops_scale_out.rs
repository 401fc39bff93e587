//! Scaling out: HAProxy in TCP mode with `send-proxy-v2` in front of two ringsocks
//! nodes, round robin. Clients from two source addresses go through HAProxy; both nodes
//! serve, and each sees the real client address, not HAProxy's.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::access_log::{self, str_field};
use common::haproxy::Haproxy;
use common::metrics;
use common::socks;
use common::{Server, Target, Workdir};
use ringsocks::proto::{socks5, ReplyCode};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(10);

/// The order clients connect in, alternating sources so that under round robin each node
/// gets both.
const SOURCES: [&str; 8] = [
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.3",
    "127.0.0.2",
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.3",
    "127.0.0.2",
];

struct Node {
    server: Server,
    work: Workdir,
}

impl Node {
    fn start() -> Node {
        let work = Workdir::new();
        let log = work.arg("access.log");
        let server = Server::start_proxy_protocol(
            "127.0.0.1/32",
            &["--access-log", &log, "--metrics-listen", "127.0.0.1:0"],
        );
        Node { server, work }
    }

    fn proxy_listener(&self) -> SocketAddr {
        self.server.addrs()[1]
    }

    fn entries(&self) -> Vec<Value> {
        access_log::read(&self.work.path("access.log"))
    }
}

#[test]
fn two_nodes_behind_haproxy_both_serve_and_see_the_real_clients() {
    let nodes = [Node::start(), Node::start()];
    let haproxy = Haproxy::start(&[nodes[0].proxy_listener(), nodes[1].proxy_listener()]);
    let target = Target::bind("127.0.0.1:0");

    let mut clients = Vec::new();
    for (i, source) in SOURCES.iter().enumerate() {
        let source: IpAddr = source.parse().unwrap();
        let mut stream = socks::dial_from(source, haproxy.addr());
        clients.push(stream.local_addr().unwrap());
        let reply = socks::socks5_handshake(
            &mut stream,
            socks5::CMD_CONNECT,
            &target.addr().into(),
            None,
        )
        .unwrap_or_else(|e| panic!("session {i} through HAProxy: {e}"));
        assert_eq!(reply.code, ReplyCode::Succeeded, "session {i}");
        let (mut far, _) = target.accept();
        socks::exchange(&mut stream, &mut far, &format!("session {i} from {source}"));
        // One session at a time, so the round robin order is the connect order.
        socks::transfer_and_close(stream, far, 1000 + i, 2000 + i);
    }

    let mut logs: Vec<Vec<Value>> = Vec::new();
    common::wait_until(WITHIN, || {
        logs = nodes.iter().map(Node::entries).collect();
        logs.iter().map(Vec::len).sum::<usize>() >= SOURCES.len()
    });
    let served: Vec<usize> = logs.iter().map(Vec::len).collect();
    assert_eq!(
        served.iter().sum::<usize>(),
        SOURCES.len(),
        "one access log line per session over both nodes: {logs:#?}"
    );
    // Every client, by its exact source address and port, on exactly one node, with
    // HAProxy (127.0.0.1) as the balancer it came through.
    for client in &clients {
        let want = client.to_string();
        let hits: Vec<&Value> = logs
            .iter()
            .flatten()
            .filter(|e| str_field(e, "client") == Some(want.as_str()))
            .collect();
        assert_eq!(hits.len(), 1, "client {client} in the logs: {logs:#?}");
        let via: SocketAddr = str_field(hits[0], "via")
            .expect("a via address")
            .parse()
            .expect("via is an address");
        assert_eq!(via.ip().to_string(), "127.0.0.1", "via of {client}");
        assert_eq!(str_field(hits[0], "reply"), Some("succeeded"));
    }
    // Both nodes served, and saw only the real clients' addresses. (Round robin gives each
    // four, from both sources; asserted is only what any spread over both must show.)
    let mut seen = BTreeSet::new();
    for (i, log) in logs.iter().enumerate() {
        let ips: BTreeSet<String> = log
            .iter()
            .filter_map(|e| str_field(e, "client"))
            .map(|c| c.parse::<SocketAddr>().unwrap().ip().to_string())
            .collect();
        assert!(
            !log.is_empty() && ips.iter().all(|ip| ip == "127.0.0.2" || ip == "127.0.0.3"),
            "node {i} served {} of {} sessions, from {ips:?}",
            log.len(),
            SOURCES.len()
        );
        seen.extend(ips);
        let m = metrics::scrape(metrics::metrics_addr(&nodes[i].server));
        assert_eq!(
            m.get("ringsocks_connections_accepted_total", &[]),
            log.len() as f64,
            "node {i}: connections accepted vs sessions logged"
        );
    }
    assert_eq!(seen.len(), 2, "both sources seen: {seen:?}");
    drop(haproxy);
}
