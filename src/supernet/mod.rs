//! Single-path one-shot supernet: path sampling (SPOS uniform, FairNAS strict fairness) and
//! the cheap evaluation of a candidate with inherited weights (BN recalibration, then a
//! forward-only pass over the validation split).

use crate::data::{assemble, Augment, DeviceData};
use crate::error::{Error, Result};
use crate::nn::darts::NetConfig;
use crate::nn::params::name_seed;
use crate::nn::{BnStats, Graph, Mode};
use crate::space::{Arch, Space};
use crate::tensor::Tensor;
use crate::train::{epoch_batches, evaluate, Model, BATCHES_PER_SUBMIT};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// SPOS: one architecture per step, uniform over the space.
    Uniform,
    /// FairNAS strict fairness: per step as many paths as candidate ops; on every edge slot
    /// (node, first or second edge) each op appears in exactly one of them. Inputs stay uniform.
    Fair,
}

impl std::str::FromStr for Sampling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sampling> {
        match s {
            "uniform" | "spos" => Ok(Sampling::Uniform),
            "fair" | "fairnas" => Ok(Sampling::Fair),
            other => Err(Error::Invalid(format!("unknown sampling '{other}': expected uniform or fair"))),
        }
    }
}

/// The paths one training step uses.
pub fn sample_paths(space: &dyn Space, sampling: Sampling, rng: &mut dyn rand::RngCore) -> Vec<Arch> {
    match sampling {
        Sampling::Uniform => vec![space.sample(rng)],
        Sampling::Fair => space.fair_paths(rng),
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalConfig {
    /// Training batches forwarded (training-mode BN, no backward) to re-estimate the BN
    /// statistics of the candidate before it is scored.
    pub recalibration_batches: usize,
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { recalibration_batches: 8, batch_size: 64 }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    pub accuracy: f64,
    pub loss: f64,
    /// Parameters and forward FLOPs per image of the stand-alone network the genotype defines.
    pub params: u64,
    pub flops: u64,
    pub eval_ms: f64,
}

/// Training batches a recalibration over `train_n` images uses: the count asked for, at most
/// one pass over the split. The batches are the same every pass (fixed order, no
/// augmentation) and training-mode BN ignores the running statistics, so a second pass only
/// repeats batch statistics already averaged: it costs time and, when partial, over-weights
/// the batches it repeats. Also returns a note for the user when the count was cut.
pub fn recalibration_batches(cfg: &EvalConfig, train_n: usize) -> (usize, Option<String>) {
    let b = cfg.batch_size.min(train_n).max(1);
    let pass = train_n / b;
    if cfg.recalibration_batches <= pass {
        return (cfg.recalibration_batches, None);
    }
    let note = format!(
        "note: BN recalibration uses {pass} batches, not {}: the training split's {train_n} images make only {pass} batches of {b}, and more would repeat them",
        cfg.recalibration_batches
    );
    (pass, Some(note))
}

/// Fresh BN statistics for `arch` from training batches (as many as
/// [`recalibration_batches`] allows): running statistics are the plain average of the batch
/// statistics (momentum 1/(k+1) for the k-th batch).
pub fn recalibrate(model: &mut Model, arch: &Arch, train: &DeviceData, cfg: &EvalConfig, seed: u64) -> Result<BnStats> {
    recalibrate_bounded(model, arch, train, cfg, seed, BATCHES_PER_SUBMIT)
}

/// [`recalibrate`] with `per_submit` batches per submit (the statistics do not depend on it).
/// Memory does not grow with the batch count: each submit holds `per_submit` batches, and
/// their buffers return to the pool for the next.
pub fn recalibrate_bounded(model: &mut Model, arch: &Arch, train: &DeviceData, cfg: &EvalConfig, seed: u64, per_submit: usize) -> Result<BnStats> {
    let gpu = model.store.gpu().clone();
    let [c, h, w] = train.image_shape();
    let b = cfg.batch_size.min(train.n());
    if cfg.recalibration_batches == 0 || b == 0 {
        return Err(Error::Invalid("BN recalibration needs at least one training batch".into()));
    }
    let batches = epoch_batches(train.n(), b, name_seed(seed, "recalibration"), 0);
    let mut bn = BnStats::new();
    let mut step = gpu.step();
    let (count, _) = recalibration_batches(cfg, train.n());
    for (k, idx) in batches.iter().take(count).enumerate() {
        if k > 0 && k % per_submit.max(1) == 0 {
            step.submit()?;
            step = gpu.step();
        }
        let ib = gpu.alloc(4 * b as u64);
        step.upload(&ib, 0, bytemuck::cast_slice(idx))?;
        let x = Tensor::empty(&gpu, &[b, c, h, w]);
        let labels = gpu.alloc(4 * b as u64);
        assemble(&mut step, train, &ib, b, &Augment::default(), 0, &x, &labels)?;
        bn.momentum = 1.0 / (k as f32 + 1.0);
        let mut g = Graph::new(step, &mut model.store, &mut bn, Mode::Recalibrate);
        let xin = g.input(x);
        crate::nn::forward(&mut g, &model.net, arch, xin)?;
        step = g.finish().expect("executing graph");
    }
    step.submit()?;
    Ok(bn)
}

/// Inherited-weight score of one candidate: its weights are the supernet's own tensors (no
/// copy), BN statistics are recalibrated, then accuracy and loss on `val` in evaluation mode.
pub fn score(model: &mut Model, arch: &Arch, train: &DeviceData, val: &DeviceData, cfg: &EvalConfig, seed: u64) -> Result<Score> {
    let t0 = Instant::now();
    let mut bn = recalibrate(model, arch, train, cfg, seed)?;
    let (accuracy, loss) = evaluate(&model.net, &mut model.store, &mut bn, arch, val, cfg.batch_size)?;
    let eval_ms = t0.elapsed().as_secs_f64() * 1e3;
    let [_, h, w] = val.image_shape();
    let standalone = NetConfig { supernet: false, ..model.net.clone() };
    let (params, flops) = crate::nn::size(&standalone, arch, h, w)?;
    Ok(Score { accuracy, loss, params, flops, eval_ms })
}
