//! The resumable training loop both jobs share: a search trains its supernet with it, `cellnas
//! train` a stand-alone network. It checkpoints after every epoch and, within an epoch, every
//! `checkpoint_every` of wall time, so a long epoch on a slow adapter loses at most that much
//! work when killed. A resumed run continues from the last checkpoint and ends bitwise equal to
//! an uninterrupted one: batches, augmentation and learning rate depend only on (seed, epoch,
//! step), and the callers' path samplers are replayed step by step.

use crate::data::DeviceData;
use crate::error::{Error, Result};
use crate::run::{append_jsonl, jsonl_line, load_checkpoint, read_jsonl, save_checkpoint, write_atomic, RunDir};
use crate::space::Arch;
use crate::train::{train_epoch, EpochMetrics, EpochProgress, Model, TrainConfig};
use serde_json::json;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const PLAIN_EVERY: Duration = Duration::from_secs(300);

pub struct FitOptions<'a> {
    pub run: &'a RunDir,
    /// Wall time between mid-epoch checkpoints; `None`: only at the end of each epoch.
    pub checkpoint_every: Option<Duration>,
    pub quiet: bool,
    /// The tensors a checkpoint must hold exactly (a stand-alone network); None where a
    /// checkpoint holds only what training touched (a supernet).
    pub expect: Option<&'a std::collections::BTreeMap<String, usize>>,
}

/// Train `model` for `cfg.epochs`, resuming from the run's checkpoint if it has one.
/// `paths(epoch, step)` gives the genotype(s) a step trains; it is called for every step in
/// order, from step 0 of the first epoch this process runs. Returns every epoch's metrics,
/// the ones of earlier processes included.
pub fn fit(
    model: &mut Model,
    data: &DeviceData,
    cfg: &TrainConfig,
    opts: &FitOptions,
    paths: &mut dyn FnMut(usize, usize) -> Vec<Arch>,
) -> Result<Vec<EpochMetrics>> {
    fit_until(model, data, cfg, opts, paths, cfg.epochs)
}

/// [`fit`], stopping after epoch `until` (at most `cfg.epochs`) of the `cfg.epochs`-epoch run:
/// the learning-rate schedule stays the one over `cfg.epochs`, so training to `until` and
/// later resuming to a larger `until` is a prefix of the same run, bitwise (`cellnas tune`
/// continues promoted trials this way).
pub fn fit_until(
    model: &mut Model,
    data: &DeviceData,
    cfg: &TrainConfig,
    opts: &FitOptions,
    paths: &mut dyn FnMut(usize, usize) -> Vec<Arch>,
    until: usize,
) -> Result<Vec<EpochMetrics>> {
    let until = until.min(cfg.epochs);
    let run = opts.run;
    let mut start_epoch = 0;
    let mut progress = EpochProgress::default();
    let mut last_epoch_metrics: Option<EpochMetrics> = None;
    if let Some((tensors, state)) = load_checkpoint(run)? {
        if let Some(expect) = opts.expect {
            crate::nn::darts::check_tensors(expect, &tensors, &run.checkpoint_path())?;
        }
        model.restore(&tensors)?;
        start_epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        if let Some(p) = state.get("progress") {
            progress = serde_json::from_value(p.clone()).map_err(|e| Error::Checkpoint {
                path: run.state_path(),
                message: format!("\"progress\" is not an epoch position ({e})"),
            })?;
        }
        last_epoch_metrics = state.get("metrics").and_then(|m| serde_json::from_value(m.clone()).ok());
    }
    let mut epochs = completed_epochs(run, start_epoch, last_epoch_metrics, |m: &EpochMetrics| m.epoch)?;

    for epoch in start_epoch..until {
        let steps = data.n() / cfg.batch_size;
        let pb = super::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.epochs), opts.quiet);
        let resumed_at = progress.step;
        let (t0, mut last_save, mut last_line) = (Instant::now(), Instant::now(), Instant::now());
        // Progress bars hide themselves off a terminal; a run logging to a file gets a plain
        // line every few minutes instead.
        let plain = !opts.quiet && !std::io::stderr().is_terminal();
        let m = train_epoch(model, data, cfg, epoch, std::mem::take(&mut progress), &mut |i| paths(epoch, i), &mut |done| {
            let (p, steps) = (done.progress, done.steps);
            pb.set_position(p.step as u64);
            let ips = ((p.step - resumed_at) * cfg.batch_size) as f64 / t0.elapsed().as_secs_f64();
            // A hidden bar (quiet, or not a terminal) would format a message nobody sees every step.
            if !pb.is_hidden() {
                pb.set_message(format!("loss {:.3} acc {:.1}% {ips:.0} img/s", p.loss(), 100.0 * p.accuracy()));
            }
            if plain && last_line.elapsed() >= PLAIN_EVERY {
                eprintln!("epoch {}: step {}/{steps}  loss {:.4}  train acc {:.2}%  {ips:.1} img/s", epoch + 1, p.step, p.loss(), 100.0 * p.accuracy());
                last_line = Instant::now();
            }
            if opts.checkpoint_every.is_some_and(|every| last_save.elapsed() >= every) && p.step < steps {
                // The weights must be those of exactly `p.step` steps: wait for the steps in flight.
                if !done.settled {
                    return Ok(true);
                }
                save_checkpoint(run, &done.model.download()?, &json!({ "epoch": epoch, "progress": p }))?;
                last_save = Instant::now();
            }
            Ok(false)
        })?;
        pb.finish_and_clear();
        if !opts.quiet {
            eprintln!(
                "epoch {:>3}: loss {:.4}  train acc {:.2}%  {:.0} img/s  {:.1}s",
                epoch + 1,
                m.loss,
                100.0 * m.accuracy,
                m.images_per_s,
                m.seconds
            );
        }
        save_checkpoint(run, &model.download()?, &json!({ "epoch": epoch + 1, "metrics": m }))?;
        append_jsonl(&run.metrics_path(), &m)?;
        epochs.push(m);
    }
    Ok(epochs)
}

/// metrics.jsonl made to list exactly the epochs before `start_epoch` (those the checkpoint
/// holds): records of later epochs are dropped, and the last one (`last`, from the checkpoint's
/// state) is restored when the run was killed between writing the checkpoint and appending it.
/// Returns the records kept; the file is rewritten atomically.
pub(crate) fn completed_epochs<T: serde::Serialize + serde::de::DeserializeOwned>(run: &RunDir, start_epoch: usize, last: Option<T>, epoch_of: impl Fn(&T) -> usize) -> Result<Vec<T>> {
    let (mut epochs, warnings) = read_jsonl::<T>(&run.metrics_path())?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    epochs.retain(|m| epoch_of(m) < start_epoch);
    if epochs.len() + 1 == start_epoch {
        if let Some(m) = last.filter(|m| epoch_of(m) + 1 == start_epoch) {
            epochs.push(m);
        }
    }
    let mut text = Vec::new();
    for m in &epochs {
        text.extend(jsonl_line(&run.metrics_path(), m)?);
    }
    write_atomic(&run.metrics_path(), &text)?;
    Ok(epochs)
}
