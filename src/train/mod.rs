//! The training loop shared by the supernet (one or several sampled paths per step) and
//! stand-alone networks (one fixed genotype). One step reads top to bottom: assemble the batch
//! on the device, forward, loss, backward (per path, gradients summed), clip, update — all
//! recorded into one Step and submitted once; only the loss and correct count come back.

use crate::data::{assemble, Augment, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Step};
use crate::nn::darts::{self, NetConfig};
use crate::nn::params::name_seed;
use crate::nn::{BnStats, Graph, Mode, ParamStore};
use crate::ops::optim::Sgd;
use crate::space::Genotype;
use crate::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.lr_min < 0.0 || self.lr_min > self.lr {
            return bad(format!("need 0 <= lr_min <= lr and lr > 0, got lr {} and lr_min {}", self.lr, self.lr_min));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return bad(format!("momentum must be in [0, 1), weight decay and grad clip >= 0; got {}, {}, {}", self.momentum, self.weight_decay, self.grad_clip));
        }
        Ok(())
    }

    /// Cosine annealing from `lr` to `lr_min` over `total` steps.
    pub fn lr_at(&self, step: usize, total: usize) -> f32 {
        let t = step as f64 / total.max(1) as f64;
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
pub fn train_step(model: &mut Model, data: &DeviceData, indices: &[u32], aug: &Augment, aug_seed: u32, paths: &[Genotype], sgd: &Sgd, clip: f32) -> Result<(f64, u32)> {
    let gpu = model.store.gpu().clone();
    let b = indices.len();
    let [c, h, w] = data.image_shape();
    let mut step: Step = gpu.step();
    let idx = gpu.alloc(4 * b as u64);
    step.upload(&idx, 0, bytemuck::cast_slice(indices))?;
    let x = Tensor::empty(&gpu, &[b, c, h, w]);
    let labels = gpu.alloc(4 * b as u64);
    assemble(&mut step, data, &idx, b, aug, aug_seed, &x, &labels)?;
    let mut reads = Vec::new();
    for genotype in paths {
        let mut g = Graph::new(step, &mut model.store, &mut model.bn, Mode::Train);
        let xin = g.input(x.clone());
        let logits = darts::forward(&mut g, &model.net, genotype, xin)?;
        let (loss, correct) = g.cross_entropy(logits, &labels)?;
        g.backward()?;
        step = g.finish().expect("executing graph");
        reads.push((step.read(&loss.buf, 0, 4), step.read(&correct, 0, 4)));
    }
    // Several paths (FairNAS) sum their gradients into one update, as the FairNAS code does
    // (backward per model, one optimizer step).
    model.store.sgd_update(&mut step, sgd, (clip > 0.0).then_some(clip))?;
    let out = step.submit()?;
    let loss = reads.iter().map(|(l, _)| out.f32s(*l)[0] as f64).sum::<f64>() / paths.len() as f64;
    let correct = out.u32s(reads[0].1)[0];
    if !loss.is_finite() {
        return Err(Error::Invalid(format!("training diverged: loss is {loss} (try a lower --lr or a gradient clip)")));
    }
    Ok((loss, correct))
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

/// One epoch over `data`, from `start` (default: the beginning). `paths_for_step(i)` gives the
/// genotype(s) step i trains; it is called for every step, the skipped ones of a resumed epoch
/// included, so a caller drawing paths from a seeded generator stays in step.
/// `after_step(model, progress, steps)` runs after each step (progress bars, checkpoints).
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    model: &mut Model,
    data: &DeviceData,
    cfg: &TrainConfig,
    epoch: usize,
    start: EpochProgress,
    paths_for_step: &mut dyn FnMut(usize) -> Vec<Genotype>,
    after_step: &mut dyn FnMut(&Model, &EpochProgress, usize) -> Result<()>,
) -> Result<EpochMetrics> {
    let batches = epoch_batches(data.n(), cfg.batch_size, cfg.seed, epoch);
    if batches.is_empty() {
        return Err(Error::Invalid(format!("batch size {} is larger than the {} training images", cfg.batch_size, data.n())));
    }
    if start.step > batches.len() {
        return Err(Error::Invalid(format!("resume at step {} of an epoch that has {} steps", start.step, batches.len())));
    }
    let total_steps = cfg.epochs * batches.len();
    let mut p = start;
    let mut t0 = Instant::now();
    let mut base = p.seconds;
    for (i, idx) in batches.iter().enumerate() {
        let paths = paths_for_step(i);
        if i < p.step {
            continue;
        }
        let global = epoch * batches.len() + i;
        p.lr = cfg.lr_at(global, total_steps);
        let sgd = Sgd { lr: p.lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay, nesterov: false };
        let aug_seed = name_seed(cfg.seed, &format!("aug{global}")) as u32;
        let (l, c) = train_step(model, data, idx, &cfg.augment, aug_seed, &paths, &sgd, cfg.grad_clip)?;
        p.loss_sum += l * idx.len() as f64;
        p.correct += c as u64;
        p.seen += idx.len();
        p.step = i + 1;
        p.seconds = base + t0.elapsed().as_secs_f64();
        after_step(model, &p, batches.len())?;
        // Time spent in the callback (a checkpoint write) is not training time.
        base = p.seconds;
        t0 = Instant::now();
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

/// Accuracy and mean loss of `genotype` on all of `data` in evaluation mode (running BN
/// statistics from `bn`). Forward only; one submit for the whole set.
pub fn evaluate(net: &NetConfig, store: &mut ParamStore, bn: &mut BnStats, genotype: &Genotype, data: &DeviceData, batch: usize) -> Result<(f64, f64)> {
    let gpu = store.gpu().clone();
    let [c, h, w] = data.image_shape();
    let mut step = gpu.step();
    let mut reads = Vec::new();
    let all: Vec<u32> = (0..data.n() as u32).collect();
    for chunk in all.chunks(batch.max(1)) {
        let b = chunk.len();
        let idx = gpu.alloc(4 * b as u64);
        step.upload(&idx, 0, bytemuck::cast_slice(chunk))?;
        let x = Tensor::empty(&gpu, &[b, c, h, w]);
        let labels = gpu.alloc(4 * b as u64);
        assemble(&mut step, data, &idx, b, &Augment::default(), 0, &x, &labels)?;
        let mut g = Graph::new(step, store, bn, Mode::Eval);
        let xin = g.input(x);
        let logits = darts::forward(&mut g, net, genotype, xin)?;
        let (loss, correct) = g.cross_entropy(logits, &labels)?;
        step = g.finish().expect("executing graph");
        reads.push((b, step.read(&loss.buf, 0, 4), step.read(&correct, 0, 4)));
    }
    let out = step.submit()?;
    let (mut loss, mut correct) = (0.0, 0u64);
    for (b, l, c) in reads {
        loss += out.f32s(l)[0] as f64 * b as f64;
        correct += out.u32s(c)[0] as u64;
    }
    Ok((correct as f64 / data.n() as f64, loss / data.n() as f64))
}
