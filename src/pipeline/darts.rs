//! `cellnas search --method darts`: gradient-based search (DARTS, Liu et al. 2019), first order.
//! The relaxed network (nn::mixed) trains its weights with SGD on one half of the training
//! split and its architecture weights alpha with Adam on the other half, alternating step by
//! step (alpha first, as DARTS's `architect.step` precedes the weight update); both updates of a
//! step are one submit. After every epoch the genotype alpha describes is derived and recorded
//! (metrics.jsonl), so a collapse toward parameter-free ops shows epoch by epoch. Two remedies
//! from the literature, both off by default: beta-decay regularisation of alpha (Ye et al.
//! 2022) and DARTS+'s early stop once the normal cell holds `stop_skips` skip connections
//! (Liang et al. 2019). At the end the derived genotype is scored with the relaxed network's
//! own weights (recalibrated BN, the held-out validation split), as a supernet search scores
//! its candidates, and written as best.json for `cellnas train --spec`.
//!
//! Resumable like every run: checkpoints (weights, momentum, alpha with its Adam moments, BN
//! statistics) after every epoch and every `checkpoint_every` within one; batches, halves and
//! augmentation depend only on (seed, epoch, step).

use super::data::{load, DataConfig};
use super::JobOptions;
use crate::data::{assemble, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PendingOutput, ReadHandle};
use crate::nn::darts::{NetConfig, NetKind};
use crate::nn::mixed::{self, is_alpha, ALPHA_NORMAL, ALPHA_REDUCE};
use crate::nn::params::name_seed;
use crate::nn::{Graph, Mode};
use crate::ops::optim::{Adam, Sgd};
use crate::ops::{elementwise, mix};
use crate::run::{append_jsonl, load_checkpoint, save_checkpoint, RunDir};
use crate::space::{Arch, Genotype, Op, SpaceConfig, Spec};
use crate::supernet::{score, EvalConfig};
use crate::tensor::Tensor;
use crate::train::{epoch_batches, Model, TrainConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DartsSearchConfig {
    /// "darts": what tells this config from the other searches'.
    pub method: String,
    pub data: DataConfig,
    /// The relaxed network's sizes (supernet conventions: BN without affine).
    pub net: NetConfig,
    /// A DARTS space: the candidate ops (other than `none`) and nodes per cell.
    pub space: SpaceConfig,
    /// Mix the `none` op (zero) in as DARTS does: its weight takes part in the softmax and the
    /// derivation ignores it.
    pub none: bool,
    /// The network weights' training (SGD, cosine schedule), on the first half of the training split.
    pub train: TrainConfig,
    /// Alpha's optimizer (Adam), on the second half.
    pub arch: ArchConfig,
    pub remedy: Remedy,
    /// Scoring of the derived genotype at the end.
    pub eval: EvalConfig,
    pub resume_ignore: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArchConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub weight_decay: f32,
}

/// DARTS's: Adam at 3e-4, betas (0.5, 0.999), weight decay 1e-3.
impl Default for ArchConfig {
    fn default() -> ArchConfig {
        ArchConfig { lr: 3e-4, beta1: 0.5, beta2: 0.999, weight_decay: 1e-3 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Remedy {
    /// Beta-decay: lambda * sum over cell kinds of mean_edges logsumexp(alpha_edge) added to the
    /// architecture loss, whose gradient lambda / edges * softmax(alpha) keeps alpha from
    /// growing one op's weight without bound. 0 = off.
    pub beta_decay: f32,
    /// DARTS+: stop after the epoch whose derived normal cell holds this many skip
    /// connections, and keep that genotype. 0 = off (DARTS+ uses 2).
    pub stop_skips: usize,
}

/// Largest --epochs of a DARTS search and other bounds live with TrainConfig; these are its own.
impl DartsSearchConfig {
    /// The candidate ops in alpha's column order: `none` first when mixed in.
    pub fn ops(&self) -> Vec<Op> {
        let space = self.space.darts().map(|s| s.ops().to_vec()).unwrap_or_default();
        if self.none { [vec![Op::None], space].concat() } else { space }
    }

    pub fn validate(&self) -> Result<()> {
        if self.method != "darts" {
            return Err(Error::Invalid(format!("a DARTS search config has \"method\": \"darts\", got \"{}\"", self.method)));
        }
        self.net.validate()?;
        self.train.validate()?;
        if self.train.epochs == 0 {
            return Err(Error::Invalid("--epochs: a DARTS search needs at least 1 epoch to learn alpha".into()));
        }
        let Some(space) = self.space.darts() else {
            return Err(Error::Invalid(format!("--space {}: gradient-based search relaxes DARTS cells only so far", self.space.name())));
        };
        if self.net.kind != NetKind::Darts || !self.net.supernet || !self.net.gated.is_empty() {
            return Err(Error::Invalid("a DARTS search trains a plain DARTS supernet (kind darts, supernet true, no gated cells)".into()));
        }
        if self.net.nodes != space.nodes() {
            return Err(Error::Invalid(format!("network has {} nodes per cell, the space {}", self.net.nodes, space.nodes())));
        }
        mixed::check_ops(&self.ops())?;
        let a = &self.arch;
        if !(a.lr.is_finite() && a.lr > 0.0) || !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) || !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            return Err(Error::Invalid(format!(
                "--arch-lr must be positive, the betas in [0, 1) and --arch-weight-decay >= 0; got lr {}, betas {} {}, weight decay {}",
                a.lr, a.beta1, a.beta2, a.weight_decay
            )));
        }
        if !(self.remedy.beta_decay.is_finite() && self.remedy.beta_decay >= 0.0) {
            return Err(Error::Invalid(format!("--beta-decay must be a number >= 0, got {}", self.remedy.beta_decay)));
        }
        if self.eval.batch_size == 0 || self.eval.recalibration_batches == 0 {
            return Err(Error::Invalid("evaluation needs a batch size and recalibration batches of at least 1".into()));
        }
        Ok(())
    }
}

/// The defaults: the supernet search's data, network and weight training, DARTS's alpha optimizer.
pub fn default_darts_search() -> DartsSearchConfig {
    let base = super::search::default_search();
    DartsSearchConfig {
        method: "darts".into(),
        data: base.data,
        net: base.net,
        space: base.space,
        none: true,
        train: base.train,
        arch: ArchConfig::default(),
        remedy: Remedy::default(),
        eval: base.eval,
        resume_ignore: json!({}),
    }
}

/// One epoch's record (metrics.jsonl): losses of both halves, the genotype alpha describes at
/// its end and how many skip connections its normal cell holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DartsEpoch {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// On the architecture half, before each alpha step.
    pub arch_loss: f64,
    pub arch_accuracy: f64,
    pub seconds: f64,
    pub lr_end: f32,
    pub genotype: String,
    pub normal_skips: usize,
    /// softmax(alpha) [edges][ops] of each cell kind, columns in `ops` order.
    pub normal: Vec<Vec<f32>>,
    pub reduce: Vec<Vec<f32>>,
    pub ops: Vec<String>,
}

/// Where an epoch stands (mid-epoch checkpoints store it).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Progress {
    step: usize,
    loss_sum: f64,
    correct: u64,
    arch_loss_sum: f64,
    arch_correct: u64,
    seen: usize,
    seconds: f64,
    lr: f32,
}

pub struct DartsSummary {
    pub epochs: Vec<DartsEpoch>,
    pub genotype: Genotype,
    pub val_accuracy: f64,
    pub params: u64,
    pub train_seconds: f64,
    /// The epoch after which DARTS+'s rule stopped the search, if it did.
    pub stopped_after: Option<usize>,
}

/// The two halves of the training split: weights train on the first, alpha on the second.
/// Fixed for the run by the seed.
fn halves(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(name_seed(seed, "darts.halves")));
    let b = order.split_off(n / 2);
    (order, b)
}

/// One epoch's batches of `half`: its own order per (seed, epoch, which).
fn half_batches(half: &[u32], batch: usize, seed: u64, epoch: usize, which: &str) -> Vec<Vec<u32>> {
    epoch_batches(half.len(), batch, name_seed(seed, which), epoch).into_iter().map(|b| b.into_iter().map(|i| half[i as usize]).collect()).collect()
}

pub fn run_darts_search(gpu: &Arc<Gpu>, cfg: &DartsSearchConfig, out: &Path, job: &JobOptions) -> Result<DartsSummary> {
    cfg.validate()?;
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if job.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    super::kernels::pin(gpu, &run, job.resume)?;
    if cfg.data.val_count == 0 {
        return Err(Error::Invalid("a search needs a validation split (val_count >= 1): the derived cell is scored on it".into()));
    }
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    let val = data.val.as_ref().expect("val_count >= 1");
    if data.classes != cfg.net.classes || data.channels != cfg.net.in_channels {
        return Err(Error::Invalid(format!(
            "data has {} classes of {}-channel images, the network expects {} and {}",
            data.classes, data.channels, cfg.net.classes, cfg.net.in_channels
        )));
    }
    let ops = cfg.ops();
    let [_, h, w] = data.train.image_shape();
    // Every op of every edge is live at once: the relaxed network decides what fits.
    let counted = mixed::record(&cfg.net, &ops, h, w)?;
    crate::nn::darts::check_counted_batch_fits(gpu, &counted, cfg.train.batch_size)
        .map_err(|e| Error::Invalid(format!("--batch-size: every op on every edge is held at once in gradient-based search, so {e}")))?;
    if !job.quiet {
        let per_image = counted.value_scalars() as f64 * 4.0;
        let largest = counted.largest_value().map_or(0, |s| s.iter().product::<usize>()) as u64 * 4;
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        eprintln!(
            "relaxed network: {} parameters (alpha included), {:.1} MiB of activations per image in one forward ({:.0} MiB at batch {}); the adapter binds batches of up to {} (its largest activation)",
            counted.params_used(),
            per_image / (1u64 << 20) as f64,
            per_image * cfg.train.batch_size as f64 / (1u64 << 20) as f64,
            cfg.train.batch_size,
            limit / largest.max(1)
        );
    }
    let (wa, wb) = halves(data.train.n(), cfg.train.seed);
    if wb.len() < cfg.train.batch_size || wa.len() < cfg.train.batch_size {
        return Err(Error::Invalid(format!(
            "--batch-size {} is larger than half the {} training images: DARTS trains weights on one half and alpha on the other",
            cfg.train.batch_size,
            data.train.n()
        )));
    }

    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    let mut start_epoch = 0;
    let mut progress = Progress::default();
    let mut last: Option<DartsEpoch> = None;
    let mut stopped = false;
    if let Some((tensors, state)) = load_checkpoint(&run)? {
        model.restore(&tensors)?;
        start_epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        if let Some(p) = state.get("progress") {
            progress = serde_json::from_value(p.clone()).map_err(|e| Error::Checkpoint { path: run.state_path(), message: format!("\"progress\" is not an epoch position ({e})") })?;
        }
        last = state.get("metrics").and_then(|m| serde_json::from_value(m.clone()).ok());
        stopped = state.get("stopped").and_then(|s| s.as_bool()).unwrap_or(false);
    }
    let mut epochs = super::fit::completed_epochs(&run, start_epoch, last, |m: &DartsEpoch| m.epoch)?;

    let steps = (wa.len() / cfg.train.batch_size).min(wb.len() / cfg.train.batch_size);
    let total = cfg.train.epochs * steps;
    let adam = Adam { lr: cfg.arch.lr, beta1: cfg.arch.beta1, beta2: cfg.arch.beta2, eps: 1e-8, weight_decay: cfg.arch.weight_decay, decoupled: false };
    let edges = mixed::edges(cfg.net.nodes);
    for epoch in start_epoch..cfg.train.epochs {
        if stopped {
            break;
        }
        let (ba, bb) = (half_batches(&wa, cfg.train.batch_size, cfg.train.seed, epoch, "darts.weights"), half_batches(&wb, cfg.train.batch_size, cfg.train.seed, epoch, "darts.arch"));
        let pb = super::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.train.epochs), job.quiet);
        let mut p = std::mem::take(&mut progress);
        let (mut t0, mut base, mut last_save) = (Instant::now(), p.seconds, Instant::now());
        let mut pending: Option<(usize, f32, PendingOutput, [ReadHandle; 4])> = None;
        let collect = |p: &mut Progress, pending: Option<(usize, f32, PendingOutput, [ReadHandle; 4])>| -> Result<()> {
            let Some((i, lr, out, h)) = pending else { return Ok(()) };
            let o = out.wait()?;
            let f = |k: usize| bytemuck::pod_read_unaligned::<f32>(&o.bytes(h[k])[..4]) as f64;
            let u = |k: usize| bytemuck::pod_read_unaligned::<u32>(&o.bytes(h[k])[..4]) as u64;
            let (loss, arch_loss) = (f(0), f(2));
            if !loss.is_finite() || !arch_loss.is_finite() {
                return Err(Error::Invalid(format!("training diverged at epoch {} step {}/{steps}: loss {loss}, architecture loss {arch_loss} (try a lower --lr or --arch-lr)", epoch + 1, i + 1)));
            }
            let b = cfg.train.batch_size;
            p.loss_sum += loss * b as f64;
            p.arch_loss_sum += arch_loss * b as f64;
            p.correct += u(1);
            p.arch_correct += u(3);
            p.seen += b;
            p.step = i + 1;
            p.lr = lr;
            Ok(())
        };
        for i in p.step..steps {
            let global = epoch * steps + i;
            let lr = cfg.train.lr_at(global, total);
            let sgd = Sgd { lr, momentum: cfg.train.momentum, weight_decay: cfg.train.weight_decay, nesterov: false };
            let t = u32::try_from(global + 1).map_err(|_| Error::Invalid("more than 2^32 architecture steps".into()))?;
            let submitted = darts_step(&mut model, &data.train, &ops, &bb[i], &ba[i], cfg, global, &adam, t, &sgd, edges)?;
            collect(&mut p, pending.replace((i, lr, submitted.0, submitted.1)))?;
            p.seconds = base + t0.elapsed().as_secs_f64();
            pb.set_position(p.step as u64);
            if job.checkpoint_every.is_some_and(|every| last_save.elapsed() >= every) && i + 1 < steps {
                collect(&mut p, pending.take())?;
                save_checkpoint(&run, &model.download()?, &json!({ "epoch": epoch, "progress": p }))?;
                (last_save, base, t0) = (Instant::now(), p.seconds, Instant::now());
            }
        }
        collect(&mut p, pending.take())?;
        p.seconds = base + t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let (normal, reduce) = arch_weights(&model, edges, ops.len())?;
        let genotype = mixed::derive(&normal.concat(), &reduce.concat(), &ops, cfg.net.nodes)?;
        let normal_skips = genotype.normal.nodes.iter().flatten().filter(|e| e.op == Op::SkipConnect).count();
        let n = p.seen.max(1) as f64;
        let m = DartsEpoch {
            epoch,
            loss: p.loss_sum / n,
            accuracy: p.correct as f64 / n,
            arch_loss: p.arch_loss_sum / n,
            arch_accuracy: p.arch_correct as f64 / n,
            seconds: p.seconds,
            lr_end: p.lr,
            genotype: genotype.to_darts(),
            normal_skips,
            normal,
            reduce,
            ops: ops.iter().map(|o| o.name().to_string()).collect(),
        };
        stopped = cfg.remedy.stop_skips > 0 && normal_skips >= cfg.remedy.stop_skips;
        if !job.quiet {
            eprintln!(
                "epoch {:>3}: loss {:.4}  train acc {:.2}%  arch loss {:.4}  {:.1}s  skips {normal_skips}  {}{}",
                epoch + 1,
                m.loss,
                100.0 * m.accuracy,
                m.arch_loss,
                m.seconds,
                m.genotype,
                if stopped { "  (stopped: DARTS+ rule)" } else { "" }
            );
        }
        save_checkpoint(&run, &model.download()?, &json!({ "epoch": epoch + 1, "metrics": m, "stopped": stopped }))?;
        append_jsonl(&run.metrics_path(), &m)?;
        epochs.push(m);
    }
    let train_seconds = epochs.iter().map(|m| m.seconds).sum();
    let genotype = match epochs.last() {
        Some(m) => Genotype::from_darts(&m.genotype)?,
        None => {
            let (normal, reduce) = arch_weights(&model, edges, ops.len())?;
            mixed::derive(&normal.concat(), &reduce.concat(), &ops, cfg.net.nodes)?
        }
    };
    let stopped_after = if stopped { epochs.last().map(|m| m.epoch + 1) } else { None };

    let arch = Arch::Darts(genotype.clone());
    let s = score(&mut model, &arch, &data.train, val, &cfg.eval, cfg.train.seed)?;
    let spec = Spec { name: Some("cellnas search --method darts".into()), ..Spec::new(genotype.clone()) };
    run.write_json_recorded(
        "best.json",
        &json!({
            "spec": serde_json::from_str::<serde_json::Value>(&spec.to_json_pretty()).expect("spec JSON"),
            "metrics": { "val_accuracy": s.accuracy, "val_loss": s.loss, "params": s.params, "flops": s.flops },
            "method": "darts",
            "epochs": epochs.len(),
            "stopped_after_epoch": stopped_after,
        }),
    )?;
    run.write_recorded("best.genotype.txt", format!("{}\n", genotype.to_darts()).as_bytes())?;
    Ok(DartsSummary { epochs, genotype, val_accuracy: s.accuracy, params: s.params, train_seconds, stopped_after })
}

/// Record and submit one step: alpha's (architecture half, weights frozen, Adam) then the
/// weights' (training half, alpha frozen, SGD). Returns the submission and its reads: weight
/// loss, weight correct, architecture loss, architecture correct.
#[allow(clippy::too_many_arguments)]
fn darts_step(model: &mut Model, data: &DeviceData, ops: &[Op], arch_idx: &[u32], weight_idx: &[u32], cfg: &DartsSearchConfig, global: usize, adam: &Adam, t: u32, sgd: &Sgd, edges: usize) -> Result<(PendingOutput, [ReadHandle; 4])> {
    let gpu = model.store.gpu().clone();
    let mut step = gpu.step();
    let mut reads = Vec::with_capacity(4);
    for (which, idx) in [("arch", arch_idx), ("weights", weight_idx)] {
        let b = idx.len();
        let [c, h, w] = data.image_shape();
        let ib = gpu.alloc(4 * b as u64);
        step.upload(&ib, 0, bytemuck::cast_slice(idx))?;
        let (x, labels) = (Tensor::empty(&gpu, &[b, c, h, w]), gpu.alloc(4 * b as u64));
        let aug_seed = name_seed(cfg.train.seed, &format!("{which}.aug{global}")) as u32;
        assemble(&mut step, data, &ib, b, &cfg.train.augment, aug_seed, &x, &labels)?;
        let arch_step = which == "arch";
        let mut g = Graph::new(step, &mut model.store, &mut model.bn, Mode::Train);
        g.freeze(move |name| is_alpha(name) != arch_step);
        let xin = g.input(x);
        let logits = mixed::forward(&mut g, &model.net, ops, xin)?;
        let (loss, correct) = g.cross_entropy(logits, &labels)?;
        g.backward()?;
        step = g.finish().expect("executing graph");
        reads.push(step.read(&loss.buf, 0, 4));
        reads.push(step.read(&correct, 0, 4));
        if arch_step {
            if cfg.remedy.beta_decay > 0.0 {
                // d/dalpha of lambda * mean_edges logsumexp(alpha_edge) = lambda / edges * softmax(alpha).
                for name in [ALPHA_NORMAL, ALPHA_REDUCE] {
                    let p = model.store.get(name).expect("the forward created alpha");
                    let sm = Tensor::empty(&gpu, &p.value.shape);
                    mix::softmax_rows(&mut step, &p.value, &sm)?;
                    mix::axpy(&mut step, cfg.remedy.beta_decay / edges as f32, &sm, &p.grad)?;
                }
            }
            model.store.adam_update(&mut step, adam, t)?;
        } else {
            model.store.sgd_update(&mut step, sgd, (cfg.train.grad_clip > 0.0).then_some(cfg.train.grad_clip))?;
        }
    }
    // Weights then alpha's reads were pushed as arch, weights: reorder to weights first.
    let h = [reads[2], reads[3], reads[0], reads[1]];
    Ok((step.submit_deferred()?, h))
}

/// softmax(alpha) of each cell kind as [edges][ops], computed on the device.
fn arch_weights(model: &Model, edges: usize, ops: usize) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
    let gpu = model.store.gpu().clone();
    let mut step = gpu.step();
    let mut handles = Vec::new();
    for name in [ALPHA_NORMAL, ALPHA_REDUCE] {
        let p = model.store.get(name).ok_or_else(|| Error::Invalid(format!("the network has no '{name}': no step has run")))?;
        let w = Tensor::empty(&gpu, &[edges, ops]);
        elementwise::fill(&mut step, &w, f32::NAN)?;
        mix::softmax_rows(&mut step, &p.value, &w)?;
        handles.push(step.read(&w.buf, 0, 4 * (edges * ops) as u64));
    }
    let out = step.submit()?;
    let rows = |h| out.f32s(h).chunks(ops).map(|r| r.to_vec()).collect::<Vec<_>>();
    Ok((rows(handles[0]), rows(handles[1])))
}
