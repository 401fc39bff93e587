//! From flags to one validated [`EngineConfig`]: reads the users file, fits the shard
//! layout to the CPUs, and checks what the host allows (descriptors, locked memory).

use std::fmt;
use std::sync::Arc;

use crate::cli::Args;
use crate::engine::EngineConfig;
use crate::policy::Users;
use crate::resolve::ResolverConfig;

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

pub fn build(args: &Args, host: HostLimits) -> Result<EngineConfig, ConfigError> {
    let users = match &args.users {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read users file {}: {e}", path.display()))
            })?;
            let users = Users::parse(&text)
                .map_err(|e| ConfigError(format!("users file {}: {e}", path.display())))?;
            if users.is_empty() {
                return Err(ConfigError(format!(
                    "users file {} defines no users: add `username:password` lines or drop --users",
                    path.display()
                )));
            }
            Some(Arc::new(users))
        }
    };

    let cpus = match &args.cpus {
        Some(list) => list.0.clone(),
        None => match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
            _ => Vec::new(),
        },
    };
    let shards = args.shards.map_or(cpus.len().max(1), |n| n as usize);
    let pinning: Vec<Option<usize>> = (0..shards)
        .map(|i| (!cpus.is_empty()).then(|| cpus[i % cpus.len()]))
        .collect();

    let room = host.nofile.saturating_sub(RESERVED_FDS);
    let max_connections = match args.max_connections {
        Some(n) if n > room => {
            return Err(ConfigError(format!(
                "RLIMIT_NOFILE is {} but --max-connections {n} needs {}: raise it (ulimit -n, \
                 LimitNOFILE=) or lower --max-connections",
                host.nofile,
                n + RESERVED_FDS
            )))
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

    let buffer_count = args.buffers;
    if let Some(limit) = host.memlock {
        let ring = (buffer_count as u64 * 16).next_multiple_of(4096)
            + (args.udp_buffers as u64 * 16).next_multiple_of(4096);
        let needed = shards as u64 * (ring + RING_BYTES_PER_SHARD);
        if needed > limit {
            return Err(ConfigError(format!(
                "RLIMIT_MEMLOCK is {limit} bytes but {shards} shards need {needed}: raise it \
                 (ulimit -l, LimitMEMLOCK=) or use fewer --shards"
            )));
        }
    }

    Ok(EngineConfig {
        listen: args.listen.clone(),
        cpus: pinning,
        handshake_timeout: args.handshake_timeout,
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: max_connections as usize,
        files_per_shard: max_connections.min(host.nofile).min(u32::MAX as u64) as u32,
        buffer_size: args.buffer_size * 1024,
        buffer_count,
        users,
        udp_bind: args.udp_bind,
        udp_port_range: args.udp_port_range.map(|r| (r.0, r.1)),
        udp_public: args.udp_public_addr,
        udp_idle_timeout: args.udp_idle_timeout,
        udp_buffer_size: args.udp_max_datagram + UDP_BUFFER_OVERHEAD,
        udp_buffer_count: args.udp_buffers,
        udp_max_payload: args.udp_max_datagram,
        bind_addr: args.bind_addr,
        resolver: ResolverConfig {
            threads: args.resolver_threads as usize,
            servers: args.dns_server.clone(),
            ..ResolverConfig::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn host() -> HostLimits {
        HostLimits {
            nofile: 20000,
            memlock: None,
        }
    }

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ringsocks").chain(extra.iter().copied())).unwrap()
    }

    #[test]
    fn shards_follow_the_cpu_list() {
        let cfg = build(&args(&["--cpus", "0-1,3"]), host()).unwrap();
        assert_eq!(cfg.cpus, vec![Some(0), Some(1), Some(3)]);
        let cfg = build(&args(&["--cpus", "1", "--shards", "3"]), host()).unwrap();
        assert_eq!(cfg.cpus, vec![Some(1), Some(1), Some(1)]);
    }

    #[test]
    fn too_many_connections_for_the_descriptor_limit() {
        let err = build(&args(&["--max-connections", "30000"]), host()).unwrap_err();
        assert!(err.0.contains("RLIMIT_NOFILE"), "{err}");
        let cfg = build(&args(&[]), host()).unwrap();
        assert_eq!(cfg.max_connections, 20000 - RESERVED_FDS as usize);
    }

    #[test]
    fn too_little_locked_memory() {
        let limits = HostLimits {
            memlock: Some(64 * 1024),
            ..host()
        };
        let err = build(&args(&["--shards", "4"]), limits).unwrap_err();
        assert!(err.0.contains("RLIMIT_MEMLOCK"), "{err}");
    }

    #[test]
    fn users_file_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("ringsocks-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        std::fs::write(&path, "alice:pw\nbroken\n").unwrap();
        let err = build(&args(&["--users", path.to_str().unwrap()]), host()).unwrap_err();
        assert!(err.0.contains("line 2"), "{err}");
        assert!(err.0.contains(path.to_str().unwrap()), "{err}");
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(build(&args(&["--users", path.to_str().unwrap()]), host()).is_err());
        let missing = dir.join("missing");
        let err = build(&args(&["--users", missing.to_str().unwrap()]), host()).unwrap_err();
        assert!(err.0.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
