//! `compare`: a set of cases against several servers and the direct path in one
//! invocation. Runs alternate between servers (and the starting server rotates with
//! each repeat) so a drift of the machine — another tenant, thermal state — spreads over
//! all servers instead of favouring the one that ran first. Figures are medians over
//! the repeats. Writes `results.md`, `results.jsonl` (every run), one SVG chart of
//! latency percentile curves per case that measures latency, and `.hgrm` files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::chart::{self, Series};
use crate::cli::{self, CompareArgs};
use crate::error::Error;
use crate::modes::connect::{self, ConnectConfig};
use crate::modes::idle::{self, IdleConfig};
use crate::modes::latency::{self, LatencyConfig};
use crate::modes::throughput::{self, Direction, ThroughputConfig};
use crate::modes::udp::{self, UdpConfig};
use crate::report::Report;
use crate::run::{Common, Route};
use crate::stats;
use crate::table::{self, Row};

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

    /// Runs this case once over `common` (which carries the route and pid).
    pub fn run(&self, common: Common) -> Result<Report, Error> {
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

#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Duration, warm-up, threads, auth...; route and pid are set per server.
    pub base: Common,
    pub servers: Vec<ServerSpec>,
    pub cases: Vec<CaseSpec>,
    pub repeats: usize,
    pub out: PathBuf,
}

impl CompareConfig {
    pub fn from_args(a: &CompareArgs) -> Result<CompareConfig, Error> {
        let base = a.common.to_common_without_proxy()?;
        let mut servers = Vec::new();
        if !a.no_direct {
            servers.push(ServerSpec::direct());
        }
        for s in &a.servers {
            servers.push(ServerSpec::parse(s)?);
        }
        let specs: Vec<&str> = if a.cases.is_empty() {
            DEFAULT_CASES.to_vec()
        } else {
            a.cases.iter().map(String::as_str).collect()
        };
        let cases = specs
            .into_iter()
            .map(CaseSpec::parse)
            .collect::<Result<_, _>>()?;
        if a.repeats == 0 {
            return Err(Error::Config("--repeats must be at least 1".into()));
        }
        Ok(CompareConfig {
            base,
            servers,
            cases,
            repeats: a.repeats,
            out: a.out.clone(),
        })
    }
}

impl cli::CommonArgs {
    /// The shared options for compare, where each server brings its own route.
    pub fn to_common_without_proxy(&self) -> Result<Common, Error> {
        let mut args = self.clone();
        args.proxy = None;
        let (user, pass) = (args.user.take(), args.pass.take());
        let mut c = args.to_common()?;
        if let (Some(user), Some(pass)) = (user, pass) {
            c.route.auth = Some(crate::socks::Auth { user, pass });
        }
        Ok(c)
    }
}

/// Every run's outcome, by case and server.
pub struct Results {
    /// `runs[case][server]`: the reports and failures of each repeat.
    pub runs: Vec<Vec<Vec<Result<Report, String>>>>,
    pub files: Vec<PathBuf>,
    pub markdown: String,
}

/// Runs the comparison, logging progress to `log`, and writes the result files.
pub fn run(cfg: &CompareConfig, log: &mut impl Write) -> Result<Results, Error> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::io(format!("cannot write {p}"), e)
    };
    fs::create_dir_all(&cfg.out).map_err(io(&cfg.out))?;
    let jsonl_path = cfg.out.join("results.jsonl");
    let mut jsonl = fs::File::create(&jsonl_path).map_err(io(&jsonl_path))?;
    let ns = cfg.servers.len();
    let mut runs: Vec<Vec<Vec<Result<Report, String>>>> =
        vec![vec![Vec::new(); ns]; cfg.cases.len()];
    let total = cfg.repeats * cfg.cases.len() * ns;
    let mut done = 0;
    for rep in 0..cfg.repeats {
        for (ci, case) in cfg.cases.iter().enumerate() {
            for k in 0..ns {
                let si = (k + rep) % ns;
                let server = &cfg.servers[si];
                done += 1;
                let mut common = cfg.base.clone();
                common.route = Route {
                    proxy: server.proxy,
                    auth: server.proxy.and(cfg.base.route.auth.clone()),
                };
                common.pid = server.pid;
                let _ = write!(
                    log,
                    "[{done}/{total}] {} via {} ... ",
                    case.spec, server.name
                );
                let _ = log.flush();
                let result = case.run(common).map_err(|e| e.to_string());
                let line = match &result {
                    Ok(r) => {
                        let _ = writeln!(log, "{}", headline(r));
                        json!({"repeat": rep, "case": case.spec, "server": server.name, "ok": true, "report": r})
                    }
                    Err(e) => {
                        let _ = writeln!(log, "failed: {e}");
                        json!({"repeat": rep, "case": case.spec, "server": server.name, "ok": false, "error": e})
                    }
                };
                writeln!(jsonl, "{line}").map_err(io(&jsonl_path))?;
                runs[ci][si].push(result);
                // Let the sockets of the last run leave TIME_WAIT churn behind.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let mut files = vec![jsonl_path];
    let markdown = write_outputs(cfg, &runs, &mut files)?;
    let _ = writeln!(log, "\n{markdown}");
    for f in &files {
        let _ = writeln!(log, "wrote {}", f.display());
    }
    Ok(Results {
        runs,
        files,
        markdown,
    })
}

fn headline(r: &Report) -> String {
    let mut s = match r.gbit_per_s {
        Some(g) => format!("{g:.3} Gbit/s"),
        None => format!("{:.0} {}s/s", r.ops_per_s, r.unit),
    };
    if let Some(p) = r.latency {
        s += &format!(", p50 {:.1} µs, p99 {:.1} µs", p.p50_us, p.p99_us);
    }
    if let Some(m) = r.per_connection {
        s += &format!(", {:.2} KiB RSS/conn", m.rss_per_conn / 1024.0);
    }
    s
}

fn write_outputs(
    cfg: &CompareConfig,
    runs: &[Vec<Vec<Result<Report, String>>>],
    files: &mut Vec<PathBuf>,
) -> Result<String, Error> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| Error::io(format!("cannot write {p}"), e)
    };
    let mut md = String::from("# SOCKS5 server comparison\n\n");
    md += &format!(
        "{} repeats per case, alternating servers; medians. Window {:?} after {:?} warm-up; {} harness thread(s){}.\n",
        cfg.repeats,
        cfg.base.duration,
        cfg.base.warmup,
        cfg.base.threads,
        if cfg.base.route.auth.is_some() { ", username/password authentication" } else { "" }
    );
    for (ci, case) in cfg.cases.iter().enumerate() {
        let first_ok = runs[ci].iter().flatten().find_map(|r| r.as_ref().ok());
        md += &format!("\n## {}\n\n", case.spec);
        if let Some(r) = first_ok {
            md += &format!("{}.\n\n", r.setup);
        }
        let mode = first_ok.map_or("", |r| r.mode);
        let cols = table::columns(mode);
        let rows: Vec<Row<'_>> = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(si, s)| Row {
                server: &s.name,
                runs: runs[ci][si]
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .collect(),
                error: runs[ci][si]
                    .iter()
                    .find_map(|r| r.as_ref().err().map(String::as_str)),
            })
            .collect();
        md += &table::render(&cols, &rows);

        // Latency curves: each server's histograms merged over the repeats.
        let mut series = Vec::new();
        for (si, s) in cfg.servers.iter().enumerate() {
            let mut merged = stats::histogram();
            for r in runs[ci][si].iter().filter_map(|r| r.as_ref().ok()) {
                if let Some(h) = &r.histogram {
                    stats::merge(&mut merged, h);
                }
            }
            if merged.is_empty() {
                continue;
            }
            let hgrm = cfg.out.join(format!("{}-{}.hgrm", case.slug(), s.name));
            let mut f = fs::File::create(&hgrm).map_err(io(&hgrm))?;
            stats::write_hgrm(&merged, &mut f).map_err(io(&hgrm))?;
            files.push(hgrm);
            series.push(Series {
                name: s.name.clone(),
                points: stats::curve(&merged),
                count: merged.len(),
            });
        }
        if !series.is_empty() {
            let title = format!(
                "{} — {}",
                case.spec,
                first_ok.map_or(String::new(), |r| r.setup.clone())
            );
            let svg_path = cfg.out.join(format!("{}.svg", case.slug()));
            fs::write(&svg_path, chart::percentile_svg(&title, &series)).map_err(io(&svg_path))?;
            files.push(svg_path.clone());
            md += &format!(
                "\n![{} latency percentiles]({})\n",
                case.spec,
                svg_path.file_name().expect("a file").to_string_lossy()
            );
        }
    }
    let md_path = cfg.out.join("results.md");
    fs::write(&md_path, &md).map_err(io(&md_path))?;
    files.push(md_path);
    Ok(md)
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
