//! `cellnas train --spec FILE`: build the stand-alone network a spec defines (affine BN),
//! train it from scratch, report test accuracy, save weights (safetensors) and metrics.

use super::data::{load, DataConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::darts::{self, NetConfig};
use crate::run::{append_jsonl, save_tensors, write_json_atomic, RunDir};
use crate::space::Spec;
use crate::train::{evaluate, train_epoch, EpochMetrics, Model, TrainConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StandaloneConfig {
    pub spec: Spec,
    pub data: DataConfig,
    pub net: NetConfig,
    pub train: TrainConfig,
    pub eval_batch_size: usize,
    pub resume_ignore: serde_json::Value,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub val_accuracy: Option<f64>,
    pub params: u64,
    pub flops: u64,
    pub train_seconds: f64,
    pub epochs: Vec<EpochMetrics>,
}

pub fn run_train(gpu: &Arc<Gpu>, cfg: &StandaloneConfig, out: &Path, quiet: bool) -> Result<TrainSummary> {
    cfg.net.validate()?;
    cfg.train.validate()?;
    if cfg.net.supernet {
        return Err(Error::Invalid("stand-alone training builds the stand-alone network (net.supernet must be false)".into()));
    }
    let genotype = &cfg.spec.genotype;
    genotype.validate()?;
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = RunDir::create(out, &cfg_json)?;
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    let [_, h, w] = data.train.image_shape();
    let (params, flops) = darts::size(&cfg.net, genotype, h, w)?;
    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    let t0 = Instant::now();
    let mut epochs = Vec::new();
    for epoch in 0..cfg.train.epochs {
        let steps = data.train.n() / cfg.train.batch_size;
        let pb = super::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.train.epochs), quiet);
        let te = Instant::now();
        let m = train_epoch(&mut model, &data.train, &cfg.train, epoch, &mut |_| vec![genotype.clone()], &mut |done, _, loss, acc| {
            pb.set_position(done as u64);
            let ips = (done * cfg.train.batch_size) as f64 / te.elapsed().as_secs_f64();
            pb.set_message(format!("loss {loss:.3} acc {:.1}% {ips:.0} img/s", 100.0 * acc));
        })?;
        pb.finish_and_clear();
        if !quiet {
            eprintln!("epoch {:>3}: loss {:.4}  train acc {:.2}%  {:.0} img/s  {:.1}s", epoch + 1, m.loss, 100.0 * m.accuracy, m.images_per_s, m.seconds);
        }
        append_jsonl(&run.metrics_path(), &m)?;
        epochs.push(m);
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let (test_accuracy, test_loss) = evaluate(&model.net, &mut model.store, &mut model.bn, genotype, &data.test, cfg.eval_batch_size)?;
    let val_accuracy = match &data.val {
        Some(v) => Some(evaluate(&model.net, &mut model.store, &mut model.bn, genotype, v, cfg.eval_batch_size)?.0),
        None => None,
    };
    let mut meta = BTreeMap::new();
    meta.insert("genotype".to_string(), genotype.to_darts());
    meta.insert("network".to_string(), serde_json::to_string(&cfg.net).unwrap_or_default());
    let weights: Vec<_> = model.download()?.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
    save_tensors(&run.dir().join("weights.safetensors"), &weights, &meta)?;
    let summary = TrainSummary { test_accuracy, test_loss, val_accuracy, params, flops, train_seconds, epochs };
    write_json_atomic(
        &run.dir().join("metrics.json"),
        &json!({ "test_accuracy": test_accuracy, "test_loss": test_loss, "val_accuracy": val_accuracy, "params": params, "flops": flops, "train_seconds": train_seconds }),
    )?;
    Ok(summary)
}
