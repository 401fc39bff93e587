//! Access rules against the real server, one rule kind at a time: each allows what it
//! should and denies what it should with REP 0x02 (SOCKS4: 91), a close, and a log line
//! naming the rule; the first matching rule decides; without a match the default does.
//!
//! Everything runs on loopback: 127.0.0.1 and 127.0.0.2 are both local, so a client or a
//! target on either is a second address to tell apart. Names resolve through a fake DNS
//! server the test controls (`--dns-server`).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::policy::{self, assert_denied, assert_denied4, fake_dns, SOCKS4_GRANTED};
use common::socks::{self, Creds};
use common::udp::{Declare, UdpClient};
use common::{EchoServer, UsersFile};
use ringsocks::proto::{socks5, Address, ReplyCode};

const SECOND_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A round trip through an allowed tunnel to an echo server.
#[track_caller]
fn echoes(proxy: SocketAddr, target: impl Into<Address>, creds: Option<Creds>) {
    let mut stream = socks::socks5_tunnel(proxy, target, creds);
    echo_round_trip(&mut stream);
}

#[track_caller]
fn echo_round_trip(stream: &mut std::net::TcpStream) {
    use std::io::Write;
    stream.write_all(b"ping through the rules").unwrap();
    let got = common::wait::read_exact_vec(stream, 22).expect("the echo comes back");
    assert_eq!(got, b"ping through the rules");
}

#[test]
fn client_networks_decide_by_the_client_address() {
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"not-from-2\"\naction = \"deny\"\nclients = [\"127.0.0.2/32\"]\n",
        &[],
    );
    let target = EchoServer::start("127.0.0.1:0");
    echoes(server.addr(), target.addr(), None);

    let mut stream = socks::dial_from(SECOND_CLIENT, server.addr());
    let reply = socks::socks5_handshake(
        &mut stream,
        socks5::CMD_CONNECT,
        &target.addr().into(),
        None,
    )
    .unwrap();
    let what = format!("connect {}", target.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (not-from-2)");
    assert!(
        server.wait_log(&[&what, " for 127.0.0.2:"], policy::LOG_WAIT),
        "the log names the client: {}",
        server.stderr()
    );

    // SOCKS4 from the same address: 91.
    let mut stream = socks::dial_from(SECOND_CLIENT, server.addr());
    std::io::Write::write_all(
        &mut stream,
        &socks::socks4_request(1, &target.addr().into(), b""),
    )
    .unwrap();
    let reply = socks::read_socks4_reply(&mut stream).unwrap();
    assert_denied4(&server, &mut stream, &reply, &what, "rule 1 (not-from-2)");
    assert_eq!(
        target.connections(),
        1,
        "only the allowed client got through"
    );
}

#[test]
fn users_decide_by_the_authenticated_user() {
    let users = UsersFile::new(&[("alice", "a-pass"), ("bob", "b-pass")]);
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"no-bob\"\naction = \"deny\"\nusers = [\"bob\"]\n",
        &["--users", users.arg()],
    );
    let target = EchoServer::start("127.0.0.1:0");
    let alice = Creds {
        user: "alice",
        pass: "a-pass",
    };
    echoes(server.addr(), target.addr(), Some(alice));
    let bob = Creds {
        user: "bob",
        pass: "b-pass",
    };
    let (mut stream, reply) = socks::socks5_connect(server.addr(), target.addr(), Some(bob));
    let what = format!("connect {}", target.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (no-bob)");
    assert!(
        server.wait_log(&["(user bob): rule 1 (no-bob)"], policy::LOG_WAIT),
        "the log names the user: {}",
        server.stderr()
    );
    assert_eq!(target.connections(), 1);
}

#[test]
fn commands_bind_and_udp_can_be_denied_while_connect_works() {
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"no-bind\"\naction = \"deny\"\ncommands = [\"bind\"]\n\n\
         [[rule]]\nname = \"no-udp\"\naction = \"deny\"\ncommands = [\"udp\"]\n",
        &[],
    );
    let target = EchoServer::start("127.0.0.1:0");
    echoes(server.addr(), target.addr(), None);

    let peer: SocketAddr = "127.0.0.1:20".parse().unwrap();
    let (mut stream, reply) = socks::socks5_bind(server.addr(), peer);
    assert_denied(
        &server,
        &mut stream,
        &reply,
        &format!("bind {peer}"),
        "rule 1 (no-bind)",
    );
    let (mut stream, reply) = socks::socks4_bind(server.addr(), peer, b"");
    assert_denied4(
        &server,
        &mut stream,
        &reply,
        &format!("bind {peer}"),
        "rule 1 (no-bind)",
    );

    let Err((reply, mut control)) =
        UdpClient::try_open(server.addr(), "127.0.0.1:0", Declare::Zeros)
    else {
        panic!("UDP ASSOCIATE must be refused by no-udp");
    };
    assert_denied(
        &server,
        &mut control,
        &reply,
        "udp 0.0.0.0:0",
        "rule 2 (no-udp)",
    );
}

#[test]
fn command_connect_can_be_denied_while_bind_and_udp_work() {
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"no-connect\"\naction = \"deny\"\ncommands = [\"connect\"]\n",
        &[],
    );
    let target = EchoServer::start("127.0.0.1:0");
    let (mut stream, reply) = socks::socks5_connect(server.addr(), target.addr(), None);
    let what = format!("connect {}", target.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (no-connect)");
    let (mut stream, reply) = socks::socks4_connect(server.addr(), target.addr(), b"");
    assert_denied4(&server, &mut stream, &reply, &what, "rule 1 (no-connect)");
    assert_eq!(target.connections(), 0);

    let (_bind, reply) =
        socks::socks5_bind(server.addr(), "127.0.0.1:20".parse::<SocketAddr>().unwrap());
    assert_eq!(
        reply.code,
        ReplyCode::Succeeded,
        "BIND is allowed: {reply:?}"
    );
    let (_bind4, reply) = socks::socks4_bind(
        server.addr(),
        "127.0.0.1:20".parse::<SocketAddr>().unwrap(),
        b"",
    );
    assert_eq!(
        reply.code, SOCKS4_GRANTED,
        "SOCKS4 BIND is allowed: {reply:?}"
    );

    let udp_target = common::udp::UdpTarget::start("127.0.0.1:0", common::udp::Mode::Echo);
    let client = UdpClient::open(server.addr(), "127.0.0.1:0");
    client.round_trip(&udp_target.addr().into(), b"udp is allowed");
}

#[test]
fn destination_networks_decide_by_the_address_connected_to() {
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"not-to-2\"\naction = \"deny\"\ndest = [\"127.0.0.2/32\"]\n",
        &[],
    );
    let allowed = EchoServer::start("127.0.0.1:0");
    let denied = EchoServer::start("127.0.0.2:0");
    echoes(server.addr(), allowed.addr(), None);
    let (mut stream, reply) = socks::socks5_connect(server.addr(), denied.addr(), None);
    let what = format!("connect {}", denied.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (not-to-2)");
    let (mut stream, reply) = socks::socks4_connect(server.addr(), denied.addr(), b"");
    assert_denied4(&server, &mut stream, &reply, &what, "rule 1 (not-to-2)");
    assert_eq!(denied.connections(), 0, "no connect to a denied address");
}

#[test]
fn domains_match_exactly_or_below_a_suffix() {
    let target = EchoServer::start("127.0.0.1:0");
    let loopback: &[&str] = &["127.0.0.1"];
    let dns = fake_dns(&[
        ("exact.test", loopback),
        ("www.exact.test", loopback),
        ("suffix.test", loopback),
        ("www.suffix.test", loopback),
        ("a.b.suffix.test", loopback),
        ("other.test", loopback),
    ]);
    let dns_arg = dns.addr().to_string();
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"exact\"\naction = \"deny\"\ndomains = [\"exact.test\"]\n\n\
         [[rule]]\nname = \"below\"\naction = \"deny\"\ndomains = [\"*.suffix.test\"]\n",
        &["--dns-server", &dns_arg],
    );
    let port = target.addr().port();
    let name = |n: &str| Address::Domain(n.into(), port);
    let what = format!("connect {}", target.addr());
    for (host, rule) in [
        ("exact.test", "rule 1 (exact)"),
        ("EXACT.test", "rule 1 (exact)"),
        ("www.suffix.test", "rule 2 (below)"),
        ("a.b.suffix.test", "rule 2 (below)"),
    ] {
        let (mut stream, reply) = socks::socks5_connect(server.addr(), name(host), None);
        assert_denied(&server, &mut stream, &reply, &what, rule);
    }
    let (mut stream, reply) = socks::socks4_connect(server.addr(), name("exact.test"), b"");
    assert_denied4(&server, &mut stream, &reply, &what, "rule 1 (exact)");
    assert_eq!(target.connections(), 0, "a denied name was connected to");

    // An exact name does not cover names below it; a suffix does not cover itself.
    for host in ["www.exact.test", "suffix.test", "other.test"] {
        echoes(server.addr(), name(host), None);
    }
    // The same address as an IP literal carries no name, so no domain rule matches.
    echoes(server.addr(), target.addr(), None);
    assert_eq!(target.connections(), 4);
}

#[test]
fn ports_and_port_ranges_are_checked_before_connecting() {
    let exact = EchoServer::start("127.0.0.1:0");
    let ranged = EchoServer::start("127.0.0.1:0");
    let (p_exact, p_range) = (exact.addr().port(), ranged.addr().port());
    let (lo, hi) = (p_range - 1, p_range + 1);
    // An allowed target whose port lies outside both (ephemeral ports may be close).
    let allowed = (0..20)
        .map(|_| EchoServer::start("127.0.0.1:0"))
        .find(|t| {
            let p = t.addr().port();
            p != p_exact && !(lo - 1..=hi + 1).contains(&p)
        })
        .expect("an ephemeral port away from the others");
    let toml = format!(
        "[[rule]]\nname = \"one-port\"\naction = \"deny\"\nports = [{p_exact}]\n\n\
         [[rule]]\nname = \"port-range\"\naction = \"deny\"\nports = [\"{lo}-{hi}\"]\n"
    );
    let (server, _file) = policy::start(&toml, &[]);
    echoes(server.addr(), allowed.addr(), None);

    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (mut stream, reply) = socks::socks5_connect(server.addr(), exact.addr(), None);
    let what = format!("connect {}", exact.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (one-port)");
    // Both ends of the range are in it, whether or not anything listens there: the
    // verdict comes before any connect (a connect would get 0x05 where nothing listens).
    for port in [lo, p_range, hi] {
        let (mut stream, reply) = socks::socks5_connect(server.addr(), at(port), None);
        let what = format!("connect {}", at(port));
        assert_denied(&server, &mut stream, &reply, &what, "rule 2 (port-range)");
    }
    // Just outside the range: no rule matches (0x05 where nothing listens, else success).
    for port in [lo - 1, hi + 1] {
        if port == p_exact {
            continue;
        }
        let (_stream, reply) = socks::socks5_connect(server.addr(), at(port), None);
        assert_ne!(reply.code, ReplyCode::NotAllowed, "port {port}: {reply:?}");
    }
    assert_eq!(exact.connections() + ranged.connections(), 0);
}

#[test]
fn the_first_matching_rule_wins() {
    let two = EchoServer::start("127.0.0.2:0");
    let one = EchoServer::start("127.0.0.1:0");
    // An allow before a broader deny: the allow wins for what it covers.
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"two-first\"\naction = \"allow\"\ndest = [\"127.0.0.2\"]\n\n\
         [[rule]]\nname = \"all-loopback\"\naction = \"deny\"\ndest = [\"127.0.0.0/8\"]\n",
        &[],
    );
    echoes(server.addr(), two.addr(), None);
    let (mut stream, reply) = socks::socks5_connect(server.addr(), one.addr(), None);
    let what = format!("connect {}", one.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 2 (all-loopback)");

    // The same rules the other way round: the deny now covers both.
    let (server, _file) = policy::start(
        "[[rule]]\nname = \"all-loopback\"\naction = \"deny\"\ndest = [\"127.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"two-first\"\naction = \"allow\"\ndest = [\"127.0.0.2\"]\n",
        &[],
    );
    let (mut stream, reply) = socks::socks5_connect(server.addr(), two.addr(), None);
    let what = format!("connect {}", two.addr());
    assert_denied(&server, &mut stream, &reply, &what, "rule 1 (all-loopback)");
    assert_eq!((two.connections(), one.connections()), (1, 0));
}

#[test]
fn without_a_match_the_default_action_decides() {
    let allowed = EchoServer::start("127.0.0.1:0");
    let other = EchoServer::start("127.0.0.1:0");
    let toml = format!(
        "default-action = \"deny\"\n\n[[rule]]\nname = \"the-one\"\naction = \"allow\"\n\
         ports = [{}]\n",
        allowed.addr().port()
    );
    let (server, _file) = policy::start(&toml, &[]);
    echoes(server.addr(), allowed.addr(), None);
    let (mut stream, reply) = socks::socks5_connect(server.addr(), other.addr(), None);
    let what = format!("connect {}", other.addr());
    assert_denied(&server, &mut stream, &reply, &what, "default");
    let (mut stream, reply) = socks::socks4_connect(server.addr(), other.addr(), b"");
    assert_denied4(&server, &mut stream, &reply, &what, "default");
    // BIND's expected peer is its destination: port 20 is not the allowed one.
    let (mut stream, reply) =
        socks::socks5_bind(server.addr(), "127.0.0.1:20".parse::<SocketAddr>().unwrap());
    assert_denied(&server, &mut stream, &reply, "bind 127.0.0.1", "default");
    assert_eq!(other.connections(), 0);
}
