//! Command-line flags as typed, each value checked on its own. How values combine (and
//! what the host allows) is decided in [`crate::config`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

/// A SOCKS4 / SOCKS4a / SOCKS5 proxy server on per-core io_uring shards.
#[derive(Debug, Parser)]
#[command(name = "ringsocks", version, about)]
pub struct Args {
    /// Address to listen on (repeatable; IPv4 or [IPv6]:PORT; port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1080")]
    pub listen: Vec<SocketAddr>,

    /// Users file: `username:password` per line. With it, SOCKS5 clients must
    /// authenticate (RFC 1929) and SOCKS4/4a is refused.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Number of shard threads (default: one per CPU this process may run on).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: Option<u32>,

    /// CPUs to pin shards to, e.g. `0-3,8` (default: this process's CPU set).
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Time a client has to finish its handshake.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub handshake_timeout: Duration,

    /// Time an outbound connect (per address) may take.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// A relayed session with no traffic either way for this long is closed.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// Concurrent sessions, all shards together (default: what RLIMIT_NOFILE allows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Size of each relay buffer, in KiB.
    #[arg(long, value_name = "KIB", default_value = "32", value_parser = clap::value_parser!(u32).range(4..=1024))]
    pub buffer_size: u32,

    /// Relay buffers per shard (a power of two).
    #[arg(long, value_name = "N", default_value = "512", value_parser = parse_buffer_count)]
    pub buffers: u16,

    /// UDP ASSOCIATE: bind relay sockets on this address instead of the one the client
    /// connected to.
    #[arg(long, value_name = "ADDR", value_parser = parse_specific_ip)]
    pub udp_bind: Option<IpAddr>,

    /// UDP ASSOCIATE: take relay ports from this range, e.g. `40000-40999`.
    #[arg(long, value_name = "LO-HI", value_parser = parse_port_range)]
    pub udp_port_range: Option<PortRange>,

    /// UDP ASSOCIATE: address to advertise in replies (the public address behind NAT).
    #[arg(long, value_name = "ADDR", value_parser = parse_specific_ip)]
    pub udp_public_addr: Option<IpAddr>,

    /// UDP ASSOCIATE: an association without a datagram either way for this long ends.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_secs)]
    pub udp_idle_timeout: Duration,

    /// Largest UDP payload relayed, in bytes (larger datagrams are dropped).
    #[arg(long, value_name = "BYTES", default_value = "2000", value_parser = clap::value_parser!(u32).range(512..=65507))]
    pub udp_max_datagram: u32,

    /// UDP buffers per shard (a power of two).
    #[arg(long, value_name = "N", default_value = "1024", value_parser = parse_buffer_count)]
    pub udp_buffers: u16,

    /// BIND: listen on this address instead of the one facing the expected peer.
    #[arg(long, value_name = "ADDR", value_parser = parse_specific_ip)]
    pub bind_addr: Option<IpAddr>,

    /// DNS server to query instead of the system resolver (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_server: Vec<SocketAddr>,

    /// Resolver threads.
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub resolver_threads: u32,

    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: LogLevel,
}

/// CPU numbers, in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("`{s}` is not a port range like 40000-40999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(PortRange(lo, hi))
}

/// An IP address other than 0.0.0.0 or ::.
fn parse_specific_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address"))?;
    if ip.is_unspecified() {
        return Err(format!(
            "`{s}` is a wildcard; give the address clients can reach"
        ));
    }
    Ok(ip)
}

/// Seconds, fractions allowed ("0.5"); more than zero.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!("`{s}` must be more than 0 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A CPU list such as `0-3,8`.
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let bad = || format!("`{part}` in `{s}` is not a CPU or a range like 0-3");
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi >= 4096 {
            return Err(bad());
        }
        for cpu in lo..=hi {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    Ok(CpuList(cpus))
}

fn parse_buffer_count(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if n.is_power_of_two() && (8..=32768).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` must be a power of two from 8 to 32768")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8").unwrap().0, vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("2").unwrap().0, vec![2]);
        assert_eq!(parse_cpu_list("1,1-2").unwrap().0, vec![1, 2]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_secs("300").unwrap(), Duration::from_secs(300));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("ten").is_err());
    }

    #[test]
    fn port_ranges_and_addresses() {
        assert_eq!(
            parse_port_range("40000-40999").unwrap(),
            PortRange(40000, 40999)
        );
        assert_eq!(parse_port_range("5-5").unwrap(), PortRange(5, 5));
        assert!(parse_port_range("0-5").is_err());
        assert!(parse_port_range("9-5").is_err());
        assert!(parse_port_range("9").is_err());
        assert!(parse_specific_ip("0.0.0.0").is_err());
        assert!(parse_specific_ip("::").is_err());
        assert!(parse_specific_ip("192.0.2.1").is_ok());
    }

    #[test]
    fn buffer_counts() {
        assert_eq!(parse_buffer_count("512").unwrap(), 512);
        assert!(parse_buffer_count("500").is_err());
        assert!(parse_buffer_count("4").is_err());
    }

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["ringsocks"]).unwrap();
        assert_eq!(args.listen, vec!["127.0.0.1:1080".parse().unwrap()]);
        assert_eq!(args.handshake_timeout, Duration::from_secs(10));
        assert_eq!(args.idle_timeout, Duration::from_secs(300));
    }
}
