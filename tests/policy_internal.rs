//! The built-in `deny-internal` set against the real server: internal destinations are
//! refused whether the client names them as an address or through a name that resolves to
//! one (the check applies to the address actually connected to), and a public destination
//! still works.
//!
//! A public destination cannot be on this machine's loopback, so each test runs in a
//! network namespace of its own (see `common::netns`) where 198.51.100.1 (TEST-NET-2, which
//! `deny-internal` does not cover) is added to `lo`: the server, the targets and the fake
//! DNS server all live in there, and nothing can leave it.

mod common;

use std::net::SocketAddr;

use common::netns::in_netns;
use common::policy::{self, assert_denied, assert_denied4, fake_dns};
use common::{socks, EchoServer};
use ringsocks::proto::Address;

/// A public-looking address, added to `lo` inside the namespace.
const PUBLIC: &str = "198.51.100.1";
const SETUP: &[&str] = &["addr add 198.51.100.1/32 dev lo"];
const RULES: &str =
    "[[rule]]\nname = \"no-internal\"\naction = \"deny\"\ndest = [\"deny-internal\"]\n";
const RULE: &str = "rule 1 (no-internal)";

#[track_caller]
fn echoes(proxy: SocketAddr, target: impl Into<Address>) {
    use std::io::Write;
    let mut stream = socks::socks5_tunnel(proxy, target, None);
    stream.write_all(b"public").unwrap();
    let got = common::wait::read_exact_vec(&mut stream, 6).expect("the echo comes back");
    assert_eq!(got, b"public");
}

#[test]
fn names_resolving_to_internal_addresses_are_denied_after_resolution() {
    in_netns(SETUP, || {
        // Both targets on the same port, so a name's port reaches either.
        let public = EchoServer::start(&format!("{PUBLIC}:0"));
        let port = public.addr().port();
        let internal = EchoServer::start(&format!("127.0.0.1:{port}"));
        let dns = fake_dns(&[
            ("public.test", &[PUBLIC]),
            ("loopback.test", &["127.0.0.1"]),
            ("metadata.test", &["169.254.169.254"]),
            ("private.test", &["10.1.2.3"]),
            ("mapped.test", &["::ffff:127.0.0.1"]),
            ("mapped-metadata.test", &["::ffff:169.254.169.254"]),
            ("ula.test", &["fd00::1"]),
        ]);
        let dns_arg = dns.addr().to_string();
        let (server, _file) = policy::start(RULES, &["--dns-server", &dns_arg]);

        echoes(server.addr(), Address::Domain("public.test".into(), port));
        for (name, connected) in [
            ("loopback.test", format!("127.0.0.1:{port}")),
            ("metadata.test", format!("169.254.169.254:{port}")),
            ("private.test", format!("10.1.2.3:{port}")),
            ("mapped.test", format!("[::ffff:127.0.0.1]:{port}")),
            (
                "mapped-metadata.test",
                format!("[::ffff:169.254.169.254]:{port}"),
            ),
            ("ula.test", format!("[fd00::1]:{port}")),
        ] {
            let (mut stream, reply) =
                socks::socks5_connect(server.addr(), Address::Domain(name.into(), port), None);
            // The log names the resolved address: the verdict came after resolution.
            assert_denied(
                &server,
                &mut stream,
                &reply,
                &format!("connect {connected}"),
                RULE,
            );
        }
        let (mut stream, reply) = socks::socks4_connect(
            server.addr(),
            Address::Domain("loopback.test".into(), port),
            b"",
        );
        assert_denied4(
            &server,
            &mut stream,
            &reply,
            &format!("connect 127.0.0.1:{port}"),
            RULE,
        );
        assert_eq!(
            internal.connections(),
            0,
            "an internal address was connected to"
        );
        assert_eq!(public.connections(), 1);
    });
}

#[test]
fn internal_address_literals_are_denied_and_public_ones_allowed() {
    in_netns(SETUP, || {
        let public = EchoServer::start(&format!("{PUBLIC}:0"));
        let internal = EchoServer::start("127.0.0.1:0");
        let internal6 = EchoServer::start("[::1]:0");
        let (server, _file) = policy::start(RULES, &[]);

        echoes(server.addr(), public.addr());
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", internal.addr().port())
            .parse()
            .unwrap();
        for dest in [
            internal.addr(),
            internal6.addr(),
            mapped,
            "169.254.169.254:80".parse().unwrap(),
            "[::ffff:169.254.169.254]:80".parse().unwrap(),
            "100.64.0.1:80".parse().unwrap(),
            "192.168.1.1:443".parse().unwrap(),
            "[fe80::1]:80".parse().unwrap(),
            "0.0.0.0:80".parse().unwrap(),
            // NAT64 and 6to4 spellings of the metadata address and of loopback.
            "[64:ff9b::a9fe:a9fe]:80".parse().unwrap(),
            "[2002:7f00:1::1]:80".parse().unwrap(),
        ] {
            let (mut stream, reply) = socks::socks5_connect(server.addr(), dest, None);
            assert_denied(
                &server,
                &mut stream,
                &reply,
                &format!("connect {dest}"),
                RULE,
            );
        }
        let (mut stream, reply) = socks::socks4_connect(server.addr(), internal.addr(), b"");
        assert_denied4(
            &server,
            &mut stream,
            &reply,
            &format!("connect {}", internal.addr()),
            RULE,
        );
        assert_eq!(internal.connections() + internal6.connections(), 0);
        assert_eq!(public.connections(), 1);
    });
}

#[test]
fn a_name_with_internal_and_public_addresses_reaches_only_the_public_one() {
    in_netns(SETUP, || {
        let public = EchoServer::start(&format!("{PUBLIC}:0"));
        let port = public.addr().port();
        let internal = EchoServer::start(&format!("127.0.0.1:{port}"));
        // IPv6 goes first (RFC 8305), so the internal address is the first one tried.
        let dns = fake_dns(&[("both.test", &["::ffff:127.0.0.1", PUBLIC])]);
        let dns_arg = dns.addr().to_string();
        let (server, _file) = policy::start(RULES, &["--dns-server", &dns_arg]);
        echoes(server.addr(), Address::Domain("both.test".into(), port));
        policy::assert_denial_logged(&server, &format!("connect [::ffff:127.0.0.1]:{port}"), RULE);
        assert_eq!((public.connections(), internal.connections()), (1, 0));
    });
}
