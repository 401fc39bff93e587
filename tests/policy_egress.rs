//! Egress settings against the real server, each asserting what the far end (or the
//! kernel) observes: the source address the target sees, the interface a connection
//! leaves by, the firewall mark that routing acts on, random IPv6 sources from a prefix
//! per connection or per session.
//!
//! Each test builds what it needs in network namespaces of its own (see `common::netns`):
//! - addresses on `lo` for fixed sources (198.51.100.0/24, TEST-NET-2);
//! - a local route for an IPv6 prefix (`ip -6 route add local 2001:db8:1::/64 dev lo`),
//!   which makes every address of the prefix this host's, as a deployment would;
//! - a second namespace joined by two veth pairs, for the interface test (below);
//! - an `ip rule` sending marked packets to a table of their own, for the mark test.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};

use common::netns::{in_netns, ip, tx_packets, PeerNetns};
use common::policy::{self, ConfigFile};
use common::socks::{self, Creds};
use common::udp::{Mode, UdpClient, UdpTarget};
use common::{Server, Target, UsersFile};
use ringsocks::proto::{Address, ReplyCode};

/// The source address the target sees for one tunnel through `proxy`, with the tunnel
/// checked end to end.
#[track_caller]
fn source_seen(proxy: SocketAddr, target: &Target, creds: Option<Creds>) -> IpAddr {
    let (mut client, reply) = socks::socks5_connect(proxy, target.addr(), creds);
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, peer) = target.accept();
    socks::exchange(&mut client, &mut far, "egress");
    // The reply's BND.ADDR is the outbound socket's own address: the same one.
    assert_eq!(
        reply.bound,
        Address::Ip(peer),
        "BND.ADDR is not the source the target saw"
    );
    peer.ip()
}

fn ip_of(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn source_addresses_global_per_user_and_per_rule() {
    let setup = [
        "addr add 198.51.100.1/32 dev lo",
        "addr add 198.51.100.2/32 dev lo",
        "addr add 198.51.100.3/32 dev lo",
        "addr add 198.51.100.4/32 dev lo",
    ];
    in_netns(&setup, || {
        let plain = Target::bind("198.51.100.1:0");
        let routed = Target::bind("198.51.100.1:0");

        // Without egress settings the kernel picks the destination's own address.
        let server = Server::start(&[]);
        assert_eq!(
            source_seen(server.addr(), &plain, None),
            ip_of("198.51.100.1")
        );
        drop(server);

        let users = UsersFile::new(&[("alice", "a"), ("bob", "b")]);
        let toml = format!(
            "users = \"{}\"\negress-source = [\"198.51.100.2\"]\n\n\
             [[rule]]\nname = \"routed\"\naction = \"allow\"\nports = [{}]\n\
             egress = {{ source = [\"198.51.100.4\"] }}\n\n\
             [per-user.alice]\negress = {{ source = [\"198.51.100.3\"] }}\n",
            users.arg(),
            routed.addr().port()
        );
        let (server, _file) = policy::start(&toml, &[]);
        let alice = Some(Creds {
            user: "alice",
            pass: "a",
        });
        let bob = Some(Creds {
            user: "bob",
            pass: "b",
        });
        assert_eq!(
            source_seen(server.addr(), &plain, bob),
            ip_of("198.51.100.2"),
            "global"
        );
        assert_eq!(
            source_seen(server.addr(), &plain, alice),
            ip_of("198.51.100.3"),
            "alice's"
        );
        // A rule's egress wins over the user's.
        assert_eq!(
            source_seen(server.addr(), &routed, alice),
            ip_of("198.51.100.4"),
            "rule"
        );
        assert_eq!(
            source_seen(server.addr(), &routed, bob),
            ip_of("198.51.100.4"),
            "rule"
        );
    });
}

#[test]
fn udp_datagrams_leave_from_the_egress_source() {
    let setup = [
        "addr add 198.51.100.1/32 dev lo",
        "addr add 198.51.100.2/32 dev lo",
    ];
    in_netns(&setup, || {
        let target = UdpTarget::start("198.51.100.1:0", Mode::Echo);
        let server = Server::start(&["--egress-source", "198.51.100.2"]);
        let client = UdpClient::open(server.addr(), "127.0.0.1:0");
        client.round_trip(&target.addr().into(), b"from the egress source");
        let sources = target.sources();
        assert!(
            !sources.is_empty() && sources.iter().all(|s| s.ip() == ip_of("198.51.100.2")),
            "the target saw {sources:?}"
        );
    });
}

/// The interface test's layout: the server's namespace reaches a peer namespace through
/// two veth pairs, `eg0` (198.51.100.1/24, peer 198.51.100.2) and `eg1` (203.0.113.1/24,
/// peer 203.0.113.2). The target listens on 192.0.2.9, on the peer's loopback; the main
/// routing table sends 192.0.2.0/24 through `eg0`. A socket bound to `eg1` finds no route
/// there, so the kernel takes the destination for on-link on `eg1`, the peer answers ARP
/// for it, and the connection leaves by `eg1` with `eg1`'s address as its source.
#[test]
fn an_egress_interface_is_the_one_connections_leave_by() {
    in_netns(&[], || {
        let peer = PeerNetns::start();
        let pid = peer.pid();
        ip(&format!("link add eg0 type veth peer name p0 netns {pid}"));
        ip(&format!("link add eg1 type veth peer name p1 netns {pid}"));
        for cmd in [
            "link set eg0 up",
            "link set eg1 up",
            "addr add 198.51.100.1/24 dev eg0",
            "addr add 203.0.113.1/24 dev eg1",
        ] {
            ip(cmd);
        }
        let target = peer.run(|| {
            for cmd in [
                "link set p0 up",
                "link set p1 up",
                "addr add 198.51.100.2/24 dev p0",
                "addr add 203.0.113.2/24 dev p1",
                "addr add 192.0.2.9/32 dev lo",
            ] {
                ip(cmd);
            }
            Target::bind("192.0.2.9:0")
        });
        ip("route add 192.0.2.0/24 via 198.51.100.2");

        let server = Server::start(&[]);
        assert_eq!(
            source_seen(server.addr(), &target, None),
            ip_of("198.51.100.1")
        );
        drop(server);

        let server = Server::start(&["--egress-interface", "eg1"]);
        let sent_before = tx_packets("eg1");
        assert_eq!(
            source_seen(server.addr(), &target, None),
            ip_of("203.0.113.1"),
            "the connection did not leave by eg1"
        );
        assert!(tx_packets("eg1") > sent_before, "nothing was sent on eg1");
        drop(target);
    });
}

/// The mark test's layout: `ip rule add fwmark 42 lookup 100`, and table 100 holds a local
/// route for 203.0.113.0/24 (source 127.0.0.1). So 203.0.113.1 is this host's for marked
/// packets only; unmarked ones find no route (REP 0x03). The target listens on the
/// wildcard with IP_TRANSPARENT: its answers come from 203.0.113.1, which is on no
/// interface, and only a transparent socket may send from such an address.
#[test]
fn an_egress_mark_is_what_policy_routing_sees() {
    let setup = [
        "rule add fwmark 42 lookup 100",
        "route add local 203.0.113.0/24 dev lo table 100 src 127.0.0.1",
    ];
    in_netns(&setup, || {
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        listener
            .set_ip_transparent(true)
            .expect("IP_TRANSPARENT (needs root)");
        listener
            .bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(16).unwrap();
        let target = Target::from_listener(TcpListener::from(listener));
        let dest: SocketAddr = format!("203.0.113.1:{}", target.addr().port())
            .parse()
            .unwrap();

        for args in [&[][..], &["--egress-mark", "43"][..]] {
            let server = Server::start(args);
            let (_client, reply) = socks::socks5_connect(server.addr(), dest, None);
            assert_eq!(
                reply.code,
                ReplyCode::NetworkUnreachable,
                "{args:?}: unmarked or wrongly marked packets have no route: {reply:?}"
            );
        }
        let server = Server::start(&["--egress-mark", "42"]);
        let mut client = socks::socks5_tunnel(server.addr(), dest, None);
        let (mut far, _) = target.accept();
        socks::exchange(&mut client, &mut far, "marked");
    });
}

const PREFIX_SETUP: &[&str] = &[
    "-6 route add local 2001:db8:1::/64 dev lo",
    "-6 addr add 2001:db8:ff::1/128 dev lo nodad",
];

fn in_prefix(ip: IpAddr) -> bool {
    let prefix: ipnet::Ipv6Net = "2001:db8:1::/64".parse().unwrap();
    matches!(ip, IpAddr::V6(v6) if prefix.contains(&v6))
}

#[test]
fn ipv6_sources_from_a_prefix_differ_per_connection() {
    in_netns(PREFIX_SETUP, || {
        let target = Target::bind("[2001:db8:ff::1]:0");
        let target4 = Target::bind("127.0.0.1:0");
        let server = Server::start(&["--egress-ipv6-prefix", "2001:db8:1::/64"]);
        let sources: Vec<IpAddr> = (0..3)
            .map(|_| source_seen(server.addr(), &target, None))
            .collect();
        for s in &sources {
            assert!(in_prefix(*s), "{s} is not from 2001:db8:1::/64");
        }
        assert!(
            sources[0] != sources[1] && sources[1] != sources[2] && sources[0] != sources[2],
            "per connection, every source is new: {sources:?}"
        );
        // IPv4 destinations are not affected by an IPv6 prefix.
        assert_eq!(
            source_seen(server.addr(), &target4, None),
            ip_of("127.0.0.1")
        );
    });
}

#[test]
fn ipv6_sources_per_session_stick_to_the_session_id() {
    in_netns(PREFIX_SETUP, || {
        let target = Target::bind("[2001:db8:ff::1]:0");
        let users = UsersFile::new(&[("alice", "pw")]);
        let toml = format!(
            "users = \"{}\"\negress-ipv6-prefix = \"2001:db8:1::/64\"\n\
             egress-ipv6-mode = \"per-session\"\negress-session-key = \"0123456789abcdef0123\"\n",
            users.arg()
        );
        let file = ConfigFile::new(&toml);
        let seen = |server: &Server, user: &str| {
            source_seen(server.addr(), &target, Some(Creds { user, pass: "pw" }))
        };
        let server = Server::start(&["--config", file.arg()]);
        let abc = seen(&server, "alice-session-abc");
        assert!(in_prefix(abc), "{abc}");
        assert_eq!(
            seen(&server, "alice-session-abc"),
            abc,
            "same session, same source"
        );
        let xyz = seen(&server, "alice-session-xyz");
        assert!(in_prefix(xyz), "{xyz}");
        assert_ne!(xyz, abc, "another session, another source");
        // Without a session id, every connection draws a new address.
        let (a, b) = (seen(&server, "alice"), seen(&server, "alice"));
        assert!(in_prefix(a) && in_prefix(b) && a != b, "{a} {b}");
        drop(server);
        // The same configuration after a restart: the session keeps its address.
        let server = Server::start(&["--config", file.arg()]);
        assert_eq!(
            seen(&server, "alice-session-abc"),
            abc,
            "sticky across restarts"
        );
    });
}
