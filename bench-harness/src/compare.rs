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

pub use crate::cases::{CaseSpec, Kind, ServerSpec, DEFAULT_CASES};
use crate::chart::{self, Series};
use crate::cli::CompareArgs;
use crate::cost;
use crate::error::Error;
use crate::report::Report;
use crate::run::{Common, Route};
use crate::stats;
use crate::table::{self, Row};

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
    // Each server's memory before any traffic: the idle case measures growth from here,
    // since servers keep memory that earlier runs made them allocate.
    let mut baselines = Vec::with_capacity(ns);
    for s in &cfg.servers {
        baselines.push(match s.pid {
            Some(pid) => {
                let m = cost::sample_server(pid).map_err(|e| {
                    Error::io(
                        format!("server {} (pid {pid}): cannot read /proc", s.name),
                        e,
                    )
                })?;
                Some((m.rss, m.pss))
            }
            None => None,
        });
    }
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
                let result = case.run(common, baselines[si]).map_err(|e| e.to_string());
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

        // Latency curves: each server's median run by p99, so the chart shows the same
        // runs the medians in the table come from (merging all repeats would let one
        // disturbed run draw the whole tail).
        let mut series = Vec::new();
        for (si, s) in cfg.servers.iter().enumerate() {
            let mut ok: Vec<&Report> = runs[ci][si]
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter(|r| r.latency.is_some() && r.histogram.is_some())
                .collect();
            if ok.is_empty() {
                continue;
            }
            ok.sort_by(|a, b| {
                let p99 = |r: &Report| r.latency.map_or(0.0, |p| p.p99_us);
                p99(a).total_cmp(&p99(b))
            });
            let median = ok[(ok.len() - 1) / 2]
                .histogram
                .as_ref()
                .expect("filtered above");
            let hgrm = cfg.out.join(format!("{}-{}.hgrm", case.slug(), s.name));
            let mut f = fs::File::create(&hgrm).map_err(io(&hgrm))?;
            stats::write_hgrm(median, &mut f).map_err(io(&hgrm))?;
            files.push(hgrm);
            series.push(Series {
                name: s.name.clone(),
                points: stats::curve(median),
                count: median.len(),
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
