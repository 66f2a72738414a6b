//! Cumulative counts of the host-side work a real GPU driver pays for: object creation
//! (buffers, bind groups, staging), submits and dispatches. Tests use them to prove that a
//! steady-state step creates nothing; `cellnas bench --net` prints them per step.

use super::Gpu;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of [`Gpu::counters`]; every field counts since the device was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Pooled buffers created: storage buffers and the steps' parameter uniforms.
    pub buffers_created: u64,
    /// Bytes of those buffers (what the pool has asked the driver for; `trim_pool` gives
    /// idle ones back but does not lower this).
    pub buffer_bytes: u64,
    pub bind_groups_created: u64,
    /// Upload and readback staging buffers (and timestamp readbacks of timed steps).
    pub staging_created: u64,
    pub submits: u64,
    pub dispatches: u64,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub buffers: AtomicU64,
    pub buffer_bytes: AtomicU64,
    pub bind_groups: AtomicU64,
    pub staging: AtomicU64,
    pub submits: AtomicU64,
    pub dispatches: AtomicU64,
}

impl Counts {
    pub fn buffer(&self, bytes: u64) {
        self.buffers.fetch_add(1, Relaxed);
        self.buffer_bytes.fetch_add(bytes, Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

impl Gpu {
    pub fn counters(&self) -> Counters {
        let c = &self.counts;
        Counters {
            buffers_created: c.buffers.load(Relaxed),
            buffer_bytes: c.buffer_bytes.load(Relaxed),
            bind_groups_created: c.bind_groups.load(Relaxed),
            staging_created: c.staging.load(Relaxed),
            submits: c.submits.load(Relaxed),
            dispatches: c.dispatches.load(Relaxed),
        }
    }

    /// Buffers (storage and parameter uniforms) created since the device was opened.
    pub fn buffers_created(&self) -> u64 {
        self.counts.buffers.load(Relaxed)
    }
}
