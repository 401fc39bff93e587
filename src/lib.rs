//! ringsocks: a SOCKS4 / SOCKS4a / SOCKS5 proxy server on per-core io_uring shards.
//!
//! Layers, imports pointing down only: [`proto`] (sans-IO protocol), [`policy`] (who may
//! do what), [`config`] (flags to a validated configuration), [`engine`] (the io_uring
//! runtime) and [`resolve`] (name resolution off the shards).

pub mod cli;
pub mod config;
pub mod engine;
pub mod ops;
pub mod policy;
pub mod proto;
pub mod resolve;
pub mod telemetry;
pub mod workers;
