//! Raw-byte handshakes against the real server: every reply code the CONNECT core can
//! produce, method selection and RFC 1929, split and pipelined handshakes, and the
//! handshake timeout.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::socks::{self, Creds};
use common::target::closed_port;
use common::wait::read_exact_vec;
use common::{expect_closed, Server, Target, UsersFile, IO_TIMEOUT};
use ringsocks::proto::{auth, socks4, socks5, Address, ReplyCode};

const ALICE: Creds = Creds {
    user: "alice",
    pass: "correct horse battery staple",
};

fn users() -> UsersFile {
    UsersFile::new(&[(ALICE.user, ALICE.pass), ("bob", "hunter2")])
}

fn localhost(port: u16) -> Address {
    Address::Domain("localhost".into(), port)
}

// ---- CONNECT that succeeds ----

#[test]
fn socks5_connect_to_ipv4_succeeds_and_relays() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "socks5 ipv4");
}

#[test]
fn socks5_connect_to_localhost_by_name_succeeds() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), localhost(target.addr().port()), None);
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "socks5 domain");
}

#[test]
fn socks4_connect_is_granted_and_relays() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let (mut client, reply) = socks::socks4_connect(server.addr(), target.addr(), b"someone");
    assert_eq!(
        reply.code,
        socks4::Reply::new(ReplyCode::Succeeded, None).code
    );
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "socks4");
}

#[test]
fn socks4a_connect_by_name_is_granted_and_relays() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let (mut client, reply) =
        socks::socks4_connect(server.addr(), localhost(target.addr().port()), b"");
    assert_eq!(reply.code, 90, "SOCKS4a CONNECT localhost: {reply:?}");
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "socks4a");
}

// ---- Failure replies, each followed by a close ----

#[test]
fn connect_to_closed_port_gets_connection_refused_then_close() {
    let server = Server::start(&[]);
    let (mut client, reply) = socks::socks5_connect(server.addr(), closed_port("127.0.0.1"), None);
    assert_eq!(reply.code, ReplyCode::ConnectionRefused, "{reply:?}");
    expect_closed(&mut client, IO_TIMEOUT);
}

#[test]
fn socks4_connect_to_closed_port_gets_rejected_then_close() {
    let server = Server::start(&[]);
    let (mut client, reply) = socks::socks4_connect(server.addr(), closed_port("127.0.0.1"), b"");
    assert_eq!(reply.code, 91, "{reply:?}");
    expect_closed(&mut client, IO_TIMEOUT);
}

#[test]
fn unknown_command_gets_command_not_supported_then_close() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::dial(server.addr());
    let reply = socks::socks5_handshake(&mut client, 0x09, &target.addr().into(), None)
        .expect("a reply to CMD 0x09");
    assert_eq!(reply.code, ReplyCode::CommandNotSupported, "{reply:?}");
    expect_closed(&mut client, IO_TIMEOUT);
    assert!(
        target.try_accept(Duration::ZERO).is_none(),
        "an unknown command must not connect anywhere"
    );
}

#[test]
fn unknown_address_type_gets_address_type_not_supported_then_close() {
    let server = Server::start(&[]);
    let mut client = socks::dial(server.addr());
    client
        .write_all(&socks::greeting(&[socks5::METHOD_NO_AUTH]))
        .unwrap();
    assert_eq!(
        socks::read_method(&mut client).unwrap(),
        socks5::METHOD_NO_AUTH
    );
    // Only up to ATYP: with an unknown type the server cannot know the request's length,
    // and bytes it never reads would turn its close into a reset.
    client
        .write_all(&[socks5::VERSION, socks5::CMD_CONNECT, 0x00, 0x02])
        .unwrap();
    let reply = socks::read_socks5_reply(&mut client).expect("a reply to ATYP 0x02");
    assert_eq!(reply.code, ReplyCode::AddressTypeNotSupported, "{reply:?}");
    expect_closed(&mut client, IO_TIMEOUT);
}

#[test]
fn not_a_socks_client_is_closed_without_reply() {
    let server = Server::start(&[]);
    let mut client = socks::dial(server.addr());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    expect_closed(&mut client, IO_TIMEOUT);
}

/// BIND and UDP ASSOCIATE are not served by the CONNECT core yet. Whatever the server
/// does with them, a client gets a well-formed reply promptly: on failure the connection
/// closes; on success the reply names a real port.
fn other_command_gets_a_prompt_reply(command: u8) {
    let server = Server::start(&[]);
    let mut client = socks::dial(server.addr());
    let target: Address = "127.0.0.1:9".parse::<SocketAddr>().unwrap().into();
    let reply = socks::socks5_handshake(&mut client, command, &target, None)
        .unwrap_or_else(|e| panic!("no reply to CMD {command:#04x}: {e}"));
    if reply.code == ReplyCode::Succeeded {
        assert_ne!(
            reply.bound.port(),
            0,
            "a granted CMD {command:#04x}: {reply:?}"
        );
    } else {
        expect_closed(&mut client, IO_TIMEOUT);
    }
}

#[test]
fn bind_gets_a_prompt_reply() {
    other_command_gets_a_prompt_reply(socks5::CMD_BIND);
}

#[test]
fn udp_associate_gets_a_prompt_reply() {
    other_command_gets_a_prompt_reply(socks5::CMD_UDP_ASSOCIATE);
}

// ---- Method selection and RFC 1929 ----

#[test]
fn method_selection_picks_an_offered_method_or_none() {
    let open = Server::start(&[]);
    let file = users();
    let closed = Server::start(&["--users", file.arg()]);
    let cases: [(&Server, &[u8], u8); 5] = [
        (&open, &[0x02, 0x00], socks5::METHOD_NO_AUTH),
        (&open, &[0x02], socks5::METHOD_NONE_ACCEPTABLE),
        (&open, &[0x01, 0x80], socks5::METHOD_NONE_ACCEPTABLE),
        (&closed, &[0x00, 0x02], socks5::METHOD_USER_PASS),
        (&closed, &[0x00], socks5::METHOD_NONE_ACCEPTABLE),
    ];
    for (server, offered, expected) in cases {
        let mut client = socks::dial(server.addr());
        client.write_all(&socks::greeting(offered)).unwrap();
        let method = socks::read_method(&mut client)
            .unwrap_or_else(|e| panic!("no method selection for {offered:02x?}: {e}"));
        assert_eq!(method, expected, "offered {offered:02x?}");
        if method == socks5::METHOD_NONE_ACCEPTABLE {
            expect_closed(&mut client, IO_TIMEOUT);
        }
    }
}

#[test]
fn correct_password_is_accepted_and_relays() {
    let file = users();
    let server = Server::start(&["--users", file.arg()]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), Some(ALICE));
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "authenticated");
}

#[test]
fn wrong_password_or_unknown_user_gets_failure_status_then_close() {
    let file = users();
    let server = Server::start(&["--users", file.arg()]);
    let bad = [
        Creds {
            user: ALICE.user,
            pass: "wrong",
        },
        Creds {
            user: ALICE.user,
            pass: "",
        },
        // Another user's password.
        Creds {
            user: ALICE.user,
            pass: "hunter2",
        },
        Creds {
            user: "mallory",
            pass: ALICE.pass,
        },
    ];
    for creds in bad {
        let mut client = socks::dial(server.addr());
        client
            .write_all(&socks::greeting(&[socks5::METHOD_USER_PASS]))
            .unwrap();
        assert_eq!(
            socks::read_method(&mut client).unwrap(),
            socks5::METHOD_USER_PASS
        );
        client.write_all(&socks::credentials(creds)).unwrap();
        let status = socks::read_auth_status(&mut client)
            .unwrap_or_else(|e| panic!("no auth status for {creds:?}: {e}"));
        assert_ne!(
            status.status,
            auth::STATUS_SUCCESS,
            "{creds:?} was accepted"
        );
        expect_closed(&mut client, IO_TIMEOUT);
    }
}

#[test]
fn socks4_and_socks4a_are_rejected_when_passwords_are_required() {
    let file = users();
    let server = Server::start(&["--users", file.arg()]);
    let target = Target::bind("127.0.0.1:0");
    for address in [target.addr().into(), localhost(target.addr().port())] {
        let (mut client, reply) = socks::socks4_connect(server.addr(), address.clone(), b"alice");
        assert_eq!(
            reply.code, 91,
            "SOCKS4 to {address} with --users: {reply:?}"
        );
        expect_closed(&mut client, IO_TIMEOUT);
    }
    assert!(
        target.try_accept(Duration::ZERO).is_none(),
        "a refused SOCKS4 request must not connect"
    );
}

// ---- Split and pipelined handshakes ----

/// Writes `bytes` one per write. TCP_NODELAY makes each write its own segment; the short
/// pause makes it likely that the server reads them one by one (correctness must not
/// depend on it: any coalescing is a split point too).
fn write_bytewise(stream: &mut impl Write, bytes: &[u8]) {
    for b in bytes {
        stream.write_all(&[*b]).expect("write one byte");
        stream.flush().expect("flush");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn socks5_handshake_one_byte_per_write() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::dial(server.addr());
    write_bytewise(
        &mut client,
        &socks::greeting(&[socks5::METHOD_GSSAPI, socks5::METHOD_NO_AUTH]),
    );
    assert_eq!(
        socks::read_method(&mut client).unwrap(),
        socks5::METHOD_NO_AUTH
    );
    write_bytewise(
        &mut client,
        &socks::socks5_request(socks5::CMD_CONNECT, &localhost(target.addr().port())),
    );
    let reply = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "split socks5");
}

#[test]
fn socks5_handshake_with_password_one_byte_per_write_without_waiting() {
    let file = users();
    let server = Server::start(&["--users", file.arg()]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::dial(server.addr());
    // All of it, byte by byte, before reading any reply.
    write_bytewise(
        &mut client,
        &socks::socks5_connect_bytes(&target.addr().into(), Some(ALICE)),
    );
    assert_eq!(
        socks::read_method(&mut client).unwrap(),
        socks5::METHOD_USER_PASS
    );
    assert!(socks::read_auth_status(&mut client).unwrap().is_success());
    let reply = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, _) = target.accept();
    socks::exchange(&mut client, &mut far, "split socks5 with auth");
}

#[test]
fn socks4_and_socks4a_requests_one_byte_per_write() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    for address in [target.addr().into(), localhost(target.addr().port())] {
        let mut client = socks::dial(server.addr());
        write_bytewise(
            &mut client,
            &socks::socks4_request(socks4::CMD_CONNECT, &address, b"user-id"),
        );
        let reply = socks::read_socks4_reply(&mut client).unwrap();
        assert_eq!(reply.code, 90, "split SOCKS4 to {address}: {reply:?}");
        let (mut far, _) = target.accept();
        socks::exchange(&mut client, &mut far, "split socks4");
    }
}

#[test]
fn socks5_greeting_auth_request_and_data_in_one_write() {
    let file = users();
    let server = Server::start(&["--users", file.arg()]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::dial(server.addr());
    let early = b"GET / HTTP/1.0\r\n\r\n";
    let bytes = [
        socks::socks5_connect_bytes(&target.addr().into(), Some(ALICE)),
        early.to_vec(),
    ]
    .concat();
    client.write_all(&bytes).unwrap();
    assert_eq!(
        socks::read_method(&mut client).unwrap(),
        socks5::METHOD_USER_PASS
    );
    assert!(socks::read_auth_status(&mut client).unwrap().is_success());
    let reply = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, _) = target.accept();
    let got = read_exact_vec(&mut far, early.len()).expect("early data reaches the target");
    assert_eq!(got, early);
    socks::exchange(&mut client, &mut far, "after pipelined handshake");
}

#[test]
fn large_early_data_after_the_request_is_relayed_intact() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let early: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut client = socks::dial(server.addr());
    let handshake = socks::socks5_connect_bytes(&localhost(target.addr().port()), None);
    client
        .write_all(&[handshake, early.clone()].concat())
        .unwrap();
    assert_eq!(
        socks::read_method(&mut client).unwrap(),
        socks5::METHOD_NO_AUTH
    );
    let reply = socks::read_socks5_reply(&mut client).unwrap();
    assert_eq!(reply.code, ReplyCode::Succeeded, "{reply:?}");
    let (mut far, _) = target.accept();
    let got = read_exact_vec(&mut far, early.len()).expect("early data reaches the target");
    assert!(got == early, "early data arrived changed");
    socks::exchange(&mut client, &mut far, "after early data");
}

#[test]
fn socks4_request_and_data_in_one_write() {
    let server = Server::start(&[]);
    let target = Target::bind("127.0.0.1:0");
    let early = b"first bytes, sent with the request";
    let mut client = socks::dial(server.addr());
    let request = socks::socks4_request(socks4::CMD_CONNECT, &target.addr().into(), b"u");
    client
        .write_all(&[request, early.to_vec()].concat())
        .unwrap();
    let reply = socks::read_socks4_reply(&mut client).unwrap();
    assert_eq!(reply.code, 90, "{reply:?}");
    let (mut far, _) = target.accept();
    assert_eq!(read_exact_vec(&mut far, early.len()).unwrap(), early);
    socks::exchange(&mut client, &mut far, "after pipelined socks4");
}

// ---- Handshake timeout ----

/// The server closes a client stuck in the handshake after about `--handshake-timeout`.
fn closes_stuck_client(prefix: &[u8], read_method: bool) {
    let server = Server::start(&["--handshake-timeout", "0.5"]);
    let mut client = socks::dial(server.addr());
    let start = Instant::now();
    client.write_all(prefix).unwrap();
    if read_method {
        assert_eq!(
            socks::read_method(&mut client).unwrap(),
            socks5::METHOD_NO_AUTH
        );
    }
    expect_closed(&mut client, Duration::from_secs(5));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed after {elapsed:?}, before the 0.5 s handshake timeout"
    );
}

#[test]
fn handshake_timeout_closes_a_silent_client() {
    closes_stuck_client(&[], false);
}

#[test]
fn handshake_timeout_closes_a_client_stuck_mid_greeting() {
    closes_stuck_client(&[socks5::VERSION, 2, socks5::METHOD_NO_AUTH], false);
}

#[test]
fn handshake_timeout_closes_a_client_that_never_sends_its_request() {
    closes_stuck_client(&socks::greeting(&[socks5::METHOD_NO_AUTH]), true);
}

#[test]
fn handshake_timeout_does_not_end_an_established_session() {
    let server = Server::start(&["--handshake-timeout", "0.5"]);
    let target = Target::bind("127.0.0.1:0");
    let mut client = socks::socks5_tunnel(server.addr(), target.addr(), None);
    let (mut far, _) = target.accept();
    // Letting the handshake timeout pass is the point of this test.
    thread::sleep(Duration::from_millis(1200));
    socks::exchange(&mut client, &mut far, "after the handshake timeout");
}
