//! Hashed users (`user:$argon2id$...`) against the real server: a hash made by `ringsocks
//! hash-password` logs in with curl, a wrong password is refused, and argon2 checks run
//! off the shard: while slow checks are under way, other clients are served at once, and a
//! user verified before is let in from the cache of successes without waiting for them.
//! An unknown user is refused only after a check as slow as a hashed user's.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::Params;
use common::curl::curl;
use common::http::HttpServer;
use common::server::hash_password;
use common::socks::{self, Creds};
use common::wait::still_open;
use common::{EchoServer, Server, UsersFile};
use ringsocks::proto::socks5;

/// How long one deliberately slow check should take (argon2 with many passes).
const SLOW_CHECK: Duration = Duration::from_millis(1000);
/// How long the answer to such a check may take at most, on a busy machine.
const SLOW_ANSWER: Duration = Duration::from_secs(60);

#[test]
fn a_hashed_user_logs_in_with_curl_and_a_wrong_password_is_refused() {
    let hash = hash_password("correct horse");
    let users = UsersFile::with_text(&format!("alice:{hash}\n"));
    let server = Server::start(&["--users", users.arg()]);
    let body = Arc::new(b"behind the proxy\n".to_vec());
    let http = HttpServer::start(body.clone());
    let url = format!("http://{}/file", http.addr_v4());
    let proxy = server.addr().to_string();

    // A debug build's argon2 check takes a second or more on a busy machine: give the
    // proxy handshake more than curl's usual connect timeout.
    let slow_ok = ["--connect-timeout", "60"];
    let out = curl(
        &[
            &slow_ok[..],
            &[
                "--socks5",
                &proxy,
                "--proxy-user",
                "alice:correct horse",
                &url,
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "curl with the right password: {}; {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, *body);

    let out = curl(
        &[
            &slow_ok[..],
            &[
                "--socks5",
                &proxy,
                "--proxy-user",
                "alice:correct hors",
                &url,
            ],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "a wrong password was accepted");
    assert!(
        server.wait_log(
            &["authentication failed for user \"alice\""],
            Duration::from_secs(5)
        ),
        "no log line for the refused login:\n{}",
        server.stderr()
    );
    assert_eq!(
        http.requests(),
        1,
        "only the right password reached the server"
    );
}

/// A users-file hash whose check takes about [`SLOW_CHECK`] here (the cost of argon2 is
/// measured in this process, built like the server) and that no password matches: a real
/// hash's output, under more passes than it was made with.
fn slow_unmatchable_hash() -> String {
    const M_KIB: u32 = 8 * 1024;
    let start = Instant::now();
    let one_pass = ringsocks::policy::hash_password(
        b"calibration",
        Params::new(M_KIB, 1, 1, None).expect("valid argon2 parameters"),
    );
    let per_pass = start.elapsed().max(Duration::from_millis(1));
    let passes = (SLOW_CHECK.as_secs_f64() / per_pass.as_secs_f64()).ceil() as u32;
    let passes = passes.clamp(2, 500);
    let slow = one_pass.replacen(",t=1,", &format!(",t={passes},"), 1);
    assert_ne!(slow, one_pass, "unexpected PHC string {one_pass}");
    slow
}

/// A connection that has sent a SOCKS5 greeting and credentials and not yet had the
/// answer to them.
fn start_login(proxy: std::net::SocketAddr, creds: Creds) -> TcpStream {
    let mut stream = socks::dial(proxy);
    stream
        .write_all(&socks::greeting(&[socks5::METHOD_USER_PASS]))
        .unwrap();
    assert_eq!(
        socks::read_method(&mut stream).unwrap(),
        socks5::METHOD_USER_PASS
    );
    stream.write_all(&socks::credentials(creds)).unwrap();
    stream
}

#[test]
fn slow_password_checks_hold_up_no_other_client() {
    // Cheap to make and to check: what matters is that it is not checked again.
    let alice_hash = ringsocks::policy::hash_password(
        b"alice pw",
        Params::new(1024, 1, 1, None).expect("valid argon2 parameters"),
    );
    let slow_hash = slow_unmatchable_hash();
    let users = UsersFile::with_text(&format!(
        "alice:{alice_hash}\nbob:bob pw\nslow1:{slow_hash}\nslow2:{slow_hash}\n"
    ));
    // One shard: every client below shares the thread a blocking check would stall.
    let server = Server::start(&["--users", users.arg(), "--shards", "1"]);
    let target = EchoServer::start("127.0.0.1:0");
    let alice = Creds {
        user: "alice",
        pass: "alice pw",
    };
    let bob = Creds {
        user: "bob",
        pass: "bob pw",
    };

    // Alice's first login runs argon2 once (on a worker) and is remembered.
    let mut first = socks::socks5_tunnel(server.addr(), target.addr(), Some(alice));
    echo(&mut first);

    // Two slow checks: as many as the server has worker threads for them.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = ["slow1", "slow2"]
        .into_iter()
        .map(|user| {
            start_login(
                server.addr(),
                Creds {
                    user,
                    pass: "anything",
                },
            )
        })
        .collect();

    // Meanwhile a plain password and a remembered hash get through, end to end: the
    // workers are busy, so Alice can only be let in from the cache.
    let mut plain = socks::socks5_tunnel(server.addr(), target.addr(), Some(bob));
    echo(&mut plain);
    let mut cached = socks::socks5_tunnel(server.addr(), target.addr(), Some(alice));
    echo(&mut cached);
    let others = started.elapsed();
    for (i, s) in slow.iter().enumerate() {
        assert!(
            still_open(s),
            "slow check {i} answered within {others:?}, before the other clients were \
             served: it was not slow enough to show anything"
        );
    }

    // The slow checks finish in their own time, and fail. On a busy machine a debug
    // build's argon2 may take much longer than calibrated: wait generously.
    for s in &mut slow {
        s.set_read_timeout(Some(SLOW_ANSWER)).unwrap();
        let status = socks::read_auth_status(s).expect("the slow check's answer");
        assert!(
            !status.is_success(),
            "an unmatchable hash accepted a password"
        );
    }
}

#[test]
fn an_unknown_user_waits_as_long_as_a_hashed_one() {
    let users = UsersFile::with_text(&format!("slow:{}\nbob:bob pw\n", slow_unmatchable_hash()));
    let server = Server::start(&["--users", users.arg(), "--shards", "1"]);
    let target = EchoServer::start("127.0.0.1:0");
    let mut eve = start_login(
        server.addr(),
        Creds {
            user: "eve",
            pass: "anything",
        },
    );
    // A whole session of another client fits before the answer: no quick "no such user".
    let bob = Creds {
        user: "bob",
        pass: "bob pw",
    };
    let mut plain = socks::socks5_tunnel(server.addr(), target.addr(), Some(bob));
    echo(&mut plain);
    assert!(still_open(&eve), "the unknown user was refused at once");
    eve.set_read_timeout(Some(SLOW_ANSWER)).unwrap();
    let status = socks::read_auth_status(&mut eve).expect("the answer");
    assert!(!status.is_success(), "an unknown user was let in");
}

#[track_caller]
fn echo(stream: &mut TcpStream) {
    stream.write_all(b"hello").unwrap();
    let got = common::wait::read_exact_vec(stream, 5).expect("the echo");
    assert_eq!(got, b"hello");
}
