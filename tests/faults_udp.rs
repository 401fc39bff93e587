//! A UDP destination that vanishes: its port closes, so datagrams to it draw ICMP port
//! unreachable at the relay's outbound socket. That error belongs to one destination
//! only: the association must keep relaying to every other one, and to the same one once
//! something listens there again.

mod common;

use std::time::Duration;

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
