//! Running as a service: readiness notifications to systemd, and dropping root after the
//! listeners are bound.

pub mod privileges;
pub mod systemd;
