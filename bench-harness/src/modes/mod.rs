//! The measuring modes, one per file.

pub mod connect;
pub mod idle;
pub mod latency;
pub mod throughput;
pub mod udp;
