use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> NetSet {
    let mut set = NetSet::default();
    for entry in list {
        set.extend(NetSet::parse_entry(entry).unwrap());
    }
    set
}

fn req(dest: &str, port: u16) -> Check<'static> {
    Check {
        client: ip("198.51.100.7"),
        user: None,
        command: Command::Connect,
        dest_ip: ip(dest),
        dest_domain: None,
        dest_port: port,
    }
}

fn deny_all_but(rule: Rule) -> Policy {
    Policy {
        rules: vec![rule],
        default_action: Action::Deny,
        ..Policy::default()
    }
}

fn allowed(p: &Policy, r: &Check<'_>) -> bool {
    p.check(r).allow
}

#[test]
fn no_rules_means_the_default_action() {
    let open = Policy::default();
    let d = open.check(&req("192.0.2.1", 80));
    assert!(d.allow && d.rule.is_none());
    assert_eq!(d.reason(), "default");
    let closed = Policy {
        default_action: Action::Deny,
        ..Policy::default()
    };
    assert!(!allowed(&closed, &req("192.0.2.1", 80)));
    assert_eq!(open.rule_count(), 0);
}

#[test]
fn first_match_wins() {
    let mut deny_web = Rule::new(Action::Deny);
    deny_web.ports = Some(vec![80..=80]);
    deny_web.name = Some("no-plain-http".into());
    let allow_all = Rule::new(Action::Allow);
    let p = Policy {
        rules: vec![deny_web, allow_all],
        default_action: Action::Deny,
        ..Policy::default()
    };
    let d = p.check(&req("192.0.2.1", 80));
    assert!(!d.allow);
    assert_eq!(d.rule.as_ref().unwrap().index, 0);
    assert_eq!(d.reason(), "rule 1 (no-plain-http)");
    let d = p.check(&req("192.0.2.1", 443));
    assert!(d.allow);
    assert_eq!(d.rule.unwrap().index, 1);
    assert_eq!(p.rule_count(), 2);
}

#[test]
fn client_cidr_rule() {
    let mut r = Rule::new(Action::Allow);
    r.clients = Some(nets(&["198.51.100.0/24", "2001:db8::/32"]));
    let p = deny_all_but(r);
    assert!(allowed(&p, &req("192.0.2.1", 80)));
    assert!(allowed(
        &p,
        &Check {
            client: ip("::ffff:198.51.100.9"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(allowed(
        &p,
        &Check {
            client: ip("2001:db8::5"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(!allowed(
        &p,
        &Check {
            client: ip("203.0.113.1"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(p.restricts_clients());
}

#[test]
fn user_rule() {
    let mut r = Rule::new(Action::Allow);
    r.users = Some(vec!["alice".into(), "bob".into()]);
    let p = deny_all_but(r);
    assert!(allowed(
        &p,
        &Check {
            user: Some("alice"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(allowed(
        &p,
        &Check {
            user: Some("bob"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(!allowed(
        &p,
        &Check {
            user: Some("Alice"),
            ..req("192.0.2.1", 80)
        }
    ));
    assert!(!allowed(&p, &req("192.0.2.1", 80)), "anonymous is no user");
    assert!(!p.restricts_clients());
}

#[test]
fn command_rule() {
    let mut r = Rule::new(Action::Allow);
    r.commands = Some(vec![Command::Connect, Command::UdpAssociate]);
    let p = deny_all_but(r);
    assert!(allowed(&p, &req("192.0.2.1", 80)));
    assert!(allowed(
        &p,
        &Check {
            command: Command::UdpAssociate,
            ..req("192.0.2.1", 53)
        }
    ));
    assert!(!allowed(
        &p,
        &Check {
            command: Command::Bind,
            ..req("192.0.2.1", 80)
        }
    ));
}

#[test]
fn destination_cidr_rule() {
    let mut r = Rule::new(Action::Allow);
    r.dest = Some(nets(&["192.0.2.0/24"]));
    let p = deny_all_but(r);
    assert!(allowed(&p, &req("192.0.2.200", 80)));
    assert!(allowed(&p, &req("::ffff:192.0.2.200", 80)));
    assert!(!allowed(&p, &req("192.0.3.1", 80)));
}

#[test]
fn destination_domain_rule_needs_a_name() {
    let mut r = Rule::new(Action::Allow);
    r.domains = Some(vec![
        DomainPattern::parse("example.com").unwrap(),
        DomainPattern::parse("*.example.org").unwrap(),
    ]);
    let p = deny_all_but(r);
    let named = |name| Check {
        dest_domain: Some(name),
        ..req("192.0.2.1", 443)
    };
    assert!(allowed(&p, &named("EXAMPLE.com")));
    assert!(allowed(&p, &named("www.example.org")));
    assert!(!allowed(&p, &named("example.org")));
    assert!(!allowed(&p, &named("www.example.com")));
    assert!(
        !allowed(&p, &req("192.0.2.1", 443)),
        "an IP target has no name"
    );
}

#[test]
fn destination_port_rule() {
    let mut r = Rule::new(Action::Allow);
    r.ports = Some(vec![443..=443, 8000..=8999]);
    let p = deny_all_but(r);
    for (port, ok) in [
        (443, true),
        (8000, true),
        (8999, true),
        (80, false),
        (9000, false),
        (7999, false),
    ] {
        assert_eq!(allowed(&p, &req("192.0.2.1", port)), ok, "port {port}");
    }
}

#[test]
fn matchers_of_one_rule_must_all_match() {
    let mut r = Rule::new(Action::Allow);
    r.users = Some(vec!["alice".into()]);
    r.ports = Some(vec![443..=443]);
    let p = deny_all_but(r);
    let alice = |port| Check {
        user: Some("alice"),
        ..req("192.0.2.1", port)
    };
    assert!(allowed(&p, &alice(443)));
    assert!(!allowed(&p, &alice(80)));
    assert!(!allowed(&p, &req("192.0.2.1", 443)));
}

#[test]
fn deny_internal_catches_resolved_and_mapped_addresses() {
    let mut block = Rule::new(Action::Deny);
    block.dest = Some(nets(&[DENY_INTERNAL]));
    block.name = Some("internal".into());
    let p = Policy {
        rules: vec![block, Rule::new(Action::Allow)],
        ..Policy::default()
    };
    for dest in [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "10.0.0.1",
        "100.64.1.1",
        "::1",
        "fd12::1",
        "0.0.0.0",
        "224.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
    ] {
        // A name that resolved to an internal address is denied by the address.
        let named = Check {
            dest_domain: Some("innocent.example"),
            ..req(dest, 80)
        };
        let d = p.check(&named);
        assert!(!d.allow, "{dest} allowed");
        assert_eq!(d.reason(), "rule 1 (internal)");
    }
    assert!(allowed(&p, &req("192.0.2.1", 80)));
}

#[test]
fn egress_precedence_rule_then_user_then_global() {
    let egress = |mark| {
        Some(Arc::new(Egress {
            mark: Some(mark),
            ..Egress::default()
        }))
    };
    let mut routed = Rule::new(Action::Allow);
    routed.dest = Some(nets(&["192.0.2.0/24"]));
    routed.egress = egress(1);
    let mut per_user = HashMap::new();
    per_user.insert(
        "alice".to_string(),
        UserSettings {
            egress: egress(2),
            ..UserSettings::default()
        },
    );
    let p = Policy {
        rules: vec![routed, Rule::new(Action::Allow)],
        egress: egress(3),
        per_user,
        ..Policy::default()
    };
    let mark = |c: &Check<'_>| p.check(c).egress.and_then(|e| e.mark);
    let alice = |dest| Check {
        user: Some("alice"),
        ..req(dest, 80)
    };
    assert_eq!(
        mark(&alice("192.0.2.1")),
        Some(1),
        "the rule wins over the user"
    );
    assert_eq!(
        mark(&alice("203.0.113.1")),
        Some(2),
        "the user wins over the global one"
    );
    assert_eq!(mark(&req("203.0.113.1", 80)), Some(3));
    // Denials carry no egress.
    let mut deny = Rule::new(Action::Deny);
    deny.egress = egress(9);
    let denying = Policy {
        rules: vec![deny],
        ..p
    };
    assert!(denying.check(&req("203.0.113.1", 80)).egress.is_none());
}

#[test]
fn admits_looks_past_destination_rules() {
    let mut internal = Rule::new(Action::Deny);
    internal.dest = Some(nets(&[DENY_INTERNAL]));
    let mut no_bind = Rule::new(Action::Deny);
    no_bind.commands = Some(vec![Command::Bind]);
    let mut dns_only = Rule::new(Action::Allow);
    dns_only.commands = Some(vec![Command::UdpAssociate]);
    dns_only.ports = Some(vec![53..=53]);
    let mut office = Rule::new(Action::Allow);
    office.clients = Some(nets(&["198.51.100.0/24"]));
    office.commands = Some(vec![Command::Connect]);
    let p = Policy {
        rules: vec![internal, no_bind, dns_only, office],
        default_action: Action::Deny,
        ..Policy::default()
    };
    let client = ip("198.51.100.7");
    let stranger = ip("203.0.113.1");
    assert!(p.admits(client, None, Command::Connect).allow);
    assert!(!p.admits(stranger, None, Command::Connect).allow);
    let bind = p.admits(client, None, Command::Bind);
    assert!(!bind.allow);
    assert_eq!(bind.rule.unwrap().index, 1);
    // UDP may reach port 53 somewhere: admitted, each datagram checked later.
    let udp = p.admits(stranger, None, Command::UdpAssociate);
    assert!(udp.allow);
    assert_eq!(udp.rule.unwrap().index, 2);
    let dgram = |port| Check {
        client: stranger,
        command: Command::UdpAssociate,
        ..req("192.0.2.53", port)
    };
    assert!(p.check(&dgram(53)).allow);
    assert!(!p.check(&dgram(123)).allow);
}

#[test]
fn user_limits_override_defaults_field_by_field() {
    let mut per_user = HashMap::new();
    per_user.insert(
        "alice".to_string(),
        UserSettings {
            limits: UserLimits {
                max_sessions: Some(50),
                ..UserLimits::default()
            },
            egress: None,
        },
    );
    let p = Policy {
        limits: LimitSettings {
            user: UserLimits {
                max_sessions: Some(5),
                bandwidth_up: Some(1000),
                bandwidth_down: None,
            },
            ..LimitSettings::default()
        },
        per_user,
        ..Policy::default()
    };
    let alice = p.user_limits("alice");
    assert_eq!(
        (alice.max_sessions, alice.bandwidth_up),
        (Some(50), Some(1000))
    );
    assert_eq!(p.user_limits("bob").max_sessions, Some(5));
}

#[test]
fn usernames_split_with_the_configured_separator() {
    let p = Policy::default();
    assert_eq!(p.split_username("alice-session-42"), ("alice", Some("42")));
    let p = Policy {
        session_separator: "+".into(),
        ..Policy::default()
    };
    assert_eq!(p.split_username("alice+42"), ("alice", Some("42")));
    assert_eq!(
        p.split_username("alice-session-42"),
        ("alice-session-42", None)
    );
}
