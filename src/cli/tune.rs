//! `cellnas tune`: flags -> TuneConfig -> pipeline::tune, and the closing table.

use super::jobs::{apply_data, apply_net, apply_train, checkpoint_every, default_standalone, fit_to_data, fresh_dir, read_config, DataArgs, NetArgs, TrainArgs};
use anyhow::{bail, Result};
use cellnas::gpu::Gpu;
use cellnas::pipeline::tune::{hp_text, run_tune, TuneConfig};
use cellnas::pipeline::JobOptions;
use cellnas::tune::space::HpSpace;
use cellnas::tune::{EarlyStop, Tuner};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The architecture whose stand-alone training is tuned (as `cellnas train --spec`; required unless --resume).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Hyperparameter file in Keras Tuner's vocabulary: TOML if its name ends in .toml, else JSON
    /// (README, docs/hp/) (required unless --resume).
    #[arg(long)]
    pub hp: Option<PathBuf>,
    /// random, bayes (TPE) or hyperband [hyperband].
    #[arg(long)]
    pub tuner: Option<String>,
    /// Trials of the random and Bayesian tuners [10].
    #[arg(long)]
    pub trials: Option<usize>,
    /// Random trials before the Bayesian tuner models anything [max(3, trials/4), at most trials].
    #[arg(long)]
    pub initial_trials: Option<usize>,
    /// Epochs of a full trial: Hyperband's maximum resource R, and the budget of random and
    /// Bayesian trials without an `epochs` hyperparameter [9].
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Hyperband's reduction factor eta [3].
    #[arg(long)]
    pub factor: Option<usize>,
    /// Hyperband iterations (each runs every bracket with new configurations) [1].
    #[arg(long)]
    pub iterations: Option<usize>,
    #[command(flatten)]
    pub stop: EarlyStopArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Training batches of precise BN before the best trial is tested, 0 = off [32].
    #[arg(long)]
    pub precise_bn: Option<usize>,
    /// Run folder [default: runs/tune-<seed>, or .2, .3, ... if that exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the tune in this folder: trials.jsonl is replayed, the trial in progress resumes from its checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Run one phase only: `setup` creates the tune's folder and stops, for its jobs to run in
    /// shards (--shard) joined by `cellnas merge`.
    #[arg(long, value_parser = ["setup"])]
    pub phase: Option<String>,
    /// Run shard I of N (I from 0) of the tune given by --resume: the jobs at positions p mod
    /// N = I of each round (docs/ARCHITECTURE.md, "Sharded search").
    #[arg(long, value_name = "I/N", conflicts_with = "phase")]
    pub shard: Option<cellnas::pipeline::shard::Shard>,
    /// Minutes a shard waits for the others to finish a round [60].
    #[arg(long, requires = "shard")]
    pub shard_wait_minutes: Option<f64>,
    /// Minutes of training between mid-epoch checkpoints, 0 = only after each epoch [10].
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
}

fn tuner(a: &TuneArgs, current: Option<&Tuner>) -> Result<Tuner> {
    let name = a.tuner.as_deref().unwrap_or(current.map_or("hyperband", |t| t.name()));
    let trials = a.trials.or(match current {
        Some(Tuner::Random { trials }) | Some(Tuner::Bayes { trials, .. }) => Some(*trials),
        _ => None,
    });
    let t = match name {
        "random" => Tuner::Random { trials: trials.unwrap_or(10) },
        "bayes" => {
            let trials = trials.unwrap_or(10);
            let prev = match current {
                Some(Tuner::Bayes { initial, .. }) => Some(*initial),
                _ => None,
            };
            let initial = a.initial_trials.or(prev).unwrap_or((trials / 4).max(3).min(trials));
            Tuner::Bayes { trials, initial, gamma: 0.25, candidates: 24 }
        }
        "hyperband" => {
            if a.trials.is_some() {
                bail!("--trials: Hyperband's brackets fix the number of trials (--max-epochs, --factor and --iterations set them)");
            }
            let (f, i) = match current {
                Some(Tuner::Hyperband { factor, iterations }) => (*factor, *iterations),
                _ => (3, 1),
            };
            Tuner::Hyperband { factor: a.factor.unwrap_or(f), iterations: a.iterations.unwrap_or(i) }
        }
        other => bail!("--tuner {other}: expected random, bayes or hyperband"),
    };
    if !matches!(t, Tuner::Hyperband { .. }) && (a.factor.is_some() || a.iterations.is_some()) {
        bail!("--factor and --iterations are Hyperband's; --tuner is {name}");
    }
    if !matches!(t, Tuner::Bayes { .. }) && a.initial_trials.is_some() {
        bail!("--initial-trials is the Bayesian tuner's; --tuner is {name}");
    }
    Ok(t)
}

/// Learning-curve early stopping, as `tune` and `rank` take it.
#[derive(clap::Args, Debug)]
pub struct EarlyStopArgs {
    /// Stop a training once its extrapolated validation curve is below the incumbent with high
    /// probability (tune: the best job of the same epochs; rank: the k-th best finished
    /// architecture, k of --precision-k; docs/ARCHITECTURE.md).
    #[arg(long)]
    pub early_stop: bool,
    /// The probability early stopping needs [0.95].
    #[arg(long, requires = "early_stop")]
    pub early_stop_probability: Option<f64>,
    /// Epochs a curve needs before it is extrapolated, at least 3 [3].
    #[arg(long, requires = "early_stop")]
    pub early_stop_min_epochs: Option<usize>,
}

impl EarlyStopArgs {
    /// `current` (the run's setting on a resume) with the flags given applied.
    pub fn apply(&self, current: Option<EarlyStop>) -> Option<EarlyStop> {
        if !self.early_stop {
            return current;
        }
        let prev = current.unwrap_or(EarlyStop { probability: 0.95, min_epochs: cellnas::tune::curve::MIN_POINTS });
        Some(EarlyStop { probability: self.early_stop_probability.unwrap_or(prev.probability), min_epochs: self.early_stop_min_epochs.unwrap_or(prev.min_epochs) })
    }
}

pub fn tune(gpu: &Arc<Gpu>, a: &TuneArgs) -> Result<()> {
    if a.train.epochs.is_some() {
        bail!("--epochs: a tune's trials get their epochs from --max-epochs (or an \"epochs\" hyperparameter)");
    }
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => (read_config::<TuneConfig>(dir, "tune")?, dir.clone(), true),
        None => {
            let (Some(spec), Some(hp)) = (&a.spec, &a.hp) else { bail!("--spec FILE and --hp FILE are required (or --resume DIR to continue a tune)") };
            let mut base = default_standalone(super::read_spec(spec)?);
            base.data.val_count = 500;
            let cfg = TuneConfig { base, space: HpSpace::read(hp)?, tuner: Tuner::Random { trials: 1 }, max_epochs: 9, early_stop: None, resume_ignore: json!({}) };
            (cfg, PathBuf::new(), false)
        }
    };
    if resume {
        if let Some(s) = &a.spec {
            cfg.base.spec = super::read_spec(s)?;
        }
        if let Some(hp) = &a.hp {
            cfg.space = HpSpace::read(hp)?;
        }
    }
    cfg.tuner = tuner(a, resume.then_some(&cfg.tuner))?;
    apply_data(&mut cfg.base.data, &a.data);
    apply_train(&mut cfg.base.train, &a.train);
    apply_net(&mut cfg.base.net, &a.net);
    if let Some(e) = a.max_epochs {
        cfg.max_epochs = e;
    }
    cfg.base.train.epochs = cfg.max_epochs;
    if let Some(n) = a.precise_bn {
        cfg.base.precise_bn = n;
    }
    cfg.early_stop = a.stop.apply(cfg.early_stop.take());
    if !resume {
        fit_to_data(&mut cfg.base.net, &mut cfg.base.train, &a.train, &cfg.base.data, a.quiet)?;
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| fresh_dir(&format!("runs/tune-{}", cfg.base.train.seed))) };
    cfg.base.resume_ignore = json!({ "adapter": gpu.info.name });
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "out": out });
    if !a.quiet {
        let plan = match &cfg.tuner {
            Tuner::Hyperband { factor, iterations } => {
                let b = cellnas::tune::hyperband::brackets(cfg.max_epochs, *factor);
                let (cont, restart) = cellnas::tune::hyperband::epochs_total(&b);
                let rungs: Vec<String> = b.iter().map(|b| b.rungs.iter().map(|(n, e)| format!("{n}x{e}")).collect::<Vec<_>>().join(">")).collect();
                format!("hyperband, {iterations} iteration(s) of brackets {} ({} trial epochs per iteration; {restart} if promoted trials restarted)", rungs.join(" | "), cont)
            }
            Tuner::Random { trials } => format!("random, {trials} trials"),
            Tuner::Bayes { trials, initial, .. } => format!("bayes (TPE), {trials} trials, the first {initial} random"),
        };
        eprintln!("cellnas tune: {plan}, up to {} epochs each, adapter {}, run folder {}", cfg.max_epochs, gpu.info.name, out.display());
    }
    let first_phase_only = a.phase.is_some();
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: checkpoint_every(a.checkpoint_minutes)?, first_phase_only, ..Default::default() };
    if let Some(shard) = a.shard {
        if !resume {
            bail!("--shard {}/{} runs part of the tune given by --resume TUNE, which `--phase setup` created", shard.index, shard.count);
        }
        let minutes = a.shard_wait_minutes.unwrap_or(60.0);
        if !(minutes.is_finite() && (0.0..=100_000.0).contains(&minutes)) {
            bail!("--shard-wait-minutes must be between 0 and 100000, got {minutes}");
        }
        let wait = std::time::Duration::from_secs_f64(minutes * 60.0);
        let n = cellnas::pipeline::tune_shard::run_tune_shard(gpu, &cfg, &out, shard, &job, wait)?;
        println!("shard {}/{}: {n} jobs run; when every shard has finished: cellnas merge {}", shard.index, shard.count, out.display());
        return Ok(());
    }
    let s = run_tune(gpu, &cfg, &out, &job)?;
    if first_phase_only {
        println!("tune created. Run its jobs in N shards, each `cellnas tune --resume {} --shard I/N` (I = 0..N-1), then `cellnas merge {}`", out.display(), out.display());
        return Ok(());
    }
    print_summary(&s);
    Ok(())
}

/// The table of jobs and the best trial.
pub fn print_summary(s: &cellnas::pipeline::tune::TuneSummary) {
    println!("{:<6} {:<8} {:>6} {:>9} {:>8}  hyperparameters", "trial", "at", "epochs", "val acc", "stopped");
    for r in &s.records {
        let at = r.job.rung.map_or("-".to_string(), |rung| format!("b{}r{rung}", r.job.bracket.unwrap_or(0)));
        let best = s.best.as_ref().is_some_and(|b| b.trial == r.job.trial && b.epochs == r.curve.len());
        println!(
            "{:<6} {:<8} {:>6} {:>8.2}% {:>8}  {}{}",
            r.job.trial,
            at,
            r.curve.len(),
            100.0 * r.val_accuracy,
            if r.stopped_early { "yes" } else { "" },
            hp_text(&r.job.hyperparameters),
            if best { "  <- best" } else { "" }
        );
    }
    let trials = s.records.iter().map(|r| r.job.trial).collect::<std::collections::BTreeSet<_>>().len();
    match &s.best {
        Some(b) => println!(
            "{trials} trials, {} jobs, {:.1}s of training; best: trial {} ({} epochs) val acc {:.2}%, test acc {:.2}% ({}); {}",
            s.records.len(),
            s.train_seconds,
            b.trial,
            b.epochs,
            100.0 * b.val_accuracy,
            100.0 * b.test_accuracy,
            b.run.display(),
            hp_text(&b.hyperparameters)
        ),
        None => println!("{trials} trials, no finished trial (all stopped early)"),
    }
}
