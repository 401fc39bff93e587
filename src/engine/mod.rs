//! The io_uring runtime: one shard thread per CPU, each with its own ring, listeners,
//! buffer pool, timer wheel and sessions.
//!
//! [`Server::start`] binds every listener and builds every shard before it returns, so each
//! start-up problem surfaces as one [`StartError`] naming what to change.

mod accept;
mod admission;
mod bind;
mod bufring;
mod conn;
mod connect;
mod mailbox;
mod mmap;
mod negotiate;
mod proxy_header;
mod relay;
mod ring;
mod scratch;
mod segs;
mod shard;
mod sockaddr;
mod splice;
mod sys;
mod teardown;
mod timer;
mod token;
mod udp;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::policy::{Limiter, NetSet, Policy};
use crate::resolve::{Resolver, ResolverConfig};
use crate::telemetry::{AccessLog, RuleRegistry, ShardStats, Sources};
use crate::workers::Workers;
use arc_swap::ArcSwap;
use mailbox::{Mailbox, Message};
use shard::{Active, Shard, Shared};

pub use timer::TimerWheel;
pub use token::{Op, Token};

/// Everything the engine needs, already validated.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub listen: Vec<SocketAddr>,
    /// One entry per `listen` address: the sources trusted to send a PROXY protocol
    /// header on it, or `None` for a plain SOCKS listener.
    pub proxy_protocol: Vec<Option<Arc<NetSet>>>,
    /// One entry per shard: the CPU it is pinned to, or `None` to leave it unpinned.
    pub cpus: Vec<Option<usize>>,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Concurrent sessions, all shards together.
    pub max_connections: usize,
    /// Direct-descriptor slots per shard (accepted clients).
    pub files_per_shard: u32,
    pub buffer_size: u32,
    /// Provided buffers per shard (a power of two).
    pub buffer_count: u16,
    /// Pipe size for bulk relays (splice.rs), in bytes; 0 keeps them on relay buffers.
    pub splice_pipe: u32,
    /// Regular descriptors the process may hold for sessions (RLIMIT_NOFILE less a
    /// reserve): outbound sockets first, splicing only in what they leave.
    pub descriptor_room: usize,
    /// UDP ASSOCIATE: bind relay sockets here instead of the control connection's address.
    pub udp_bind: Option<IpAddr>,
    /// UDP ASSOCIATE: relay ports come from this range.
    pub udp_port_range: Option<(u16, u16)>,
    /// UDP ASSOCIATE: advertise this address in BND.ADDR (behind NAT).
    pub udp_public: Option<IpAddr>,
    pub udp_idle_timeout: Duration,
    /// Datagram buffers: size (the largest datagram relayed, plus 44 bytes) and count per
    /// shard (a power of two).
    pub udp_buffer_size: u32,
    pub udp_buffer_count: u16,
    /// Largest payload relayed; larger datagrams are dropped.
    pub udp_max_payload: u32,
    /// BIND: listen here instead of the address facing the expected peer.
    pub bind_addr: Option<IpAddr>,
    pub resolver: ResolverConfig,
    /// Rules, egress, limits and users.
    pub policy: Arc<Policy>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1080))],
            proxy_protocol: vec![None],
            cpus: vec![None],
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            files_per_shard: 10_000,
            buffer_size: 64 * 1024,
            buffer_count: 256,
            splice_pipe: 256 * 1024,
            descriptor_room: 10_000,
            udp_bind: None,
            udp_port_range: None,
            udp_public: None,
            udp_idle_timeout: Duration::from_secs(300),
            udp_buffer_size: 2048,
            udp_buffer_count: 1024,
            udp_max_payload: 2000,
            bind_addr: None,
            resolver: ResolverConfig::default(),
            policy: Arc::default(),
        }
    }
}

/// A start-up failure, worded as what to change.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn bind_error(addr: SocketAddr, e: io::Error) -> StartError {
    let why = match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            "is already in use: stop the other server or choose another --listen".to_string()
        }
        Some(libc::EADDRNOTAVAIL) => "is not an address of this host: fix --listen".to_string(),
        Some(libc::EACCES) => {
            "needs privileges (ports below 1024): run as root or choose a port ≥ 1024".to_string()
        }
        _ => format!("cannot be bound: {e}"),
    };
    StartError(format!("listen address {addr} {why}"))
}

fn ring_error(e: io::Error) -> StartError {
    StartError(match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EACCES) => format!(
            "io_uring is unavailable ({e}): set sysctl kernel.io_uring_disabled=0, and in a \
             container use a seccomp profile that allows io_uring_setup, io_uring_enter and \
             io_uring_register"
        ),
        Some(libc::EINVAL) => format!(
            "this kernel lacks io_uring features ringsocks needs ({e}): use Linux 6.8 or later"
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring could not allocate its rings ({e}): raise RLIMIT_MEMLOCK (ulimit -l, \
             LimitMEMLOCK=) or lower --buffers"
        ),
        Some(libc::EMFILE) | Some(libc::ENFILE) => format!(
            "too few file descriptors for the direct-descriptor table ({e}): raise \
             RLIMIT_NOFILE (ulimit -n, LimitNOFILE=) or lower --max-connections"
        ),
        _ => format!("io_uring set-up failed: {e}"),
    })
}

/// The oldest kernel with every io_uring operation the engine uses: socket commands
/// (SO_PEERNAME, 6.7) and installing a direct descriptor as a regular one (6.8).
const MIN_KERNEL: (u32, u32) = (6, 8);

/// Refuses kernels too old for the engine, naming the version found.
fn check_kernel() -> Result<(), StartError> {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => kernel_supported(release.trim()),
        // Unknown (no /proc): io_uring set-up reports what is missing.
        Err(_) => Ok(()),
    }
}

/// Whether `release` (as `uname -r` prints it) is at least [`MIN_KERNEL`]; a release
/// that does not parse is let through, for io_uring set-up to judge.
fn kernel_supported(release: &str) -> Result<(), StartError> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) if (major, minor) < MIN_KERNEL => Err(StartError(format!(
            "this kernel is Linux {release}; ringsocks needs Linux {}.{} or later for its \
             io_uring operations",
            MIN_KERNEL.0, MIN_KERNEL.1
        ))),
        _ => Ok(()),
    }
}

/// What the process around the engine provides to it.
#[derive(Default)]
pub struct Observers {
    /// Where finished sessions are logged.
    pub access_log: Option<Arc<AccessLog>>,
}

/// A running server.
pub struct Server {
    addrs: Vec<SocketAddr>,
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// One message per shard that has finished its loop.
    finished: mpsc::Receiver<()>,
    /// Shards whose end has not been seen on `finished`.
    running: usize,
    resolver: Resolver,
    shared: Arc<Shared>,
    stats: Vec<Arc<ShardStats>>,
    rules: RuleRegistry,
}

/// Reject-counter labels for a rule list: each rule's name or position, then the
/// default action.
fn rule_labels(policy: &Policy) -> Vec<String> {
    let mut labels: Vec<String> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.name
                .as_deref()
                .map_or_else(|| format!("rule {}", i + 1), str::to_string)
        })
        .collect();
    labels.push("default".to_string());
    labels
}

impl Server {
    /// Binds the listeners, starts the resolver and the shards, and returns once every
    /// shard is ready to accept.
    pub fn start(config: EngineConfig) -> Result<Server, StartError> {
        Server::start_with(config, Observers::default())
    }

    pub fn start_with(
        mut config: EngineConfig,
        observers: Observers,
    ) -> Result<Server, StartError> {
        if config.cpus.is_empty() {
            return Err(StartError("at least one shard is needed".into()));
        }
        check_kernel()?;
        let mut addrs = Vec::new();
        for &addr in &config.listen {
            addrs.push(sys::claim(addr).map_err(|e| bind_error(addr, e))?);
        }
        config.listen = addrs.clone();
        let mut per_shard = Vec::new();
        for _ in &config.cpus {
            let mut socks = Vec::new();
            for &addr in &addrs {
                socks.push((sys::listener(addr).map_err(|e| bind_error(addr, e))?, addr));
            }
            per_shard.push(socks);
        }
        let resolver = Resolver::start(config.resolver.clone())
            .map_err(|e| StartError(format!("cannot start resolver threads: {e}")))?;
        let workers = Workers::start(2, 1024)
            .map_err(|e| StartError(format!("cannot start worker threads: {e}")))?;
        let cpus = config.cpus.clone();
        let rules = RuleRegistry::new(cpus.len());
        let policy = config.policy.clone();
        let active = Active {
            rejects: rules.install(rule_labels(&policy)),
            policy,
        };
        let shared = Arc::new(Shared {
            config,
            resolver: resolver.clone(),
            active: AtomicUsize::new(0),
            splice_fds: AtomicUsize::new(0),
            policy: ArcSwap::from_pointee(active),
            limiter: Limiter::new(),
            access_log: observers.access_log,
            workers,
        });
        let stats: Vec<Arc<ShardStats>> = (0..cpus.len())
            .map(|i| Arc::new(ShardStats::new(i)))
            .collect();
        let (finished_tx, finished) = mpsc::channel();
        let mut server = Server {
            addrs,
            mailboxes: Vec::new(),
            threads: Vec::new(),
            finished,
            running: 0,
            resolver,
            shared: shared.clone(),
            stats: stats.clone(),
            rules,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        for (i, (cpu, listeners)) in cpus.into_iter().zip(per_shard).enumerate() {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let finished = finished_tx.clone();
            let stats = stats[i].clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    let result = run_shard(i, cpu, stats, shared, listeners, &ready);
                    let _ = finished.send(());
                    result
                })
                .map_err(|e| StartError(format!("cannot spawn shard thread: {e}")))?;
            server.threads.push(thread);
            server.running += 1;
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(mailbox)) => server.mailboxes.push(mailbox),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => failure = failure.or(Some(StartError("a shard died at start-up".into()))),
            }
        }
        if let Some(e) = failure {
            server.stop();
            return Err(e);
        }
        Ok(server)
    }

    /// The bound listen addresses (port 0 resolved), in `--listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Sessions open right now, all shards together.
    pub fn active_sessions(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// What the metrics exporter reads (process figures are the caller's).
    pub fn sources(&self) -> Sources {
        Sources {
            rules: Some(self.rules.clone()),
            resolver: Some(self.resolver.stats()),
            ..Sources::new(self.stats.clone())
        }
    }

    /// Puts a new policy (rules, users, limits, egress) in force for the requests that
    /// follow; sessions already open keep what they were granted.
    pub fn reload(&self, policy: Arc<Policy>) {
        let rejects = self.rules.install(rule_labels(&policy));
        self.shared
            .policy
            .store(Arc::new(Active { policy, rejects }));
    }

    /// Stops accepting (listeners close, so a balancer moves new clients elsewhere);
    /// open sessions go on, and each shard ends when its last session does.
    pub fn begin_drain(&self) {
        for mailbox in &self.mailboxes {
            mailbox.post(Message::Drain);
        }
    }

    /// Waits up to `timeout` for every shard to end; true when they all have.
    pub fn wait_finished(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.running > 0 {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match self.finished.recv_timeout(wait) {
                Ok(()) => self.running -= 1,
                Err(_) => return false,
            }
        }
        true
    }

    /// Drains for up to `timeout`, then ends what is left. True if every session
    /// finished by itself.
    pub fn drain(&mut self, timeout: Duration) -> bool {
        self.begin_drain();
        let clean = self.wait_finished(timeout);
        self.stop();
        clean
    }

    /// Stops accepting, closes every session and waits for the shards to finish.
    pub fn stop(&mut self) {
        for mailbox in &self.mailboxes {
            mailbox.post(Message::Shutdown);
        }
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::error!("shard stopped with an error: {e}"),
                Err(_) => log::error!("shard thread panicked"),
            }
        }
        self.resolver.shutdown();
    }
}

/// A shard thread: pin, build, report readiness, run.
fn run_shard(
    index: usize,
    cpu: Option<usize>,
    stats: Arc<ShardStats>,
    shared: Arc<Shared>,
    listeners: Vec<(socket2::Socket, SocketAddr)>,
    ready: &mpsc::Sender<Result<Arc<Mailbox>, StartError>>,
) -> io::Result<()> {
    if let Some(cpu) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            let _ = ready.send(Err(StartError(format!(
                "cannot pin a shard to CPU {cpu}: it is not in this process's CPU set; fix --cpus"
            ))));
            return Ok(());
        }
    }
    match Shard::new(index, stats, shared, listeners) {
        Ok(shard) => {
            let _ = ready.send(Ok(shard.mailbox()));
            shard.run()
        }
        Err(e) => {
            let _ = ready.send(Err(ring_error(e)));
            Ok(())
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_supported;

    #[test]
    fn kernels_older_than_six_eight_are_refused_by_name() {
        let err = kernel_supported("6.7.12-amd64").unwrap_err();
        assert!(err.0.contains("Linux 6.7.12-amd64"), "{}", err.0);
        assert!(err.0.contains("6.8 or later"), "{}", err.0);
        assert!(kernel_supported("5.15.0-91-generic").is_err());
        for ok in ["6.8.0", "6.18.1-cloud", "7.0", "10.1.2"] {
            assert!(kernel_supported(ok).is_ok(), "{ok}");
        }
        // Unparseable releases are left to io_uring set-up.
        assert!(kernel_supported("weird").is_ok());
    }
}
