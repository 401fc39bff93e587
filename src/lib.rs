//! ringsocks: a SOCKS4 / SOCKS4a / SOCKS5 proxy server on per-core io_uring shards.
//!
//! Layers, imports pointing down only: [`proto`] (sans-IO protocol), `policy`, `config`,
//! `engine` (the io_uring runtime), [`resolve`] (DNS off the shard threads), `telemetry`.

pub mod proto;
pub mod resolve;
