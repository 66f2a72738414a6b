//! Per-device counts that `cellnas bench --net` reads around a run of steps: submits,
//! dispatches, and the GPU time of steps when step timing is switched on.

use std::sync::atomic::Ordering;

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StepStats {
    pub submits: u64,
    pub dispatches: u64,
    /// Submits whose GPU time is in `device_ms` (timing on and timestamps available).
    pub timed_submits: u64,
    pub device_ms: f64,
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
        *self.stats.lock().unwrap()
    }

    /// Time every step from now on (GPU timestamps around its passes, where the adapter has
    /// them). Each timed submit waits for its result, so this is for benchmarks only.
    pub fn set_step_timing(&self, on: bool) {
        self.time_steps.store(on, Ordering::Relaxed);
    }

    pub(crate) fn step_timing(&self) -> bool {
        self.time_steps.load(Ordering::Relaxed)
    }

    pub(crate) fn record_submit(&self, dispatches: usize, gpu_ms: Option<f64>) {
        let mut s = self.stats.lock().unwrap();
        s.submits += 1;
        s.dispatches += dispatches as u64;
        if let Some(ms) = gpu_ms {
            s.timed_submits += 1;
            s.device_ms += ms;
        }
    }
}
