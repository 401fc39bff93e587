//! Figures of the process as a whole, written by the main thread (reloads, drain).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct ProcessStats {
    /// Seconds since the epoch when the process started.
    pub(crate) start_time: f64,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    pub(crate) draining: AtomicBool,
}

impl Default for ProcessStats {
    fn default() -> Self {
        ProcessStats {
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        }
    }
}

impl ProcessStats {
    /// A configuration reload was applied.
    pub fn reload_succeeded(&self) {
        self.reloads_ok.fetch_add(1, Relaxed);
    }

    /// A reload was refused (the old configuration stays).
    pub fn reload_failed(&self) {
        self.reloads_failed.fetch_add(1, Relaxed);
    }

    /// The server stopped accepting and is waiting for sessions to finish.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Relaxed);
    }
}
