//! Happy Eyeballs (RFC 8305) and `--prefer` against the real server: a name with an IPv6
//! address that swallows connects and a working IPv4 address connects after the
//! connection attempt delay (250 ms), far below the connect timeout; `--prefer ipv4`
//! tries IPv4 first.
//!
//! Each test runs in a network namespace of its own (see `common::netns`), so that the
//! blackhole and the target can share one port number on ::1 and 127.0.0.1 (a name gives
//! addresses, the request gives the port) without meeting anyone else's sockets. The name
//! resolves through a fake DNS server in the same namespace.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::netns::in_netns;
use common::policy::fake_dns;
use common::target::Blackhole;
use common::{socks, Server, Target};
use ringsocks::proto::Address;

/// The server's connection attempt delay (RFC 8305 §5 recommends 250 ms).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// The server's timers tick every 50 ms, so the delay may end up to one tick early.
const TICK: Duration = Duration::from_millis(50);
/// Far above the attempt delay, far below the connect timeout given to the server.
const PROMPT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: &str = "10";

/// A blackhole at `blackhole_ip` and a target at `target_ip`, on one port.
fn blackhole_and_target(blackhole_ip: &str, target_ip: &str) -> (Blackhole, Target) {
    let target = Target::bind(&format!("{target_ip}:0"));
    let at: SocketAddr = format!("{blackhole_ip}:{}", target.addr().port())
        .parse()
        .unwrap();
    let hole = Blackhole::open_at(at).unwrap_or_else(|e| panic!("blackhole at {at}: {e}"));
    (hole, target)
}

/// Connects through `server` to `dual.test` on the target's port, checks the tunnel
/// reaches the target, and returns how long the reply took.
#[track_caller]
fn timed_connect(server: &Server, target: &Target) -> Duration {
    let name = Address::Domain("dual.test".into(), target.addr().port());
    let start = Instant::now();
    let mut client = socks::socks5_tunnel(server.addr(), name, None);
    let took = start.elapsed();
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "happy eyeballs");
    took
}

#[test]
fn a_blackholed_ipv6_address_gives_way_to_ipv4_after_the_attempt_delay() {
    in_netns(&[], || {
        let (_hole, target) = blackhole_and_target("[::1]", "127.0.0.1");
        let dns = fake_dns(&[("dual.test", &["::1", "127.0.0.1"])]);
        let dns_arg = dns.addr().to_string();
        let server = Server::start(&[
            "--dns-server",
            &dns_arg,
            "--connect-timeout",
            CONNECT_TIMEOUT,
        ]);
        let took = timed_connect(&server, &target);
        assert!(
            took >= ATTEMPT_DELAY - TICK,
            "connected after {took:?}: IPv6 was not tried first"
        );
        assert!(
            took < PROMPT,
            "connected after {took:?}: IPv4 did not start after the attempt delay"
        );
    });
}

#[test]
fn prefer_ipv4_tries_ipv4_first() {
    in_netns(&[], || {
        let dns = fake_dns(&[("dual.test", &["::1", "127.0.0.1"])]);
        let dns_arg = dns.addr().to_string();
        let server = Server::start(&[
            "--dns-server",
            &dns_arg,
            "--prefer",
            "ipv4",
            "--connect-timeout",
            CONNECT_TIMEOUT,
        ]);
        // IPv6 blackholed: IPv4 goes first and connects at once.
        let (hole, target) = blackhole_and_target("[::1]", "127.0.0.1");
        let took = timed_connect(&server, &target);
        assert!(took < ATTEMPT_DELAY - TICK, "connected after {took:?}");
        drop((hole, target));

        // IPv4 blackholed: IPv6 is the fallback, after the attempt delay.
        let (_hole, target) = blackhole_and_target("127.0.0.1", "[::1]");
        let took = timed_connect(&server, &target);
        assert!(
            took >= ATTEMPT_DELAY - TICK && took < PROMPT,
            "connected after {took:?}: IPv4 was not tried first"
        );
    });
}
