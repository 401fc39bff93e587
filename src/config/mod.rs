//! From flags and the configuration file to one validated [`Config`]: merges the two
//! (flags win), reads the users file, builds the [`Policy`], fits the shard layout to the
//! CPUs, and checks what the host allows (descriptors, locked memory). Every error names
//! the flag, or the file, line and key, to change.

pub mod commands;
mod policy;
pub mod settings;
pub mod source;
pub mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::EngineConfig;
use crate::policy::{NetSet, Policy, Users};
use crate::resolve::ResolverConfig;
pub use settings::Settings;
use source::{KeyPath, Source};
pub use values::LogTarget;
use values::{LogLevel, Secs};

/// Descriptors kept free for listeners, resolver sockets, logs and the like.
const RESERVED_FDS: u64 = 64;
/// Bytes a UDP buffer holds besides the payload: the receive header and source address
/// (44), and the largest SOCKS UDP header (262, a domain destination).
const UDP_BUFFER_OVERHEAD: u32 = 320;
/// Submission and completion queue sizes per shard (see engine::shard).
const RING_BYTES_PER_SHARD: u64 = 1024 * 64 + 16384 * 16;

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the host allows, read once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// RLIMIT_NOFILE after raising the soft limit to the hard one.
    pub nofile: u64,
    /// RLIMIT_MEMLOCK, `None` when unlimited or not enforced (CAP_IPC_LOCK).
    pub memlock: Option<u64>,
}

impl HostLimits {
    pub fn read() -> HostLimits {
        let nofile = rlimit::increase_nofile_limit(u64::MAX)
            .unwrap_or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |l| l.0));
        let memlock = match rlimit::getrlimit(rlimit::Resource::MEMLOCK) {
            Ok((soft, _)) if soft != rlimit::INFINITY && !has_ipc_lock() => Some(soft),
            _ => None,
        };
        HostLimits { nofile, memlock }
    }
}

/// Whether this process has CAP_IPC_LOCK, which exempts io_uring from RLIMIT_MEMLOCK.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Everything start-up needs.
#[derive(Debug)]
pub struct Config {
    pub engine: EngineConfig,
    pub ops: Operations,
    /// The effective settings (defaults, file, flags), as `check-config` prints them.
    pub settings: Settings,
}

/// What the process around the engine does: privileges, metrics, logs, shutdown.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Drop root to this user (and group) once the listeners are bound.
    pub run_as_user: Option<String>,
    pub run_as_group: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub access_log: Option<LogTarget>,
    /// On SIGTERM, how long sessions may take to finish.
    pub drain_timeout: Duration,
    pub log_level: LogLevel,
    pub allow_open: bool,
}

/// Merges `flags` over the file at `file` (if any) and builds the configuration. `host`
/// `None` skips the checks of this host's limits (for `check-config`, which may run
/// elsewhere).
pub fn load(
    flags: &Settings,
    file: Option<&Path>,
    host: Option<HostLimits>,
) -> Result<Config, ConfigError> {
    let (settings, source) = source::effective(flags, file)?;
    build(settings, &source, host)
}

fn secs(v: Option<Secs>, default: u64) -> Duration {
    v.map_or(Duration::from_secs(default), |s| s.0)
}

fn in_range<T: PartialOrd + Copy + fmt::Display>(
    src: &Source,
    key: &str,
    v: Option<T>,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    match v {
        Some(n) if n < lo || n > hi => Err(src.error(
            &KeyPath::key(key),
            format!("{n} is out of range: allowed {lo} to {hi}"),
        )),
        _ => Ok(()),
    }
}

fn power_of_two(src: &Source, key: &str, v: Option<u16>) -> Result<(), ConfigError> {
    match v {
        Some(n) if !(n.is_power_of_two() && (8..=32768).contains(&n)) => Err(src.error(
            &KeyPath::key(key),
            format!("{n} must be a power of two from 8 to 32768"),
        )),
        _ => Ok(()),
    }
}

fn specific_ip(src: &Source, key: &str, v: Option<IpAddr>) -> Result<(), ConfigError> {
    match v {
        Some(ip) if ip.is_unspecified() => Err(src.error(
            &KeyPath::key(key),
            format!("{ip} is a wildcard; give the address clients can reach"),
        )),
        _ => Ok(()),
    }
}

fn read_users(s: &Settings, src: &Source) -> Result<Option<Arc<Users>>, ConfigError> {
    let Some(path) = &s.users else {
        return Ok(None);
    };
    let key = KeyPath::key("users");
    let text = std::fs::read_to_string(path).map_err(|e| {
        src.error(
            &key,
            format!("cannot read users file {}: {e}", path.display()),
        )
    })?;
    let users = Users::parse(&text)
        .map_err(|e| src.error(&key, format!("users file {}: {e}", path.display())))?;
    if users.is_empty() {
        return Err(src.error(
            &key,
            format!(
                "users file {} defines no users: add `username:password` lines or drop it",
                path.display()
            ),
        ));
    }
    Ok(Some(Arc::new(users)))
}

/// Listen addresses in order (`listen`, then `proxy-protocol-listen`, then `[[listener]]`
/// tables), each with the sources trusted to send a PROXY protocol header.
type Listeners = Vec<(SocketAddr, Option<Arc<NetSet>>)>;

fn listeners(s: &Settings, src: &Source) -> Result<Listeners, ConfigError> {
    let trusted_set =
        |list: &[values::Cidr]| Arc::new(NetSet::new(list.iter().map(|c| c.0).collect()));
    let global = trusted_set(&s.proxy_trusted);
    let mut out: Listeners = Vec::new();
    let mut keys = Vec::new();
    for (i, a) in s.listen.iter().enumerate() {
        out.push((*a, None));
        keys.push(KeyPath::key("listen").index(i));
    }
    for (i, a) in s.proxy_protocol_listen.iter().enumerate() {
        let key = KeyPath::key("proxy-protocol-listen").index(i);
        if global.is_empty() {
            return Err(src.error(
                &key,
                "a PROXY protocol listener needs trusted sources: add --proxy-trusted CIDR \
                 (the load balancers' addresses)",
            ));
        }
        out.push((*a, Some(global.clone())));
        keys.push(key);
    }
    for (i, l) in s.listeners.iter().enumerate() {
        let key = KeyPath::key("listener").index(i);
        let proxy = if l.proxy_protocol {
            let own = if l.proxy_trusted.is_empty() {
                global.clone()
            } else {
                trusted_set(&l.proxy_trusted)
            };
            if own.is_empty() {
                return Err(src.error(
                    &key.field("proxy-trusted"),
                    "a PROXY protocol listener needs trusted sources: list the load \
                     balancers' networks here or in the top-level proxy-trusted",
                ));
            }
            Some(own)
        } else {
            if !l.proxy_trusted.is_empty() {
                return Err(src.error(
                    &key.field("proxy-trusted"),
                    "only means something with proxy-protocol = true",
                ));
            }
            None
        };
        out.push((l.address, proxy));
        keys.push(key.field("address"));
    }
    for (i, (a, _)) in out.iter().enumerate() {
        // Port 0 picks a free port for each listener, so it never repeats.
        if a.port() != 0 && out[..i].iter().any(|(b, _)| b == a) {
            return Err(src.error(&keys[i], format!("{a} is given twice")));
        }
    }
    Ok(out)
}

/// Refuses an open proxy: reachable beyond loopback, no passwords, no client rule.
fn check_open(
    s: &Settings,
    src: &Source,
    listen: &Listeners,
    policy: &Policy,
) -> Result<(), ConfigError> {
    if s.allow_open || policy.auth_required() || policy.restricts_clients() {
        return Ok(());
    }
    let Some((exposed, _)) = listen
        .iter()
        .find(|(a, _)| !a.ip().to_canonical().is_loopback())
    else {
        return Ok(());
    };
    let key = if s.listen.contains(exposed) {
        "listen"
    } else if s.proxy_protocol_listen.contains(exposed) {
        "proxy-protocol-listen"
    } else {
        "listener"
    };
    Err(src.error(
        &KeyPath::key(key),
        format!(
            "refusing to run an open proxy: {exposed} is reachable beyond this host, no users \
             file asks for passwords and no rule restricts clients by address, so anyone who \
             finds it can relay through it; add --users FILE, or a [[rule]] with `clients = \
             [...]` in --config, or listen on 127.0.0.1 / [::1], or pass --allow-open if that \
             is intended"
        ),
    ))
}

fn name_ok(src: &Source, key: &str, v: &Option<String>) -> Result<(), ConfigError> {
    match v {
        Some(n)
            if n.is_empty()
                || n.len() > 32
                || n.contains([':', '/'])
                || n.chars().any(char::is_whitespace) =>
        {
            Err(src.error(
                &KeyPath::key(key),
                format!("`{n}` is not a user or group name (or number)"),
            ))
        }
        _ => Ok(()),
    }
}

fn build(s: Settings, src: &Source, host: Option<HostLimits>) -> Result<Config, ConfigError> {
    in_range(src, "shards", s.shards, 1, 1024)?;
    in_range(src, "resolver-threads", s.resolver_threads, 1, 256)?;
    in_range(src, "buffer-size", s.buffer_size, 4, 1024)?;
    in_range(src, "splice-pipe", s.splice_pipe, 0, 1024)?;
    in_range(src, "udp-max-datagram", s.udp_max_datagram, 512, 65507)?;
    in_range(src, "max-connections", s.max_connections, 1, u64::MAX)?;
    power_of_two(src, "buffers", s.buffers)?;
    power_of_two(src, "udp-buffers", s.udp_buffers)?;
    specific_ip(src, "udp-bind", s.udp_bind)?;
    specific_ip(src, "udp-public-addr", s.udp_public_addr)?;
    specific_ip(src, "bind-addr", s.bind_addr)?;
    name_ok(src, "user", &s.user)?;
    name_ok(src, "group", &s.group)?;
    if s.group.is_some() && s.user.is_none() {
        return Err(src.error(&KeyPath::key("group"), "needs --user too"));
    }
    let listen = listeners(&s, src)?;
    if let Some(m) = s.metrics_listen {
        if listen.iter().any(|(a, _)| *a == m && a.port() != 0) {
            return Err(src.error(
                &KeyPath::key("metrics-listen"),
                format!("{m} is also a SOCKS listener: choose another port"),
            ));
        }
    }
    let users = read_users(&s, src)?;

    let cpus = match &s.cpus {
        Some(list) => list.0.clone(),
        None => match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
            _ => Vec::new(),
        },
    };
    let shards = s.shards.map_or(cpus.len().max(1), |n| n as usize);
    let pinning: Vec<Option<usize>> = (0..shards)
        .map(|i| (!cpus.is_empty()).then(|| cpus[i % cpus.len()]))
        .collect();

    // Without a host to check against, the limits are what was asked for.
    let host = host.unwrap_or(HostLimits {
        nofile: s.max_connections.map_or(u64::MAX, |n| n + RESERVED_FDS),
        memlock: None,
    });
    let room = host.nofile.saturating_sub(RESERVED_FDS);
    let max_connections = match s.max_connections {
        Some(n) if n > room => {
            return Err(src.error(
                &KeyPath::key("max-connections"),
                format!(
                    "RLIMIT_NOFILE is {} but {n} connections need {}: raise it (ulimit -n, \
                     LimitNOFILE=) or lower max-connections",
                    host.nofile,
                    n + RESERVED_FDS
                ),
            ))
        }
        Some(n) => n,
        None if room == 0 => {
            return Err(ConfigError(format!(
                "RLIMIT_NOFILE is {}, too low to serve anyone: raise it (ulimit -n, LimitNOFILE=)",
                host.nofile
            )))
        }
        None => room,
    };

    let buffer_count = s.buffers.unwrap_or(256);
    let udp_buffer_count = s.udp_buffers.unwrap_or(1024);
    if let Some(limit) = host.memlock {
        let ring = (buffer_count as u64 * 16).next_multiple_of(4096)
            + (udp_buffer_count as u64 * 16).next_multiple_of(4096);
        let needed = shards as u64 * (ring + RING_BYTES_PER_SHARD);
        if needed > limit {
            return Err(src.error(
                &KeyPath::key("shards"),
                format!(
                    "RLIMIT_MEMLOCK is {limit} bytes but {shards} shards need {needed}: raise it \
                     (ulimit -l, LimitMEMLOCK=) or use fewer --shards"
                ),
            ));
        }
    }

    let policy = policy::build(&s, src, users.clone())?;
    check_open(&s, src, &listen, &policy)?;

    let engine = EngineConfig {
        listen: listen.iter().map(|(a, _)| *a).collect(),
        proxy_protocol: listen.iter().map(|(_, p)| p.clone()).collect(),
        cpus: pinning,
        handshake_timeout: secs(s.handshake_timeout, 10),
        connect_timeout: secs(s.connect_timeout, 10),
        idle_timeout: secs(s.idle_timeout, 300),
        max_connections: max_connections.min(usize::MAX as u64) as usize,
        files_per_shard: max_connections.min(host.nofile).min(u32::MAX as u64) as u32,
        buffer_size: s.buffer_size.unwrap_or(64) * 1024,
        buffer_count,
        splice_pipe: s.splice_pipe.unwrap_or(256) * 1024,
        descriptor_room: room.min(usize::MAX as u64) as usize,
        udp_bind: s.udp_bind,
        udp_port_range: s.udp_port_range.map(|r| (r.0, r.1)),
        udp_public: s.udp_public_addr,
        udp_idle_timeout: secs(s.udp_idle_timeout, 300),
        udp_buffer_size: s.udp_max_datagram.unwrap_or(2000) + UDP_BUFFER_OVERHEAD,
        udp_buffer_count,
        udp_max_payload: s.udp_max_datagram.unwrap_or(2000),
        bind_addr: s.bind_addr,
        resolver: ResolverConfig {
            threads: s.resolver_threads.unwrap_or(4) as usize,
            servers: s.dns_server.clone(),
            ..ResolverConfig::default()
        },
        policy: Arc::new(policy),
    };
    let ops = Operations {
        run_as_user: s.user.clone(),
        run_as_group: s.group.clone(),
        metrics_listen: s.metrics_listen,
        access_log: s.access_log.clone(),
        drain_timeout: secs(s.drain_timeout, 30),
        log_level: s.log_level.unwrap_or(LogLevel::Info),
        allow_open: s.allow_open,
    };
    Ok(Config {
        engine,
        ops,
        settings: s,
    })
}

#[cfg(test)]
mod tests;
