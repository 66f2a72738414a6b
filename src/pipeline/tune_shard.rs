//! A tune's jobs in shards, the way a search's candidates are (shard.rs): `tune ... --out T
//! --phase setup` creates the run, `tune --resume T --shard I/N` runs the jobs at positions
//! p mod N = I of each round, `cellnas merge T` writes trials.jsonl in the order one process
//! writes it and finishes the tune (the best trial's test) through the tune job itself.
//!
//! A round is the jobs that do not depend on each other's results: every trial of a random
//! tune; the random first trials of a Bayesian one, then one trial at a time (TPE proposes from
//! all trials before); one rung of one Hyperband bracket (its promotions are the rung before's
//! best). Every shard computes the rounds itself from the records of the rounds before, which
//! it reads from the other shards' `shards/J/records.jsonl`. `--early-stop` is not sharded: its
//! incumbent depends on the jobs finished before, in order.

use super::shard::{claim_plan, host, shard_dir, Done, Plan, Shard, DONE, FORMAT};
use super::tune::{run_job, TuneConfig};
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::{append_jsonl, jsonl_line, parse_jsonl, write_atomic, write_json_atomic, RunDir};
use crate::tune::{next_job, Job, TrialRecord, Tuner};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RECORDS: &str = "records.jsonl";

/// One line of a shard's records.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Recorded {
    run: String,
    /// The job's place in the tune's trials.jsonl.
    position: usize,
    record: TrialRecord,
}

/// The jobs after `done` that depend on no result outside `done` (see the module docs).
pub fn round(cfg: &TuneConfig, done: &[TrialRecord]) -> Vec<Job> {
    let seed = cfg.base.train.seed;
    let mut assumed = done.to_vec();
    let mut out: Vec<Job> = Vec::new();
    while let Some(job) = next_job(&cfg.tuner, &cfg.space, seed, cfg.max_epochs, &assumed) {
        if let Some(first) = out.first() {
            let together = match &cfg.tuner {
                Tuner::Random { .. } => true,
                Tuner::Bayes { initial, .. } => job.trial < *initial,
                Tuner::Hyperband { .. } => (job.bracket, job.rung) == (first.bracket, first.rung),
            };
            if !together {
                break;
            }
        }
        // A stand-in result, never read: the jobs kept do not depend on it.
        assumed.push(TrialRecord { job: job.clone(), curve: Vec::new(), val_accuracy: f64::NAN, stopped_early: false, predicted: None, prob_below: None, train_seconds: 0.0 });
        out.push(job);
    }
    out
}

/// Runs shard `shard`'s jobs of the tune in `dir`.
pub fn run_tune_shard(gpu: &Arc<Gpu>, cfg: &TuneConfig, dir: &Path, shard: Shard, opts: &JobOptions, wait: Duration) -> Result<usize> {
    let t0 = Instant::now();
    cfg.validate()?;
    if cfg.early_stop.is_some() {
        return Err(Error::Invalid("--early-stop cannot be sharded: whether a job stops depends on the jobs finished before it; tune in one process".into()));
    }
    super::shard::same_config(dir, cfg, "tune")?;
    let run = RunDir::verified(dir)?;
    let run_id = run.run_id().unwrap_or_default().to_string();
    if std::fs::metadata(dir.join("trials.jsonl")).is_ok_and(|m| m.len() > 0) && !dir.join(super::shard::SHARDS).join(super::shard::PLAN).is_file() {
        return Err(Error::Config { path: dir.join("trials.jsonl"), message: "already holds jobs run by an unsharded tune; continue it with `cellnas tune --resume` (no --shard)".into() });
    }
    super::kernels::apply_recorded(gpu, dir)?;
    let data = super::data::load(gpu, &cfg.base.data, cfg.base.train.seed)?;
    let own = shard_dir(dir, shard.index);
    std::fs::create_dir_all(&own).map_err(|e| Error::io(&own, e))?;
    let _lock = crate::run::lock::acquire(&own)?;
    claim_plan(dir, &Plan { format: FORMAT.into(), run_id: run_id.clone(), shards: shard.count, image_hw: [0, 0] })?;
    let mut known: HashMap<usize, TrialRecord> = read_records(dir, &run_id, shard)?;
    let mut done: Vec<TrialRecord> = Vec::new();
    let mut ran = 0;
    loop {
        let jobs = round(cfg, &done);
        if jobs.is_empty() {
            break;
        }
        let start = done.len();
        for (i, job) in jobs.iter().enumerate().filter(|(i, _)| shard.owns(start + i)) {
            if known.contains_key(&(start + i)) {
                continue;
            }
            let rec = run_job(gpu, cfg, job, &data, &[], dir, opts)?;
            append_jsonl(&shard_dir(dir, shard.index).join(RECORDS), &Recorded { run: run_id.clone(), position: start + i, record: rec.clone() })?;
            known.insert(start + i, rec);
            ran += 1;
        }
        let t_wait = Instant::now();
        while (start..start + jobs.len()).any(|p| !known.contains_key(&p)) {
            if t_wait.elapsed() >= wait {
                return Err(Error::Search(format!(
                    "tune shard {}/{}: waited {} min for the other shards to finish jobs {start}..{}; restart them, then this shard",
                    shard.index,
                    shard.count,
                    wait.as_secs() / 60,
                    start + jobs.len() - 1
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
            for j in (0..shard.count).filter(|&j| j != shard.index) {
                known.extend(read_records(dir, &run_id, Shard { index: j, count: shard.count })?);
            }
        }
        done.extend((start..start + jobs.len()).map(|p| known[&p].clone()));
    }
    let mine = done.iter().enumerate().filter(|(p, _)| shard.owns(*p)).count();
    let done_rec = Done { run: run_id, shard: shard.index, shards: shard.count, scored: mine, adapter: format!("{} ({})", gpu.info.name, gpu.info.backend), host: host(), seconds: t0.elapsed().as_secs_f64() };
    write_json_atomic(&own.join(DONE), &done_rec)?;
    Ok(ran)
}

/// Shard `shard`'s records by position (a line being written is left for later).
fn read_records(dir: &Path, run_id: &str, shard: Shard) -> Result<HashMap<usize, TrialRecord>> {
    let path = shard_dir(dir, shard.index).join(RECORDS);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut out = HashMap::new();
    for r in parse_jsonl::<Recorded>(&path, &bytes)?.records {
        if r.run != run_id || !shard.owns(r.position) {
            return Err(Error::Config { path, message: format!("holds job {} of run {}, not of shard {}/{} of run {run_id}: shards of another run were copied in", r.position, r.run, shard.index, shard.count) });
        }
        out.insert(r.position, r.record);
    }
    Ok(out)
}

/// `cellnas merge` of a tune: trials.jsonl from the shards' records in the order of the rounds,
/// then the tune job resumed, which finds nothing left to run and tests the best trial.
pub fn merge_tune(gpu: &Arc<Gpu>, dir: &Path) -> Result<super::tune::TuneSummary> {
    let path = dir.join("config.json");
    let cfg: TuneConfig = serde_json::from_slice(&std::fs::read(&path).map_err(|e| Error::io(&path, e))?)
        .map_err(|e| Error::Config { path: path.clone(), message: format!("not a tune's config: {e}") })?;
    let run = RunDir::verified(dir)?;
    let run_id = run.run_id().unwrap_or_default().to_string();
    let plan = super::merge::finished_shards(dir, &run_id)?;
    let mut known: HashMap<usize, TrialRecord> = HashMap::new();
    for i in 0..plan.shards {
        known.extend(read_records(dir, &run_id, Shard { index: i, count: plan.shards })?);
    }
    let mut done: Vec<TrialRecord> = Vec::new();
    loop {
        let jobs = round(&cfg, &done);
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            let p = done.len();
            match known.remove(&p) {
                Some(r) if r.job == job => done.push(r),
                _ => {
                    return Err(Error::Config {
                        path: shard_dir(dir, p % plan.shards).join(RECORDS),
                        message: format!("has no record of job {p} (trial {}) although its shard finished; delete its done.json and run it again", job.trial),
                    })
                }
            }
        }
    }
    if let Some(p) = known.keys().min() {
        return Err(Error::Config { path: shard_dir(dir, p % plan.shards).join(RECORDS), message: format!("holds job {p}, which this tune never runs: it was run for another config") });
    }
    let mut bytes = Vec::new();
    for r in &done {
        bytes.extend(jsonl_line(&dir.join("trials.jsonl"), r)?);
    }
    drop(run);
    write_atomic(&dir.join("trials.jsonl"), &bytes)?;
    super::tune::run_tune(gpu, &cfg, dir, &JobOptions { resume: true, quiet: true, merging: true, ..Default::default() })
}
