//! A UDP destination that vanishes: its port closes, so datagrams to it draw ICMP port
//! unreachable at the relay's outbound socket. That error belongs to one destination
//! only: the association must keep relaying to every other one, and to the same one once
//! something listens there again. And a destination the network refuses outright: each
//! failed send is counted, gives its buffer back, and the association goes on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::metrics::{metrics_addr, scrape_until};
use common::netns::in_netns;
use common::netstat::icmp_unreachables_sent;
use common::udp::{port_refuses, Mode, UdpClient, UdpTarget};
use common::wait::still_open;
use common::{wait_until, Server};
use ringsocks::proto::Address;

/// Datagrams sent to the vanished destination.
const INTO_THE_VOID: usize = 20;

fn vanished_destination(bind: &str) {
    let mut server = Server::start(&[]);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let stays = UdpTarget::start(bind, Mode::Echo);
    let goes = UdpTarget::start(bind, Mode::Echo);
    let (stays_at, gone) = (Address::Ip(stays.addr()), goes.addr());
    client.round_trip(&Address::Ip(gone), b"to the one that goes, before");
    client.round_trip(&stays_at, b"to the one that stays, before");

    drop(goes);
    assert!(
        port_refuses(gone, Duration::from_secs(2)),
        "{gone} still takes datagrams: no ICMP unreachable to provoke"
    );
    let icmp_before = icmp_unreachables_sent(gone.is_ipv6());
    for i in 0..INTO_THE_VOID {
        client.send(&Address::Ip(gone), format!("into the void {i}").as_bytes());
    }
    // Proof that the relay sent them on and drew the errors this test is about.
    let icmp = || icmp_unreachables_sent(gone.is_ipv6()) - icmp_before;
    assert!(
        wait_until(Duration::from_secs(5), || icmp() >= INTO_THE_VOID as u64),
        "{} ICMP unreachables for {INTO_THE_VOID} datagrams to {gone}",
        icmp()
    );
    // Any datagram other than these answers (an error notice, a stray echo) fails here.
    for i in 0..5 {
        client.round_trip(
            &stays_at,
            format!("to the one that stays, after {i}").as_bytes(),
        );
    }
    assert!(
        still_open(&client.control),
        "the control connection ended after the destination vanished"
    );

    // The same destination works again once something listens there.
    let back = UdpTarget::start(&gone.to_string(), Mode::Echo);
    client.round_trip(&Address::Ip(back.addr()), b"to the one that came back");
    server.assert_healthy();
}

#[test]
fn vanished_ipv4_destination_leaves_the_association_working() {
    vanished_destination("127.0.0.1:0");
}

#[test]
fn vanished_ipv6_destination_leaves_the_association_working() {
    vanished_destination("[::1]:0");
}

/// Rounds of datagrams to an unroutable destination, and datagrams per round: more in all
/// than the pool's 128 buffers, so a buffer kept by a failed send would starve the relay.
const ROUNDS: usize = 10;
const PER_ROUND: usize = 20;

#[test]
fn refused_sends_are_counted_and_give_their_buffers_back() {
    // In a namespace that holds loopback alone, a public address has no route: the send
    // fails at once (ENETUNREACH) instead of going anywhere.
    in_netns(&[], || {
        let mut server =
            Server::start(&["--metrics-listen", "127.0.0.1:0", "--udp-buffers", "128"]);
        let metrics = metrics_addr(&server);
        let client = UdpClient::open(server.addr(), "127.0.0.1:0");
        let echo = UdpTarget::start("127.0.0.1:0", Mode::Echo);
        let reachable = Address::Ip(echo.addr());
        client.round_trip(&reachable, b"before");

        let nowhere: SocketAddr = "198.51.100.7:9".parse().expect("an address");
        let failed = |m: &common::metrics::Metrics| {
            m.get("ringsocks_udp_dropped_total", &[("reason", "send_failed")])
        };
        for round in 1..=ROUNDS {
            for i in 0..PER_ROUND {
                client.send(
                    &Address::Ip(nowhere),
                    format!("no route {round}.{i}").as_bytes(),
                );
            }
            // Paced by round, so the relay socket's receive queue never overflows and the
            // count is exact.
            let want = (round * PER_ROUND) as f64;
            let m = scrape_until(metrics, Duration::from_secs(5), |m| failed(m) >= want);
            assert_eq!(failed(&m), want, "failed sends counted after round {round}");
        }
        for i in 0..5 {
            client.round_trip(&reachable, format!("after {i}").as_bytes());
        }
        assert!(still_open(&client.control), "the association ended");
        server.assert_healthy();
    });
}
