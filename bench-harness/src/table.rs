//! The Markdown comparison table: which figures each mode shows, medians over repeats,
//! and the rendering.

use std::fmt::Write as _;

use crate::report::Report;

/// One column: its header and how to read it from a report.
pub struct Column {
    pub header: &'static str,
    pub get: fn(&Report) -> Option<f64>,
    pub decimals: usize,
}

const MIB: f64 = (1u64 << 20) as f64;

fn col(header: &'static str, decimals: usize, get: fn(&Report) -> Option<f64>) -> Column {
    Column {
        header,
        get,
        decimals,
    }
}

/// The columns for a mode ("throughput", "latency", ...).
pub fn columns(mode: &str) -> Vec<Column> {
    let server_cores = col("server cores", 2, |r| r.server.map(|s| s.cores));
    let harness_cores = col("harness cores", 2, |r| Some(r.harness.cores));
    let rss = col("server RSS MiB", 1, |r| {
        r.server.map(|s| s.rss_bytes as f64 / MIB)
    });
    let mut cols = match mode {
        "throughput" => vec![
            col("Gbit/s", 2, |r| r.gbit_per_s),
            col("server CPU-s/GiB", 3, |r| r.server_s_per_gib),
        ],
        "latency" => vec![
            col("req/s", 0, |r| Some(r.ops_per_s)),
            col("p50 µs", 1, |r| r.latency.map(|p| p.p50_us)),
            col("p90 µs", 1, |r| r.latency.map(|p| p.p90_us)),
            col("p99 µs", 1, |r| r.latency.map(|p| p.p99_us)),
            col("p99.9 µs", 1, |r| r.latency.map(|p| p.p999_us)),
            col("p99.99 µs", 1, |r| r.latency.map(|p| p.p9999_us)),
            col("max µs", 1, |r| r.latency.map(|p| p.max_us)),
            col("server CPU-µs/req", 2, |r| r.server_us_per_op),
        ],
        "connect" => vec![
            col("sessions/s", 0, |r| Some(r.ops_per_s)),
            col("p50 µs", 1, |r| r.latency.map(|p| p.p50_us)),
            col("p99 µs", 1, |r| r.latency.map(|p| p.p99_us)),
            col("p99.9 µs", 1, |r| r.latency.map(|p| p.p999_us)),
            col("max µs", 1, |r| r.latency.map(|p| p.max_us)),
            col("server CPU-µs/session", 2, |r| r.server_us_per_op),
        ],
        "udp" => vec![
            col("datagrams/s", 0, |r| Some(r.ops_per_s)),
            col("loss %", 3, |r| r.loss.map(|l| l * 100.0)),
            col("p50 µs", 1, |r| r.latency.map(|p| p.p50_us)),
            col("p99 µs", 1, |r| r.latency.map(|p| p.p99_us)),
            col("p99.9 µs", 1, |r| r.latency.map(|p| p.p999_us)),
            col("server CPU-µs/datagram", 2, |r| r.server_us_per_op),
        ],
        "idle" => vec![
            col("connections", 0, |r| Some(r.ops as f64)),
            col("RSS KiB/conn", 2, |r| {
                r.per_connection.map(|m| m.rss_per_conn / 1024.0)
            }),
            col("PSS KiB/conn", 2, |r| {
                r.per_connection.map(|m| m.pss_per_conn / 1024.0)
            }),
        ],
        _ => Vec::new(),
    };
    cols.extend([server_cores, rss, harness_cores]);
    cols
}

/// The median of the values present; `None` when there are none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// A table row: a server and either its runs or why it has none.
pub struct Row<'a> {
    pub server: &'a str,
    pub runs: Vec<&'a Report>,
    /// The first failure, if any run failed.
    pub error: Option<&'a str>,
}

/// Renders one case: medians of each column per server; a server whose every run
/// failed shows the failure instead of figures.
pub fn render(cols: &[Column], rows: &[Row<'_>]) -> String {
    let mut o = String::from("| server | runs |");
    for c in cols {
        let _ = write!(o, " {} |", c.header);
    }
    o.push_str("\n|---|---:|");
    for _ in cols {
        o.push_str("---:|");
    }
    o.push('\n');
    for row in rows {
        let _ = write!(o, "| {} | {} |", row.server, row.runs.len());
        if row.runs.is_empty() {
            let why = row.error.unwrap_or("no run").replace('|', "\\|");
            let _ = write!(o, " failed: {why} |");
            for _ in 1..cols.len() {
                o.push_str(" |");
            }
        } else {
            for c in cols {
                let v = median(row.runs.iter().filter_map(|r| (c.get)(r)).collect());
                match v {
                    Some(v) => {
                        let _ = write!(o, " {:.*} |", c.decimals, v);
                    }
                    None => o.push_str(" – |"),
                }
            }
        }
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![f64::NAN]), None);
    }

    #[test]
    fn every_mode_has_columns() {
        for m in ["throughput", "latency", "connect", "udp", "idle"] {
            assert!(columns(m).len() > 3, "{m}");
        }
    }
}
