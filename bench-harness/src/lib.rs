//! bench-harness: a SOCKS5 load generator with latency histograms, server cost
//! accounting and side-by-side comparison of servers.
//!
//! Each mode (`modes::*`) starts its own loopback targets, opens its connections
//! through the server under test (or directly), runs a measured window on a few
//! event-loop threads and returns a [`report::Report`].

use std::net::{IpAddr, Ipv4Addr};

pub mod cases;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod cost;
pub mod error;
pub mod modes;
pub mod reactor;
pub mod report;
pub mod run;
pub mod session;
pub mod socks;
pub mod stats;
pub mod stream;
pub mod table;
pub mod targets;
pub mod udp_client;
pub mod zero_copy;

pub use error::{Error, SocksError};

/// Where the targets listen.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The bytes every payload is cut from: deterministic and not constant, so a relay that
/// reorders, drops or duplicates bytes shows up when an echo is compared.
pub fn pattern(len: usize) -> Box<[u8]> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Raises the open-file limit to its hard limit: a run holds two descriptors per
/// relayed connection (client side and target side) in this one process.
pub fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// The open-file limit in force.
pub fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}
