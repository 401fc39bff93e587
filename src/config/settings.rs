//! The settings schema, shared by the command line and the configuration file: every flag
//! is a top-level key of the same name (`--idle-timeout 60` ⇔ `idle-timeout = 60`), and
//! what only the file can say (listener tables, rules, per-user settings) sits beside.
//!
//! Every field is optional here; [`defaults`] fills what has a default, and
//! [`super::build`] checks ranges and combinations. Keeping one struct for both sources
//! means a flag cannot exist without its key, nor a key without its flag.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::values::{
    ActionName, Cidr, CommandName, CpuList, DomainEntry, Ipv6Mode, LogLevel, LogTarget, NetEntry,
    PortRange, PortSpec, PreferFamily, Rate, Secs,
};

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address to serve SOCKS on (repeatable; IPv4 or [IPv6]:PORT; port 0 picks a free
    /// port) [default: 127.0.0.1:1080]. Listeners given as flags replace all listeners
    /// of the configuration file.
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<SocketAddr>,

    /// Address to serve SOCKS on behind a load balancer: each connection starts with a
    /// PROXY protocol v1/v2 header, accepted only from --proxy-trusted sources
    /// (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_protocol_listen: Vec<SocketAddr>,

    /// Sources allowed to send PROXY protocol headers, e.g. 10.0.0.0/8 (repeatable).
    #[arg(long, value_name = "CIDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_trusted: Vec<Cidr>,

    /// Listeners with their own settings (`[[listener]]` in the file only).
    #[arg(skip)]
    #[serde(rename = "listener", skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerSettings>,

    /// Users file: `username:password` or `username:$argon2id$...` per line. With it,
    /// SOCKS5 clients must authenticate (RFC 1929) and SOCKS4/4a is refused.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Number of shard threads [default: one per CPU this process may run on].
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,

    /// CPUs to pin shards to, e.g. `0-3,8` [default: this process's CPU set].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,

    /// Time a client has to finish its handshake [default: 10].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<Secs>,

    /// Time an outbound connect (per address) may take [default: 10].
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<Secs>,

    /// A relayed session with no traffic either way for this long is closed [default: 300].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<Secs>,

    /// On SIGTERM, time sessions get to finish before they are closed [default: 30].
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<Secs>,

    /// Concurrent sessions, all shards together [default: what RLIMIT_NOFILE allows].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,

    /// Concurrent sessions per client IP (IPv6 clients count per /64).
    #[arg(long, value_name = "N")]
    pub max_sessions_per_ip: Option<u32>,

    /// New sessions per second per client IP (bursts of one second's worth allowed).
    #[arg(long, value_name = "N")]
    pub max_new_sessions_per_ip_per_sec: Option<u32>,

    /// Concurrent sessions per user (a user's own `max-sessions` overrides it).
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<u32>,

    /// Bandwidth per user, client to target, in bytes per second (`10M`, `512KiB`).
    #[arg(long, value_name = "RATE")]
    pub bandwidth_per_user_up: Option<Rate>,

    /// Bandwidth per user, target to client, in bytes per second (`10M`, `512KiB`).
    #[arg(long, value_name = "RATE")]
    pub bandwidth_per_user_down: Option<Rate>,

    /// Size of each relay buffer, in KiB [default: 64].
    #[arg(long, value_name = "KIB")]
    pub buffer_size: Option<u32>,

    /// Relay buffers per shard, a power of two [default: 256].
    #[arg(long, value_name = "N")]
    pub buffers: Option<u16>,

    /// Pipe per bulk relay direction, in KiB: bulk data is spliced through it instead of
    /// copied through relay buffers; 0 turns that off [default: 256].
    #[arg(long, value_name = "KIB")]
    pub splice_pipe: Option<u32>,

    /// UDP ASSOCIATE: bind relay sockets on this address instead of the one the client
    /// connected to.
    #[arg(long, value_name = "ADDR")]
    pub udp_bind: Option<IpAddr>,

    /// UDP ASSOCIATE: take relay ports from this range, e.g. `40000-40999`.
    #[arg(long, value_name = "LO-HI")]
    pub udp_port_range: Option<PortRange>,

    /// UDP ASSOCIATE: address to advertise in replies (the public address behind NAT).
    #[arg(long, value_name = "ADDR")]
    pub udp_public_addr: Option<IpAddr>,

    /// UDP ASSOCIATE: an association without a datagram either way for this long ends
    /// [default: 300].
    #[arg(long, value_name = "SECS")]
    pub udp_idle_timeout: Option<Secs>,

    /// Largest UDP payload relayed, in bytes [default: 2000].
    #[arg(long, value_name = "BYTES")]
    pub udp_max_datagram: Option<u32>,

    /// UDP buffers per shard, a power of two [default: 1024].
    #[arg(long, value_name = "N")]
    pub udp_buffers: Option<u16>,

    /// BIND: listen on this address instead of the one facing the expected peer.
    #[arg(long, value_name = "ADDR")]
    pub bind_addr: Option<IpAddr>,

    /// DNS server to query instead of the system resolver (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_server: Vec<SocketAddr>,

    /// Resolver threads [default: 4].
    #[arg(long, value_name = "N")]
    pub resolver_threads: Option<u32>,

    /// Address family tried first when a name has both (RFC 8305) [default: ipv6].
    #[arg(long, value_name = "FAMILY")]
    pub prefer: Option<PreferFamily>,

    /// Source address for outbound connections (repeatable: one IPv4, one IPv6).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_source: Vec<IpAddr>,

    /// Interface outbound sockets are bound to (SO_BINDTODEVICE).
    #[arg(long, value_name = "NAME")]
    pub egress_interface: Option<String>,

    /// Firewall mark on outbound sockets (SO_MARK).
    #[arg(long, value_name = "N")]
    pub egress_mark: Option<u32>,

    /// IPv6 prefix to draw outbound source addresses from, e.g. 2001:db8:1:2::/64.
    #[arg(long, value_name = "CIDR")]
    pub egress_ipv6_prefix: Option<Ipv6Net>,

    /// A new address from --egress-ipv6-prefix per connection, or one per session id
    /// (see --session-separator) [default: per-connection].
    #[arg(long, value_name = "MODE")]
    pub egress_ipv6_mode: Option<Ipv6Mode>,

    /// Key for per-session addresses; keep it to keep sessions on their addresses across
    /// restarts (file only: a flag would show in the process list).
    #[arg(skip)]
    pub egress_session_key: Option<String>,

    /// Separator between user and session id in a SOCKS username (`alice-session-42`);
    /// empty: usernames carry no session [default: -session-].
    #[arg(long, value_name = "TEXT")]
    pub session_separator: Option<String>,

    /// What happens when no rule matches (file only, with the rules) [default: allow].
    #[arg(skip)]
    pub default_action: Option<ActionName>,

    /// Access rules (`[[rule]]` in the file only), first match wins.
    #[arg(skip)]
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSettings>,

    /// Per-user limits and egress (`[per-user.NAME]` in the file only).
    #[arg(skip)]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_user: BTreeMap<String, UserSettings>,

    /// Serve on addresses beyond loopback without users or client rules (an open proxy).
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    pub allow_open: bool,

    /// User to run as after binding the listeners (when started as root).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Group to run as after binding the listeners [default: the user's group].
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,

    /// Write one JSON line per session to this file (`-`: stderr).
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<LogTarget>,

    /// error, warn, info or debug, to stderr [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

/// A `[[listener]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerSettings {
    pub address: SocketAddr,
    /// Connections start with a PROXY protocol v1/v2 header.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_protocol: bool,
    /// Who may send that header; empty: the top-level `proxy-trusted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_trusted: Vec<Cidr>,
}

/// A `[[rule]]` table. Absent matchers match anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: ActionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<NetEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Vec<CommandName>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<Vec<NetEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<DomainEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressSettings>,
}

/// A `[per-user.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSettings {
    pub max_sessions: Option<u32>,
    pub bandwidth_up: Option<Rate>,
    pub bandwidth_down: Option<Rate>,
    pub egress: Option<EgressSettings>,
}

/// Egress of a rule or a user (replaces the top-level `egress-*` keys as a whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EgressSettings {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<IpAddr>,
    pub interface: Option<String>,
    pub mark: Option<u32>,
    pub ipv6_prefix: Option<Ipv6Net>,
    pub ipv6_mode: Option<Ipv6Mode>,
}

/// Values of the keys that have a default.
pub fn defaults() -> Settings {
    use std::time::Duration;
    let secs = |n| Some(Secs(Duration::from_secs(n)));
    Settings {
        handshake_timeout: secs(10),
        connect_timeout: secs(10),
        idle_timeout: secs(300),
        drain_timeout: secs(30),
        buffer_size: Some(64),
        buffers: Some(256),
        splice_pipe: Some(256),
        udp_idle_timeout: secs(300),
        udp_max_datagram: Some(2000),
        udp_buffers: Some(1024),
        resolver_threads: Some(4),
        prefer: Some(PreferFamily::Ipv6),
        egress_ipv6_mode: Some(Ipv6Mode::PerConnection),
        session_separator: Some(crate::policy::DEFAULT_SESSION_SEPARATOR.to_string()),
        default_action: Some(ActionName::Allow),
        log_level: Some(LogLevel::Info),
        ..Settings::default()
    }
}

/// The listener used when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1080";
