//! `cellnas rank --early-stop`: a stand-alone training that is scored on the validation split
//! after every epoch (train/NN/val.jsonl) and stopped once its learning curve, extrapolated by
//! `tune::curve`, is below the incumbent with probability >= p.
//!
//! The incumbent of architecture i is the k-th best final validation accuracy (k of
//! precision@k) among the architectures before i (in id order) that trained to the end. Why the
//! k-th best and not the best: rank measures how well the inherited scores find the stand-alone
//! top k, and an architecture that ends below the k-th best finished one cannot enter the top k
//! (the k-th best of the finished ones only rises as more finish), so stopping it keeps
//! precision@k and the regret (up to the probability p), while stopping below the best would
//! cut short the very architectures whose order precision@k counts. Only earlier ids count, so
//! the decision is the same on a resume and does not depend on timing.
//!
//! The comparison is made at the same epoch: the incumbent's own curve, cut at the epoch the
//! candidate has reached, is extrapolated by the same models, and the candidate's prediction is
//! shifted by that extrapolation's error (incumbent's final - its prediction). Every training
//! of a rank shares one schedule, and a schedule puts a bias into every extrapolation that the
//! models cannot see (a cosine schedule's late rise: a measured rank stopped 8 of 12 trainings
//! at 3 of 6 epochs on uncorrected predictions, and two of them ended above every finished one;
//! docs/RESULTS.md); the shift cancels it.

use super::data::Loaded;
use super::fit::{fit_until, FitOptions};
use super::standalone::{run_train, StandaloneConfig};
use super::tune::ValPoint;
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::{append_jsonl, read_jsonl, RunDir};
use crate::train::{evaluate, EpochMetrics, Model};
use crate::tune::{curve, EarlyStop};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Why an architecture's training stopped (rank.json, and train/NN/stopped.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// Epochs trained before the stop (of the rank's --epochs).
    pub epochs: usize,
    /// Predicted validation accuracy at the last epoch: the models' Akaike-weighted mean,
    /// shifted by the incumbent's extrapolation error at the same epoch (clamped to [0, 1]).
    pub predicted: f64,
    /// 5% and 95% quantiles of the predictive distribution, shifted likewise.
    pub predicted_90: [f64; 2],
    /// The models' own prediction, before the shift.
    pub predicted_raw: f64,
    /// P(final validation accuracy < incumbent), on the shifted distribution.
    pub prob_below: f64,
    /// The incumbent's final validation accuracy, and its extrapolation from as many epochs.
    pub incumbent: f64,
    pub incumbent_predicted: f64,
    pub train_seconds: f64,
}

/// What one architecture's training under early stopping came to.
pub enum Outcome {
    /// Trained to the end and finished as `cellnas train` (metrics.json's figures).
    Finished { curve: Vec<f64>, metrics: Value },
    Stopped { curve: Vec<f64>, stop: Stopped },
}

/// The validation curve of the k-th best finished architecture by its final point (the earlier
/// one of a tie), None with fewer than k finished.
pub fn incumbent(finished: &[Vec<f64>], k: usize) -> Option<Vec<f64>> {
    let mut v: Vec<&Vec<f64>> = finished.iter().filter(|c| !c.is_empty()).collect();
    v.sort_by(|a, b| b[b.len() - 1].total_cmp(&a[a.len() - 1]));
    (k >= 1).then(|| v.get(k - 1).map(|c| c.to_vec())).flatten()
}

#[derive(Serialize, Deserialize)]
struct StoppedFile {
    curve: Vec<f64>,
    stop: Stopped,
}

/// Trains `cfg` in `dir` epoch by epoch (continuing what the folder holds), stopping early by
/// `es` against `incumbent`; a full training ends as `run_train` would have ended it, bitwise
/// (the schedule is over all epochs from the start, and `run_train` resumes the last checkpoint).
#[allow(clippy::too_many_arguments)]
pub fn train_or_stop(gpu: &Arc<Gpu>, cfg: &StandaloneConfig, dir: &Path, data: &Loaded, es: &EarlyStop, incumbent: Option<&[f64]>, seed: u64, job: &JobOptions) -> Result<Outcome> {
    let val = data.val.as_ref().ok_or_else(|| Error::Invalid("--early-stop needs a validation split (the search run's --val)".into()))?;
    let epochs = cfg.train.epochs;
    let val_path = dir.join("val.jsonl");
    {
        // Scoped: `run_train` below takes the folder's lock itself.
        let resume = dir.join("config.json").is_file();
        let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
        let run = if resume { RunDir::resume(dir, &cfg_json)? } else { RunDir::create(dir, &cfg_json)? };
        let run = run.with_checkpoint_file("checkpoint.safetensors");
        let stopped_path = dir.join("stopped.json");
        if stopped_path.is_file() {
            let bytes = std::fs::read(&stopped_path).map_err(|e| Error::io(&stopped_path, e))?;
            let f: StoppedFile = serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: stopped_path.clone(), message: format!("not a stop record ({e})") })?;
            return Ok(Outcome::Stopped { curve: f.curve, stop: f.stop });
        }
        super::kernels::pin(gpu, &run, resume)?;
        let (mut points, warnings) = read_jsonl::<ValPoint>(&val_path)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        if let Some((i, p)) = points.iter().enumerate().find(|(i, p)| p.epoch != i + 1) {
            return Err(Error::History { path: val_path, line: i + 1, message: format!("epoch {} where {} was expected", p.epoch, i + 1) });
        }
        let arch = &cfg.spec.arch;
        let [_, h, w] = data.train.image_shape();
        let expect = crate::nn::expected_tensors(&cfg.net, arch, h, w)?;
        let mut model: Option<Model> = None;
        for k in 1..=epochs {
            if points.len() < k {
                if model.is_none() {
                    for batch in [cfg.train.batch_size, cfg.eval_batch_size] {
                        crate::nn::check_batch_fits(gpu, &cfg.net, arch, batch, h, w)?;
                    }
                    model = Some(Model::new(gpu, cfg.net.clone(), cfg.train.seed)?);
                }
                let m = model.as_mut().expect("just made");
                let fo = FitOptions { run: &run, checkpoint_every: job.checkpoint_every, quiet: true, expect: Some(&expect) };
                fit_until(m, &data.train, &cfg.train, &fo, &mut |_, _| vec![arch.clone()], k)?;
                let (val_accuracy, val_loss) = evaluate(&m.net, &mut m.store, &mut m.bn, arch, val, cfg.eval_batch_size)?;
                let p = ValPoint { epoch: k, val_accuracy, val_loss };
                append_jsonl(&val_path, &p)?;
                points.push(p);
            }
            let Some(inc_curve) = incumbent.filter(|c| c.len() >= epochs) else { continue };
            if k < es.min_epochs || k >= epochs {
                continue;
            }
            let inc = inc_curve[epochs - 1];
            let curve: Vec<f64> = points[..k].iter().map(|p| p.val_accuracy).collect();
            let (Some(pred), Some(inc_pred)) = (curve::predict(&curve, epochs, seed), curve::predict(&inc_curve[..k], epochs, seed)) else { continue };
            // P(pred + shift < inc) with shift = inc - inc_pred: P(pred < inc_pred).
            let shift = inc - inc_pred.mean;
            let prob_below = pred.prob_below(inc_pred.mean);
            if prob_below >= es.probability {
                let (metrics, _) = read_jsonl::<EpochMetrics>(&run.metrics_path())?;
                let stop = Stopped {
                    epochs: k,
                    predicted: (pred.mean + shift).clamp(0.0, 1.0),
                    predicted_90: [(pred.quantile(0.05) + shift).clamp(0.0, 1.0), (pred.quantile(0.95) + shift).clamp(0.0, 1.0)],
                    predicted_raw: pred.mean,
                    prob_below,
                    incumbent: inc,
                    incumbent_predicted: inc_pred.mean,
                    train_seconds: metrics.iter().map(|m| m.seconds).sum(),
                };
                run.write_json_recorded("stopped.json", &StoppedFile { curve: curve.clone(), stop: stop.clone() })?;
                return Ok(Outcome::Stopped { curve, stop });
            }
        }
    }
    let s = run_train(gpu, cfg, dir, &JobOptions { resume: true, quiet: true, checkpoint_every: job.checkpoint_every, ..Default::default() })?;
    let metrics = serde_json::json!({ "test_accuracy": s.test_accuracy, "val_accuracy": s.val_accuracy, "params": s.params, "train_seconds": s.train_seconds });
    Ok(Outcome::Finished { curve: read_curve(dir, epochs)?, metrics })
}

/// The full validation curve of a finished training (its val.jsonl).
pub fn read_curve(dir: &Path, epochs: usize) -> Result<Vec<f64>> {
    let path = dir.join("val.jsonl");
    let (points, _) = read_jsonl::<ValPoint>(&path)?;
    if points.len() < epochs {
        return Err(Error::Config { path, message: format!("holds {} of {epochs} epochs' validation scores; the training was not run by `rank --early-stop`", points.len()) });
    }
    Ok(points[..epochs].iter().map(|p| p.val_accuracy).collect())
}
