//! Who may use the proxy: credentials (and, as they grow, access rules, egress selection
//! and limits). Pure functions of (client, user, request) → verdict; no I/O.
#![forbid(unsafe_code)]

mod users;

pub use users::{Users, UsersError};
