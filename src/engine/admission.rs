//! Who may do what: credentials (argon2 checks run on a worker thread), per-user limits,
//! and the access rules, asked of the policy in force at each decision. The decisions
//! themselves are the policy layer's; this file carries them into the session.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use super::accept::limit_label;
use super::conn::Phase;
use super::mailbox::Message;
use super::shard::Shard;
use super::token::{Op, Token};
use crate::policy::{Check, Decision, Egress, Verdict};
use crate::proto::auth::Credentials;
use crate::proto::{Address, Command, ReplyCode, Request};

impl Shard {
    pub(super) fn on_credentials(&mut self, slot: usize, creds: Credentials) {
        let active = self.shared.policy.load();
        let name = String::from_utf8_lossy(&creds.username);
        let (user, session) = active.policy.split_username(&name);
        let verdict = match &active.policy.users {
            Some(users) => users.verify_fast(user.as_bytes(), &creds.password, self.instant),
            None => Verdict::Rejected,
        };
        let meta = &mut self.conns[slot].meta;
        meta.user = Some(user.into());
        meta.session = session.map(Into::into);
        match verdict {
            Verdict::Accepted => self.credentials_checked(slot, true),
            Verdict::Rejected => self.credentials_checked(slot, false),
            Verdict::Slow(job) => {
                let mailbox = self.mailbox.clone();
                let ticket = self.token(slot, Op::Ignore).0;
                let job = Box::new(move || {
                    let ok = job.run(Instant::now());
                    mailbox.post(Message::Verified { ticket, ok });
                });
                if self.shared.workers.submit(job).is_err() {
                    log::warn!("password checks are backed up; refusing a login");
                    self.credentials_checked(slot, false);
                }
            }
        }
    }

    /// A password check from a worker thread.
    pub(super) fn on_verified(&mut self, ticket: Token, ok: bool) {
        if !self.is_live(ticket) {
            return;
        }
        let slot = ticket.slot() as usize;
        if self.conns[slot].phase == Phase::Handshake {
            self.credentials_checked(slot, ok);
            self.progress(slot);
        }
    }

    fn credentials_checked(&mut self, slot: usize, ok: bool) {
        if !ok {
            log::info!(
                "authentication failed for user {:?} from {}",
                self.conns[slot].meta.user.as_deref().unwrap_or(""),
                self.peer_name(slot)
            );
            let conn = &mut self.conns[slot];
            conn.meta.user = None;
            conn.meta.session = None;
            if let Some(hs) = conn.handshake.as_mut() {
                hs.reject_credentials();
            }
            return;
        }
        let active = self.shared.policy.load();
        let conn = &mut self.conns[slot];
        let meta = &mut *conn.meta;
        if let (Some(guard), Some(user)) = (meta.guard.as_mut(), meta.user.as_deref()) {
            let limits = active.policy.user_limits(user);
            if let Err(hit) = guard.admit_user(user, limits, self.instant) {
                // The request that follows gets the refusal as its reply.
                meta.limit_hit.get_or_insert(hit);
                self.stats.limit_hit(limit_label(hit));
            }
        }
        if let Some(hs) = conn.handshake.as_mut() {
            hs.accept_credentials();
        }
    }

    pub(super) fn on_request(&mut self, slot: usize, req: Request) {
        let now = self.instant;
        let meta = &mut self.conns[slot].meta;
        meta.command = Some(req.command);
        meta.target = Some(req.address.clone());
        self.stats.session_request(req.command);
        self.stats
            .handshake_time(now.saturating_duration_since(meta.accepted_at));
        log::debug!(
            "{} {} from {}",
            req.command.name(),
            req.address,
            self.peer_name(slot)
        );
        if let Some(hit) = self.conns[slot].meta.limit_hit {
            log::info!(
                "{} {} from {} refused: {hit} limit",
                req.command.name(),
                req.address,
                self.client_name(slot)
            );
            self.reject(slot, hit.reply());
            return;
        }
        let decision = {
            let active = self.shared.policy.load();
            let meta = &self.conns[slot].meta;
            active
                .policy
                .admits(self.client_ip(slot), meta.user.as_deref(), req.command)
        };
        if !decision.allow {
            self.denied(slot, &decision, &req.address.to_string());
            self.reject(slot, ReplyCode::NotAllowed);
            return;
        }
        match (req.command, req.address) {
            (Command::UdpAssociate, declared) => {
                self.udp_associate(slot, &declared, decision.egress)
            }
            (_, Address::Ip(sa)) => self.resolved(slot, Arc::from([sa.ip()]), sa.port()),
            (_, Address::Domain(host, port)) => self.resolve(slot, &host, port),
        }
    }

    pub(super) fn client_ip(&self, slot: usize) -> IpAddr {
        let conn = &self.conns[slot];
        conn.meta
            .client
            .or(conn.peer)
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
    }

    pub(super) fn client_name(&self, slot: usize) -> String {
        let conn = &self.conns[slot];
        conn.meta
            .client
            .or(conn.peer)
            .map_or_else(|| "unknown client".to_string(), |a| a.to_string())
    }

    /// What the rules say about `dest`, an address the session connects to (or BIND's
    /// expected peer), reached through the name the request asked for, if any.
    pub(super) fn check_target(&self, slot: usize, dest: IpAddr, port: u16) -> Decision {
        let domain = match &self.conns[slot].meta.target {
            Some(Address::Domain(name, _)) => Some(name.as_str()),
            _ => None,
        };
        self.check_dest(slot, dest, port, domain)
    }

    /// What the rules say about `dest` for this session, reached through `domain` (a UDP
    /// datagram names its own destination).
    pub(super) fn check_dest(
        &self,
        slot: usize,
        dest: IpAddr,
        port: u16,
        domain: Option<&str>,
    ) -> Decision {
        let active = self.shared.policy.load();
        let meta = &self.conns[slot].meta;
        active.policy.check(&Check {
            client: self.client_ip(slot),
            user: meta.user.as_deref(),
            command: meta.command.unwrap_or(Command::Connect),
            dest_ip: dest,
            dest_domain: domain,
            dest_port: port,
        })
    }

    /// Counts a denial by the rule that made it.
    pub(super) fn count_denial(&self, decision: &Decision) {
        let active = self.shared.policy.load();
        let index = decision
            .rule
            .as_ref()
            .map_or(active.policy.rule_count(), |r| r.index);
        active.rejects.rejected(self.index, index);
    }

    /// Counts and logs a denial (the caller sends the reply).
    pub(super) fn denied(&self, slot: usize, decision: &Decision, what: &str) {
        self.count_denial(decision);
        let meta = &self.conns[slot].meta;
        log::info!(
            "denied {} {what} for {}{}: {}",
            meta.command.map_or("request", Command::name),
            self.client_name(slot),
            meta.user
                .as_deref()
                .map_or_else(String::new, |u| format!(" (user {u})")),
            decision.reason()
        );
    }

    /// The session id carried in the username, for sticky egress addresses.
    pub(super) fn session_id(&self, slot: usize) -> Option<&str> {
        self.conns[slot].meta.session.as_deref()
    }
}

/// Applies an egress setting to a fresh outbound socket; true if it bound a source
/// address.
pub(super) fn apply_egress(
    sock: &socket2::Socket,
    egress: Option<&Egress>,
    dest_is_v6: bool,
    session: Option<&str>,
) -> std::io::Result<bool> {
    let Some(egress) = egress else {
        return Ok(false);
    };
    if let Some(dev) = &egress.interface {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = egress.mark {
        sock.set_mark(mark)?;
    }
    if let Some(src) = egress.source(dest_is_v6, session, fastrand::u64(..)) {
        // Addresses from a routed prefix are not on any interface: allow binding them.
        if src.is_ipv6() {
            sock.set_freebind_ipv6(true)?;
        } else {
            sock.set_freebind(true)?;
        }
        sock.bind(&std::net::SocketAddr::new(src, 0).into())?;
        return Ok(true);
    }
    Ok(false)
}
