//! Rules on UDP datagrams and on BIND's expected peer, against the real server: every
//! datagram's destination is checked (after resolution, for a name), a denied one is
//! dropped while allowed ones flow; a BIND whose expected peer is denied is refused.
//!
//! On loopback: 127.0.0.2 is the denied address, 127.0.0.1 the allowed one. Names resolve
//! through a fake DNS server the test controls.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::policy::{self, assert_denied, assert_denied4, fake_dns, LOG_WAIT, SOCKS4_GRANTED};
use common::socks;
use common::target::prepare;
use common::udp::{Declare, Mode, UdpClient, UdpTarget};
use common::{wait_until, IO_TIMEOUT};
use ringsocks::proto::{Address, ReplyCode};

/// How long a dropped datagram is given to show up anyway, after a later allowed one has
/// made its round trip (the relay handles a client's datagrams in order, so by then it has
/// long decided about the earlier one).
const SETTLE: Duration = Duration::from_millis(200);

#[track_caller]
fn assert_nothing_arrives(target: &UdpTarget, why: &str) {
    let arrived = wait_until(SETTLE, || target.received() > 0);
    assert!(!arrived, "{why}: {:?}", target.payloads());
}

#[test]
fn datagrams_to_denied_destinations_are_dropped_while_allowed_ones_flow() {
    let allowed = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let denied = UdpTarget::start("127.0.0.2:0", Mode::Echo);
    let dns = fake_dns(&[
        ("allowed.test", &["127.0.0.1"]),
        ("denied.test", &["127.0.0.2"]),
    ]);
    let dns_arg = dns.addr().to_string();
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"udp-not-2\"\naction = \"deny\"\ndest = [\"127.0.0.2/32\"]\n",
        // Dropped datagrams are logged at debug level.
        &["--dns-server", &dns_arg, "--log-level", "debug"],
    );
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let by_name = |name: &str, port: u16| Address::Domain(name.into(), port);

    client.send(&denied.addr().into(), b"to a denied address");
    client.round_trip(&allowed.addr().into(), b"to an allowed address");
    client.send(
        &by_name("denied.test", denied.addr().port()),
        b"to a denied name",
    );
    client.round_trip(
        &by_name("allowed.test", allowed.addr().port()),
        b"to an allowed name",
    );
    assert!(
        server.wait_log(
            &[
                &format!("UDP datagram to {} denied", denied.addr()),
                "rule 1 (udp-not-2)"
            ],
            LOG_WAIT
        ),
        "no log line for the dropped datagram:\n{}",
        server.stderr()
    );
    assert_nothing_arrives(&denied, "datagrams reached a denied destination");
    // The association outlives the drops.
    client.round_trip(&allowed.addr().into(), b"still flowing");
}

#[test]
fn domain_rules_see_each_datagrams_own_name() {
    // Both names lead to the same target: only the name tells them apart.
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let dns = fake_dns(&[
        ("blocked.test", &["127.0.0.1"]),
        ("open.test", &["127.0.0.1"]),
    ]);
    let dns_arg = dns.addr().to_string();
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"blocked-name\"\naction = \"deny\"\ndomains = [\"blocked.test\"]\n",
        &["--dns-server", &dns_arg],
    );
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    let port = target.addr().port();
    client.send(
        &Address::Domain("blocked.test".into(), port),
        b"to a denied name",
    );
    client.send(
        &Address::Domain("open.test".into(), port),
        b"to an allowed name",
    );
    assert_only_allowed_arrives(&client, &target, b"to an allowed name");
}

/// After a denied datagram and then an allowed one to the same echo target: the allowed
/// one's echo is the first (and only) thing that comes back, and the target got just it.
#[track_caller]
fn assert_only_allowed_arrives(client: &UdpClient, target: &UdpTarget, allowed: &[u8]) {
    let first = client.recv();
    assert_eq!(
        String::from_utf8_lossy(&first.payload),
        String::from_utf8_lossy(allowed),
        "the denied datagram was relayed to the target and echoed"
    );
    wait_until(SETTLE, || target.received() > 1);
    assert_eq!(target.payloads(), vec![allowed.to_vec()]);
}

#[test]
fn the_name_declared_in_associate_does_not_allow_other_destinations() {
    // Only names below allowed.test may be reached; the client declares one of them as
    // its ASSOCIATE address, then sends to an address literal.
    let target = UdpTarget::start("127.0.0.1:0", Mode::Echo);
    let dns = fake_dns(&[("www.allowed.test", &["127.0.0.1"])]);
    let dns_arg = dns.addr().to_string();
    let (server, _file) = policy::start(
        "default-action = \"deny\"\n\n[[rule]]\nname = \"allowed-names\"\naction = \"allow\"\n\
         domains = [\"*.allowed.test\"]\n",
        &["--dns-server", &dns_arg],
    );
    let client = UdpClient::open_declaring(
        server.addr(),
        "127.0.0.1:0",
        Declare::This(Address::Domain("www.allowed.test".into(), 0)),
    );
    let port = target.addr().port();
    client.send(&target.addr().into(), b"to an address no rule allows");
    client.send(
        &Address::Domain("www.allowed.test".into(), port),
        b"to an allowed name",
    );
    assert_only_allowed_arrives(&client, &target, b"to an allowed name");
}

/// Connects to `to` from the local address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: SocketAddr = from.parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect_timeout(&to.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
    let stream = TcpStream::from(sock);
    prepare(&stream);
    stream
}

#[test]
fn bind_with_a_denied_expected_peer_is_refused() {
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"no-peer-2\"\naction = \"deny\"\ncommands = [\"bind\"]\n\
         dest = [\"127.0.0.2/32\"]\n",
        &[],
    );
    let denied_peer: SocketAddr = "127.0.0.2:20".parse().unwrap();
    let (mut stream, reply) = socks::socks5_bind(server.addr(), denied_peer);
    assert_denied(
        &server,
        &mut stream,
        &reply,
        "bind 127.0.0.2",
        "rule 1 (no-peer-2)",
    );
    let (mut stream, reply) = socks::socks4_bind(server.addr(), denied_peer, b"");
    assert_denied4(
        &server,
        &mut stream,
        &reply,
        "bind 127.0.0.2",
        "rule 1 (no-peer-2)",
    );

    // An allowed peer: both replies, and the peer's connection is the one relayed.
    let (mut control, reply) =
        socks::socks5_bind(server.addr(), "127.0.0.1:20".parse::<SocketAddr>().unwrap());
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let Address::Ip(listening) = reply.bound else {
        panic!("BND.ADDR is a name: {reply:?}");
    };
    let mut peer = connect_from("127.0.0.1:0", listening);
    let second = socks::read_socks5_reply(&mut control).expect("the second reply");
    assert_eq!(second.code, ReplyCode::Succeeded, "{second:?}");
    socks::exchange(&mut control, &mut peer, "allowed BIND peer");

    let (_control4, reply) = socks::socks4_bind(
        server.addr(),
        "127.0.0.1:20".parse::<SocketAddr>().unwrap(),
        b"",
    );
    assert_eq!(reply.code, SOCKS4_GRANTED, "{reply:?}");
}
