//! Access rules: an ordered list, the first rule whose every matcher matches decides.
//!
//! Within a rule, matchers of different kinds must all match (client AND user AND ...);
//! within one kind, any entry may match (`ports = [80, 443]` is 80 OR 443). A rule without
//! any matcher matches everything.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use super::egress::Egress;
use super::net::NetSet;
use crate::proto::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

/// A destination domain: exact (`example.com`) or every name below a suffix
/// (`*.example.com`, which does not match `example.com` itself). Case-insensitive; a
/// trailing dot is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern {
    /// Lower case, no trailing dot; for a suffix pattern, starts with the dot.
    name: String,
    suffix: bool,
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<DomainPattern, String> {
        let trimmed = s.trim().trim_end_matches('.');
        let (suffix, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "`{s}` is not a domain pattern: give a name like example.com or *.example.com"
            ));
        }
        let name = name.to_ascii_lowercase();
        Ok(DomainPattern {
            name: if suffix { format!(".{name}") } else { name },
            suffix,
        })
    }

    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if self.suffix {
            domain.len() > self.name.len()
                && domain.is_char_boundary(domain.len() - self.name.len())
                && domain[domain.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
        } else {
            domain.eq_ignore_ascii_case(&self.name)
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix {
            write!(f, "*{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// One access rule. `None` in a matcher means "any".
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Option<Arc<str>>,
    pub action: Action,
    pub clients: Option<NetSet>,
    pub users: Option<Vec<String>>,
    pub commands: Option<Vec<Command>>,
    pub dest: Option<NetSet>,
    pub domains: Option<Vec<DomainPattern>>,
    pub ports: Option<Vec<RangeInclusive<u16>>>,
    /// Egress for connections this rule allows (wins over the user's egress).
    pub egress: Option<Arc<Egress>>,
}

impl Rule {
    /// A rule that matches everything; set matchers on the result.
    pub fn new(action: Action) -> Rule {
        Rule {
            name: None,
            action,
            clients: None,
            users: None,
            commands: None,
            dest: None,
            domains: None,
            ports: None,
            egress: None,
        }
    }

    /// Whether the matchers that do not depend on the destination match.
    pub(super) fn matches_origin(
        &self,
        client: IpAddr,
        user: Option<&str>,
        command: Command,
    ) -> bool {
        self.clients.as_ref().is_none_or(|c| c.contains(client))
            && self
                .users
                .as_ref()
                .is_none_or(|us| user.is_some_and(|u| us.iter().any(|x| x == u)))
            && self.commands.as_ref().is_none_or(|c| c.contains(&command))
    }

    pub(super) fn matches_dest(&self, ip: IpAddr, domain: Option<&str>, port: u16) -> bool {
        self.dest.as_ref().is_none_or(|d| d.reaches(ip))
            && self
                .domains
                .as_ref()
                .is_none_or(|ds| domain.is_some_and(|name| ds.iter().any(|d| d.matches(name))))
            && self
                .ports
                .as_ref()
                .is_none_or(|ps| ps.iter().any(|r| r.contains(&port)))
    }

    /// Whether any matcher looks at the destination.
    pub(super) fn has_dest_matchers(&self) -> bool {
        self.dest.is_some() || self.domains.is_some() || self.ports.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_domains_ignore_case_and_a_trailing_dot() {
        let p = DomainPattern::parse("Example.COM").unwrap();
        assert!(p.matches("example.com"));
        assert!(p.matches("EXAMPLE.com."));
        assert!(!p.matches("www.example.com"));
        assert!(!p.matches("example.co"));
        assert!(!p.matches("badexample.com"));
        assert_eq!(p.to_string(), "example.com");
    }

    #[test]
    fn suffix_domains_match_names_below_only() {
        let p = DomainPattern::parse("*.Example.com").unwrap();
        assert!(p.matches("www.example.com"));
        assert!(p.matches("a.b.EXAMPLE.com."));
        assert!(
            !p.matches("example.com"),
            "the suffix itself is not below it"
        );
        assert!(!p.matches("badexample.com"), "a label boundary is required");
        assert!(!p.matches("wwwéexample.com"));
        assert_eq!(p.to_string(), "*.example.com");
    }

    #[test]
    fn bad_domain_patterns_are_refused() {
        for bad in ["", "*.", "a..b", "*", "ex ample.com", "a.*.com", "*.*.com"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
