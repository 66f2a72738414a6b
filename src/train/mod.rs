//! The training loop shared by the supernet (one or several sampled paths per step) and
//! stand-alone networks (one fixed genotype). One step reads top to bottom: assemble the batch
//! on the device, forward, loss, backward (per path, gradients summed), clip, update — all
//! recorded into one Step and submitted once; only the loss and correct count come back, a few
//! steps later, so the host records the next steps while the device runs this one.

mod eval;
pub use eval::{evaluate, evaluate_bounded, forward_batch, BATCHES_PER_SUBMIT};

use crate::data::{assemble, Augment, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PendingOutput, ReadHandle, Step};
use crate::nn::darts::NetConfig;
use crate::nn::params::name_seed;
use crate::nn::{BnStats, Graph, Mode, ParamStore};
use crate::ops::optim::Sgd;
use crate::space::Arch;
use crate::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate; cosine-annealed per step to `lr_min` over all epochs.
    pub lr: f32,
    pub lr_min: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Global gradient-norm bound (0 = no clipping).
    pub grad_clip: f32,
    pub seed: u64,
    pub augment: Augment,
    /// Epochs (fractions allowed) of linear learning-rate warm-up from 0 before the cosine
    /// schedule starts at `lr`; 0 = none. Left out of config.json when 0, so runs from before
    /// it existed resume unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// Largest --batch-size and --epochs accepted (documented in `--help`).
pub const MAX_BATCH: usize = 65_536;
pub const MAX_EPOCHS: usize = 100_000;

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        // Bounds keep every step count and schedule product far from overflow.
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return bad(format!("batch size must be between 1 and {MAX_BATCH}, got {}", self.batch_size));
        }
        if self.epochs > MAX_EPOCHS {
            return bad(format!("epochs must be at most {MAX_EPOCHS}, got {}", self.epochs));
        }
        if self.augment.crop_padding > 65_536 || self.augment.cutout > 65_536 {
            return bad(format!("crop padding and cutout must be at most 65536, got {} and {}", self.augment.crop_padding, self.augment.cutout));
        }
        let finite = [self.lr, self.lr_min, self.momentum, self.weight_decay, self.grad_clip, self.warmup_epochs].iter().all(|v| v.is_finite());
        if !finite {
            return bad(format!(
                "training settings must be finite numbers, got lr {}, lr_min {}, momentum {}, weight decay {}, grad clip {}, warm-up {}",
                self.lr, self.lr_min, self.momentum, self.weight_decay, self.grad_clip, self.warmup_epochs
            ));
        }
        if self.lr <= 0.0 || self.lr_min < 0.0 || self.lr_min > self.lr {
            return bad(format!("need 0 <= lr_min <= lr and lr > 0, got lr {} and lr_min {}", self.lr, self.lr_min));
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs <= self.epochs as f32) {
            return bad(format!("warm-up must be between 0 and the {} training epochs, got {}", self.epochs, self.warmup_epochs));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return bad(format!("momentum must be in [0, 1), weight decay and grad clip >= 0; got {}, {}, {}", self.momentum, self.weight_decay, self.grad_clip));
        }
        Ok(())
    }

    /// Step `step` of `total` (over all epochs): a linear ramp to `lr` over the warm-up steps,
    /// then cosine annealing from `lr` to `lr_min` over the rest.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        let per_epoch = total as f64 / self.epochs.max(1) as f64;
        let warm = ((self.warmup_epochs as f64 * per_epoch).round() as usize).min(total);
        if step < warm {
            return (self.lr as f64 * (step + 1) as f64 / warm as f64) as f32;
        }
        let t = (step - warm) as f64 / (total - warm).max(1) as f64;
        (self.lr_min as f64 + 0.5 * (self.lr - self.lr_min) as f64 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
    }
}

/// A network's trainable state: parameters (with momentum) and BN running statistics.
pub struct Model {
    pub net: NetConfig,
    pub store: ParamStore,
    pub bn: BnStats,
}

impl Model {
    pub fn new(gpu: &Arc<Gpu>, net: NetConfig, seed: u64) -> Result<Model> {
        net.validate()?;
        Ok(Model { net, store: ParamStore::new(gpu, seed), bn: BnStats::new() })
    }

    /// Weights, momentum and BN statistics, downloaded in one step.
    pub fn download(&self) -> Result<Vec<crate::run::NamedTensor>> {
        let mut named: Vec<(String, &Tensor)> = self.store.named_tensors();
        named.extend(self.bn.named_tensors());
        crate::run::download_named(self.store.gpu(), &named)
    }

    /// Inverse of `download`.
    pub fn restore(&mut self, tensors: &[crate::run::NamedTensor]) -> Result<()> {
        let gpu = self.store.gpu().clone();
        let mut step = gpu.step();
        let params: Vec<_> = tensors.iter().filter(|(n, _, _)| !n.starts_with("bn:")).cloned().collect();
        self.store.load(&mut step, &params)?;
        self.bn.load(&mut step, &gpu, tensors)?;
        step.submit()?;
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub images_per_s: f64,
    pub seconds: f64,
    pub lr_end: f32,
}

/// Batch indices of one epoch: a permutation of 0..n seeded by (seed, epoch), whole batches
/// only so every step has the same shapes (and reuses the same buffers and pipelines).
pub fn epoch_batches(n: usize, batch: usize, seed: u64, epoch: usize) -> Vec<Vec<u32>> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed(seed, &format!("epoch{epoch}.order")));
    order.shuffle(&mut rng);
    order.chunks_exact(batch).map(|c| c.to_vec()).collect()
}

/// Record one training step (all `paths` on the same batch, gradients summed, one update)
/// and run it; returns (mean loss over paths, correct predictions of the first path).
pub fn train_step(model: &mut Model, data: &DeviceData, indices: &[u32], aug: &Augment, aug_seed: u32, paths: &[Arch], sgd: &Sgd, clip: f32) -> Result<(f64, u32)> {
    let (loss, correct) = submit_train_step(model, data, indices, aug, aug_seed, paths, sgd, clip)?.wait()?;
    if !loss.is_finite() {
        return Err(Error::Invalid(format!("training diverged: loss is {loss} (try a lower --lr or a gradient clip)")));
    }
    Ok((loss, correct))
}

/// A submitted training step whose loss and correct count have not been read yet.
pub struct PendingStep {
    out: PendingOutput,
    /// (loss, correct) per path.
    reads: Vec<(ReadHandle, ReadHandle)>,
}

impl PendingStep {
    /// Whether `wait` would not block.
    pub fn is_ready(&self) -> bool {
        self.out.is_ready()
    }
    /// (mean loss over paths, correct predictions of the first path); not checked for divergence.
    pub fn wait(self) -> Result<(f64, u32)> {
        let out = self.out.wait()?;
        let f32_at = |h: ReadHandle| bytemuck::pod_read_unaligned::<f32>(&out.bytes(h)[..4]) as f64;
        let loss = self.reads.iter().map(|(l, _)| f32_at(*l)).sum::<f64>() / self.reads.len() as f64;
        Ok((loss, bytemuck::pod_read_unaligned::<u32>(&out.bytes(self.reads[0].1)[..4])))
    }
}

/// [`train_step`] without waiting for its results.
#[allow(clippy::too_many_arguments)]
pub fn submit_train_step(model: &mut Model, data: &DeviceData, indices: &[u32], aug: &Augment, aug_seed: u32, paths: &[Arch], sgd: &Sgd, clip: f32) -> Result<PendingStep> {
    if paths.is_empty() {
        return Err(Error::Invalid("a training step needs at least one path".into()));
    }
    let gpu = model.store.gpu().clone();
    let b = indices.len();
    let [c, h, w] = data.image_shape();
    let mut step: Step = gpu.step();
    let idx = gpu.alloc(4 * b as u64);
    step.upload(&idx, 0, bytemuck::cast_slice(indices))?;
    let x = Tensor::empty(&gpu, &[b, c, h, w]);
    let labels = gpu.alloc(4 * b as u64);
    assemble(&mut step, data, &idx, b, aug, aug_seed, &x, &labels)?;
    let mut reads = Vec::with_capacity(paths.len());
    for arch in paths {
        let mut g = Graph::new(step, &mut model.store, &mut model.bn, Mode::Train);
        let xin = g.input(x.clone());
        let logits = crate::nn::forward(&mut g, &model.net, arch, xin)?;
        let (loss, correct) = g.cross_entropy(logits, &labels)?;
        g.backward()?;
        step = g.finish().expect("executing graph");
        reads.push((step.read(&loss.buf, 0, 4), step.read(&correct, 0, 4)));
    }
    // Several paths (FairNAS) sum their gradients into one update, as the FairNAS code does
    // (backward per model, one optimizer step).
    model.store.sgd_update(&mut step, sgd, (clip > 0.0).then_some(clip))?;
    Ok(PendingStep { out: step.submit_deferred()?, reads })
}

/// Where an epoch stands: steps done and the running sums of its metrics. A checkpoint taken
/// mid-epoch stores it, so a resumed epoch reports the same metrics as an uninterrupted one.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochProgress {
    pub step: usize,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: usize,
    /// Training time of the steps done, over all the processes that ran them.
    pub seconds: f64,
    pub lr: f32,
}

impl EpochProgress {
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Training steps whose loss and correct count may still be on their way back while the host
/// records the next ones. One already lets the host record step N+1 while the device runs step
/// N; a little more absorbs uneven host recording. Small, because each holds a staging buffer
/// and delays the progress display by a step.
pub const IN_FLIGHT: usize = 3;

/// What `train_epoch` tells its `after_step` callback when a step's results have arrived.
pub struct StepDone<'a> {
    pub model: &'a Model,
    /// Sums over the steps whose results have arrived, in step order.
    pub progress: &'a EpochProgress,
    /// Steps in the epoch.
    pub steps: usize,
    /// No later step is in flight: the model's weights are exactly those after
    /// `progress.step` steps, so a checkpoint taken now is consistent.
    pub settled: bool,
}

/// One epoch over `data`, from `start` (default: the beginning). `paths_for_step(i)` gives the
/// genotype(s) step i trains; it is called for every step, the skipped ones of a resumed epoch
/// included, so a caller drawing paths from a seeded generator stays in step.
/// `after_step` runs once per step, in order, when its results arrive (progress bars,
/// checkpoints); returning `Ok(true)` asks for every step in flight to finish and for one more
/// call with `settled` (a checkpoint wants that). The epoch returns only when all have arrived.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    model: &mut Model,
    data: &DeviceData,
    cfg: &TrainConfig,
    epoch: usize,
    start: EpochProgress,
    paths_for_step: &mut dyn FnMut(usize) -> Vec<Arch>,
    after_step: &mut dyn FnMut(StepDone) -> Result<bool>,
) -> Result<EpochMetrics> {
    train_epoch_in_flight(model, data, cfg, epoch, start, paths_for_step, after_step, IN_FLIGHT)
}

/// [`train_epoch`] with at most `in_flight` steps unread; 0 reads every step back before the
/// next is recorded. Results are the same for any depth (tests compare them).
#[allow(clippy::too_many_arguments)]
pub fn train_epoch_in_flight(
    model: &mut Model,
    data: &DeviceData,
    cfg: &TrainConfig,
    epoch: usize,
    start: EpochProgress,
    paths_for_step: &mut dyn FnMut(usize) -> Vec<Arch>,
    after_step: &mut dyn FnMut(StepDone) -> Result<bool>,
    in_flight: usize,
) -> Result<EpochMetrics> {
    let batches = epoch_batches(data.n(), cfg.batch_size, cfg.seed, epoch);
    if batches.is_empty() {
        return Err(Error::Invalid(format!("batch size {} is larger than the {} training images", cfg.batch_size, data.n())));
    }
    if start.step > batches.len() {
        return Err(Error::Invalid(format!("resume at step {} of an epoch that has {} steps", start.step, batches.len())));
    }
    let total_steps = cfg.epochs * batches.len();
    let steps = batches.len();
    let mut p = start;
    let mut t0 = Instant::now();
    let mut base = p.seconds;
    // (step, its learning rate, batch size, results on their way)
    let mut ring: VecDeque<(usize, f32, usize, PendingStep)> = VecDeque::with_capacity(in_flight + 1);
    let mut settle = false;
    // Reused for every step's augmentation seed name (same bytes as a fresh format!).
    let mut name = String::new();
    // One pass more than there are batches (`None`) collects what is still in flight.
    for item in batches.iter().enumerate().map(Some).chain([None]) {
        if let Some((i, idx)) = item {
            let paths = paths_for_step(i);
            if i < p.step {
                continue;
            }
            let global = epoch * steps + i;
            let lr = cfg.lr_at(global, total_steps);
            let sgd = Sgd { lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay, nesterov: false };
            name.clear();
            let _ = write!(name, "aug{global}");
            let aug_seed = name_seed(cfg.seed, &name) as u32;
            ring.push_back((i, lr, idx.len(), submit_train_step(model, data, idx, &cfg.augment, aug_seed, &paths, &sgd, cfg.grad_clip)?));
        }
        let last = item.is_none();
        // Collect the oldest results when the ring is full, when they are already there, when a
        // checkpoint asked to settle, and all of them at the end of the epoch.
        while let Some(front) = ring.front() {
            if !(last || settle || ring.len() > in_flight || front.3.is_ready()) {
                break;
            }
            let (i, lr, n, pending) = ring.pop_front().expect("front exists");
            let (l, c) = pending.wait()?;
            if !l.is_finite() {
                return Err(Error::Invalid(format!(
                    "training diverged at epoch {} step {}/{steps}: loss is {l} (try a lower --lr or a gradient clip)",
                    epoch + 1,
                    i + 1
                )));
            }
            p.lr = lr;
            p.loss_sum += l * n as f64;
            p.correct += c as u64;
            p.seen += n;
            p.step = i + 1;
            p.seconds = base + t0.elapsed().as_secs_f64();
            let settled = ring.is_empty();
            let asked = after_step(StepDone { model, progress: &p, steps, settled })?;
            settle = (settle || asked) && !settled;
            // Time spent in the callback (a checkpoint write) is not training time.
            base = p.seconds;
            t0 = Instant::now();
        }
    }
    Ok(EpochMetrics {
        epoch,
        loss: p.loss(),
        accuracy: p.accuracy(),
        images_per_s: p.seen as f64 / p.seconds.max(1e-9),
        seconds: p.seconds,
        lr_end: p.lr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_ramps_then_cosine() {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 1,
            lr: 0.1,
            lr_min: 0.0,
            momentum: 0.9,
            weight_decay: 0.0,
            grad_clip: 0.0,
            seed: 1,
            augment: Augment::default(),
            warmup_epochs: 0.5,
        };
        // 2 epochs of 10 steps: 5 warm-up steps at 0.02, 0.04, .., 0.1, then cosine from 0.1.
        let lr: Vec<f32> = (0..20).map(|s| cfg.lr_at(s, 20)).collect();
        for (i, v) in lr[..5].iter().enumerate() {
            assert!((v - 0.02 * (i + 1) as f32).abs() < 1e-7, "{lr:?}");
        }
        assert_eq!(lr[5], 0.1);
        assert!(lr[6..].windows(2).all(|w| w[1] < w[0]) && lr[19] < 0.002, "{lr:?}");
        // Without warm-up: the plain cosine.
        let plain = TrainConfig { warmup_epochs: 0.0, ..cfg.clone() };
        assert_eq!(plain.lr_at(0, 20), 0.1);
        assert!((plain.lr_at(10, 20) - 0.05).abs() < 1e-7);
        assert!(TrainConfig { warmup_epochs: 3.0, ..cfg.clone() }.validate().is_err());
        // NaN compares false with everything, so each field is checked for finiteness first.
        assert!(cfg.validate().is_ok());
        for bad in [
            TrainConfig { lr_min: f32::NAN, ..cfg.clone() },
            TrainConfig { grad_clip: f32::NAN, ..cfg.clone() },
            TrainConfig { weight_decay: f32::INFINITY, ..cfg.clone() },
            TrainConfig { momentum: f32::NAN, ..cfg.clone() },
            TrainConfig { warmup_epochs: f32::NAN, ..cfg.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
