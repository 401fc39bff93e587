//! UDP ASSOCIATE against the real server over loopback: round trips over IPv4, IPv6 and by
//! name, a real client (PySocks), the drop rules, the association's lifetime, and the
//! flags that shape the relay socket.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::run_bounded;
use common::udp::{self, Declare, Mode, UdpClient, UdpTarget};
use common::wait::still_open;
use common::{expect_closed, Server};
use ringsocks::proto::{Address, ReplyCode};

/// How long teardown (control EOF seen, sockets closed) may take on a busy machine.
const TEARDOWN: Duration = Duration::from_secs(5);

fn ip(addr: SocketAddr) -> Address {
    Address::Ip(addr)
}

// ---- Round trips ----

#[test]
fn ipv4_round_trip_carries_the_real_source_of_the_reply() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::EchoFromOtherPort);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    assert_eq!(
        client.bound.ip(),
        server.addr().ip(),
        "BND.ADDR {}",
        client.bound
    );
    for (i, len) in [1usize, 5, 512, 1400, 2000].into_iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        let got = client.round_trip(&ip(target.addr()), &payload);
        assert_eq!(got.frag, 0);
        assert_eq!(got.header_len, 10, "IPv4 reply header");
        assert_eq!(
            got.from,
            ip(target.reply_from()),
            "the header must name the socket that answered, not the one addressed"
        );
    }
    // The target saw one outbound socket of the relay, on loopback.
    let sources = target.sources();
    assert_eq!(
        sources.len(),
        1,
        "one outbound socket per family: {sources:?}"
    );
    assert_eq!(sources[0].ip(), Ipv4Addr::LOCALHOST);
}

#[test]
fn empty_payload_is_relayed_both_ways() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let got = client.round_trip(&ip(target.addr()), b"");
    assert_eq!(got.from, ip(target.addr()));
    assert_eq!(target.payloads(), vec![Vec::<u8>::new()]);
}

#[test]
fn ipv6_destination_over_an_ipv4_control_connection() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("[::1]:0", Mode::EchoFromOtherPort);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let got = client.round_trip(&ip(target.addr()), b"to an IPv6 remote");
    assert_eq!(got.header_len, 22, "IPv6 reply header");
    assert_eq!(got.from, ip(target.reply_from()));
    assert!(target.sources()[0].is_ipv6());
}

#[test]
fn ipv6_listener_relays_to_ipv6_and_ipv4_destinations() {
    let server = Server::start(&["--listen", "[::1]:0"]);
    let v6 = UdpTarget::start("[::1]:0", Mode::EchoFromOtherPort);
    let v4 = UdpTarget::start("127.0.0.1:0", Mode::EchoFromOtherPort);
    let client = UdpClient::open(server.addr(), "[::1]:0");
    assert_eq!(
        client.bound.ip(),
        "::1".parse::<std::net::IpAddr>().unwrap(),
        "the relay sits where the client reached the proxy"
    );
    for round in 0..3 {
        let got = client.round_trip(&ip(v6.addr()), format!("v6 {round}").as_bytes());
        assert_eq!((got.from, got.header_len), (ip(v6.reply_from()), 22));
        let got = client.round_trip(&ip(v4.addr()), format!("v4 {round}").as_bytes());
        assert_eq!((got.from, got.header_len), (ip(v4.reply_from()), 10));
    }
}

#[test]
fn domain_destination_is_resolved_and_the_reply_names_the_address() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::EchoFromOtherPort);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = Address::Domain("localhost".into(), target.addr().port());
    // The first datagram waits for the resolver, the next ones hit the cache.
    for round in 0..3 {
        let got = client.round_trip(&dest, format!("by name {round}").as_bytes());
        assert_eq!(got.from, ip(target.reply_from()));
        assert_eq!(got.header_len, 10);
    }
}

// ---- A real client ----

const PYSOCKS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/pysocks_udp.py");
const PYSOCKS_INSTALL: &str = "python3 -m pip install pysocks";

/// Runs the PySocks script against `proxy` for `dest` and returns its stdout lines.
fn pysocks(proxy: SocketAddr, dest_host: &str, dest_port: u16, count: u32) -> Vec<String> {
    let mut cmd = Command::new("python3");
    cmd.args([
        PYSOCKS_SCRIPT,
        &proxy.ip().to_string(),
        &proxy.port().to_string(),
        dest_host,
        &dest_port.to_string(),
        &count.to_string(),
    ]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("PySocks is missing; install it with `{PYSOCKS_INSTALL}`\n{stderr}");
    }
    assert!(
        out.status.success(),
        "PySocks client failed: {:?}\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn pysocks_udp_client_round_trips_by_address_and_by_name() {
    let server = Server::start(&[]);
    let v4 = UdpTarget::start("127.0.0.1:0", Mode::EchoFromOtherPort);
    let v6 = UdpTarget::start("[::1]:0", Mode::Echo);
    let cases = [
        ("127.0.0.1", v4.addr().port(), ip(v4.reply_from())),
        ("localhost", v4.addr().port(), ip(v4.reply_from())),
        ("::1", v6.addr().port(), ip(v6.addr())),
    ];
    for (host, port, from) in cases {
        let lines = pysocks(server.addr(), host, port, 5);
        let want: Vec<String> = (0..5)
            .map(|i| {
                format!(
                    "pysocks datagram {i} from {} {}",
                    from_host(&from),
                    from.port()
                )
            })
            .collect();
        assert_eq!(lines, want, "PySocks to {host}:{port}");
    }
    let seen = v4.payloads().len() + v6.payloads().len();
    assert!(seen >= 15, "the targets saw {seen} datagrams");
}

/// The host as PySocks prints a reply's source.
fn from_host(from: &Address) -> String {
    match from {
        Address::Ip(sa) => sa.ip().to_string(),
        Address::Domain(name, _) => name.clone(),
    }
}

// ---- What is dropped ----

#[test]
fn fragments_are_dropped_and_whole_datagrams_still_pass() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = ip(target.addr());
    for frag in [1u8, 2, 0x7f, 0x80, 0xff] {
        client.send_raw(&udp::datagram(
            frag,
            &dest,
            format!("fragment {frag}").as_bytes(),
        ));
    }
    // Sent after the fragments on the same socket: once its answer is back, the relay
    // has handled every fragment before it.
    let got = client.round_trip(&dest, b"whole");
    assert_eq!(got.frag, 0);
    assert_eq!(
        target.payloads(),
        vec![b"whole".to_vec()],
        "only the whole datagram"
    );
}

#[test]
fn datagrams_from_another_source_ip_are_dropped_both_ways() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = ip(target.addr());
    client.round_trip(&dest, b"first");
    let intruder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    for i in 0..5 {
        let d = udp::datagram(0, &dest, format!("intruder {i}").as_bytes());
        intruder.send_to(&d, client.relay).unwrap();
    }
    // The relay reads one socket in order: the intruder's datagrams came before this.
    client.round_trip(&dest, b"marker");
    assert_eq!(
        target.payloads(),
        vec![b"first".to_vec(), b"marker".to_vec()],
        "an intruder's datagram reached the target"
    );
    // Nor did the intruder take over the way back.
    intruder.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    match intruder.recv_from(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("the intruder received something: {other:?}"),
    }
    client.round_trip(&dest, b"still mine");
}

// ---- Lifetime ----

#[test]
fn closing_the_control_connection_ends_the_association() {
    let mut server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = ip(target.addr());
    client.round_trip(&dest, b"while open");
    let relay = client.relay;
    let outbound = target.sources()[0];
    assert!(
        udp::udp_bound(relay),
        "the relay socket {relay} is not in /proc/net/udp"
    );
    assert!(
        udp::udp_bound(outbound),
        "the outbound socket {outbound} is not in /proc/net/udp"
    );

    let UdpClient {
        control, socket, ..
    } = client;
    drop(control);
    assert!(
        udp::wait_unbound(relay, TEARDOWN),
        "the relay socket {relay} outlived its control connection by {TEARDOWN:?}"
    );
    assert!(
        udp::wait_unbound(outbound, TEARDOWN),
        "the outbound socket {outbound} outlived its control connection by {TEARDOWN:?}"
    );
    assert!(
        udp::port_refuses(relay, TEARDOWN),
        "datagrams to {relay} do not draw port unreachable"
    );
    // Nothing goes through any more, either way.
    let before = target.received();
    socket
        .send_to(&udp::datagram(0, &dest, b"after close"), relay)
        .unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.send_to(b"late answer", outbound).unwrap();
    assert!(
        udp::port_refuses(outbound, TEARDOWN),
        "{outbound} still takes datagrams"
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    match socket.recv_from(&mut buf) {
        Err(e) if udp::is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("the client received something after close: {other:?}"),
    }
    assert_eq!(
        target.received(),
        before,
        "a datagram was relayed after close"
    );
    server.assert_healthy();
}

#[test]
fn idle_timeout_ends_a_quiet_association_and_traffic_keeps_it() {
    const IDLE: Duration = Duration::from_millis(500);
    let server = Server::start(&["--udp-idle-timeout", "0.5"]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let mut client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = ip(target.addr());
    // Traffic every 150 ms or so for three timeouts' worth: the association stays.
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < IDLE * 3 {
        client.round_trip(&dest, format!("keepalive {round}").as_bytes());
        round += 1;
        // Paces the traffic; the wait also proves no stray datagram arrives.
        match client.recv_within(Duration::from_millis(150)) {
            Err(e) if udp::is_timeout(&e) => {}
            other => panic!("unexpected datagram: {other:?}"),
        }
        assert!(
            still_open(&client.control),
            "the association ended after {:?} despite traffic",
            start.elapsed()
        );
    }
    let last = Instant::now();
    client.round_trip(&dest, b"last");
    expect_closed(&mut client.control, TEARDOWN);
    let quiet = last.elapsed();
    eprintln!("idle association closed after {quiet:?} of quiet");
    // The server's timers tick every 50 ms: allow two ticks early, as for the other
    // timeouts.
    assert!(
        quiet >= IDLE - Duration::from_millis(100),
        "closed after {quiet:?} of quiet, before the {IDLE:?} timeout"
    );
    assert!(
        udp::wait_unbound(client.relay, TEARDOWN),
        "relay socket left behind"
    );
}

// ---- Who the client is ----

#[test]
fn a_client_that_declares_the_destination_still_works() {
    let server = Server::start(&[]);
    // On 127.0.0.3, so the declared address is not the client's.
    let target = UdpTarget::start("127.0.0.3:0", Mode::Echo);
    let dest = ip(target.addr());
    let client =
        UdpClient::open_declaring(server.addr(), "127.0.0.1:0", Declare::This(dest.clone()));
    client.round_trip(&dest, b"declared the destination");
    // The same mistake with the destination on the client's own IP.
    let near = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client =
        UdpClient::open_declaring(server.addr(), "127.0.0.1:0", Declare::This(ip(near.addr())));
    client.round_trip(&ip(near.addr()), b"declared a neighbour");
    // And a name.
    let named = Address::Domain("localhost".into(), near.addr().port());
    let client = UdpClient::open_declaring(server.addr(), "127.0.0.1:0", Declare::This(named));
    client.round_trip(&ip(near.addr()), b"declared a name");
}

#[test]
fn a_client_that_declares_its_own_address_works() {
    let server = Server::start(&[]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open_declaring(server.addr(), "127.0.0.1:0", Declare::Own);
    client.round_trip(&ip(target.addr()), b"declared myself");
}

// ---- The relay address ----

#[test]
fn bound_address_is_never_the_wildcard() {
    // Wildcard listeners without users are an open proxy: say that is intended.
    let server = Server::start(&[
        "--listen",
        "0.0.0.0:0",
        "--listen",
        "[::]:0",
        "--allow-open",
    ]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let (v4, v6) = (server.addrs()[0].port(), server.addrs()[1].port());
    let cases: [(SocketAddr, &str); 3] = [
        (SocketAddr::from(([127, 0, 0, 1], v4)), "127.0.0.1:0"),
        // Reached at another loopback address: that one is advertised.
        (SocketAddr::from(([127, 0, 0, 2], v4)), "127.0.0.1:0"),
        (format!("[::1]:{v6}").parse().unwrap(), "[::1]:0"),
    ];
    for (proxy, bind) in cases {
        let client = UdpClient::open(proxy, bind);
        assert!(
            !client.bound.ip().is_unspecified(),
            "BND.ADDR {} via {proxy}",
            client.bound
        );
        assert_eq!(client.bound.ip(), proxy.ip(), "BND.ADDR via {proxy}");
        assert_ne!(client.bound.port(), 0);
        client.round_trip(&ip(target.addr()), format!("via {proxy}").as_bytes());
    }
}

#[test]
fn udp_public_addr_is_what_the_reply_advertises() {
    // A documentation address: only advertised, never sent to.
    let server = Server::start(&["--udp-public-addr", "203.0.113.7"]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let mut client = UdpClient::open(server.addr(), "127.0.0.1:0");
    assert_eq!(
        client.bound.ip(),
        "203.0.113.7".parse::<std::net::IpAddr>().unwrap()
    );
    // The socket itself still sits on the address the client reached.
    client.relay = SocketAddr::new(server.addr().ip(), client.bound.port());
    assert!(
        udp::udp_bound(client.relay),
        "no relay socket at {}",
        client.relay
    );
    client.round_trip(&ip(target.addr()), b"behind NAT");
}

#[test]
fn udp_bind_puts_the_relay_on_that_address() {
    let server = Server::start(&["--udp-bind", "127.0.0.4"]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    assert_eq!(
        client.bound.ip(),
        "127.0.0.4".parse::<std::net::IpAddr>().unwrap()
    );
    client.round_trip(&ip(target.addr()), b"on 127.0.0.4");
}

/// A run of `n` UDP ports below the ephemeral range that are free now (other processes
/// may take one later; that shows as a clear failure, not a hang).
fn free_port_run(n: u16) -> u16 {
    for _ in 0..50 {
        let lo = fastrand::u16(20000..30000);
        let free = (lo..lo + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if free {
            return lo;
        }
    }
    panic!("no run of {n} free UDP ports found");
}

#[test]
fn udp_port_range_is_honoured_and_a_full_range_refuses() {
    let lo = free_port_run(3);
    let hi = lo + 2;
    let range = format!("{lo}-{hi}");
    let mut server = Server::start(&["--udp-port-range", &range]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let mut clients = Vec::new();
    for i in 0..3 {
        let client = UdpClient::open(server.addr(), "127.0.0.1:0");
        let port = client.bound.port();
        assert!((lo..=hi).contains(&port), "BND.PORT {port} outside {range}");
        client.round_trip(&ip(target.addr()), format!("in range {i}").as_bytes());
        clients.push(client);
    }
    let mut ports: Vec<u16> = clients.iter().map(|c| c.bound.port()).collect();
    ports.sort();
    assert_eq!(ports, (lo..=hi).collect::<Vec<_>>());
    // Every port is taken: the next association is refused, not put elsewhere.
    match UdpClient::try_open(server.addr(), "127.0.0.1:0", Declare::Zeros) {
        Ok(c) => panic!("a fourth association got {} from a range of three", c.bound),
        Err((reply, mut control)) => {
            assert_ne!(reply.code, ReplyCode::Succeeded);
            expect_closed(&mut control, TEARDOWN);
        }
    }
    // A port comes back when its association ends.
    let freed = clients.pop().unwrap();
    let port = freed.bound.port();
    drop(freed);
    assert!(udp::wait_unbound(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TEARDOWN
    ));
    let again = UdpClient::open(server.addr(), "127.0.0.1:0");
    assert_eq!(again.bound.port(), port);
    again.round_trip(&ip(target.addr()), b"reused port");
    server.assert_healthy();
}

// ---- Size ----

#[test]
fn largest_datagram_passes_and_an_oversized_one_is_dropped() {
    let server = Server::start(&["--udp-max-datagram", "1024"]);
    let target = UdpTarget::start("[::1]:0", Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let dest = ip(target.addr());
    // The largest payload, back behind the largest reply header.
    let full = vec![0xabu8; 1024];
    let got = client.round_trip(&dest, &full);
    assert_eq!(got.header_len, 22);
    // One byte over the limit is dropped, as is a far larger one.
    client.send(&dest, &vec![0xcdu8; 1025]);
    client.send(&dest, &vec![0xcdu8; 4000]);
    let got = client.round_trip(&dest, b"after the oversized one");
    assert_eq!(got.from, dest);
    assert!(
        target.payloads().iter().all(|p| p.len() <= 1024),
        "an oversized datagram was relayed"
    );
}
