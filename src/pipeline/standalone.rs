//! `cellnas train --spec FILE`: build the stand-alone network a spec defines (affine BN),
//! train it from scratch, report test accuracy, save weights (safetensors) and metrics.

use super::data::{load, DataConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::darts::{self, NetConfig};
use super::fit::{fit, FitOptions};
use super::JobOptions;
use crate::run::{load_checkpoint, load_tensors, save_tensors, RunDir};
use crate::space::{Arch, Spec};
use crate::train::{evaluate, EpochMetrics, Model, TrainConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StandaloneConfig {
    pub spec: Spec,
    pub data: DataConfig,
    pub net: NetConfig,
    pub train: TrainConfig,
    pub eval_batch_size: usize,
    /// Training batches forwarded after training, in training mode without updates, to
    /// re-estimate every BN layer's statistics before testing (precise BN); 0 = off. Left out of
    /// config.json when 0, so runs from before it existed resume unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub precise_bn: usize,
    /// Start from a search run's supernet instead of random weights (crate::morph); left out of
    /// config.json when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitFrom>,
    pub resume_ignore: serde_json::Value,
}

/// The search run a warm-started training grows its network from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InitFrom {
    pub run: std::path::PathBuf,
    /// The search run's id when the training started: a resume refuses a replaced folder.
    pub run_id: Option<String>,
}

/// The search run `init` names, verified, with its config; the run must be the one the
/// training started from.
pub fn init_source(init: &InitFrom) -> Result<(RunDir, super::search::SearchConfig)> {
    let search = super::rank::read_search_config(&init.run)?;
    let run = RunDir::verified(&init.run)?;
    if let (Some(want), Some(got)) = (&init.run_id, run.run_id()) {
        if want != got {
            return Err(Error::Config {
                path: init.run.clone(),
                message: format!("is search run {got}, but this training grew its network from run {want}: the folder was replaced"),
            });
        }
    }
    Ok((run, search))
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Test (and validation) figures of one set of weights.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tested {
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: Option<f64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: Option<f64>,
    /// The same with the BN running statistics training left, when precise BN replaced them.
    pub running_bn: Option<Tested>,
    pub params: u64,
    pub flops: u64,
    pub train_seconds: f64,
    pub epochs: Vec<EpochMetrics>,
    /// Training batches precise BN used (at most one pass over the training split).
    pub precise_bn_batches: usize,
}

pub fn run_train(gpu: &Arc<Gpu>, cfg: &StandaloneConfig, out: &Path, job: &JobOptions) -> Result<TrainSummary> {
    cfg.net.validate()?;
    cfg.train.validate()?;
    let arch = &cfg.spec.arch;
    if let Arch::Darts(g) = arch {
        g.validate()?;
    }
    // (search run, its config, how the network grows from its supernet)
    let source = match cfg.init_from.as_ref().map(init_source).transpose()? {
        None if cfg.net.supernet => {
            return Err(Error::Invalid("stand-alone training builds the stand-alone network (net.supernet must be false) unless it grows from a search run (--init-from)".into()));
        }
        None => None,
        Some((run, search)) => {
            let growth = crate::morph::growth(&search, &cfg.net).map_err(|message| Error::Config { path: run.dir().to_path_buf(), message })?;
            Some((run, search, growth))
        }
    };
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if job.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    let run = run.with_checkpoint_file("checkpoint.safetensors");
    super::kernels::pin(gpu, &run, job.resume)?;
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    if data.train.n() < cfg.train.batch_size {
        return Err(Error::Invalid(format!(
            "{} training images (after --val {} and --train-limit {}) make no batch of {} (--batch-size): nothing to train on",
            data.train.n(),
            cfg.data.val_count,
            cfg.data.train_limit,
            cfg.train.batch_size
        )));
    }
    let precise_batches = precise_bn_batches(cfg, data.train.n());
    let [_, h, w] = data.train.image_shape();
    let (params, flops) = crate::nn::size(&cfg.net, arch, h, w)?;
    for batch in [cfg.train.batch_size, cfg.eval_batch_size] {
        crate::nn::check_batch_fits(gpu, &cfg.net, arch, batch, h, w)?;
    }
    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    if let Some((search_run, search, growth)) = &source {
        // A checkpoint, when there is one, replaces these weights in `fit`.
        if !run.state_path().exists() && !run.checkpoint_path().exists() {
            // Recalibration needs the search's training split: this run's when it is the same.
            let same = cfg.data == search.data && cfg.train.seed == search.train.seed;
            let own = if same { None } else { Some(load(gpu, &search.data, search.train.seed)?) };
            let train = own.as_ref().map_or(&data.train, |d| &d.train);
            model = crate::morph::from_supernet_grown(gpu, search, search_run, cfg.spec.darts("growing from a supernet")?, train, growth)?;
        }
    }
    let expect = crate::nn::expected_tensors(&cfg.net, arch, h, w)?;
    let opts = FitOptions { run: &run, checkpoint_every: job.checkpoint_every, quiet: job.quiet, expect: Some(&expect) };
    let epochs = fit(&mut model, &data.train, &cfg.train, &opts, &mut |_, _| vec![arch.clone()])?;
    // Training time over every process that ran it (a resumed run included).
    let train_seconds: f64 = epochs.iter().map(|m| m.seconds).sum();
    let (running_bn, t) = test_precise(&mut model, cfg, &data)?;
    let Tested { test_accuracy, test_loss, val_accuracy } = t;
    let mut meta = BTreeMap::new();
    meta.insert("genotype".to_string(), arch.text());
    meta.insert("network".to_string(), serde_json::to_string(&cfg.net).unwrap_or_default());
    if let Some(id) = run.run_id() {
        meta.insert("cellnas.run_id".to_string(), id.to_string());
    }
    let weights: Vec<_> = model.download()?.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
    let final_path = run.dir().join("weights.safetensors");
    save_tensors(&final_path, &weights, &meta)?;
    run.record("weights.safetensors", &std::fs::read(&final_path).map_err(|e| Error::io(&final_path, e))?)?;
    let summary = TrainSummary { test_accuracy, test_loss, val_accuracy, running_bn, params, flops, train_seconds, epochs, precise_bn_batches: precise_batches };
    run.write_json_recorded(
        "metrics.json",
        &json!({ "test_accuracy": test_accuracy, "test_loss": test_loss, "val_accuracy": val_accuracy, "params": params, "flops": flops,
                 "train_seconds": train_seconds, "precise_bn_batches": precise_batches, "running_bn": running_bn }),
    )?;
    Ok(summary)
}

/// Test accuracy and loss, and validation accuracy when the run holds a validation split out.
fn test_and_val(model: &mut Model, arch: &Arch, data: &super::data::Loaded, batch: usize) -> Result<Tested> {
    let (test_accuracy, test_loss) = evaluate(&model.net, &mut model.store, &mut model.bn, arch, &data.test, batch)?;
    let val_accuracy = match &data.val {
        Some(v) => Some(evaluate(&model.net, &mut model.store, &mut model.bn, arch, v, batch)?.0),
        None => None,
    };
    Ok(Tested { test_accuracy, test_loss, val_accuracy })
}

/// Batches precise BN runs over (0 = off): `cfg.precise_bn`, at most one pass over the
/// training split (see `supernet::recalibration_batches`), saying so when it was cut.
fn precise_bn_batches(cfg: &StandaloneConfig, train_n: usize) -> usize {
    if cfg.precise_bn == 0 {
        return 0;
    }
    let eval = crate::supernet::EvalConfig { recalibration_batches: cfg.precise_bn, batch_size: cfg.train.batch_size };
    let (used, note) = crate::supernet::recalibration_batches(&eval, train_n);
    if let Some(note) = note {
        eprintln!("{note}");
    }
    used
}

/// Tests with the running statistics training left, then, when `cfg.precise_bn` > 0, replaces
/// them by statistics re-estimated over that many training batches (no augmentation, batches
/// of the training batch size, order by seed) and tests again. Returns (running-statistics
/// figures when precise BN ran, the final figures).
fn test_precise(model: &mut Model, cfg: &StandaloneConfig, data: &super::data::Loaded) -> Result<(Option<Tested>, Tested)> {
    let arch = &cfg.spec.arch;
    let running = test_and_val(model, arch, data, cfg.eval_batch_size)?;
    if cfg.precise_bn == 0 {
        return Ok((None, running));
    }
    let eval = crate::supernet::EvalConfig { recalibration_batches: cfg.precise_bn, batch_size: cfg.train.batch_size };
    model.bn = crate::supernet::recalibrate(model, arch, &data.train, &eval, cfg.train.seed)?;
    Ok((Some(running), test_and_val(model, arch, data, cfg.eval_batch_size)?))
}

/// What `cellnas test` measured, and on which weights.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TestReport {
    /// The file the weights came from.
    pub weights: std::path::PathBuf,
    /// Whole epochs trained into those weights.
    pub epoch: usize,
    /// Steps of the next epoch also trained, for a mid-epoch checkpoint.
    pub step: Option<usize>,
    pub finished: bool,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: Option<f64>,
    /// For a checkpoint tested with precise BN: the figures with its running statistics.
    pub running_bn: Option<Tested>,
}

/// Test accuracy of a stand-alone training run: its final weights when it has finished,
/// else its latest checkpoint, so a long run can be followed (or rescued) while it trains.
/// Only reads the run folder (checkpoints are renamed into place), so a run that is still
/// writing them is safe to read, and nothing of it is touched.
pub fn test_run(gpu: &Arc<Gpu>, dir: &Path) -> Result<TestReport> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let cfg: StandaloneConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: config_path.clone(),
        message: format!("not the config of a `cellnas train` run ({e})"),
    })?;
    let run = RunDir::verified(dir)?.with_checkpoint_file("checkpoint.safetensors");
    super::kernels::apply_recorded(gpu, dir)?;
    let final_path = run.dir().join("weights.safetensors");
    let (tensors, epoch, step, finished, weights) = if final_path.exists() {
        let (tensors, _) = load_tensors(&final_path)?;
        (tensors, cfg.train.epochs, None, true, final_path)
    } else {
        let Some((tensors, state)) = load_checkpoint(&run)? else {
            return Err(Error::Checkpoint { path: run.checkpoint_path(), message: "no weights yet: the run has not written its first checkpoint".into() });
        };
        let epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        let step = state.get("progress").and_then(|p| p["step"].as_u64()).map(|s| s as usize);
        (tensors, epoch, step, false, run.checkpoint_path())
    };
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    if !finished {
        precise_bn_batches(&cfg, data.train.n());
    }
    let arch = &cfg.spec.arch;
    let [_, h, w] = data.train.image_shape();
    crate::nn::check_batch_fits(gpu, &cfg.net, arch, cfg.eval_batch_size, h, w)?;
    darts::check_tensors(&crate::nn::expected_tensors(&cfg.net, arch, h, w)?, &tensors, &weights)?;
    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    model.restore(&tensors)?;
    // Final weights already hold precise-BN statistics; a checkpoint gets them now.
    let (running_bn, t) = if finished { (None, test_and_val(&mut model, arch, &data, cfg.eval_batch_size)?) } else { test_precise(&mut model, &cfg, &data)? };
    Ok(TestReport { weights, epoch, step, finished, test_accuracy: t.test_accuracy, test_loss: t.test_loss, val_accuracy: t.val_accuracy, running_bn })
}
