//! The Prometheus text exposition format (0.0.4) of everything the server counts: sums over
//! the shards, plus the loop figures of each shard labelled `shard="N"`.

use std::fmt::{Display, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::access_log::AccessLogStats;
use super::counter::HistogramSnapshot;
use super::labels::{CloseReason, Direction, Limit, Pool, UdpDrop, COMMANDS, REPLIES, STATES};
use super::process::ProcessStats;
use super::rules::RuleRegistry;
use super::shard::{ShardSnapshot, ShardStats};
use crate::resolve::ResolverStats;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the exporter reads. Only `shards` is required.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// One per shard, in shard order.
    pub shards: Vec<Arc<ShardStats>>,
    pub rules: Option<RuleRegistry>,
    pub resolver: Option<Arc<ResolverStats>>,
    pub access_log: Option<Arc<AccessLogStats>>,
    pub process: Arc<ProcessStats>,
}

impl Sources {
    pub fn new(shards: Vec<Arc<ShardStats>>) -> Sources {
        Sources {
            shards,
            ..Sources::default()
        }
    }
}

/// Prometheus text of all metrics, appended to `out`.
pub fn render(sources: &Sources, out: &mut String) {
    let shards: Vec<ShardSnapshot> = sources.shards.iter().map(|s| s.read()).collect();
    let mut text = Text { out };
    process(&mut text, sources, shards.len());
    if let Some(first) = shards.first() {
        let mut sum = first.clone();
        for s in &shards[1..] {
            sum.merge(s);
        }
        sessions(&mut text, &sum);
        traffic(&mut text, &sum);
        policy(&mut text, &sum, sources.rules.as_ref());
        per_shard(&mut text, &shards);
    }
    if let Some(resolver) = &sources.resolver {
        dns(&mut text, resolver);
    }
    if let Some(log) = &sources.access_log {
        access_log(&mut text, log);
    }
}

/// Writes families in the text format. Writing to a `String` cannot fail, so the
/// `fmt::Result`s are dropped.
struct Text<'a> {
    out: &'a mut String,
}

impl Text<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(v, self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// One family with a sample per label value.
    fn by_label(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &[&str],
        counts: &[u64],
    ) {
        self.family(name, kind, help);
        for (v, n) in values.iter().zip(counts) {
            self.sample(name, &[(label, v)], n);
        }
    }

    /// Bucket, sum and count samples of one histogram; bounds and sum are multiplied by
    /// `scale` (1e-9 turns nanoseconds into seconds).
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
        scale: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = match h.bounds.get(i) {
                Some(&b) => format_float(b as f64 * scale),
                None => "+Inf".to_string(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        self.sample(
            &format!("{name}_sum"),
            labels,
            format_float(h.sum as f64 * scale),
        );
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// A float as Prometheus reads it (Rust's shortest round-trip form, never an exponent).
fn format_float(v: f64) -> String {
    format!("{v}")
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|&x| name(x)).collect()
}

fn process(t: &mut Text, sources: &Sources, shards: usize) {
    let p = &sources.process;
    t.family(
        "ringsocks_build_info",
        "gauge",
        "Always 1; the version label says which build runs.",
    );
    t.sample(
        "ringsocks_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    t.family(
        "ringsocks_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the Unix epoch.",
    );
    t.sample(
        "ringsocks_start_time_seconds",
        &[],
        format_float(p.start_time),
    );
    t.family("ringsocks_shards", "gauge", "Shard threads serving.");
    t.sample("ringsocks_shards", &[], shards);
    t.family(
        "ringsocks_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP) by result; a failed reload keeps the old configuration.",
    );
    t.sample(
        "ringsocks_config_reloads_total",
        &[("result", "success")],
        p.reloads_ok.load(Relaxed),
    );
    t.sample(
        "ringsocks_config_reloads_total",
        &[("result", "failure")],
        p.reloads_failed.load(Relaxed),
    );
    t.family(
        "ringsocks_draining",
        "gauge",
        "1 while the server has stopped accepting and waits for sessions to finish.",
    );
    t.sample(
        "ringsocks_draining",
        &[],
        u8::from(p.draining.load(Relaxed)),
    );
}

fn sessions(t: &mut Text, s: &ShardSnapshot) {
    t.family(
        "ringsocks_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    t.sample("ringsocks_connections_accepted_total", &[], s.accepted);
    t.by_label(
        "ringsocks_sessions_active",
        "gauge",
        "Sessions open now, by command (handshake: no request read yet).",
        "command",
        &STATES,
        &s.active,
    );
    t.family(
        "ringsocks_sessions_total",
        "counter",
        "Finished sessions by command and reply (none: no request read, or no reply sent).",
    );
    for (command, row) in COMMANDS.iter().zip(&s.finished) {
        for (reply, n) in REPLIES.iter().zip(row) {
            t.sample(
                "ringsocks_sessions_total",
                &[("command", command), ("reply", reply)],
                n,
            );
        }
    }
    t.by_label(
        "ringsocks_session_closes_total",
        "counter",
        "Finished sessions by why they ended.",
        "reason",
        &names(CloseReason::ALL, CloseReason::name),
        &s.closes,
    );
    t.family(
        "ringsocks_auth_failures_total",
        "counter",
        "Refused credentials (RFC 1929), and SOCKS4 clients where authentication is required.",
    );
    t.sample("ringsocks_auth_failures_total", &[], s.auth_failures);
    t.family(
        "ringsocks_handshake_duration_seconds",
        "histogram",
        "Time from accept to the request read, authentication included.",
    );
    t.histogram(
        "ringsocks_handshake_duration_seconds",
        &[],
        &s.handshake,
        1e-9,
    );
    t.family(
        "ringsocks_connect_duration_seconds",
        "histogram",
        "Time from the first outbound connect attempt to success or final failure.",
    );
    t.histogram("ringsocks_connect_duration_seconds", &[], &s.connect, 1e-9);
}

fn traffic(t: &mut Text, s: &ShardSnapshot) {
    let dirs = names(Direction::ALL, Direction::name);
    t.by_label(
        "ringsocks_bytes_total",
        "counter",
        "TCP payload bytes relayed (up: client to target).",
        "direction",
        &dirs,
        &s.bytes,
    );
    t.by_label(
        "ringsocks_udp_datagrams_total",
        "counter",
        "UDP datagrams relayed (up: client to destination).",
        "direction",
        &dirs,
        &s.udp_datagrams,
    );
    t.by_label(
        "ringsocks_udp_bytes_total",
        "counter",
        "UDP payload bytes relayed, SOCKS headers excluded.",
        "direction",
        &dirs,
        &s.udp_bytes,
    );
    t.by_label(
        "ringsocks_udp_dropped_total",
        "counter",
        "UDP datagrams not relayed, by reason.",
        "reason",
        &names(UdpDrop::ALL, UdpDrop::name),
        &s.udp_dropped,
    );
}

fn policy(t: &mut Text, s: &ShardSnapshot, rules: Option<&RuleRegistry>) {
    t.family(
        "ringsocks_rejects_total",
        "counter",
        "Requests denied, by the access rule that matched.",
    );
    if let Some(rules) = rules {
        for (label, n) in rules.totals() {
            t.sample("ringsocks_rejects_total", &[("rule", &label)], n);
        }
    }
    t.by_label(
        "ringsocks_limit_hits_total",
        "counter",
        "Sessions refused, or relays paused, by a limit.",
        "limit",
        &names(Limit::ALL, Limit::name),
        &s.limits,
    );
}

fn per_shard(t: &mut Text, shards: &[ShardSnapshot]) {
    let ids: Vec<String> = shards.iter().map(|s| s.shard.to_string()).collect();
    let each = Shards { ids: &ids, shards };
    each.value(
        t,
        "ringsocks_shard_sessions_active",
        "gauge",
        "Sessions open now on each shard.",
        ShardSnapshot::active_total,
    );
    each.value(
        t,
        "ringsocks_loop_turns_total",
        "counter",
        "Event loop turns (one submit-and-wait each).",
        |s| s.turns,
    );
    each.value(
        t,
        "ringsocks_loop_completions_total",
        "counter",
        "io_uring completions handled.",
        |s| s.completions,
    );
    t.family(
        "ringsocks_loop_completions_per_turn",
        "histogram",
        "Completions handled per loop turn.",
    );
    for (id, s) in ids.iter().zip(shards) {
        t.histogram(
            "ringsocks_loop_completions_per_turn",
            &[("shard", id)],
            &s.per_turn,
            1.0,
        );
    }
    each.per_pool(
        t,
        "ringsocks_buffer_ring_exhausted_total",
        "counter",
        "Receives that found a provided-buffer pool empty (ENOBUFS).",
        |s| &s.exhausted,
    );
    each.per_pool(
        t,
        "ringsocks_buffer_pool_written_bytes",
        "gauge",
        "Bytes of a provided-buffer pool's pages written so far: the most of it that can be resident.",
        |s| &s.written,
    );
    each.value(
        t,
        "ringsocks_stale_completions_total",
        "counter",
        "Completions that arrived for a slot already reused, dropped.",
        |s| s.stale,
    );
    each.value(
        t,
        "ringsocks_spliced_directions_total",
        "counter",
        "Bulk relay directions moved from relay buffers to a pipe (splice).",
        |s| s.spliced,
    );
    each.value(
        t,
        "ringsocks_splice_refused_total",
        "counter",
        "Bulk relay directions kept on relay buffers: no descriptors or pipe to spare.",
        |s| s.splice_refused,
    );
}

/// Families with one sample per shard (`shard` label), or per shard and buffer pool.
struct Shards<'a> {
    ids: &'a [String],
    shards: &'a [ShardSnapshot],
}

impl Shards<'_> {
    fn value(
        &self,
        t: &mut Text,
        name: &str,
        kind: &str,
        help: &str,
        get: impl Fn(&ShardSnapshot) -> u64,
    ) {
        t.family(name, kind, help);
        for (id, s) in self.ids.iter().zip(self.shards) {
            t.sample(name, &[("shard", id)], get(s));
        }
    }

    fn per_pool(
        &self,
        t: &mut Text,
        name: &str,
        kind: &str,
        help: &str,
        get: impl Fn(&ShardSnapshot) -> &[u64],
    ) {
        t.family(name, kind, help);
        for (id, s) in self.ids.iter().zip(self.shards) {
            for (pool, n) in Pool::ALL.iter().zip(get(s)) {
                t.sample(name, &[("shard", id), ("pool", pool.name())], n);
            }
        }
    }
}

fn dns(t: &mut Text, stats: &ResolverStats) {
    let r = stats.read();
    t.family(
        "ringsocks_dns_cache_hits_total",
        "counter",
        "Name look-ups answered from the cache (positive or negative entries).",
    );
    t.sample("ringsocks_dns_cache_hits_total", &[], r.cache_hits);
    t.family(
        "ringsocks_dns_cache_misses_total",
        "counter",
        "Name look-ups the cache could not answer.",
    );
    t.sample("ringsocks_dns_cache_misses_total", &[], r.cache_misses);
    t.family(
        "ringsocks_dns_lookups_total",
        "counter",
        "Lookups made by the resolver threads.",
    );
    t.sample("ringsocks_dns_lookups_total", &[], r.lookups);
    t.family(
        "ringsocks_dns_joined_total",
        "counter",
        "Requests that joined a lookup of the same name already under way.",
    );
    t.sample("ringsocks_dns_joined_total", &[], r.joined);
    t.family(
        "ringsocks_dns_failures_total",
        "counter",
        "Failed lookups by reason (refused: invalid name or full queue, not looked up).",
    );
    t.sample(
        "ringsocks_dns_failures_total",
        &[("reason", "not_found")],
        r.not_found,
    );
    t.sample(
        "ringsocks_dns_failures_total",
        &[("reason", "timeout")],
        r.timeouts,
    );
    t.sample(
        "ringsocks_dns_failures_total",
        &[("reason", "error")],
        r.errors,
    );
    t.sample(
        "ringsocks_dns_failures_total",
        &[("reason", "refused")],
        r.refused,
    );
}

fn access_log(t: &mut Text, stats: &AccessLogStats) {
    t.family(
        "ringsocks_access_log_lines_total",
        "counter",
        "Access log lines written.",
    );
    t.sample("ringsocks_access_log_lines_total", &[], stats.written());
    t.family(
        "ringsocks_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    t.sample("ringsocks_access_log_dropped_total", &[], stats.dropped());
    t.family(
        "ringsocks_access_log_errors_total",
        "counter",
        "Access log write and reopen errors.",
    );
    t.sample("ringsocks_access_log_errors_total", &[], stats.errors());
}

#[cfg(test)]
mod tests;
