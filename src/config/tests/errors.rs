//! Every bad value names its key (and file line, or flag); the open-proxy refusal.

use super::*;

#[test]
fn errors_name_the_key_and_line() {
    let files = full_files();
    // (file, the key the error must name, its line, a word of what is allowed)
    let cases: &[(&str, &str, usize, &str)] = &[
        ("shards = 0\n", "shards", 1, "1 to 1024"),
        ("\nbuffers = 500\n", "buffers", 2, "power of two"),
        ("idle-timeout = -1\n", "idle-timeout", 1, "more than 0"),
        (
            "idle-timeout = \"soon\"\n",
            "idle-timeout",
            1,
            "number of seconds",
        ),
        ("listen = [\"127.0.0.1\"]\n", "listen", 1, "socket address"),
        ("prefer = \"ipv5\"\n", "prefer", 1, "`ipv4`"),
        ("log-level = \"loud\"\n", "log-level", 1, "`debug`"),
        ("bogus-key = 1\n", "bogus-key", 1, "expected one of"),
        ("cpus = \"0-x\"\n", "cpus", 1, "range like 0-3"),
        ("udp-bind = \"0.0.0.0\"\n", "udp-bind", 1, "wildcard"),
        (
            "max-sessions-per-ip = 0\n",
            "max-sessions-per-ip",
            1,
            "at least 1",
        ),
        (
            "bandwidth-per-user-up = \"fast\"\n",
            "bandwidth-per-user-up",
            1,
            "10M",
        ),
        (
            "egress-source = [\"192.0.2.1\", \"192.0.2.2\"]\n",
            "egress-source",
            1,
            "one IPv4",
        ),
        (
            "egress-interface = \"a/b\"\n",
            "egress-interface",
            1,
            "interface name",
        ),
        (
            "egress-ipv6-mode = \"per-session\"\n",
            "egress-ipv6-mode",
            1,
            "prefix",
        ),
        (
            "egress-session-key = \"short\"\n",
            "egress-session-key",
            1,
            "16",
        ),
        (
            "proxy-protocol-listen = [\"127.0.0.1:0\"]\n",
            "proxy-protocol-listen[1]",
            1,
            "trusted",
        ),
        (
            "[[listener]]\naddress = \"127.0.0.1:0\"\nproxy-protocol = true\n",
            "listener[1].proxy-trusted",
            1,
            "trusted",
        ),
        (
            "listen = [\"127.0.0.1:5\", \"127.0.0.1:5\"]\n",
            "listen[2]",
            1,
            "twice",
        ),
        ("group = \"staff\"\n", "group", 1, "--user"),
        (
            "[[rule]]\naction = \"allow\"\n\n[[rule]]\naction = \"allow\"\nports = [\"9-1\"]\n",
            "rule[2].ports",
            6,
            "8000-8999",
        ),
        (
            "[[rule]]\naction = \"maybe\"\n",
            "rule[1].action",
            2,
            "`allow`",
        ),
        ("[[rule]]\nname = \"x\"\n", "rule[1]", 1, "action"),
        (
            "[[rule]]\naction = \"allow\"\ndest = [\"10.0.0.0/33\"]\n",
            "rule[1].dest",
            3,
            "deny-internal",
        ),
        (
            "[[rule]]\naction = \"allow\"\ndomains = [\"bad domain\"]\n",
            "rule[1].domains",
            3,
            "*.example.com",
        ),
        (
            "[[rule]]\naction = \"allow\"\ncommands = [\"ping\"]\n",
            "rule[1].commands",
            3,
            "`udp`",
        ),
        (
            "[[rule]]\naction = \"allow\"\nports = []\n",
            "rule[1].ports",
            3,
            "remove the key",
        ),
        (
            "[[rule]]\naction = \"allow\"\nusers = [\"alice\", \"zed\"]\n",
            "rule[1].users[2]",
            3,
            "not in the users file",
        ),
        (
            "[[rule]]\naction = \"deny\"\negress = { mark = 1 }\n",
            "rule[1].egress",
            3,
            "allow rules",
        ),
        (
            "[[rule]]\naction = \"allow\"\nclient = [\"10.0.0.0/8\"]\n",
            "rule[1].client",
            3,
            "clients",
        ),
        (
            "[per-user.zed]\nmax-sessions = 1\n",
            "per-user.zed",
            1,
            "not in the users file",
        ),
        (
            "[per-user.alice]\nmax-sessions = 0\n",
            "per-user.alice.max-sessions",
            2,
            "at least 1",
        ),
        (
            "[per-user.alice]\negress = { source = [\"::\"] }\n",
            "per-user.alice.egress.source[1]",
            2,
            "wildcard",
        ),
        (
            "[per-user.alice]\nbandwidth = 5\n",
            "per-user.alice.bandwidth",
            2,
            "bandwidth-up",
        ),
    ];
    let users = format!("users = \"{}/users\"\n", files.0.path().display());
    for (text, key, line, allowed) in cases {
        // The users line goes last so the case's own line numbers hold; a top-level key
        // after a table would belong to the table, so it goes first only for plain keys.
        let with_users = if text.starts_with('[') {
            format!("{users}{text}")
        } else {
            format!("{text}{users}")
        };
        let line = if text.starts_with('[') {
            line + 1
        } else {
            *line
        };
        let e = err(files.load(&with_users, &[]));
        assert!(e.contains("ringsocks.toml"), "{text:?}: {e}");
        assert!(
            e.contains(&format!("line {line}:")),
            "{text:?}: want line {line}: {e}"
        );
        assert!(
            e.contains(&format!(" {key}")),
            "{text:?}: want key {key}: {e}"
        );
        assert!(e.contains(allowed), "{text:?}: want {allowed:?}: {e}");
    }
}

#[test]
fn flag_errors_name_the_flag() {
    for (args, flag) in [
        (&["--shards", "0"][..], "--shards"),
        (&["--buffers", "500"], "--buffers"),
        (
            &["--max-new-sessions-per-ip-per-sec", "0"],
            "--max-new-sessions-per-ip-per-sec",
        ),
        (&["--egress-ipv6-mode", "per-session"], "--egress-ipv6-mode"),
        (
            &["--proxy-protocol-listen", "127.0.0.1:0"],
            "--proxy-protocol-listen",
        ),
        (&["--udp-public-addr", "::"], "--udp-public-addr"),
    ] {
        let e = err(build_flags(args, host()));
        assert!(e.starts_with(&format!("{flag}: ")), "{args:?}: {e}");
    }
}

#[test]
fn unreadable_and_malformed_files() {
    let files = Files::new();
    let e = err(load(
        &flags(&[]),
        Some(&files.0.path().join("none.toml")),
        Some(host()),
    ));
    assert!(e.contains("cannot read configuration file"), "{e}");
    let e = err(files.load("listen = [\n", &[]));
    assert!(e.contains("ringsocks.toml line"), "{e}");
}

#[test]
fn session_separator_must_not_hide_users() {
    let files = Files::new();
    files.write("users", "a-session-b:pw\n");
    let text = "users = \"@DIR@/users\"\n";
    let e = err(files.load(text, &[]));
    assert!(
        e.contains("session-separator") && e.contains("a-session-b"),
        "{e}"
    );
    assert!(files.load(text, &["--session-separator", ""]).is_ok());
}

#[test]
fn per_user_settings_need_users() {
    let files = Files::new();
    let e = err(files.load("[per-user.alice]\nmax-sessions = 2\n", &[]));
    assert!(
        e.contains("per-user.alice") && e.contains("users file"),
        "{e}"
    );
    let e = err(build_flags(&["--max-sessions-per-user", "2"], host()));
    assert!(e.starts_with("--max-sessions-per-user: "), "{e}");
}

#[test]
fn an_open_proxy_is_refused_unless_allowed() {
    let e = err(build_flags(&["--listen", "0.0.0.0:1080"], host()));
    assert!(
        e.starts_with("--listen: refusing to run an open proxy"),
        "{e}"
    );
    for remedy in ["--users", "clients", "127.0.0.1", "--allow-open"] {
        assert!(
            e.contains(remedy),
            "the message should mention {remedy}: {e}"
        );
    }
    assert!(build_flags(&["--listen", "0.0.0.0:1080", "--allow-open"], host()).is_ok());
    assert!(build_flags(
        &["--listen", "[::1]:1080", "--listen", "127.0.0.9:1"],
        host()
    )
    .is_ok());

    let files = Files::new();
    files.write("users", "alice:pw\n");
    let with_users = "listen = [\"0.0.0.0:1080\"]\nusers = \"@DIR@/users\"\n";
    assert!(files.load(with_users, &[]).is_ok());
    let restricted = "listen = [\"[::]:1080\"]\ndefault-action = \"deny\"\n[[rule]]\naction = \"allow\"\nclients = [\"192.0.2.0/24\"]\n";
    assert!(files.load(restricted, &[]).is_ok());
    // A client rule that matches everyone restricts nobody.
    let everyone = "listen = [\"[::]:1080\"]\n[[rule]]\naction = \"allow\"\nclients = [\"0.0.0.0/0\", \"::/0\"]\n";
    let e = err(files.load(everyone, &[]));
    assert!(e.contains("ringsocks.toml line 1: listen: refusing"), "{e}");
    let behind_balancer = "proxy-trusted = [\"10.0.0.0/8\"]\n[[listener]]\naddress = \"10.1.1.1:1080\"\nproxy-protocol = true\n";
    let e = err(files.load(behind_balancer, &[]));
    assert!(e.contains("listener: refusing"), "{e}");
}
