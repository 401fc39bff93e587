//! What an operator sees: per-shard counters, the Prometheus endpoint, the access log.
//!
//! Shards count in their own memory ([`ShardStats`], one per shard, single writer, see
//! [`counter`]); nothing on a shard's path costs more than a counter increment, or, once
//! per session, a non-blocking channel send ([`AccessLog::record`]). The [`Exporter`] sums
//! the shards when scraped, on its own thread.
//!
//! Wiring, for the engine and `main`:
//!
//! - one [`ShardStats`] per shard, `Arc`-shared between the shard and [`Sources::shards`];
//! - a [`RuleRegistry`] in [`Sources::rules`]; each rule list installed (start-up,
//!   reload) gets its [`RuleCounters`], kept next to the rules it counts;
//! - [`Exporter::start`] with `--metrics-listen`; [`AccessLog::start`] with
//!   `--access-log`, [`AccessLog::reopen`] on SIGHUP, [`AccessLog::flush`] at exit.

pub mod access_log;
pub mod counter;
pub mod exposition;
mod http;
mod labels;
mod process;
mod rules;
mod shard;
#[cfg(test)]
mod testutil;

pub use access_log::{AccessEntry, AccessLog, AccessLogStats, LogDest};
pub use exposition::{render, Sources, CONTENT_TYPE};
pub use http::Exporter;
pub use labels::{CloseReason, Direction, Limit, Pool, UdpDrop};
pub use process::ProcessStats;
pub use rules::{RuleCounters, RuleRegistry};
pub use shard::{ShardSnapshot, ShardStats};
