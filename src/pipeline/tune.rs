//! `cellnas tune`: hyperparameter tuning of a spec's stand-alone training. Each trial is a
//! `cellnas train` run folder (trials/NNNN: its config.json has the trial's hyperparameters,
//! `cellnas train --resume` and `cellnas test --run` work on it); jobs train it with the
//! stand-alone pipeline's own loop (`fit_until`) and score it on the validation split after
//! every epoch (val.jsonl in the trial folder).
//!
//! Continuing a promoted trial: a trial's config.json holds `train.epochs` = its budget (the
//! tune's --max-epochs under Hyperband), so its cosine schedule is laid over the whole budget
//! from the start, and a job trains only a prefix of it. A trial trained to r epochs and later
//! promoted to r' therefore resumes from its epoch-r checkpoint and ends bitwise where a trial
//! trained to r' in one go ends (tests/tune.rs); and a trial at its last rung is exactly a
//! `cellnas train` run of its budget. The cost: at a low rung, the learning rate has not
//! annealed yet, so early rungs are scored at a high learning rate.

use super::data::{load, Loaded};
use super::fit::{fit_until, FitOptions};
use super::standalone::{run_train, test_run, StandaloneConfig};
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::{append_jsonl, read_jsonl, RunDir};
use crate::train::{evaluate, EpochMetrics, Model};
use crate::tune::space::{Assignment, HpSpace};
use crate::tune::{curve, next_job, EarlyStop, Job, TrialRecord, Tuner};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TuneConfig {
    /// Every trial's settings before its hyperparameters are applied (`train.epochs` unused:
    /// each trial's budget is its own).
    pub base: StandaloneConfig,
    pub space: HpSpace,
    pub tuner: Tuner,
    /// Budget of a trial (Hyperband's R; random and Bayesian trials without an `epochs`
    /// hyperparameter).
    pub max_epochs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
    pub resume_ignore: Value,
}

/// Per-epoch validation score of a trial (trials/NNNN/val.jsonl).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValPoint {
    pub epoch: usize,
    pub val_accuracy: f64,
    pub val_loss: f64,
}

/// The best trial and what its hyperparameters give on the test split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Best {
    pub trial: usize,
    pub run: PathBuf,
    pub hyperparameters: Assignment,
    pub epochs: usize,
    /// Last point of its validation curve (running BN statistics, as the tuner saw it).
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// Validation accuracy after precise BN (what `cellnas train` reports), when it ran.
    pub val_accuracy_final: Option<f64>,
}

pub struct TuneSummary {
    pub records: Vec<TrialRecord>,
    pub best: Option<Best>,
    /// Training seconds over every trial (all processes).
    pub train_seconds: f64,
}

pub const MAX_TRIALS: usize = 100_000;

impl TuneConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.base.data.val_count == 0 {
            return bad("tune scores trials on a validation split: --val must be at least 1".into());
        }
        if self.max_epochs == 0 || self.max_epochs > crate::train::MAX_EPOCHS {
            return bad(format!("--max-epochs must be between 1 and {}, got {}", crate::train::MAX_EPOCHS, self.max_epochs));
        }
        match &self.tuner {
            Tuner::Random { trials } | Tuner::Bayes { trials, .. } if *trials == 0 || *trials > MAX_TRIALS => {
                return bad(format!("--trials must be between 1 and {MAX_TRIALS}, got {trials}"));
            }
            Tuner::Bayes { gamma, candidates, .. } if !(*gamma > 0.0 && *gamma < 1.0) || *candidates == 0 => {
                return bad(format!("Bayesian tuner: gamma must be in (0, 1) and candidates at least 1, got {gamma} and {candidates}"));
            }
            Tuner::Hyperband { factor, iterations } => {
                if *factor < 2 || *factor > 1000 {
                    return bad(format!("--factor must be between 2 and 1000, got {factor}"));
                }
                if *iterations == 0 || *iterations > 1000 {
                    return bad(format!("--iterations must be between 1 and 1000, got {iterations}"));
                }
                if self.space.get("epochs").is_some() {
                    return bad("hyperparameter \"epochs\": Hyperband sets each trial's epochs itself (up to --max-epochs); remove it from the file".into());
                }
            }
            _ => {}
        }
        if let Some(hp) = self.space.get("epochs") {
            if let Some(e) = hp.grid().and_then(|g| g.iter().filter_map(Value::as_u64).find(|&e| e == 0 || e as usize > crate::train::MAX_EPOCHS)) {
                return bad(format!("hyperparameter \"epochs\": {e} is not between 1 and {}", crate::train::MAX_EPOCHS));
            }
        }
        if let Some(es) = &self.early_stop {
            if !(es.probability > 0.0 && es.probability <= 1.0) {
                return bad(format!("--early-stop-probability must be in (0, 1], got {}", es.probability));
            }
            if es.min_epochs < curve::MIN_POINTS {
                return bad(format!("--early-stop-min-epochs must be at least {} (the models have three parameters), got {}", curve::MIN_POINTS, es.min_epochs));
            }
        }
        self.base.net.validate()?;
        Ok(())
    }

    /// The stand-alone config of a job's trial: the base with its hyperparameters, trained
    /// over the job's budget.
    pub fn trial_config(&self, job: &Job) -> StandaloneConfig {
        let mut c = self.space.apply(&self.base, &job.hyperparameters);
        c.train.epochs = job.budget;
        c.resume_ignore = self.base.resume_ignore.clone();
        c
    }
}

/// `lr=0.05 batch_size=64 ...`, for messages and tables.
pub fn hp_text(a: &Assignment) -> String {
    a.iter()
        .map(|(k, v)| match v.as_f64() {
            Some(x) if !v.is_i64() && !v.is_u64() => format!("{k}={x:.4}"),
            _ => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn trial_dir(out: &Path, trial: usize) -> PathBuf {
    out.join("trials").join(format!("{trial:04}"))
}

pub fn run_tune(gpu: &Arc<Gpu>, cfg: &TuneConfig, out: &Path, opts: &JobOptions) -> Result<TuneSummary> {
    cfg.validate()?;
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if opts.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    super::kernels::pin(gpu, &run, opts.resume)?;
    if opts.first_phase_only {
        return Ok(TuneSummary { records: Vec::new(), best: None, train_seconds: 0.0 });
    }
    if opts.resume && !opts.merging {
        super::shard::refuse_unsharded(out)?;
    }
    let path = out.join("trials.jsonl");
    let (mut done, warnings) = read_jsonl::<TrialRecord>(&path)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let seed = cfg.base.train.seed;
    // Replay: each record must be the job this config's tuner asks for after the ones before.
    for i in 0..done.len() {
        let want = next_job(&cfg.tuner, &cfg.space, seed, cfg.max_epochs, &done[..i]);
        if want.as_ref() != Some(&done[i].job) {
            return Err(Error::History {
                path: path.clone(),
                line: i + 1,
                message: format!("trial {} is not the job this config's tuner proposes there ({}); the file does not belong to this run", done[i].job.trial, want.map_or("none".into(), |j| format!("trial {}", j.trial))),
            });
        }
    }
    let data = load(gpu, &cfg.base.data, seed)?;
    while let Some(job) = next_job(&cfg.tuner, &cfg.space, seed, cfg.max_epochs, &done) {
        let rec = run_job(gpu, cfg, &job, &data, &done, out, opts)?;
        append_jsonl(&path, &rec)?;
        if !opts.quiet {
            let at = job.rung.map(|r| format!(" bracket {} rung {r}", job.bracket.unwrap_or(0))).unwrap_or_default();
            eprintln!(
                "trial {:>4}{at}: {} epochs, val acc {:.2}%{}  [{}]",
                job.trial,
                rec.curve.len(),
                100.0 * rec.val_accuracy,
                if rec.stopped_early { format!(" (stopped early: predicted {:.2}%)", 100.0 * rec.predicted.unwrap_or(0.0)) } else { String::new() },
                hp_text(&job.hyperparameters)
            );
        }
        done.push(rec);
    }
    let best = match crate::tune::best(&cfg.tuner, &done) {
        None => None,
        Some(b) => Some(test_best(gpu, cfg, b, out, opts)?),
    };
    let mut per_trial = std::collections::BTreeMap::new();
    for r in &done {
        per_trial.insert(r.job.trial, r.train_seconds);
    }
    let train_seconds = per_trial.values().sum();
    if let Some(b) = &best {
        run.write_json_recorded("best.json", &json!({ "best": b, "trials": per_trial.len(), "jobs": done.len(), "train_seconds": train_seconds }))?;
    }
    Ok(TuneSummary { records: done, best, train_seconds })
}

/// Test accuracy of the best trial: a trial trained to its whole budget is finished as a
/// `cellnas train` run (precise BN, weights.safetensors, metrics.json); one that is not is
/// tested on its latest checkpoint (`cellnas test`).
fn test_best(gpu: &Arc<Gpu>, cfg: &TuneConfig, b: &TrialRecord, out: &Path, opts: &JobOptions) -> Result<Best> {
    let dir = trial_dir(out, b.job.trial);
    let (test_accuracy, test_loss, val_final) = if b.job.epochs == b.job.budget {
        let tcfg = cfg.trial_config(&b.job);
        let s = run_train(gpu, &tcfg, &dir, &JobOptions { resume: true, quiet: true, checkpoint_every: opts.checkpoint_every, ..Default::default() })?;
        (s.test_accuracy, s.test_loss, s.val_accuracy)
    } else {
        let t = test_run(gpu, &dir)?;
        (t.test_accuracy, t.test_loss, t.val_accuracy)
    };
    Ok(Best {
        trial: b.job.trial,
        run: dir,
        hyperparameters: b.job.hyperparameters.clone(),
        epochs: b.curve.len(),
        val_accuracy: b.val_accuracy,
        test_accuracy,
        test_loss,
        val_accuracy_final: val_final,
    })
}

/// Trains a job's trial to its epochs (continuing from its folder), scoring each epoch, and
/// stopping early when its curve says so.
pub(crate) fn run_job(gpu: &Arc<Gpu>, cfg: &TuneConfig, job: &Job, data: &Loaded, done: &[TrialRecord], out: &Path, opts: &JobOptions) -> Result<TrialRecord> {
    let tcfg = cfg.trial_config(job);
    let label = || format!("trial {} ({})", job.trial, hp_text(&job.hyperparameters));
    tcfg.net.validate().and_then(|_| tcfg.train.validate()).map_err(|e| Error::Invalid(format!("{}: {e}", label())))?;
    if data.train.n() < tcfg.train.batch_size {
        return Err(Error::Invalid(format!("{}: {} training images make no batch of {}", label(), data.train.n(), tcfg.train.batch_size)));
    }
    let val = data.val.as_ref().expect("validated: --val > 0");
    let dir = trial_dir(out, job.trial);
    let resume = dir.join("config.json").is_file();
    let cfg_json = serde_json::to_value(&tcfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if resume { RunDir::resume(&dir, &cfg_json)? } else { RunDir::create(&dir, &cfg_json)? };
    let run = run.with_checkpoint_file("checkpoint.safetensors");
    super::kernels::pin(gpu, &run, resume)?;
    let arch = &tcfg.spec.arch;
    let [_, h, w] = data.train.image_shape();
    let expect = crate::nn::expected_tensors(&tcfg.net, arch, h, w)?;
    let val_path = dir.join("val.jsonl");
    let (mut points, warnings) = read_jsonl::<ValPoint>(&val_path)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let Some((i, p)) = points.iter().enumerate().find(|(i, p)| p.epoch != i + 1) {
        return Err(Error::History { path: val_path, line: i + 1, message: format!("epoch {} where {} was expected", p.epoch, i + 1) });
    }
    // Epochs checked by this trial's earlier jobs (a promoted trial) are not checked again.
    let start = done.iter().filter(|r| r.job.trial == job.trial).map(|r| r.curve.len()).max().unwrap_or(0);
    let mut model: Option<Model> = None;
    let (mut stopped, mut predicted, mut prob_below, mut reached) = (false, None, None, job.epochs);
    for k in 1..=job.epochs {
        if points.len() < k {
            if model.is_none() {
                for batch in [tcfg.train.batch_size, tcfg.eval_batch_size] {
                    crate::nn::check_batch_fits(gpu, &tcfg.net, arch, batch, h, w)?;
                }
                model = Some(Model::new(gpu, tcfg.net.clone(), tcfg.train.seed)?);
            }
            let m = model.as_mut().expect("just made");
            let fo = FitOptions { run: &run, checkpoint_every: opts.checkpoint_every, quiet: true, expect: Some(&expect) };
            fit_until(m, &data.train, &tcfg.train, &fo, &mut |_, _| vec![arch.clone()], k)?;
            let (val_accuracy, val_loss) = evaluate(&m.net, &mut m.store, &mut m.bn, arch, val, tcfg.eval_batch_size)?;
            let p = ValPoint { epoch: k, val_accuracy, val_loss };
            append_jsonl(&val_path, &p)?;
            points.push(p);
        }
        if let (Some(es), Some(inc)) = (&cfg.early_stop, crate::tune::incumbent(done, job.epochs)) {
            if k > start && k >= es.min_epochs && k < job.epochs {
                let curve: Vec<f64> = points[..k].iter().map(|p| p.val_accuracy).collect();
                let seed = crate::nn::params::name_seed(tcfg.train.seed, &format!("tune.curve{}", job.trial));
                if let Some((stop, mean, p)) = curve::should_stop(&curve, job.epochs, inc, es.probability, seed) {
                    (predicted, prob_below) = (Some(mean), Some(p));
                    if stop {
                        (stopped, reached) = (true, k);
                        break;
                    }
                }
            }
        }
    }
    let curve: Vec<f64> = points[..reached].iter().map(|p| p.val_accuracy).collect();
    let (metrics, _) = read_jsonl::<EpochMetrics>(&run.metrics_path())?;
    Ok(TrialRecord {
        job: job.clone(),
        val_accuracy: *curve.last().unwrap_or(&0.0),
        curve,
        stopped_early: stopped,
        predicted,
        prob_below,
        train_seconds: metrics.iter().map(|m| m.seconds).sum(),
    })
}
