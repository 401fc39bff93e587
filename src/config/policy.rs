//! Settings → [`Policy`]: rules, egress, per-user settings and limits, each checked with
//! the key it came from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::settings::{EgressSettings, RuleSettings, Settings};
use super::source::{KeyPath, Source};
use super::values::{ActionName, CommandName, Ipv6Mode, NetEntry, PreferFamily};
use super::ConfigError;
use crate::policy::{
    self, Action, Egress, LimitSettings, NetSet, Policy, Prefer, Rule, UserLimits, UserSettings,
    Users,
};
use crate::proto::Command;

/// Key for per-session egress addresses when the file sets none. Fixed, so addresses stay
/// put across restarts; set `egress-session-key` so they cannot be predicted.
const DEFAULT_SESSION_KEY: &[u8] = b"ringsocks per-session egress";
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
const MAX_IFNAME: usize = 15;

pub(super) fn build(
    s: &Settings,
    src: &Source,
    users: Option<Arc<Users>>,
) -> Result<Policy, ConfigError> {
    let session_key = s
        .egress_session_key
        .as_ref()
        .map_or(DEFAULT_SESSION_KEY.to_vec(), |k| k.as_bytes().to_vec());
    if s.egress_session_key.as_ref().is_some_and(|k| k.len() < 16) {
        return Err(src.error(
            &KeyPath::key("egress-session-key"),
            "must be at least 16 characters (a random string: `openssl rand -hex 32`)",
        ));
    }
    let separator = s.session_separator.clone().unwrap_or_default();
    if let Some(users) = &users {
        if !separator.is_empty() {
            let mut clashing: Vec<String> = users
                .names()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .filter(|n| n.contains(&separator))
                .collect();
            clashing.sort();
            if let Some(name) = clashing.first() {
                return Err(src.error(
                    &KeyPath::key("session-separator"),
                    format!(
                        "user `{name}` of the users file contains the session separator \
                         `{separator}`, so it could never log in: rename the user or choose \
                         another separator (empty turns sessions off)"
                    ),
                ));
            }
        }
    }

    let global = EgressSettings {
        source: s.egress_source.clone(),
        interface: s.egress_interface.clone(),
        mark: s.egress_mark,
        ipv6_prefix: s.egress_ipv6_prefix,
        ipv6_mode: s.egress_ipv6_mode,
    };
    let global_egress = egress(&global, &session_key, src, Flat)?;

    let known_user = |name: &str| {
        users
            .as_ref()
            .is_some_and(|u| u.lookup(name.as_bytes()).is_some())
    };
    let mut rules = Vec::with_capacity(s.rules.len());
    for (i, r) in s.rules.iter().enumerate() {
        let at = KeyPath::key("rule").index(i);
        rules.push(rule(r, &at, src, &session_key, &users, &known_user)?);
    }

    let mut per_user = HashMap::new();
    for (name, u) in &s.per_user {
        let at = KeyPath::key("per-user").field(name);
        if users.is_none() {
            return Err(src.error(
                &at,
                "per-user settings need a users file (--users / `users`): without one no \
                 client has a user",
            ));
        }
        if !known_user(name) {
            return Err(src.error(&at, format!("`{name}` is not in the users file")));
        }
        if u.max_sessions == Some(0) {
            return Err(src.error(&at.field("max-sessions"), "must be at least 1"));
        }
        let egress = match &u.egress {
            Some(e) => egress(e, &session_key, src, Nested(at.field("egress")))?,
            None => None,
        };
        let limits = UserLimits {
            max_sessions: u.max_sessions,
            bandwidth_up: u.bandwidth_up.map(|r| r.0),
            bandwidth_down: u.bandwidth_down.map(|r| r.0),
        };
        per_user.insert(name.clone(), UserSettings { limits, egress });
    }

    for (key, value) in [
        ("max-sessions-per-ip", s.max_sessions_per_ip),
        (
            "max-new-sessions-per-ip-per-sec",
            s.max_new_sessions_per_ip_per_sec,
        ),
        ("max-sessions-per-user", s.max_sessions_per_user),
    ] {
        if value == Some(0) {
            return Err(src.error(
                &KeyPath::key(key),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
    }
    if users.is_none() {
        for (key, set) in [
            ("max-sessions-per-user", s.max_sessions_per_user.is_some()),
            ("bandwidth-per-user-up", s.bandwidth_per_user_up.is_some()),
            (
                "bandwidth-per-user-down",
                s.bandwidth_per_user_down.is_some(),
            ),
        ] {
            if set {
                return Err(src.error(
                    &KeyPath::key(key),
                    "per-user limits need a users file (--users): without one no client has a user",
                ));
            }
        }
    }
    let limits = LimitSettings {
        // The engine enforces the total itself when it accepts, before the client's
        // address (which the other limits need) is known.
        max_sessions: None,
        max_sessions_per_ip: s.max_sessions_per_ip,
        max_new_sessions_per_ip_per_sec: s.max_new_sessions_per_ip_per_sec,
        user: UserLimits {
            max_sessions: s.max_sessions_per_user,
            bandwidth_up: s.bandwidth_per_user_up.map(|r| r.0),
            bandwidth_down: s.bandwidth_per_user_down.map(|r| r.0),
        },
    };

    Ok(Policy {
        rules,
        default_action: action(s.default_action.unwrap_or(ActionName::Allow)),
        egress: global_egress,
        users,
        per_user,
        limits,
        prefer: match s.prefer {
            Some(PreferFamily::Ipv4) => Prefer::Ipv4,
            _ => Prefer::Ipv6,
        },
        session_separator: separator,
    })
}

fn action(a: ActionName) -> Action {
    match a {
        ActionName::Allow => Action::Allow,
        ActionName::Deny => Action::Deny,
    }
}

fn rule(
    r: &RuleSettings,
    at: &KeyPath,
    src: &Source,
    session_key: &[u8],
    users: &Option<Arc<Users>>,
    known_user: &dyn Fn(&str) -> bool,
) -> Result<Rule, ConfigError> {
    let not_empty = |key: &str, empty: bool| {
        if empty {
            Err(src.error(
                &at.field(key),
                "an empty list matches nothing: remove the key to match anything",
            ))
        } else {
            Ok(())
        }
    };
    let nets = |list: &Option<Vec<NetEntry>>| {
        list.as_ref().map(|l| {
            let mut set = NetSet::default();
            for e in l {
                set.extend(e.set.clone());
            }
            set
        })
    };
    not_empty("clients", r.clients.as_ref().is_some_and(Vec::is_empty))?;
    not_empty("users", r.users.as_ref().is_some_and(Vec::is_empty))?;
    not_empty("commands", r.commands.as_ref().is_some_and(Vec::is_empty))?;
    not_empty("dest", r.dest.as_ref().is_some_and(Vec::is_empty))?;
    not_empty("domains", r.domains.as_ref().is_some_and(Vec::is_empty))?;
    not_empty("ports", r.ports.as_ref().is_some_and(Vec::is_empty))?;
    if let Some(list) = &r.users {
        if users.is_none() {
            return Err(src.error(
                &at.field("users"),
                "matching users needs a users file (--users): without one no client has a user",
            ));
        }
        if let Some((i, name)) = list.iter().enumerate().find(|(_, n)| !known_user(n)) {
            return Err(src.error(
                &at.field("users").index(i),
                format!("`{name}` is not in the users file"),
            ));
        }
    }
    if r.egress.is_some() && r.action == ActionName::Deny {
        return Err(src.error(
            &at.field("egress"),
            "a deny rule makes no connection: egress belongs on allow rules",
        ));
    }
    let mut out = Rule::new(action(r.action));
    out.name = r.name.as_deref().map(Arc::from);
    out.clients = nets(&r.clients);
    out.users = r.users.clone();
    out.commands = r.commands.as_ref().map(|l| {
        l.iter()
            .map(|c| match c {
                CommandName::Connect => Command::Connect,
                CommandName::Bind => Command::Bind,
                CommandName::Udp => Command::UdpAssociate,
            })
            .collect()
    });
    out.dest = nets(&r.dest);
    out.domains = r
        .domains
        .as_ref()
        .map(|l| l.iter().map(|d| d.0.clone()).collect());
    out.ports = r
        .ports
        .as_ref()
        .map(|l| l.iter().map(|p| p.0..=p.1).collect());
    out.egress = match &r.egress {
        Some(e) => egress(e, session_key, src, Nested(at.field("egress")))?,
        None => None,
    };
    Ok(out)
}

/// Where egress settings sit: the top-level `egress-*` keys, or an `egress` table.
enum Place {
    Flat,
    Nested(KeyPath),
}
use Place::{Flat, Nested};

impl Place {
    fn key(&self, name: &str) -> KeyPath {
        match self {
            Flat => KeyPath::key(&format!("egress-{name}")),
            Nested(at) => at.field(name),
        }
    }
}

fn egress(
    e: &EgressSettings,
    session_key: &[u8],
    src: &Source,
    place: Place,
) -> Result<Option<Arc<Egress>>, ConfigError> {
    let mut out = Egress {
        interface: e.interface.clone(),
        mark: e.mark,
        ipv6_prefix: e.ipv6_prefix,
        session_key: session_key.to_vec(),
        ..Egress::default()
    };
    for (i, ip) in e.source.iter().enumerate() {
        let key = match &place {
            Flat => place.key("source"),
            Nested(_) => place.key("source").index(i),
        };
        if ip.is_unspecified() {
            return Err(src.error(
                &key,
                format!("{ip} is a wildcard: give an address of this host"),
            ));
        }
        let taken = match ip {
            IpAddr::V4(v4) => out.source_v4.replace(*v4).is_some(),
            IpAddr::V6(v6) => out.source_v6.replace(*v6).is_some(),
        };
        if taken {
            return Err(src.error(
                &key,
                "one source address per family: give at most one IPv4 and one IPv6 address",
            ));
        }
    }
    if let Some(name) = &e.interface {
        let ok = !name.is_empty()
            && name.len() <= MAX_IFNAME
            && !name.contains(['/', ':'])
            && !name.chars().any(char::is_whitespace);
        if !ok {
            return Err(src.error(
                &place.key("interface"),
                format!(
                    "`{name}` is not an interface name (1 to {MAX_IFNAME} bytes, no `/`, `:` or spaces)"
                ),
            ));
        }
    }
    if out.ipv6_prefix.is_some() && out.source_v6.is_some() {
        return Err(src.error(
            &place.key("ipv6-prefix"),
            "give an IPv6 source address or an IPv6 prefix, not both",
        ));
    }
    out.ipv6_mode = match e.ipv6_mode {
        Some(Ipv6Mode::PerSession) => policy::Ipv6Mode::PerSession,
        _ => policy::Ipv6Mode::PerConnection,
    };
    if e.ipv6_mode == Some(Ipv6Mode::PerSession) && out.ipv6_prefix.is_none() {
        // The flat keys always carry the default mode; only a chosen one needs a prefix.
        return Err(src.error(
            &place.key("ipv6-mode"),
            "per-session addresses come from a prefix: set ipv6-prefix too",
        ));
    }
    Ok((!out.is_empty()).then(|| Arc::new(out)))
}
