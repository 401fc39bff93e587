//! Who may use the proxy and how: credentials, access rules, egress selection, limits and
//! address ordering. Pure functions of (client, user, request) → verdict: no I/O, no
//! threads, no clock (time comes in as an `Instant`).
//!
//! A [`Policy`] is built once from the configuration and never changes; a reload builds a
//! new one and swaps the `Arc`. The one piece of state that outlives a policy is the
//! [`Limiter`] (session counts and buckets), which the engine creates once.
//!
//! Precedence of egress settings: the matching rule's egress, else the user's, else the
//! global one. A rule speaks about destinations (for example "this network goes out through
//! that interface"), a routing fact that holds whoever asks, while a user's egress is what
//! that user gets by default.
#![forbid(unsafe_code)]

mod bucket;
mod egress;
mod eyeballs;
mod limits;
mod net;
mod rules;
mod users;
pub mod verify_cache;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use bucket::TokenBucket;
pub use egress::{Egress, Ipv6Mode};
pub use eyeballs::{order, Prefer};
pub use limits::{Bandwidth, LimitHit, LimitSettings, Limiter, SessionGuard, UserLimits};
pub use net::{NetSet, DENY_INTERNAL};
pub use rules::{Action, DomainPattern, Rule};
pub use users::{hash_password, split_username, Secret, SlowVerify, Users, UsersError, Verdict};

use crate::proto::Command;

/// The separator between user and session id in a SOCKS username, unless configured.
pub const DEFAULT_SESSION_SEPARATOR: &str = "-session-";

/// What the engine asks about one connection (or datagram).
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub client: IpAddr,
    /// The authenticated user, without a session id.
    pub user: Option<&'a str>,
    pub command: Command,
    /// The address actually connected to (after resolution), the datagram's destination,
    /// or BIND's expected peer.
    pub dest_ip: IpAddr,
    /// The name the client asked for, when it asked for a name.
    pub dest_domain: Option<&'a str>,
    pub dest_port: u16,
}

/// The rule that decided, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// 0-based position in the rule list (an index into per-rule counters).
    pub index: usize,
    pub name: Option<Arc<str>>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 1-based, as the configuration's `rule[N]` keys count.
        write!(f, "rule {}", self.index + 1)?;
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub allow: bool,
    /// `None`: no rule matched and the default action decided.
    pub rule: Option<RuleRef>,
    /// How to set up the outbound socket; `None` for a denial or when nothing is set.
    pub egress: Option<Arc<Egress>>,
}

impl Decision {
    /// "rule 3 (name)" or "default", for a log line.
    pub fn reason(&self) -> String {
        self.rule
            .as_ref()
            .map_or_else(|| "default".to_string(), RuleRef::to_string)
    }
}

/// Settings for one user (from the configuration file, not the users file).
#[derive(Debug, Clone, Default)]
pub struct UserSettings {
    pub limits: UserLimits,
    pub egress: Option<Arc<Egress>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// What happens when no rule matches.
    pub default_action: Action,
    /// Egress when neither the rule nor the user sets one.
    pub egress: Option<Arc<Egress>>,
    /// With users, SOCKS5 clients must authenticate and SOCKS4 is refused.
    pub users: Option<Arc<Users>>,
    pub per_user: HashMap<String, UserSettings>,
    pub limits: LimitSettings,
    pub prefer: Prefer,
    /// Splits `user<sep>session` usernames; empty: usernames carry no session.
    pub session_separator: String,
}

impl Default for Policy {
    /// Everything allowed, nothing limited: the behaviour without a configuration.
    fn default() -> Self {
        Policy {
            rules: Vec::new(),
            default_action: Action::Allow,
            egress: None,
            users: None,
            per_user: HashMap::new(),
            limits: LimitSettings::default(),
            prefer: Prefer::default(),
            session_separator: DEFAULT_SESSION_SEPARATOR.to_string(),
        }
    }
}

impl Policy {
    /// Decides one connection or datagram: the first rule that matches, else the default.
    pub fn check(&self, req: &Check<'_>) -> Decision {
        let found = self.rules.iter().enumerate().find(|(_, r)| {
            r.matches_origin(req.client, req.user, req.command)
                && r.matches_dest(req.dest_ip, req.dest_domain, req.dest_port)
        });
        self.decide(found, req.user)
    }

    /// Decides what is known before a destination is: may this client and user use this
    /// command at all? Denied only when every destination would be denied as far as the
    /// rules can tell (a rule not looking at destinations denies, before any rule that
    /// could allow). For an allowed UDP ASSOCIATE, [`Policy::check`] each datagram still;
    /// the egress returned is the one for the association's socket.
    pub fn admits(&self, client: IpAddr, user: Option<&str>, command: Command) -> Decision {
        let found = self.rules.iter().enumerate().find(|(_, r)| {
            r.matches_origin(client, user, command)
                && (!r.has_dest_matchers() || r.action == Action::Allow)
        });
        self.decide(found, user)
    }

    fn decide(&self, found: Option<(usize, &Rule)>, user: Option<&str>) -> Decision {
        let action = found.map_or(self.default_action, |(_, r)| r.action);
        if action == Action::Deny {
            return Decision {
                allow: false,
                rule: found.map(|(i, r)| rule_ref(i, r)),
                egress: None,
            };
        }
        let egress = found
            .and_then(|(_, r)| r.egress.clone())
            .or_else(|| user.and_then(|u| self.per_user.get(u)?.egress.clone()))
            .or_else(|| self.egress.clone());
        Decision {
            allow: true,
            rule: found.map(|(i, r)| rule_ref(i, r)),
            egress,
        }
    }

    /// Rules in the list, for counters sized per rule ([`RuleRef::index`]).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// A user's limits: their own settings over the defaults.
    pub fn user_limits(&self, user: &str) -> UserLimits {
        self.per_user
            .get(user)
            .map_or(self.limits.user, |s| s.limits.or(self.limits.user))
    }

    /// Splits a SOCKS username into user and session id with the configured separator.
    pub fn split_username<'a>(&self, name: &'a str) -> (&'a str, Option<&'a str>) {
        split_username(name, &self.session_separator)
    }

    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.users.is_some()
    }

    /// Whether some rule looks at client addresses, other than to match every address
    /// (the open-proxy check).
    pub fn restricts_clients(&self) -> bool {
        self.rules.iter().any(|r| {
            r.clients
                .as_ref()
                .is_some_and(|c| !c.nets().iter().any(|n| n.prefix_len() == 0))
        })
    }
}

fn rule_ref(index: usize, rule: &Rule) -> RuleRef {
    RuleRef {
        index,
        name: rule.name.clone(),
    }
}

#[cfg(test)]
mod tests;
