//! Kernel benchmarks shared by `cellnas bench` and the criterion benches: every registered op
//! family's bench cases, each pass timed separately, medians reported.

pub mod net;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::{check, OpCase, Pass, FAMILIES};
use crate::tensor::{numel, Tensor};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub kernel: String,
    pub pass: &'static str,
    pub shape: String,
    /// Median time of one pass.
    pub ms: f64,
    /// Fastest rep: on a machine shared with other work, the least disturbed measurement.
    pub min_ms: f64,
    pub gflops: f64,
    pub gbps: f64,
    /// "timestamp" (GPU timestamp queries) or "host" (wall clock around submit + wait).
    pub timing: &'static str,
    pub reps: usize,
}

/// A bench case with its inputs resident on the GPU, ready to record any pass.
pub struct Prepared {
    pub case: Box<dyn OpCase>,
    xs: Vec<Tensor>,
    y: Tensor,
    saved: Vec<Tensor>,
    dy: Tensor,
    grads: Vec<Tensor>,
}

impl Prepared {
    pub fn new(gpu: &Arc<Gpu>, case: Box<dyn OpCase>) -> Result<Prepared> {
        let mut rng = check::rng_for(&case.shape());
        let shapes = case.inputs();
        let xs = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor::from_slice(gpu, s, &case.sample_input(i, &mut rng, numel(s))))
            .collect::<Result<Vec<_>>>()?;
        let y = Tensor::empty(gpu, &case.output());
        let mut step = gpu.step();
        let saved = case.forward(&mut step, &xs, &y)?;
        step.submit()?;
        let dy = Tensor::from_slice(gpu, &case.output(), &check::random_vec(&mut rng, numel(&case.output())))?;
        let grads = shapes.iter().map(|s| Tensor::empty(gpu, s)).collect();
        Ok(Prepared { case, xs, y, saved, dy, grads })
    }

    /// The passes this case has: forward always; backward passes for differentiable inputs.
    pub fn passes(&self) -> Vec<Pass> {
        let d = self.case.differentiable();
        let mut p = vec![Pass::Forward];
        if d.first() == Some(&true) {
            p.push(Pass::BackwardInput);
        }
        if d.iter().skip(1).any(|&x| x) {
            p.push(Pass::BackwardWeight);
        }
        p
    }

    /// Record one pass into a fresh step.
    pub fn record(&self, gpu: &Arc<Gpu>, pass: Pass, timed: bool) -> Result<crate::gpu::Step> {
        let mut step = if timed { gpu.step().timed() } else { gpu.step() };
        match pass {
            Pass::Forward => {
                self.case.forward(&mut step, &self.xs, &self.y)?;
            }
            _ => {
                for (i, &d) in self.case.differentiable().iter().enumerate() {
                    if d && Pass::of_input(i) == pass {
                        self.case.backward(&mut step, &self.xs, &self.y, &self.saved, &self.dy, i, &self.grads[i])?;
                    }
                }
            }
        }
        Ok(step)
    }

    /// One timed run of a pass: (ms, whether GPU timestamps measured it, else the host clock
    /// around submit + wait did).
    pub fn time_once(&self, gpu: &Arc<Gpu>, pass: Pass) -> Result<(f64, bool)> {
        let step = self.record(gpu, pass, gpu.timestamps)?;
        gpu.wait()?;
        let t0 = Instant::now();
        let out = step.submit()?;
        gpu.wait()?;
        let host_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(match out.gpu_ms {
            Some(ms) if ms > 0.0 => (ms, true),
            _ => (host_ms, false),
        })
    }

    /// Time one pass: `warmup` untimed runs, then the median of `reps`.
    pub fn measure(&self, gpu: &Arc<Gpu>, pass: Pass, warmup: usize, reps: usize) -> Result<BenchRow> {
        for _ in 0..warmup {
            self.record(gpu, pass, false)?.submit()?;
            gpu.wait()?;
        }
        let mut times = Vec::with_capacity(reps);
        let mut timing = "host";
        for _ in 0..reps.max(1) {
            let (ms, timestamp) = self.time_once(gpu, pass)?;
            if timestamp {
                timing = "timestamp";
            }
            times.push(ms);
        }
        let ms = median(&mut times);
        let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
        Ok(BenchRow {
            kernel: self.case.name().to_string(),
            pass: pass.as_str(),
            shape: self.case.shape(),
            ms,
            min_ms,
            gflops: self.case.flops(pass) / (ms * 1e6),
            gbps: self.case.bytes(pass) / (ms * 1e6),
            timing,
            reps: times.len(),
        })
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) }
}

/// The bench cases that match `filter`: "family" (name contains it, e.g. `conv2d`), or
/// "family/shape" (also the case's shape text contains what follows the slash, e.g.
/// `conv2d/k1x1 s1`). All when empty.
pub fn cases(filter: &str) -> Vec<Box<dyn OpCase>> {
    let (family, shape) = filter.split_once('/').unwrap_or((filter, ""));
    FAMILIES
        .iter()
        .filter(|f| f.name.contains(family))
        .flat_map(|f| (f.bench_cases)())
        .filter(|c| c.shape().contains(shape))
        .collect()
}
