//! curl, a real client, downloads a multi-MiB file from a local HTTP server through the
//! proxy in every SOCKS mode it has; the file must arrive with its SHA-256 intact.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, OnceLock};

use common::curl::curl;
use common::data::sha256;
use common::http::HttpServer;
use common::{Pattern, Server, Sha256Digest, UsersFile};

/// Not a multiple of any buffer size, so a short or padded last buffer shows.
const FILE_LEN: usize = (6 << 20) + 4093;

const USER: &str = "carol";
const PASS: &str = "s3cret:with:colons";

fn body() -> Arc<Vec<u8>> {
    static BODY: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BODY.get_or_init(|| Arc::new(Pattern::new(0xc0ffee).bytes(FILE_LEN)))
        .clone()
}

fn proxy_arg(server: &Server) -> String {
    server.addr().to_string()
}

/// The URL of the file on `http` by the name `localhost` (curl resolves it, or lets the
/// proxy resolve it, depending on the mode).
fn url_by_name(http: &HttpServer) -> String {
    format!("http://localhost:{}/file", http.addr_v4().port())
}

fn url_by_ip(addr: SocketAddr) -> String {
    format!("http://{addr}/file")
}

/// The served file's SHA-256, computed once (hashing is slow in a debug build).
fn body_sha256() -> Sha256Digest {
    static DIGEST: OnceLock<Sha256Digest> = OnceLock::new();
    *DIGEST.get_or_init(|| sha256(&body()))
}

#[track_caller]
fn assert_downloaded(out: &Output, mode: &str) {
    let body = body();
    assert!(
        out.status.success(),
        "curl {mode} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), body.len(), "curl {mode}: length");
    assert_eq!(sha256(&out.stdout), body_sha256(), "curl {mode}: SHA-256");
}

/// Downloads the file by name through a fresh server with curl's proxy flag `mode`.
fn download(mode: &str) {
    let server = Server::start(&[]);
    let http = HttpServer::start(body());
    let out = curl(&[mode, &proxy_arg(&server), &url_by_name(&http)]);
    assert_downloaded(&out, mode);
}

#[test]
fn curl_socks4_downloads_the_file() {
    download("--socks4");
}

#[test]
fn curl_socks4a_downloads_the_file() {
    download("--socks4a");
}

#[test]
fn curl_socks5_downloads_the_file() {
    download("--socks5");
}

#[test]
fn curl_socks5_hostname_downloads_the_file() {
    download("--socks5-hostname");
}

#[test]
fn curl_socks5_downloads_from_an_ipv6_server() {
    let server = Server::start(&[]);
    let http = HttpServer::start(body());
    let out = curl(&["--socks5", &proxy_arg(&server), &url_by_ip(http.addr_v6())]);
    assert_downloaded(&out, "--socks5 to [::1]");
}

#[test]
fn curl_with_proxy_user_downloads_the_file() {
    let users = UsersFile::new(&[("someone-else", "x"), (USER, PASS)]);
    let server = Server::start(&["--users", users.arg()]);
    let http = HttpServer::start(body());
    let creds = format!("{USER}:{PASS}");
    for mode in ["--socks5", "--socks5-hostname"] {
        let out = curl(&[
            mode,
            &proxy_arg(&server),
            "--proxy-user",
            &creds,
            &url_by_name(&http),
        ]);
        assert_downloaded(&out, &format!("{mode} --proxy-user"));
    }
}

#[test]
fn curl_with_a_wrong_password_is_refused() {
    let users = UsersFile::new(&[(USER, PASS)]);
    let server = Server::start(&["--users", users.arg()]);
    let http = HttpServer::start(body());
    let cases = [
        vec!["--socks5-hostname", "--proxy-user", "carol:wrong"],
        vec!["--socks5", "--proxy-user", "mallory:s3cret:with:colons"],
        // No credentials at all.
        vec!["--socks5-hostname"],
        // SOCKS4 cannot carry a password.
        vec!["--socks4a"],
    ];
    let (proxy, url) = (proxy_arg(&server), url_by_name(&http));
    for case in cases {
        let mut args = vec![case[0], proxy.as_str()];
        args.extend(&case[1..]);
        args.push(&url);
        let out = curl(&args);
        assert!(
            !out.status.success(),
            "curl {case:?} got through without the right password"
        );
        assert!(out.stdout.is_empty(), "curl {case:?} received data");
    }
    assert_eq!(
        http.requests(),
        0,
        "a refused client reached the HTTP server"
    );
}

#[test]
fn parallel_curl_downloads_all_arrive_intact() {
    let server = Server::start(&[]);
    let http = HttpServer::start(body());
    let proxy = proxy_arg(&server);
    let url = url_by_name(&http);
    std::thread::scope(|s| {
        let runs: Vec<_> = ["--socks4", "--socks4a", "--socks5", "--socks5-hostname"]
            .into_iter()
            .map(|mode| {
                let (proxy, url) = (&proxy, &url);
                s.spawn(move || (mode, curl(&[mode, proxy, url])))
            })
            .collect();
        for run in runs {
            let (mode, out) = run.join().unwrap();
            assert_downloaded(&out, mode);
        }
    });
    assert_eq!(http.requests(), 4);
}
