//! Command-line flags: clap structs that mirror the command line and only validate,
//! then conversion into each mode's configuration.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::compare::{self, CompareConfig};
use crate::error::Error;
use crate::modes::connect::ConnectConfig;
use crate::modes::idle::IdleConfig;
use crate::modes::latency::LatencyConfig;
use crate::modes::throughput::{Direction, ThroughputConfig};
use crate::modes::udp::UdpConfig;
use crate::modes::{connect, idle, latency, throughput, udp};
use crate::report::Report;
use crate::run::{Common, Route};
use crate::socks::Auth;

#[derive(Debug, Parser)]
#[command(
    name = "bench-harness",
    version,
    about = "SOCKS5 load generator: latency histograms, throughput, session and UDP rates, and what they cost the server",
    long_about = None,
    // A later flag overrides an earlier one, so scripts can put defaults first.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// N connections moving bulk data: upload to a sink, download from a source.
    Throughput(ThroughputArgs),
    /// Request/response ping-pong: closed loop, or open loop at --rate (coordinated omission corrected).
    Latency(LatencyArgs),
    /// Full sessions per second: connect, handshake, one echo, close.
    Connect(ConnectArgs),
    /// UDP ASSOCIATE: datagram ping-pong latency, or --flood for delivered rate and loss.
    Udp(UdpArgs),
    /// K idle relayed connections, and the server's memory per connection.
    Idle(IdleArgs),
    /// Runs a set of cases against several servers and the direct path, alternating, with repeats.
    Compare(CompareArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The SOCKS5 server under test; omit to measure the direct path.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// Length of the measured window (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Traffic before the window that is not measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Username for RFC 1929 authentication.
    #[arg(long, requires = "pass")]
    pub user: Option<String>,
    /// Password for RFC 1929 authentication.
    #[arg(long, requires = "user")]
    pub pass: Option<String>,
    /// PID of the server under test: its CPU time and memory (with all its threads and child processes) are reported per unit of work.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Client event-loop threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin harness threads to these CPUs, round-robin (e.g. 1 or 0,1 or 2-3).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Bound on connection set-up and on any one operation.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Transport failures tolerated before the run is reported as failed.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Print one JSON object per run instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Write the latency percentile distribution (HdrHistogram .hgrm text) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Up,
    Down,
    Both,
}

#[derive(Debug, Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections moving data at once.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub connections: usize,
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    pub direction: DirectionArg,
    /// Bytes per read or write call where bytes are copied (--verify reads); bulk bytes
    /// otherwise move by splice, without passing through the harness's memory.
    #[arg(long, default_value_t = 65536)]
    pub chunk: usize,
    /// Compare every relayed byte with what was sent (costs harness CPU); a difference fails the run.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Message size in bytes.
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Open loop: requests per second over all connections, latency from each request's intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Sessions in flight at once.
    #[arg(long, short = 'w', default_value_t = 8)]
    pub workers: usize,
    /// Bytes echoed in each session.
    #[arg(long, short = 's', default_value_t = 32)]
    pub size: usize,
}

#[derive(Debug, Args)]
pub struct UdpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// UDP associations, each with its own control connection and socket.
    #[arg(long, short = 'a', default_value_t = 4)]
    pub associations: usize,
    /// Payload bytes per datagram (at least 16).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Send without waiting for echoes: delivered datagrams/s and loss.
    #[arg(long)]
    pub flood: bool,
    /// With --flood: datagrams per second over all associations (default: as fast as possible).
    #[arg(long, requires = "flood")]
    pub rate: Option<f64>,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Idle connections to hold open (the window is how long they are held).
    #[arg(long, short = 'k', default_value_t = 1000)]
    pub connections: usize,
    /// Connections in set-up at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A server to compare: NAME=HOST:PORT[,pid=PID]. Repeat for each server.
    #[arg(long = "server", value_name = "SPEC", required = true)]
    pub servers: Vec<String>,
    /// Leave the direct path (no proxy) out of the comparison.
    #[arg(long)]
    pub no_direct: bool,
    /// A case: KIND[:key=value,...], KIND one of throughput-up, throughput-down, latency, latency-rate, connect, udp, udp-flood, idle. Repeat; default: a standard set.
    #[arg(long = "case", value_name = "SPEC")]
    pub cases: Vec<String>,
    /// Runs of every case against every server; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Directory for results.md, results.jsonl and the charts.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out: PathBuf,
}

/// Accepts "10s", "500ms", "1.5s", "2m", "250us" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use s, ms, us or m)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves HOST:PORT (IP literals, or names from /etc/hosts such as localhost).
pub fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    addr.to_socket_addrs()
        .map_err(|e| Error::Config(format!("cannot resolve '{addr}': {e}")))?
        .next()
        .ok_or_else(|| Error::Config(format!("'{addr}' resolves to no address")))
}

impl CommonArgs {
    pub fn auth(&self) -> Option<Auth> {
        match (&self.user, &self.pass) {
            (Some(u), Some(p)) => Some(Auth {
                user: u.clone(),
                pass: p.clone(),
            }),
            _ => None,
        }
    }

    pub fn to_common(&self) -> Result<Common, Error> {
        let proxy = self.proxy.as_deref().map(resolve).transpose()?;
        let route = Route {
            proxy,
            auth: self.auth(),
        };
        if route.auth.is_some() && proxy.is_none() {
            return Err(Error::Config("--user/--pass need --proxy".into()));
        }
        if self.duration.is_zero() {
            return Err(Error::Config("--duration must be above 0".into()));
        }
        if self.threads == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        let cpus = match &self.cpus {
            Some(spec) => crate::reactor::parse_cpus(spec).map_err(Error::Config)?,
            None => Vec::new(),
        };
        let mut c = Common::new(route, self.duration, self.warmup);
        c.pid = self.pid;
        c.threads = self.threads;
        c.cpus = cpus;
        c.timeout = self.timeout;
        c.max_errors = self.max_errors;
        Ok(c)
    }
}

impl CommonArgs {
    /// The shared options for compare, where each server brings its own route.
    pub fn to_common_without_proxy(&self) -> Result<Common, Error> {
        let mut args = self.clone();
        args.proxy = None;
        let (user, pass) = (args.user.take(), args.pass.take());
        let mut c = args.to_common()?;
        if let (Some(user), Some(pass)) = (user, pass) {
            c.route.auth = Some(Auth { user, pass });
        }
        Ok(c)
    }
}

/// Runs the command; prints reports on stdout.
pub fn execute(cli: Cli) -> Result<(), Error> {
    crate::raise_nofile();
    let (args, reports) = match cli.command {
        Command::Throughput(a) => {
            let common = a.common.to_common()?;
            let dirs: &[Direction] = match a.direction {
                DirectionArg::Up => &[Direction::Upload],
                DirectionArg::Down => &[Direction::Download],
                DirectionArg::Both => &[Direction::Upload, Direction::Download],
            };
            let mut reports = Vec::new();
            for &direction in dirs {
                let r = throughput::run(&ThroughputConfig {
                    common: common.clone(),
                    connections: a.connections,
                    direction,
                    chunk: a.chunk,
                    verify: a.verify,
                })?;
                emit(&a.common, &r)?;
                reports.push(r);
            }
            (a.common, reports)
        }
        Command::Latency(a) => {
            let r = latency::run(&LatencyConfig {
                common: a.common.to_common()?,
                connections: a.connections,
                size: a.size,
                rate: a.rate,
            })?;
            emit(&a.common, &r)?;
            (a.common, vec![r])
        }
        Command::Connect(a) => {
            let r = connect::run(&ConnectConfig {
                common: a.common.to_common()?,
                workers: a.workers,
                size: a.size,
            })?;
            emit(&a.common, &r)?;
            (a.common, vec![r])
        }
        Command::Udp(a) => {
            let r = udp::run(&UdpConfig {
                common: a.common.to_common()?,
                associations: a.associations,
                size: a.size,
                flood: a.flood,
                rate: a.rate,
            })?;
            emit(&a.common, &r)?;
            (a.common, vec![r])
        }
        Command::Idle(a) => {
            let r = idle::run(&IdleConfig {
                common: a.common.to_common()?,
                connections: a.connections,
                concurrency: a.concurrency,
                baseline: None,
            })?;
            emit(&a.common, &r)?;
            (a.common, vec![r])
        }
        Command::Compare(a) => {
            if a.common.proxy.is_some() {
                return Err(Error::Config(
                    "compare takes servers with --server NAME=HOST:PORT, not --proxy".into(),
                ));
            }
            let cfg = CompareConfig::from_args(&a)?;
            return compare::run(&cfg, &mut std::io::stdout()).map(|_| ());
        }
    };
    if let Some(path) = &args.hgrm {
        let hist = reports
            .iter()
            .find_map(|r| r.histogram.as_ref())
            .ok_or_else(|| {
                Error::Config("--hgrm: this mode records no latency histogram".into())
            })?;
        let mut f = std::fs::File::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        crate::stats::write_hgrm(hist, &mut f)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}

fn emit(args: &CommonArgs, r: &Report) -> Result<(), Error> {
    if args.json {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn flags_parse_into_a_config() {
        let cli = Cli::try_parse_from([
            "bench-harness",
            "latency",
            "--proxy",
            "127.0.0.1:1080",
            "--user",
            "u",
            "--pass",
            "p",
            "--rate",
            "1000",
            "--duration",
            "1s",
        ])
        .unwrap();
        let Command::Latency(a) = cli.command else {
            panic!("not latency")
        };
        let c = a.common.to_common().unwrap();
        assert_eq!(c.route.proxy, Some("127.0.0.1:1080".parse().unwrap()));
        assert_eq!(c.route.auth.unwrap().user, "u");
        assert_eq!(a.rate, Some(1000.0));
        assert!(Cli::try_parse_from(["bench-harness", "latency", "--user", "u"]).is_err());
    }
}
