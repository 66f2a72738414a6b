//! What `cellnas bench --net` reads around a run of steps: submits and dispatches (from the
//! counters) and the GPU time of steps while step timing is switched on.

use std::sync::atomic::Ordering;

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StepStats {
    pub submits: u64,
    pub dispatches: u64,
    /// Submits whose GPU time is in `device_ms` (timing on, timestamps available, result read).
    pub timed_submits: u64,
    pub device_ms: f64,
}

#[derive(Default)]
pub(crate) struct DeviceTime {
    timed_submits: u64,
    ms: f64,
}

impl StepStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StepStats) -> StepStats {
        StepStats {
            submits: self.submits - earlier.submits,
            dispatches: self.dispatches - earlier.dispatches,
            timed_submits: self.timed_submits - earlier.timed_submits,
            device_ms: self.device_ms - earlier.device_ms,
        }
    }
}

impl super::Gpu {
    pub fn step_stats(&self) -> StepStats {
        let c = self.counters();
        let t = self.device_time.lock().unwrap();
        StepStats { submits: c.submits, dispatches: c.dispatches, timed_submits: t.timed_submits, device_ms: t.ms }
    }

    /// Time every step from now on (GPU timestamps around its passes, where the adapter has
    /// them). A timed step creates a query set and resolve buffers, so this is for benchmarks.
    pub fn set_step_timing(&self, on: bool) {
        self.time_steps.store(on, Ordering::Relaxed);
    }

    pub(crate) fn step_timing(&self) -> bool {
        self.time_steps.load(Ordering::Relaxed)
    }

    pub(crate) fn record_device_ms(&self, ms: f64) {
        let mut t = self.device_time.lock().unwrap();
        t.timed_submits += 1;
        t.ms += ms;
    }
}
