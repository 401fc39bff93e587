//! Latency histograms (HdrHistogram, nanoseconds, 3 significant digits), the percentile
//! summary every report carries, and the `.hgrm` percentile distribution for plotting.

use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency tracked: one hour, far beyond any run; longer values saturate.
const HIGHEST_NS: u64 = 3_600_000_000_000;

/// Sub-buckets per bucket at 3 significant digits (2 × 10³ rounded up to a power of 2).
const SUB_BUCKETS: u32 = 2048;

/// An empty latency histogram in nanoseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("static histogram bounds are valid")
}

/// Records one latency; values out of range saturate rather than fail.
#[inline]
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    h.saturating_record(latency.as_nanos().min(HIGHEST_NS as u128).max(1) as u64);
}

/// Adds `from` into `into` (same bounds by construction).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms share their bounds");
}

/// The percentiles every latency figure is reported with, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    /// `None` for an empty histogram: there is nothing to report.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        })
    }

    /// `[(label, µs)]` in display order.
    pub fn labelled(&self) -> [(&'static str, f64); 6] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
            ("p99.99", self.p9999_us),
            ("max", self.max_us),
        ]
    }
}

/// Points of the percentile curve: (quantile, latency in µs), 5 steps per halving of the
/// remaining distance to 100 %, as HdrHistogram's own percentile output does.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

/// Writes the percentile distribution in HdrHistogram's text format (values in
/// milliseconds), readable by HdrHistogram's plotFiles page and wrk2 tooling.
pub fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    const MS: f64 = 1_000_000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / MS;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.6} {q:14.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.6} {q:14.12} {total:10}")?;
        }
    }
    let max = h.max() as f64 / MS;
    writeln!(
        out,
        "#[Mean    = {:12.6}, StdDeviation   = {:12.6}]",
        h.mean() / MS,
        h.stdev() / MS
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.6}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        SUB_BUCKETS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_recorded_values() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let p = Percentiles::of(&h).unwrap();
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() < 1.0, "{p:?}");
        assert!(Percentiles::of(&histogram()).is_none());
    }

    #[test]
    fn hgrm_lists_the_distribution_in_milliseconds() {
        let mut h = histogram();
        for us in [100u64, 200, 300, 4000] {
            record(&mut h, Duration::from_micros(us));
        }
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile"));
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        let cols: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2], "4");
        assert!((cols[0].parse::<f64>().unwrap() - 4.0).abs() < 0.01);
        assert!(text.contains("Total count    =            4"));
    }
}
