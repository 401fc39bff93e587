//! What `compare` runs: the servers (NAME=HOST:PORT[,pid=PID], or the direct path)
//! and the cases (a mode with parameters, `KIND[:key=value,...]`).

use crate::cli;
use crate::error::Error;
use crate::modes::connect::{self, ConnectConfig};
use crate::modes::idle::{self, IdleConfig};
use crate::modes::latency::{self, LatencyConfig};
use crate::modes::throughput::{self, Direction, ThroughputConfig};
use crate::modes::udp::{self, UdpConfig};
use crate::report::Report;
use crate::run::Common;

/// A server to compare, or the direct path.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub proxy: Option<std::net::SocketAddr>,
    pub pid: Option<u32>,
}

impl ServerSpec {
    /// Parses NAME=HOST:PORT[,pid=PID].
    pub fn parse(spec: &str) -> Result<ServerSpec, Error> {
        let bad = || {
            Error::Config(format!(
                "--server '{spec}': expected NAME=HOST:PORT[,pid=PID]"
            ))
        };
        let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
        let mut parts = rest.split(',');
        let addr = parts.next().filter(|a| !a.is_empty()).ok_or_else(bad)?;
        let mut pid = None;
        for p in parts {
            match p.split_once('=') {
                Some(("pid", v)) => {
                    pid = Some(v.parse().map_err(|_| {
                        Error::Config(format!("--server '{spec}': pid '{v}' is not a number"))
                    })?)
                }
                _ => return Err(bad()),
            }
        }
        if name.is_empty() || name == "direct" {
            return Err(Error::Config(format!(
                "--server '{spec}': the name must be non-empty and not 'direct'"
            )));
        }
        Ok(ServerSpec {
            name: name.to_string(),
            proxy: Some(cli::resolve(addr)?),
            pid,
        })
    }

    pub fn direct() -> ServerSpec {
        ServerSpec {
            name: "direct".into(),
            proxy: None,
            pid: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ThroughputUp,
    ThroughputDown,
    Latency,
    LatencyRate,
    Connect,
    Udp,
    UdpFlood,
    Idle,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "throughput-up" => Kind::ThroughputUp,
            "throughput-down" => Kind::ThroughputDown,
            "latency" => Kind::Latency,
            "latency-rate" => Kind::LatencyRate,
            "connect" => Kind::Connect,
            "udp" => Kind::Udp,
            "udp-flood" => Kind::UdpFlood,
            "idle" => Kind::Idle,
            _ => return None,
        })
    }
}

/// A case: a mode with its parameters, e.g. `latency-rate:rate=20000,conns=32`.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    pub spec: String,
    pub kind: Kind,
    pub conns: usize,
    pub size: usize,
    pub rate: Option<f64>,
}

/// The cases run when none is given.
pub const DEFAULT_CASES: [&str; 7] = [
    "throughput-up",
    "throughput-down",
    "latency",
    "latency-rate",
    "connect",
    "udp",
    "idle",
];

impl CaseSpec {
    pub fn parse(spec: &str) -> Result<CaseSpec, Error> {
        let (kind_s, params) = spec.split_once(':').unwrap_or((spec, ""));
        let kind = Kind::parse(kind_s).ok_or_else(|| {
            Error::Config(format!(
                "--case '{spec}': unknown kind '{kind_s}' (one of {})",
                "throughput-up, throughput-down, latency, latency-rate, connect, udp, udp-flood, idle"
            ))
        })?;
        let (conns, size, rate) = match kind {
            Kind::ThroughputUp | Kind::ThroughputDown => (4, 65536, None),
            Kind::Latency => (16, 64, None),
            Kind::LatencyRate => (16, 64, Some(5000.0)),
            Kind::Connect => (8, 32, None),
            Kind::Udp | Kind::UdpFlood => (4, 64, None),
            Kind::Idle => (1000, 64, None),
        };
        let mut c = CaseSpec {
            spec: spec.to_string(),
            kind,
            conns,
            size,
            rate,
        };
        for kv in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::Config(format!("--case '{spec}': '{kv}' is not key=value"))
            })?;
            let num = || -> Result<f64, Error> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0 && x.is_finite())
                    .ok_or_else(|| {
                        Error::Config(format!("--case '{spec}': {k}={v} is not a positive number"))
                    })
            };
            match k {
                "conns" | "connections" | "workers" | "assoc" | "associations" => {
                    c.conns = num()? as usize
                }
                "size" | "chunk" | "concurrency" => c.size = num()? as usize,
                "rate" => c.rate = Some(num()?),
                _ => {
                    return Err(Error::Config(format!(
                        "--case '{spec}': unknown key '{k}' (conns, size, rate)"
                    )))
                }
            }
        }
        if kind == Kind::LatencyRate && c.rate.is_none() {
            c.rate = Some(5000.0);
        }
        Ok(c)
    }

    /// Runs this case once over `common` (which carries the route and pid);
    /// `memory_baseline` is the server's (RSS, PSS) before the comparison began.
    pub fn run(
        &self,
        common: Common,
        memory_baseline: Option<(u64, u64)>,
    ) -> Result<Report, Error> {
        match self.kind {
            Kind::ThroughputUp | Kind::ThroughputDown => throughput::run(&ThroughputConfig {
                common,
                connections: self.conns,
                direction: if self.kind == Kind::ThroughputUp {
                    Direction::Upload
                } else {
                    Direction::Download
                },
                chunk: self.size,
                verify: false,
            }),
            Kind::Latency | Kind::LatencyRate => latency::run(&LatencyConfig {
                common,
                connections: self.conns,
                size: self.size,
                rate: if self.kind == Kind::LatencyRate {
                    self.rate
                } else {
                    None
                },
            }),
            Kind::Connect => connect::run(&ConnectConfig {
                common,
                workers: self.conns,
                size: self.size,
            }),
            Kind::Udp | Kind::UdpFlood => udp::run(&UdpConfig {
                common,
                associations: self.conns,
                size: self.size,
                flood: self.kind == Kind::UdpFlood,
                rate: if self.kind == Kind::UdpFlood {
                    self.rate
                } else {
                    None
                },
            }),
            Kind::Idle => idle::run(&IdleConfig {
                common,
                connections: self.conns,
                concurrency: self.size,
                baseline: memory_baseline,
            }),
        }
    }

    /// A file-name-safe form of the spec.
    pub fn slug(&self) -> String {
        self.spec
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_and_case_specs() {
        let s = ServerSpec::parse("dante=127.0.0.1:1080,pid=42").unwrap();
        assert_eq!((s.name.as_str(), s.pid), ("dante", Some(42)));
        assert!(ServerSpec::parse("dante").is_err());
        assert!(ServerSpec::parse("direct=127.0.0.1:1").is_err());
        assert!(ServerSpec::parse("x=127.0.0.1:1,cpu=2").is_err());

        let c = CaseSpec::parse("latency-rate:rate=20000,conns=32").unwrap();
        assert_eq!(
            (c.kind, c.conns, c.rate),
            (Kind::LatencyRate, 32, Some(20000.0))
        );
        assert_eq!(c.slug(), "latency-rate_rate_20000_conns_32");
        assert_eq!(CaseSpec::parse("latency-rate").unwrap().rate, Some(5000.0));
        assert!(CaseSpec::parse("warp").is_err());
        assert!(CaseSpec::parse("udp:size=-1").is_err());
        assert!(CaseSpec::parse("udp:colour=red").is_err());
    }
}
