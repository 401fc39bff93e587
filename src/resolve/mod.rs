//! Placeholder resolver with the final API; replaced by the real module.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub type Addrs = Arc<[IpAddr]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    NotFound,
    Timeout,
    Failed(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

pub trait Notify: Send + Sync + 'static {
    fn resolved(&self, ticket: u64, result: Result<Addrs, ResolveError>);
}

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub threads: usize,
    pub cache_capacity: usize,
    pub negative_ttl: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            threads: 4,
            cache_capacity: 10_000,
            negative_ttl: Duration::from_secs(5),
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(300),
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Resolver {}

impl Resolver {
    pub fn start(_config: ResolverConfig) -> std::io::Result<Resolver> {
        Ok(Resolver {})
    }
    pub fn cached(&self, _host: &str) -> Option<Result<Addrs, ResolveError>> {
        None
    }
    pub fn resolve(&self, host: &str, ticket: u64, notify: Arc<dyn Notify>) {
        let host = host.to_string();
        std::thread::spawn(move || {
            let r = (host.as_str(), 0)
                .to_socket_addrs()
                .map(|it| it.map(|sa| sa.ip()).collect::<Vec<_>>().into())
                .map_err(|_| ResolveError::NotFound);
            notify.resolved(ticket, r);
        });
    }
    pub fn shutdown(&self) {}
}
