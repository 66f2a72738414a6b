//! Whole-network benchmark (`cellnas bench --net`): training steps and evaluation forwards of
//! one DARTS network on random data, through the same code paths as `train` and `test`
//! (batch assembly on the device, `train_step`, `evaluate`). Per phase it reports images/s,
//! the split of a step's wall time into device time (GPU timestamps) and host time, and the
//! dispatches and submits per step; for the process, peak host memory and the device memory
//! the buffer pool holds.

use super::median;
use crate::data::{Augment, Dataset, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, StepStats};
use crate::nn::darts::{self, NetConfig};
use crate::ops::optim::Sgd;
use crate::space::Genotype;
use crate::train::{evaluate, submit_train_step, Model, IN_FLIGHT};
use std::collections::VecDeque;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

/// The network and how long to time it.
#[derive(Clone, Debug)]
pub struct NetBench {
    pub genotype: Genotype,
    pub channels: usize,
    pub layers: usize,
    pub batch: usize,
    /// Timed steps per repeat (training steps, or evaluation batches).
    pub steps: usize,
    /// Untimed steps before each phase (pipeline compilation, first allocations).
    pub warmup: usize,
    /// Repeats of each phase; medians are reported.
    pub reps: usize,
    /// Supernet conventions (BN without affine, BN after pools), as search trains a path.
    pub supernet: bool,
    pub image: [usize; 3],
    pub classes: usize,
}

/// One phase (training or evaluation), medians over repeats.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseReport {
    pub images_per_s: f64,
    pub step_ms: f64,
    /// GPU time of a step's passes (None where the adapter has no timestamp queries).
    pub device_ms: Option<f64>,
    /// Wall time not covered by device time: host work the device waited for.
    pub host_ms: Option<f64>,
    /// Host time spent recording and submitting a step (training only; it overlaps the
    /// device's work on earlier steps).
    pub record_ms: Option<f64>,
    pub dispatches_per_step: f64,
    pub submits_per_step: f64,
    /// Storage buffers created per timed step (0 in steady state).
    pub buffers_created_per_step: f64,
    /// images/s of every repeat, in order.
    pub runs: Vec<f64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct NetReport {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub genotype: String,
    pub channels: usize,
    pub layers: usize,
    pub batch: usize,
    pub supernet: bool,
    pub params: u64,
    pub mflops_per_image: f64,
    pub train: PhaseReport,
    pub eval: PhaseReport,
    /// Peak resident host memory of the process (Linux VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Resident host memory after the last training repeat minus after the first, MiB: a
    /// leak shows as growth proportional to the steps run.
    pub rss_growth_mib: Option<f64>,
    /// Device memory held in pooled storage buffers at the end, MiB.
    pub device_mib: f64,
    pub steps: usize,
    pub reps: usize,
}

/// The genotype `bench --net` and `autotune` use when none is given: the best cell of the
/// full Fashion-MNIST search in docs/RESULTS.md (also `../shared/bench/reference.genotype.txt`).
pub const REFERENCE_GENOTYPE: &str = "Genotype(normal=[('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('max_pool_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 3)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 0), ('sep_conv_5x5', 1), ('avg_pool_3x3', 2), ('skip_connect', 1), ('dil_conv_5x5', 0), ('max_pool_3x3', 3), ('dil_conv_5x5', 3), ('sep_conv_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

pub fn reference_genotype() -> Genotype {
    Genotype::from_darts(REFERENCE_GENOTYPE).expect("the built-in reference genotype parses")
}

impl NetBench {
    pub fn net_config(&self) -> NetConfig {
        NetConfig {
            in_channels: self.image[0],
            classes: self.classes,
            channels: self.channels,
            layers: self.layers,
            nodes: self.genotype.normal.nodes.len(),
            supernet: self.supernet,
            supernet_affine: false,
            gated: vec![],
            kind: Default::default(),
        }
    }

    pub fn run(&self, gpu: &Arc<Gpu>) -> Result<NetReport> {
        if self.steps == 0 || self.reps == 0 || self.batch == 0 {
            return Err(Error::Invalid(format!("bench --net needs steps, reps and batch size of at least 1, got {}, {}, {}", self.steps, self.reps, self.batch)));
        }
        let net = self.net_config();
        net.validate()?;
        let [c, h, w] = self.image;
        darts::check_batch_fits(gpu, &net, &self.genotype, self.batch, h, w)?;
        let (params, flops) = darts::size(&NetConfig { supernet: false, ..net.clone() }, &self.genotype, h, w)?;
        // Enough random images for every step of a repeat to see a different batch.
        let n = self.batch.checked_mul(self.steps.max(self.warmup).max(1)).ok_or_else(|| Error::Invalid("--batch-size x --steps overflows".into()))?;
        let data = random_data(gpu, n, c, h, w, self.classes)?;
        let mut model = Model::new(gpu, net.clone(), 0)?;
        let sgd = Sgd { lr: 0.025, momentum: 0.9, weight_decay: 3e-4, nesterov: false };
        let aug = Augment::default();
        let batches: Vec<Vec<u32>> = (0..n as u32).collect::<Vec<_>>().chunks_exact(self.batch).map(|c| c.to_vec()).collect();
        let paths = [crate::space::Arch::Darts(self.genotype.clone())];

        let record_ms = std::cell::Cell::new(0.0);
        // As the training loop runs: up to IN_FLIGHT steps submitted before their results are read.
        let train_step_n = |model: &mut Model, k: usize| -> Result<()> {
            let mut pending = VecDeque::new();
            for i in 0..k {
                if pending.len() == IN_FLIGHT {
                    let p: crate::train::PendingStep = pending.pop_front().expect("ring is full");
                    p.wait()?;
                }
                let t = Instant::now();
                pending.push_back(submit_train_step(model, &data, &batches[i % batches.len()], &aug, i as u32, &paths, &sgd, 5.0)?);
                record_ms.set(record_ms.get() + t.elapsed().as_secs_f64() * 1e3);
            }
            for p in pending {
                p.wait()?;
            }
            Ok(())
        };
        train_step_n(&mut model, self.warmup)?;
        let mut train = Vec::new();
        let mut rss_first = None;
        let mut record = Vec::new();
        for _ in 0..self.reps {
            record_ms.set(0.0);
            train.push(measure(gpu, self.steps, self.batch, || train_step_n(&mut model, self.steps))?);
            record.push(record_ms.get() / self.steps as f64);
            rss_first.get_or_insert_with(current_rss_mib);
        }
        let rss_growth_mib = match (rss_first.flatten(), current_rss_mib()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };

        gpu.wait()?;
        if let Some(report) = gpu.take_profile_report() {
            eprint!("training steps (warm-up included):\n{report}evaluation (warm-up included) follows at the end\n");
        }

        // Evaluation reads the running BN statistics training left behind.
        let eval_data = random_data(gpu, self.batch * self.steps, c, h, w, self.classes)?;
        let eval_run = |model: &mut Model| -> Result<()> {
            evaluate(&model.net, &mut model.store, &mut model.bn, &crate::space::Arch::Darts(self.genotype.clone()), &eval_data, self.batch)?;
            Ok(())
        };
        if self.warmup > 0 {
            eval_run(&mut model)?;
        }
        let mut eval = Vec::new();
        for _ in 0..self.reps {
            eval.push(measure(gpu, self.steps, self.batch, || eval_run(&mut model))?);
        }
        gpu.wait()?;
        Ok(NetReport {
            adapter: gpu.info.name.clone(),
            backend: gpu.info.backend.clone(),
            driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info).trim().to_string(),
            genotype: self.genotype.to_darts(),
            channels: self.channels,
            layers: self.layers,
            batch: self.batch,
            supernet: self.supernet,
            params,
            mflops_per_image: flops as f64 / 1e6,
            train: PhaseReport { record_ms: Some(median(&mut record)), ..summarise(train) },
            eval: summarise(eval),
            peak_rss_mib: peak_rss_mib(),
            rss_growth_mib,
            device_mib: gpu.pool_bytes() as f64 / (1024.0 * 1024.0),
            steps: self.steps,
            reps: self.reps,
        })
    }
}

/// One repeat: wall time, the device-time and dispatch counters, buffers created.
struct Sample {
    wall_ms: f64,
    stats: StepStats,
    buffers: u64,
    steps: usize,
    batch: usize,
}

fn measure(gpu: &Arc<Gpu>, steps: usize, batch: usize, f: impl FnOnce() -> Result<()>) -> Result<Sample> {
    gpu.wait()?;
    let (s0, b0) = (gpu.step_stats(), gpu.buffers_created());
    gpu.set_step_timing(true);
    let t0 = Instant::now();
    let r = f().and_then(|_| gpu.wait());
    let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
    gpu.set_step_timing(false);
    r?;
    Ok(Sample { wall_ms, stats: gpu.step_stats().since(&s0), buffers: gpu.buffers_created() - b0, steps, batch })
}

fn summarise(samples: Vec<Sample>) -> PhaseReport {
    let per_step = |f: &dyn Fn(&Sample) -> f64| -> f64 { median(&mut samples.iter().map(|s| f(s) / s.steps as f64).collect::<Vec<_>>()) };
    let runs: Vec<f64> = samples.iter().map(|s| (s.steps * s.batch) as f64 / (s.wall_ms / 1e3)).collect();
    let timed = samples.iter().all(|s| s.stats.timed_submits == s.stats.submits && s.stats.submits > 0);
    let step_ms = per_step(&|s| s.wall_ms);
    let device_ms = timed.then(|| per_step(&|s| s.stats.device_ms));
    PhaseReport {
        images_per_s: median(&mut runs.clone()),
        step_ms,
        device_ms,
        host_ms: timed.then(|| per_step(&|s| (s.wall_ms - s.stats.device_ms).max(0.0))),
        record_ms: None,
        dispatches_per_step: per_step(&|s| s.stats.dispatches as f64),
        submits_per_step: per_step(&|s| s.stats.submits as f64),
        buffers_created_per_step: per_step(&|s| s.buffers as f64),
        runs,
    }
}

/// `n` random images (bytes) with random labels, on the device.
fn random_data(gpu: &Arc<Gpu>, n: usize, c: usize, h: usize, w: usize, classes: usize) -> Result<DeviceData> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let len = n.checked_mul(c * h * w).ok_or_else(|| Error::Invalid("benchmark data size overflows".into()))?;
    let images: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..classes as u8)).collect();
    let ds = Dataset { images, labels, n, c, h, w, classes };
    DeviceData::upload(gpu, &ds, &vec![0.5; c], &vec![0.25; c])
}

fn status_kib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok()
}

/// Peak resident set size of this process in MiB (None off Linux).
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|k| k / 1024.0)
}

pub fn current_rss_mib() -> Option<f64> {
    status_kib("VmRSS:").map(|k| k / 1024.0)
}
