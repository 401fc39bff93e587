//! Running curl as a real SOCKS client, bounded in time and deaf to the environment's
//! proxy settings and config files.

use std::process::{Command, Output};

/// Seconds curl may take for one whole transfer.
const MAX_TIME_SECS: &str = "60";

/// Proxy variables curl reads; any of them could send the request elsewhere.
const PROXY_VARS: [&str; 10] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "socks_proxy",
    "SOCKS_PROXY",
];

/// Runs `curl` with `args` (proxy flags and URL); the body is the output's stdout.
pub fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    // -q must come first: it skips ~/.curlrc.
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        MAX_TIME_SECS,
        "--connect-timeout",
        "10",
    ]);
    cmd.args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.output()
        .expect("run curl (the tests need curl installed)")
}
