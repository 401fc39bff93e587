//! Support for the integration tests: the server under test, the peers it talks to, a raw
//! SOCKS client and bounded waits, and what an operator sees of the server (metrics,
//! access log, service-manager notifications) with a balancer to put in front of it.
//!
//! Every blocking call here has a deadline, so a server that hangs fails a test instead of
//! stalling the suite. All traffic stays on loopback.

// Each test file uses only part of this module.
#![allow(dead_code, unused_imports)]

pub mod access_log;
pub mod curl;
pub mod data;
pub mod haproxy;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod netstat;
pub mod notify;
pub mod policy;
pub mod proxy_header;
pub mod server;
pub mod socks;
pub mod target;
pub mod udp;
pub mod wait;
pub mod workdir;

pub use data::{Pattern, Sha256Digest};
pub use server::{Server, UsersFile};
pub use target::{EchoServer, Target};
pub use wait::{expect_closed, wait_until, IO_TIMEOUT};
pub use workdir::Workdir;
