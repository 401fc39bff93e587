//! The result of one run, as every mode reports it: a human summary, one JSON object,
//! and the histogram for `.hgrm` files and charts.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cost::{HarnessCost, ServerCost};
use crate::stats::Percentiles;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// Server memory per connection, from the idle mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerConnection {
    pub connections: u64,
    pub rss_before: u64,
    pub pss_before: u64,
    pub rss_after: u64,
    pub pss_after: u64,
    pub rss_per_conn: f64,
    pub pss_per_conn: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "throughput", "latency", "connect", "udp", "idle".
    pub mode: &'static str,
    /// The parameters, e.g. "16 connections, 64 B, closed loop".
    pub setup: String,
    /// "direct" or "socks5://HOST:PORT".
    pub route: String,
    pub window_s: f64,
    /// What one operation is: "request", "session", "datagram", "connection", "byte".
    pub unit: &'static str,
    /// Operations completed in the window.
    pub ops: u64,
    pub ops_per_s: f64,
    /// Bytes delivered in the window (throughput mode).
    pub bytes: u64,
    pub gbit_per_s: Option<f64>,
    /// Datagrams sent in the window and the fraction that never came back (udp mode).
    pub sent: Option<u64>,
    pub loss: Option<f64>,
    /// Operations begun in the window that had not finished when the drain ended; their
    /// latency is counted up to the drain's end.
    pub unfinished: u64,
    /// Transport failures tolerated under --max-errors.
    pub errors: u64,
    pub latency: Option<Percentiles>,
    /// Open loop only: how late the harness sent scheduled requests, a check on the
    /// harness and the machine rather than the server.
    pub send_lag: Option<Percentiles>,
    pub server: Option<ServerCost>,
    /// Server CPU-µs per operation.
    pub server_us_per_op: Option<f64>,
    /// Server CPU-seconds per GiB relayed.
    pub server_s_per_gib: Option<f64>,
    pub per_connection: Option<PerConnection>,
    pub harness: HarnessCost,
    /// Things the reader must know, e.g. the harness was the bottleneck.
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

impl Report {
    /// A report of `ops` operations over `window_s` seconds with every optional figure
    /// empty; modes fill what they measured with `..Report::new(...)`.
    pub fn new(
        mode: &'static str,
        unit: &'static str,
        ops: u64,
        window_s: f64,
        harness: HarnessCost,
    ) -> Report {
        Report {
            mode,
            setup: String::new(),
            route: String::new(),
            window_s,
            unit,
            ops,
            ops_per_s: ops as f64 / window_s,
            bytes: 0,
            gbit_per_s: None,
            sent: None,
            loss: None,
            unfinished: 0,
            errors: 0,
            latency: None,
            send_lag: None,
            server: None,
            server_us_per_op: None,
            server_s_per_gib: None,
            per_connection: None,
            harness,
            warnings: Vec::new(),
            histogram: None,
        }
    }

    /// Fills the derived cost figures and the warnings every mode shares.
    pub fn finish(mut self) -> Report {
        if let Some(s) = &self.server {
            if self.ops > 0 && self.unit != "byte" {
                self.server_us_per_op = Some(s.cpu_s * 1e6 / self.ops as f64);
            }
            if self.bytes > 0 {
                self.server_s_per_gib = Some(s.cpu_s / (self.bytes as f64 / GIB));
            }
        }
        if self.harness.saturated() {
            self.warnings.push(format!(
                "harness thread {} was busy {:.0}% of the window: the harness may have been the bottleneck (add --threads or --cpus)",
                self.harness.busiest_thread,
                self.harness.busiest_share * 100.0
            ));
        }
        if self.window_s < 1.0 && self.server.is_some() {
            self.warnings.push(format!(
                "a window under 1 s makes CPU figures coarse (one tick is {:?})",
                crate::cost::tick()
            ));
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// The human summary, several lines.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} via {}: {}; {:.2} s measured",
            self.mode, self.route, self.setup, self.window_s
        );
        match self.gbit_per_s {
            Some(g) => {
                let _ = writeln!(
                    o,
                    "  throughput      {g:.3} Gbit/s ({:.1} MiB/s, {} bytes)",
                    self.bytes as f64 / MIB / self.window_s.max(1e-9),
                    self.bytes
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "  {:<15} {} ({:.1}/s)",
                    format!("{}s", self.unit),
                    self.ops,
                    self.ops_per_s
                );
            }
        }
        if let (Some(sent), Some(loss)) = (self.sent, self.loss) {
            let _ = writeln!(
                o,
                "  sent            {sent} datagrams, loss {:.3}%",
                loss * 100.0
            );
        }
        if let Some(p) = &self.latency {
            let mut line = String::from("  latency µs     ");
            for (label, v) in p.labelled() {
                let _ = write!(line, " {label} {v:.1}");
            }
            let _ = writeln!(o, "{line}  (n={})", p.count);
        }
        if let Some(p) = &self.send_lag {
            let _ = writeln!(
                o,
                "  send lag µs     p50 {:.1} p99 {:.1} max {:.1}  (harness wake-up delay for scheduled sends)",
                p.p50_us, p.p99_us, p.max_us
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                o,
                "  unfinished      {} (counted with their wait up to the end of the drain)",
                self.unfinished
            );
        }
        if self.errors > 0 {
            let _ = writeln!(
                o,
                "  errors          {} (tolerated by --max-errors)",
                self.errors
            );
        }
        if let Some(s) = &self.server {
            let mut line = format!(
                "  server cpu      {:.3} cores ({:.3} CPU-s, pid {}, {} process{})",
                s.cores,
                s.cpu_s,
                s.pid,
                s.processes,
                if s.processes == 1 { "" } else { "es" }
            );
            if let Some(us) = self.server_us_per_op {
                let _ = write!(line, "; {us:.2} CPU-µs per {}", self.unit);
            }
            if let Some(g) = self.server_s_per_gib {
                let _ = write!(line, "; {g:.3} CPU-s per GiB");
            }
            let _ = writeln!(o, "{line}");
            let _ = writeln!(
                o,
                "  server memory   RSS {:.1} MiB, PSS {:.1} MiB",
                s.rss_bytes as f64 / MIB,
                s.pss_bytes as f64 / MIB
            );
        }
        if let Some(m) = &self.per_connection {
            let _ = writeln!(
                o,
                "  per connection  RSS {:.2} KiB, PSS {:.2} KiB ({} connections; RSS {:.1} -> {:.1} MiB)",
                m.rss_per_conn / 1024.0,
                m.pss_per_conn / 1024.0,
                m.connections,
                m.rss_before as f64 / MIB,
                m.rss_after as f64 / MIB
            );
        }
        if self.harness.busiest_thread.is_empty() {
            let _ = writeln!(o, "  harness cpu     {:.3} cores", self.harness.cores);
        } else {
            let _ = writeln!(
                o,
                "  harness cpu     {:.3} cores (busiest thread {} at {:.0}%)",
                self.harness.cores,
                self.harness.busiest_thread,
                self.harness.busiest_share * 100.0
            );
        }
        for w in &self.warnings {
            let _ = writeln!(o, "  warning: {w}");
        }
        o
    }
}
