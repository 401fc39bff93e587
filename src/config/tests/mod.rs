use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use super::*;

mod errors;
use crate::cli::Cli;
use crate::policy::{Check, Limiter, Verdict};
use crate::proto::Command;

pub(super) fn host() -> HostLimits {
    HostLimits {
        nofile: 20000,
        memlock: None,
    }
}

pub(super) fn flags(extra: &[&str]) -> Settings {
    Cli::try_parse_from(std::iter::once("ringsocks").chain(extra.iter().copied()))
        .unwrap()
        .settings
}

pub(super) fn build_flags(extra: &[&str], host: HostLimits) -> Result<Config, ConfigError> {
    load(&flags(extra), None, Some(host))
}

/// A directory of files for one test, removed at the end.
pub(super) struct Files(pub(super) tempfile::TempDir);

impl Files {
    pub(super) fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    pub(super) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `text` as ringsocks.toml (with `@DIR@` replaced by this directory) and
    /// loads it under `extra` flags.
    pub(super) fn load(&self, text: &str, extra: &[&str]) -> Result<Config, ConfigError> {
        let text = text.replace("@DIR@", self.0.path().to_str().unwrap());
        let path = self.write("ringsocks.toml", &text);
        load(&flags(extra), Some(&path), Some(host()))
    }
}

pub(super) fn err(r: Result<Config, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.0,
    }
}

// --- Start-up checks kept from the flags-only configuration ---

#[test]
fn shards_follow_the_cpu_list() {
    let cfg = build_flags(&["--cpus", "0-1,3"], host()).unwrap();
    assert_eq!(cfg.engine.cpus, vec![Some(0), Some(1), Some(3)]);
    let cfg = build_flags(&["--cpus", "1", "--shards", "3"], host()).unwrap();
    assert_eq!(cfg.engine.cpus, vec![Some(1), Some(1), Some(1)]);
}

#[test]
fn too_many_connections_for_the_descriptor_limit() {
    let e = err(build_flags(&["--max-connections", "30000"], host()));
    assert!(
        e.contains("RLIMIT_NOFILE") && e.contains("--max-connections"),
        "{e}"
    );
    let cfg = build_flags(&[], host()).unwrap();
    assert_eq!(cfg.engine.max_connections, 20000 - RESERVED_FDS as usize);
    assert_eq!(
        cfg.engine.policy.limits.max_sessions, None,
        "the engine enforces the total at accept, not the limiter"
    );
}

#[test]
fn too_little_locked_memory() {
    let limits = HostLimits {
        memlock: Some(64 * 1024),
        ..host()
    };
    let e = err(build_flags(&["--shards", "4"], limits));
    assert!(e.contains("RLIMIT_MEMLOCK"), "{e}");
}

#[test]
fn users_file_errors_name_the_file_and_line() {
    let files = Files::new();
    let path = files.write("users", "alice:pw\nbroken\n");
    let e = err(build_flags(&["--users", path.to_str().unwrap()], host()));
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains(path.to_str().unwrap()), "{e}");
    let path = files.write("users", "# nobody\n");
    assert!(build_flags(&["--users", path.to_str().unwrap()], host()).is_err());
    let missing = files.0.path().join("missing");
    let e = err(build_flags(&["--users", missing.to_str().unwrap()], host()));
    assert!(e.contains("cannot read"), "{e}");
}

#[test]
fn defaults_without_flags_or_file() {
    let cfg = build_flags(&[], host()).unwrap();
    let e = &cfg.engine;
    assert_eq!(e.listen, vec!["127.0.0.1:1080".parse().unwrap()]);
    assert_eq!(e.proxy_protocol, vec![None]);
    assert_eq!(e.handshake_timeout, Duration::from_secs(10));
    assert_eq!(e.idle_timeout, Duration::from_secs(300));
    assert_eq!(e.buffer_size, 64 * 1024);
    assert_eq!(e.udp_buffer_size, 2000 + UDP_BUFFER_OVERHEAD);
    assert_eq!(cfg.ops.drain_timeout, Duration::from_secs(30));
    assert_eq!(cfg.ops.log_level, LogLevel::Info);
    let p = &e.policy;
    assert!(p.rules.is_empty() && p.users.is_none() && p.egress.is_none());
    assert_eq!(p.prefer, crate::policy::Prefer::Ipv6);
    assert_eq!(p.session_separator, "-session-");
}

// --- The configuration file ---

/// Every kind of setting, as the README shows it.
const FULL: &str = r#"
listen = ["127.0.0.1:0"]
proxy-trusted = ["10.0.0.0/8"]
users = "@DIR@/users"
shards = 2
handshake-timeout = 5
connect-timeout = 2.5
drain-timeout = 60
max-sessions-per-ip = 100
max-new-sessions-per-ip-per-sec = 20
max-sessions-per-user = 10
bandwidth-per-user-down = "10M"
prefer = "ipv4"
egress-interface = "eth1"
egress-mark = 7
egress-ipv6-prefix = "2001:db8:1:2::/64"
egress-ipv6-mode = "per-session"
egress-session-key = "0123456789abcdef0123"
session-separator = "-session-"
default-action = "deny"
metrics-listen = "127.0.0.1:9100"
access-log = "-"
log-level = "debug"

[[listener]]
address = "127.0.0.2:0"
proxy-protocol = true

[[rule]]
name = "no-internal"
action = "deny"
dest = ["deny-internal"]

[[rule]]
name = "office-web"
action = "allow"
clients = ["198.51.100.0/24", "2001:db8:ff::/48"]
commands = ["connect"]
ports = [80, 443, "8000-8999"]

[[rule]]
name = "alice-example"
action = "allow"
users = ["alice"]
domains = ["example.com", "*.example.org"]
egress = { source = ["192.0.2.10"], mark = 9 }

[per-user.alice]
max-sessions = 50
bandwidth-up = "1MiB"
egress = { ipv6-prefix = "2001:db8:a::/64", ipv6-mode = "per-connection" }
"#;

pub(super) fn full_files() -> Files {
    let files = Files::new();
    files.write("users", "alice:pw\nbob:pw2\n");
    files
}

#[test]
fn a_full_file_builds_engine_config_and_policy() {
    let files = full_files();
    let cfg = files.load(FULL, &[]).unwrap();
    let e = &cfg.engine;
    assert_eq!(e.listen.len(), 2);
    assert!(e.proxy_protocol[0].is_none());
    let trusted = e.proxy_protocol[1]
        .as_ref()
        .expect("second listener speaks PROXY");
    assert!(trusted.contains("10.1.2.3".parse().unwrap()));
    assert_eq!(e.cpus.len(), 2);
    assert_eq!(e.handshake_timeout, Duration::from_secs(5));
    assert_eq!(e.connect_timeout, Duration::from_millis(2500));
    assert_eq!(cfg.ops.drain_timeout, Duration::from_secs(60));
    assert_eq!(
        cfg.ops.metrics_listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(cfg.ops.access_log, Some(LogTarget::Stderr));
    assert_eq!(cfg.ops.log_level, LogLevel::Debug);

    let p = &e.policy;
    assert!(p.users.as_ref().is_some_and(|u| !u.is_empty()));
    assert_eq!(p.rule_count(), 3);
    assert_eq!(p.prefer, crate::policy::Prefer::Ipv4);
    let client: IpAddr = "198.51.100.9".parse().unwrap();
    let check = |user, dest: &str, domain, port| {
        p.check(&Check {
            client,
            user,
            command: Command::Connect,
            dest_ip: dest.parse().unwrap(),
            dest_domain: domain,
            dest_port: port,
        })
    };
    let d = check(None, "169.254.169.254", None, 80);
    assert!(!d.allow);
    assert_eq!(d.reason(), "rule 1 (no-internal)");
    let d = check(None, "203.0.113.1", None, 8080);
    assert!(d.allow && d.rule.as_ref().unwrap().index == 1);
    // The global egress applies where neither rule nor user sets one.
    let g = d.egress.unwrap();
    assert_eq!((g.interface.as_deref(), g.mark), (Some("eth1"), Some(7)));
    assert_eq!(g.ipv6_mode, crate::policy::Ipv6Mode::PerSession);
    assert!(!check(None, "203.0.113.1", None, 22).allow, "default deny");
    let d = check(Some("alice"), "203.0.113.1", Some("www.example.org"), 22);
    assert!(d.allow);
    let egress = d.egress.unwrap();
    assert_eq!(egress.mark, Some(9), "rule egress wins");
    assert_eq!(
        egress.source(false, None, 0),
        Some("192.0.2.10".parse().unwrap())
    );

    let alice = p.user_limits("alice");
    assert_eq!(alice.max_sessions, Some(50));
    assert_eq!(alice.bandwidth_up, Some(1 << 20));
    assert_eq!(
        alice.bandwidth_down,
        Some(10_000_000),
        "default for all users"
    );
    assert_eq!(p.user_limits("bob").max_sessions, Some(10));
    assert!(p.per_user["alice"]
        .egress
        .as_ref()
        .unwrap()
        .ipv6_prefix
        .is_some());
    assert_eq!(p.limits.max_sessions_per_ip, Some(100));
    assert_eq!(p.limits.max_new_sessions_per_ip_per_sec, Some(20));

    // Limits from the file work with a limiter.
    let limiter = Limiter::new();
    let now = Instant::now();
    let mut guard = limiter.admit(&p.limits, client, now).unwrap();
    guard
        .admit_user("alice", p.user_limits("alice"), now)
        .unwrap();
    assert!(guard.bandwidth().unwrap().up.is_some());
    assert!(matches!(
        p.users.as_ref().unwrap().verify_fast(b"alice", b"pw", now),
        Verdict::Accepted
    ));
}

#[test]
fn printed_configuration_reads_back_the_same() {
    let files = full_files();
    let first = files.load(FULL, &[]).unwrap();
    let printed = source::to_toml(&first.settings);
    let second = files.load(&printed, &[]).unwrap();
    assert_eq!(first.settings, second.settings, "printed:\n{printed}");
    assert_eq!(
        format!("{:?}", first.engine.policy.rules),
        format!("{:?}", second.engine.policy.rules)
    );
    assert_eq!(first.engine.listen, second.engine.listen);
    // Defaults are written out, so the printed file says everything in force.
    assert!(printed.contains("idle-timeout = 300"), "{printed}");
    assert!(
        printed.contains("[[rule]]") && printed.contains("[per-user.alice]"),
        "{printed}"
    );
}

#[test]
fn flags_override_the_file() {
    let files = full_files();
    let cfg = files
        .load(
            FULL,
            &[
                "--handshake-timeout",
                "1",
                "--prefer",
                "ipv6",
                "--max-sessions-per-ip",
                "3",
                "--listen",
                "127.0.0.1:0",
            ],
        )
        .unwrap();
    assert_eq!(cfg.engine.handshake_timeout, Duration::from_secs(1));
    assert_eq!(cfg.engine.policy.prefer, crate::policy::Prefer::Ipv6);
    assert_eq!(cfg.engine.policy.limits.max_sessions_per_ip, Some(3));
    assert_eq!(
        cfg.engine.connect_timeout,
        Duration::from_millis(2500),
        "untouched keys stay"
    );
    assert_eq!(
        cfg.engine.listen,
        vec!["127.0.0.1:0".parse().unwrap()],
        "listeners given as flags replace every listener of the file"
    );
    assert_eq!(cfg.engine.policy.rule_count(), 3);
}

// --- check-config ---

#[test]
fn check_config_prints_the_effective_configuration() {
    let files = full_files();
    let path = files.write(
        "full.toml",
        &FULL.replace("@DIR@", files.0.path().to_str().unwrap()),
    );
    let out = commands::check_config(&flags(&["--idle-timeout", "42"]), &path).unwrap();
    assert!(out.starts_with("# Effective configuration"), "{out}");
    assert!(out.contains("idle-timeout = 42"), "flags apply: {out}");
    assert!(out.contains("handshake-timeout = 5"), "file values: {out}");
    assert!(out.contains("udp-buffers = 1024"), "defaults: {out}");
    // What it prints is itself a valid configuration with the same meaning.
    let again = files.write("again.toml", &out);
    let reread = load(&Settings::default(), Some(&again), Some(host())).unwrap();
    let original = load(&flags(&["--idle-timeout", "42"]), Some(&path), Some(host())).unwrap();
    assert_eq!(reread.settings, original.settings);

    let bad = files.write("bad.toml", "shards = 0\n");
    let e = commands::check_config(&Settings::default(), &bad)
        .unwrap_err()
        .0;
    assert!(e.contains("bad.toml line 1: shards"), "{e}");
}

#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## Configuration file").expect("section")..];
    let start = section.find("```toml\n").expect("example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("end")];
    let files = Files::new();
    files.write("users", "alice:pw\nbob:pw\n");
    let example = example.replace("/etc/ringsocks/users", "@DIR@/users");
    let cfg = files.load(&example, &[]).unwrap_or_else(|e| panic!("{e}"));
    let p = &cfg.engine.policy;
    assert_eq!(p.rule_count(), 4);
    assert_eq!(p.default_action, crate::policy::Action::Deny);
    assert_eq!(cfg.engine.listen.len(), 3);
    assert!(cfg.engine.proxy_protocol[2].is_some());
}
