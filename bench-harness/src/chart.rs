//! An SVG chart of latency percentile curves, one line per server, in the layout
//! HdrHistogram's plots use: x is the percentile on a log scale of 1/(1-p) (so the tail
//! gets the room), y is latency on a log scale (so a 20 µs direct path and a 2 ms
//! forking server fit on one plot).

use std::fmt::Write as _;

const W: f64 = 960.0;
const H: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 50.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One line: its name, its points (quantile 0..=1, latency µs) and the sample count.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub count: u64,
}

/// x coordinate in decades of 1/(1-q); q = 1 (the maximum) sits at 1/count.
fn decades(q: f64, count: u64) -> f64 {
    let tail = if q >= 1.0 {
        1.0 / count.max(1) as f64
    } else {
        1.0 - q
    };
    (1.0 / tail).log10().max(0.0)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        d => format!("{}%", 100.0 - 100.0 / 10f64.powi(d as i32)).replace(".0%", "%"),
    }
}

fn us_label(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{} s", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else {
        format!("{v} µs")
    }
}

/// Renders the chart; empty series are left out of the plot but named in the legend.
pub fn percentile_svg(title: &str, series: &[Series]) -> String {
    let plotted: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    let x_max = plotted
        .iter()
        .flat_map(|s| s.points.iter().map(move |&(q, _)| decades(q, s.count)))
        .fold(1.0f64, f64::max)
        .ceil();
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for s in &plotted {
        for &(_, v) in &s.points {
            lo = lo.min(v.max(0.001));
            hi = hi.max(v.max(0.001));
        }
    }
    if lo > hi {
        (lo, hi) = (1.0, 1000.0);
    }
    let y_lo = lo.log10().floor();
    let y_hi = hi.log10().ceil().max(y_lo + 1.0);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |d: f64| LEFT + d / x_max * pw;
    let py = |v: f64| TOP + ph - (v.max(0.001).log10() - y_lo) / (y_hi - y_lo) * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and axis labels.
    for d in 0..=x_max as u32 {
        let x = px(d as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 20.0,
            percentile_label(d)
        );
    }
    let mut e = y_lo as i32;
    while e as f64 <= y_hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v.log10() > y_hi + 1e-9 {
                continue;
            }
            let y = py(v);
            let stroke = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(
                o,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                us_label(v)
            );
        }
        e += 1;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    let _ = writeln!(
        o,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Curves and legend.
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !s.points.is_empty() {
            let mut pts = String::new();
            // The maximum's x (1/count) can fall left of the last quantile step; the
            // curve never runs backwards.
            let mut x = 0.0f64;
            for &(q, v) in &s.points {
                x = x.max(decades(q, s.count));
                let _ = write!(pts, "{:.1},{:.1} ", px(x), py(v));
            }
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
                pts.trim_end(),
                escape(&s.name)
            );
        }
        let ly = TOP + 18.0 + 20.0 * i as f64;
        let label = if s.points.is_empty() {
            format!("{} (no data)", s.name)
        } else {
            s.name.clone()
        };
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 14.0,
            LEFT + 40.0,
            LEFT + 46.0,
            ly + 4.0,
            escape(&label)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_polyline_per_series_with_data() {
        let a = Series {
            name: "direct".into(),
            points: vec![(0.0, 20.0), (0.5, 25.0), (0.99, 40.0), (1.0, 90.0)],
            count: 1000,
        };
        let b = Series {
            name: "dante <1.4>".into(),
            points: vec![(0.0, 200.0), (0.9, 300.0), (1.0, 4000.0)],
            count: 100,
        };
        let c = Series {
            name: "none".into(),
            points: vec![],
            count: 0,
        };
        let svg = percentile_svg("latency", &[a, b, c]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("dante &lt;1.4&gt;"));
        assert!(svg.contains("none (no data)"));
        assert!(svg.contains("99.9%"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn maximum_sits_at_one_over_count() {
        assert_eq!(decades(0.0, 10), 0.0);
        assert!((decades(0.99, 10) - 2.0).abs() < 1e-9);
        assert!((decades(1.0, 1000) - 3.0).abs() < 1e-9);
    }
}
