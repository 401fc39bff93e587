//! Bad policy settings stop the real server at start-up with one line naming the key (and
//! the file's line) or the flag. The wording of each error is covered by the
//! configuration's unit tests and `check-config` by tests/config.rs; this is the server's
//! own start-up path, for the policy keys.

mod common;

use common::policy::ConfigFile;
use common::server::run_to_exit;
use common::UsersFile;

/// Starts the server with `args`, expecting it to refuse with one stderr line that holds
/// every one of `words`.
#[track_caller]
fn refuses(args: &[&str], words: &[&str]) {
    let out = run_to_exit(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    for w in words {
        assert!(err.contains(w), "{args:?}: want {w:?} in: {err}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening on"),
        "{args:?} served: {stdout}"
    );
}

#[test]
fn bad_policy_settings_stop_the_server_naming_the_key() {
    let users = UsersFile::new(&[("alice", "pw")]);
    let cases: &[(&str, &[&str])] = &[
        (
            "[[rule]]\naction = \"deny\"\ndest = [\"deny-internal\"]\n\n\
             [[rule]]\naction = \"allow\"\ndomains = [\"*.*.example.com\"]\n",
            &["line 7: rule[2].domains", "*.example.com"],
        ),
        (
            "[[rule]]\naction = \"allow\"\ncommands = [\"connect\", \"associate\"]\n",
            &["line 3: rule[1].commands", "`udp`"],
        ),
        (
            "[[rule]]\naction = \"allow\"\nclients = [\"127.0.0.1/40\"]\n",
            &["line 3: rule[1].clients", "deny-internal"],
        ),
        (
            "[per-user.alice]\negress = { ipv6-mode = \"per-session\" }\n",
            &["per-user.alice.egress.ipv6-mode", "prefix"],
        ),
        (
            "[per-user.mallory]\nmax-sessions = 3\n",
            &["per-user.mallory", "not in the users file"],
        ),
        (
            "max-sessions-per-user = 0\n",
            &["line 1: max-sessions-per-user", "at least 1"],
        ),
    ];
    for (text, words) in cases {
        let file = ConfigFile::new(text);
        refuses(
            &[
                "--listen",
                "127.0.0.1:0",
                "--users",
                users.arg(),
                "--config",
                file.arg(),
            ],
            words,
        );
    }
    // The same settings as flags name the flag.
    refuses(
        &["--listen", "127.0.0.1:0", "--bandwidth-per-user-up", "1M"],
        &["--bandwidth-per-user-up", "users file"],
    );
    refuses(
        &["--listen", "127.0.0.1:0", "--egress-source", "0.0.0.0"],
        &["--egress-source", "wildcard"],
    );
}

#[test]
fn flags_with_a_fixed_set_of_values_name_the_values_allowed() {
    // As the file's keys do (`prefer: `ipv5` is not one of `ipv6`, `ipv4``).
    refuses(
        &["--listen", "127.0.0.1:0", "--prefer", "ipv5"],
        &["--prefer", "ipv4", "ipv6"],
    );
    refuses(
        &["--listen", "127.0.0.1:0", "--egress-ipv6-mode", "sometimes"],
        &["--egress-ipv6-mode", "per-connection", "per-session"],
    );
}
