//! A burst of 100,000 datagrams through one association, on one shard: a meaningful share
//! arrives both ways, TCP CONNECT clients of the same shard are served meanwhile, and
//! once the association ends the server holds no more descriptors than when idle, its
//! memory flat.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::socks;
use common::udp::{self, Mode, UdpClient, UdpTarget};
use common::wait::read_exact_vec;
use common::{wait_until, EchoServer, Server};
use ringsocks::proto::Address;

const BURST: u64 = 100_000;
const PAYLOAD: usize = 64;
/// The burst is bounded in time as well as in count.
const BURST_DEADLINE: Duration = Duration::from_secs(30);
/// Replies stop arriving this long after the last one: the burst has drained.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// At least this share must arrive each way (loopback drops only when a socket buffer
/// overflows; a sender in a tight loop overflows them often).
const MIN_SHARE: f64 = 0.10;
/// RSS may grow this much over the whole burst (buffers touched for the first time),
/// and much less over its second half, when every buffer has been used.
const MAX_RSS_GROWTH_KIB: u64 = 32 * 1024;
const MAX_RSS_GROWTH_SECOND_HALF_KIB: u64 = 4 * 1024;
/// A CONNECT session beside the burst must finish within this.
const MAX_TCP_LATENCY: Duration = Duration::from_secs(2);

/// One TCP CONNECT session through the proxy: 4 KiB echoed; returns how long it took.
fn tcp_session(proxy: SocketAddr, echo: SocketAddr, round: u32) -> Duration {
    let start = Instant::now();
    let mut c = socks::socks5_tunnel(proxy, echo, None);
    let data: Vec<u8> = (0..4096u32).map(|i| (i + round) as u8).collect();
    c.write_all(&data).unwrap();
    let back = read_exact_vec(&mut c, data.len())
        .unwrap_or_else(|e| panic!("CONNECT session {round} beside the burst: {e}"));
    assert!(back == data, "CONNECT session {round}: echo changed");
    start.elapsed()
}

#[test]
fn burst_of_100k_datagrams_leaks_nothing_and_tcp_is_served_meanwhile() {
    let server = Server::start(&["--shards", "1"]);
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let tcp_echo = EchoServer::start("127.0.0.1:0");
    let proxy = server.addr();
    let dest = Address::Ip(target.addr());

    // Warm up every path once, so the idle figures include what stays allocated.
    let warm_relay = {
        let warm = UdpClient::open(proxy, "127.0.0.1:0");
        warm.round_trip(&dest, b"warm up");
        tcp_session(proxy, tcp_echo.addr(), 0);
        warm.relay
    };
    let warm_outbound = target.sources()[0];
    assert!(
        wait_until(Duration::from_secs(5), || {
            !udp::udp_bound(warm_relay) && !udp::udp_bound(warm_outbound)
        }),
        "the warm-up association's sockets outlived it"
    );
    let idle_fds = server.open_fds();
    let rss_before = server.rss_kib();

    let client = UdpClient::open(proxy, "127.0.0.1:0");
    client.round_trip(&dest, b"before the burst");
    let busy_fds = server.open_fds();
    assert!(
        busy_fds > idle_fds,
        "an association holds sockets ({idle_fds} -> {busy_fds})"
    );

    let sending = AtomicBool::new(true);
    let sent = AtomicU64::new(0);
    let target_before = target.received();
    let mut rss_half = 0;
    let mut latencies = Vec::new();
    let started = Instant::now();
    let (replies, send_time) = thread::scope(|s| {
        // Counts replies until they stop for DRAIN_QUIET after the sender is done.
        let rx = client.socket.try_clone().unwrap();
        let relay = client.relay;
        let (sending, started) = (&sending, started);
        let receiver = s.spawn(move || {
            rx.set_read_timeout(Some(DRAIN_QUIET)).unwrap();
            let mut buf = [0u8; 2048];
            let mut got = 0u64;
            while started.elapsed() < BURST_DEADLINE * 2 {
                match rx.recv_from(&mut buf) {
                    Ok((n, src)) => {
                        assert_eq!(src, relay, "a datagram from elsewhere");
                        let r = udp::parse_relayed(&buf[..n]).expect("a relayed datagram");
                        assert_eq!(r.payload.len(), PAYLOAD, "a changed payload");
                        got += 1;
                    }
                    Err(e) if udp::is_timeout(&e) => {
                        if !sending.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                    Err(e) => panic!("receiving the burst's replies: {e}"),
                }
            }
            got
        });
        // CONNECT sessions for as long as the burst is being sent.
        let tcp = s.spawn(|| {
            let mut out = Vec::new();
            let mut round = 1;
            while sending.load(Ordering::SeqCst) || out.is_empty() {
                out.push((
                    tcp_session(proxy, tcp_echo.addr(), round),
                    sending.load(Ordering::SeqCst),
                ));
                round += 1;
            }
            out
        });
        let mut header = udp::datagram(0, &dest, &[]);
        let head_len = header.len();
        header.resize(head_len + PAYLOAD, 0);
        let mut datagram = header;
        let send_start = Instant::now();
        for i in 0..BURST {
            if send_start.elapsed() > BURST_DEADLINE {
                break;
            }
            datagram[head_len..head_len + 8].copy_from_slice(&i.to_be_bytes());
            // A full socket buffer may refuse one; UDP lets it go.
            let _ = client.socket.send_to(&datagram, client.relay);
            sent.store(i + 1, Ordering::Relaxed);
            if i == BURST / 2 {
                rss_half = server.rss_kib();
            }
        }
        let send_time = send_start.elapsed();
        sending.store(false, Ordering::SeqCst);
        latencies = tcp.join().unwrap();
        (receiver.join().unwrap(), send_time)
    });
    let sent = sent.load(Ordering::SeqCst);
    let arrived = target.received() - target_before;
    eprintln!(
        "burst: {sent} sent in {send_time:?}, {arrived} reached the target, {replies} replies \
         came back; RSS {rss_before} -> {rss_half} (half) -> {} KiB",
        server.rss_kib()
    );
    assert_eq!(
        sent, BURST,
        "the burst was not sent within {BURST_DEADLINE:?}"
    );
    assert!(
        arrived as f64 >= sent as f64 * MIN_SHARE,
        "only {arrived} of {sent} datagrams reached the target"
    );
    assert!(
        replies as f64 >= sent as f64 * MIN_SHARE,
        "only {replies} of {sent} replies came back"
    );

    let during: Vec<Duration> = latencies
        .iter()
        .filter(|(_, d)| *d)
        .map(|(l, _)| *l)
        .collect();
    let max = latencies.iter().map(|(l, _)| *l).max().unwrap();
    eprintln!(
        "CONNECT beside the burst: {} sessions ({} while sending), max {max:?}",
        latencies.len(),
        during.len()
    );
    assert!(
        !during.is_empty(),
        "no CONNECT session completed while the burst was sent"
    );
    assert!(
        max < MAX_TCP_LATENCY,
        "a CONNECT session took {max:?} beside the burst"
    );

    // The association still works: the burst did not strand buffers.
    client.round_trip(&dest, b"after the burst");

    let rss_after = server.rss_kib();
    assert!(
        rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB,
        "RSS grew from {rss_before} to {rss_after} KiB over the burst"
    );
    assert!(
        rss_after.saturating_sub(rss_half) < MAX_RSS_GROWTH_SECOND_HALF_KIB,
        "RSS grew from {rss_half} to {rss_after} KiB over the burst's second half"
    );

    // Once the association ends, its descriptors go.
    drop(client);
    let mut fds = 0;
    assert!(
        wait_until(Duration::from_secs(5), || {
            fds = server.open_fds();
            fds <= idle_fds
        }),
        "the server holds {fds} descriptors after the association ended, {idle_fds} when idle"
    );

    // And a new association gets the full pool.
    let again = UdpClient::open(proxy, "127.0.0.1:0");
    for i in 0..100u32 {
        again.round_trip(&dest, &i.to_be_bytes());
    }
}
