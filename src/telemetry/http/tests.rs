use std::net::Ipv4Addr;

use super::*;
use crate::proto::Command;
use crate::telemetry::testutil::{promtool_check, samples, value};
use crate::telemetry::{Direction, ShardStats};

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Sends `request`, reads until the server closes; status line, headers and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn stats_and_exporter() -> (Arc<ShardStats>, Exporter) {
    let stats = Arc::new(ShardStats::new(0));
    let exporter = Exporter::start(loopback(), Sources::new(vec![stats.clone()])).unwrap();
    (stats, exporter)
}

#[test]
fn scrape_over_a_real_socket_passes_promtool_and_shows_new_counts() {
    let (stats, exporter) = stats_and_exporter();
    let addr = exporter.local_addr();
    let (status, headers, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{headers}"
    );
    assert!(
        headers.contains(&format!("Content-Length: {}", body.len())),
        "{headers}"
    );
    promtool_check(&body);
    assert_eq!(
        value(&samples(&body), "ringsocks_connections_accepted_total"),
        0.0
    );

    stats.session_opened();
    stats.session_request(Command::Connect);
    stats.relayed(Direction::Down, 1234);
    let (_, _, body) = get(addr, "/metrics?x=1");
    let s = samples(&body);
    assert_eq!(value(&s, "ringsocks_connections_accepted_total"), 1.0);
    assert_eq!(
        value(&s, r#"ringsocks_sessions_active{command="connect"}"#),
        1.0
    );
    assert_eq!(
        value(&s, r#"ringsocks_bytes_total{direction="down"}"#),
        1234.0
    );
}

#[test]
fn other_paths_and_methods_are_refused() {
    let (_stats, exporter) = stats_and_exporter();
    let addr = exporter.local_addr();
    assert_eq!(get(addr, "/").0, "HTTP/1.1 404 Not Found");
    assert_eq!(get(addr, "/metricsx").0, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET, HEAD"));
    let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Length: "), "{headers}");
    assert!(body.is_empty());
    // A bare-LF client is served too.
    assert_eq!(
        exchange(addr, b"GET /metrics HTTP/1.0\n\n").0,
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn an_oversized_request_is_refused_and_the_server_goes_on() {
    let (_stats, exporter) = stats_and_exporter();
    let addr = exporter.local_addr();
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.resize(MAX_REQUEST + 100, b'a');
    let (status, _, _) = exchange(addr, &big);
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK");
}

/// An exporter whose connections may stay silent far longer than `exchange` waits.
fn patient_exporter() -> Exporter {
    let stats = Arc::new(ShardStats::new(0));
    let timeout = Duration::from_secs(60);
    Exporter::start_with(loopback(), Sources::new(vec![stats]), timeout).unwrap()
}

/// Whether `s` is still open: nothing to read yet, and no end of stream.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    matches!((&*s).read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[test]
fn a_silent_client_does_not_delay_a_scrape() {
    let exporter = patient_exporter();
    let addr = exporter.local_addr();
    let silent = TcpStream::connect(addr).unwrap();
    // Waiting out the silent client would take 60 s, past `exchange`'s read timeout.
    assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(
        still_open(&silent),
        "the scrape was served while the silent client waits"
    );
}

#[test]
fn connections_beyond_the_cap_get_503_at_once_and_slots_come_back() {
    let exporter = patient_exporter();
    let addr = exporter.local_addr();
    let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Accepted in order, so this one finds every slot taken; it is answered without
    // sending anything.
    let mut over = TcpStream::connect(addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    over.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{reply:?}"
    );
    assert!(
        reply.ends_with("\r\n\r\nService Unavailable\n"),
        "{reply:?}"
    );
    assert!(silent.iter().all(still_open));

    // The silent clients leave; their threads see the end of stream and free the slots.
    drop(silent);
    let served = (0..500).any(|_| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        let ok = reply.starts_with("HTTP/1.1 200 OK");
        if !ok {
            thread::sleep(Duration::from_millis(10));
        }
        ok
    });
    assert!(served, "no slot came back after the silent clients left");
}

#[test]
fn dropping_the_exporter_closes_the_port() {
    let (_stats, exporter) = stats_and_exporter();
    let addr = exporter.local_addr();
    let start = Instant::now();
    drop(exporter);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let (_stats, exporter) = stats_and_exporter();
    let err = Exporter::start(exporter.local_addr(), Sources::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("cannot listen for metrics on"),
        "{err}"
    );
}
