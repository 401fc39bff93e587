//! What the fuzz targets share: the invariants the property tests check, compiled from the
//! same file, so a fuzz finding and a failing property are one rule.

/// The protocol layer under the path the shared file uses.
pub mod proto {
    pub use ringsocks::proto::*;
}

#[path = "../../src/proto/tests/invariants.rs"]
pub mod invariants;

#[path = "../../src/proto/proxy_protocol/invariants.rs"]
pub mod proxy_invariants;
