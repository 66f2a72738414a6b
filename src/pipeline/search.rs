//! `cellnas search`: train the supernet (checkpoint per epoch), then score candidates with
//! inherited weights, record each in history.jsonl, and write the best cell. A run killed at
//! any point continues with `--resume`: training from the last checkpoint, the search by
//! replaying its history; the result equals an uninterrupted run with the same seed.

use super::data::{load, DataConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::darts::{NetConfig, NetKind};
use crate::nn::params::name_seed;
use super::fit::{fit, FitOptions};
use super::JobOptions;
use crate::run::RunDir;
use crate::search::{rfc3339, top_k, Constraints, Driver, History, HistoryEntry, Observation, Pareto, StrategyConfig};
use crate::space::{SpaceConfig, Spec};
use crate::supernet::{sample_paths, score, EvalConfig, Sampling};
use crate::train::{EpochMetrics, Model, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchConfig {
    pub data: DataConfig,
    pub net: NetConfig,
    pub space: SpaceConfig,
    pub train: TrainConfig,
    pub sampling: Sampling,
    /// The strategy and its settings (a bare name in runs written before settings existed).
    #[serde(deserialize_with = "StrategyConfig::deserialize_compat")]
    pub strategy: StrategyConfig,
    /// Proposals per ask: the strategy proposes this many before it hears any of their scores
    /// (absent in older runs: 1, the sequential loop).
    #[serde(default = "one")]
    pub batch: usize,
    /// Cost limits every proposal must meet (left out when there are none).
    #[serde(default, skip_serializing_if = "Constraints::is_none")]
    pub constraints: Constraints,
    pub budget: usize,
    pub eval: EvalConfig,
    /// Recorded for the record, not compared on resume (see run::RESUME_IGNORE).
    pub resume_ignore: serde_json::Value,
}

fn one() -> usize {
    1
}

/// The defaults of a search with no arguments: sized to finish in minutes on a CPU software
/// adapter on the embedded data (docs/RESULTS.md has the measured time).
pub fn default_search() -> SearchConfig {
    SearchConfig {
        data: DataConfig { path: None, val_count: 300, train_limit: 2000 },
        net: NetConfig { in_channels: 1, classes: 10, channels: 8, layers: 5, nodes: 4, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() },
        space: SpaceConfig::default(),
        train: TrainConfig {
            epochs: 2,
            batch_size: 64,
            lr: 0.05,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            grad_clip: 5.0,
            seed: 1,
            augment: crate::data::Augment { crop_padding: 2, flip: true, cutout: 0 },
            warmup_epochs: 0.0,
        },
        sampling: Sampling::Uniform,
        strategy: StrategyConfig::default(),
        batch: 1,
        constraints: Constraints::default(),
        budget: 20,
        eval: EvalConfig { recalibration_batches: 2, batch_size: 100 },
        resume_ignore: serde_json::json!({}),
    }
}

/// Largest --budget accepted (documented in `--help`).
pub const MAX_BUDGET: usize = 1_000_000;

impl SearchConfig {
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        self.train.validate()?;
        match (&self.space, self.net.kind) {
            (SpaceConfig::Darts(s), NetKind::Darts) if self.net.nodes != s.nodes() => {
                return Err(Error::Invalid(format!("network has {} nodes per cell, the space {}", self.net.nodes, s.nodes())));
            }
            (SpaceConfig::Macro(s), NetKind::Macro) if self.net.layers != s.layers() => {
                return Err(Error::Invalid(format!("network has {} layers, the macro space {}", self.net.layers, s.layers())));
            }
            (SpaceConfig::Darts(_), NetKind::Darts) | (SpaceConfig::Nb201(_), NetKind::Nb201) | (SpaceConfig::Macro(_), NetKind::Macro) => {}
            (space, kind) => return Err(Error::Invalid(format!("a {} space does not search a {kind:?} network", space.name()))),
        }
        if !self.net.supernet {
            return Err(Error::Invalid("a search trains a supernet (net.supernet must be true)".into()));
        }
        if self.budget == 0 || self.budget > MAX_BUDGET {
            return Err(Error::Invalid(format!("search budget must be between 1 and {MAX_BUDGET} candidates, got {}", self.budget)));
        }
        let c = &self.constraints;
        if c.latency_batch == 0 || c.latency_batch > 65536 {
            return Err(Error::Invalid(format!("--latency-batch must be between 1 and 65536, got {}", c.latency_batch)));
        }
        if c.max_latency_ms.is_none() && c.latency_batch != 1 {
            return Err(Error::Invalid("--latency-batch applies to --max-latency-ms, which is not given".into()));
        }
        if let Some(ms) = c.max_latency_ms.filter(|ms| !(ms.is_finite() && *ms > 0.0)) {
            return Err(Error::Invalid(format!("--max-latency-ms must be a number above 0, got {ms}")));
        }
        if self.batch == 0 || self.batch > self.budget {
            return Err(Error::Invalid(format!("--batch must be between 1 and the budget ({}), got {}", self.budget, self.batch)));
        }
        // Fail now rather than after training the supernet.
        self.strategy.build(self.space.space(), self.train.seed, self.budget)?;
        if self.eval.batch_size == 0 || self.eval.recalibration_batches == 0 {
            return Err(Error::Invalid("evaluation needs a batch size and recalibration batches of at least 1".into()));
        }
        Ok(())
    }
}

impl SearchConfig {
    /// The run's DARTS space, or an error for a run of another space: morphism and rank are
    /// built for DARTS cells only so far.
    pub fn darts_space(&self) -> Result<&crate::space::SearchSpace> {
        self.space.darts().ok_or_else(|| Error::Invalid(format!("this is a search of the {} space; growing and ranking are built for DARTS runs only so far", self.space.name())))
    }
}

pub struct SearchSummary {
    pub top: Vec<HistoryEntry>,
    pub epochs: Vec<EpochMetrics>,
    pub train_seconds: f64,
    pub search_seconds: f64,
    /// Candidates evaluated in this invocation (a resumed run replays the others).
    pub evaluated: usize,
    /// Candidates in the history, replayed ones included.
    pub candidates: usize,
    /// How many candidates were uniform random samples (the strategy's blind start), and their
    /// median inherited accuracy: the baseline the best is compared with.
    pub random_candidates: usize,
    pub random_median: Option<f64>,
    /// Fronts of accuracy against each cost (also in pareto.json).
    pub pareto: Pareto,
    /// Proposals refused by the cost constraints in this invocation (replay included).
    pub rejected: usize,
}

pub fn run_search(gpu: &Arc<Gpu>, cfg: &SearchConfig, out: &Path, job: &JobOptions) -> Result<SearchSummary> {
    let quiet = job.quiet;
    cfg.validate()?;
    let mut cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    if job.resume {
        legacy_view(out, &mut cfg_json);
    }
    let run = if job.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    super::kernels::pin(gpu, &run, job.resume)?;
    if job.resume && !job.first_phase_only {
        super::shard::refuse_unsharded(out)?;
    }
    if cfg.data.val_count == 0 {
        return Err(Error::Invalid("a search needs a validation split (val_count >= 1): candidates are scored on it".into()));
    }
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    let val = data.val.as_ref().expect("val_count >= 1");
    if let (_, Some(note)) = crate::supernet::recalibration_batches(&cfg.eval, data.train.n()) {
        eprintln!("{note}");
    }
    if data.classes != cfg.net.classes || data.channels != cfg.net.in_channels {
        return Err(Error::Invalid(format!(
            "data has {} classes of {}-channel images, the network expects {} and {}",
            data.classes, data.channels, cfg.net.classes, cfg.net.in_channels
        )));
    }
    // Every path has the same activation shapes, so one sampled path tells whether a batch fits.
    let [_, h, w] = data.train.image_shape();
    let space = cfg.space.space();
    let probe = space.sample(&mut ChaCha8Rng::seed_from_u64(0));
    for batch in [cfg.train.batch_size, cfg.eval.batch_size, cfg.constraints.latency_batch] {
        crate::nn::check_batch_fits(gpu, &cfg.net, &probe, batch, h, w)?;
    }
    super::cost::feasible(space.as_ref(), &cfg.constraints, &cfg.net, h, w)?;

    // Supernet training, resumable (see fit.rs). Paths come from one generator per epoch,
    // seeded by (seed, epoch), so a resumed epoch redraws the same paths.
    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    let mut rng: Option<(usize, ChaCha8Rng)> = None;
    let opts = FitOptions { run: &run, checkpoint_every: job.checkpoint_every, quiet, expect: None };
    let epochs = fit(&mut model, &data.train, &cfg.train, &opts, &mut |epoch, _| {
        if rng.as_ref().map(|r| r.0) != Some(epoch) {
            rng = Some((epoch, ChaCha8Rng::seed_from_u64(name_seed(cfg.train.seed, &format!("epoch{epoch}.paths")))));
        }
        sample_paths(space.as_ref(), cfg.sampling, &mut rng.as_mut().expect("just set").1)
    })?;
    // Training time over every process that ran it (a resumed run included).
    let train_seconds: f64 = epochs.iter().map(|m| m.seconds).sum();
    if job.first_phase_only {
        let random_median = None;
        return Ok(SearchSummary { top: vec![], epochs, train_seconds, search_seconds: 0.0, evaluated: 0, candidates: 0, random_candidates: 0, random_median, pareto: Pareto::of(&[]), rejected: 0 });
    }

    // Search: replay what history.jsonl already has, then evaluate the rest of the budget.
    let strategy = cfg.strategy.build(space.clone(), cfg.train.seed, cfg.budget)?;
    let mut driver = Driver::new(strategy, cfg.batch, cfg.budget);
    let mut history = History::open(run.history_path())?;
    for w in history.warnings() {
        eprintln!("warning: {w}");
    }
    let image = data.train.image_shape();
    let mut latencies = super::cost::LatencyCache::open(run.dir(), cfg.constraints.latency_batch)?;
    let limits = &cfg.constraints;
    driver.replay(history.entries(), &mut |a| super::cost::check(limits, &mut model, &mut latencies, a, image))?;
    let mut seen: HashMap<String, HistoryEntry> = history.entries().iter().map(|e| (e.key.clone(), e.clone())).collect();
    let t_search = Instant::now();
    let done = history.entries().len();
    let pb = super::bar(cfg.budget as u64, "search", quiet);
    pb.set_position(done.min(cfg.budget) as u64);
    let mut evaluated = 0;
    let mut scorers = match job.scorers.is_empty() {
        true => Vec::new(),
        false => {
            let (weights, _) = crate::run::load_checkpoint(&run)?.ok_or_else(|| Error::Invalid("the supernet checkpoint is missing after training".into()))?;
            super::adapters::open(&job.scorers, gpu, cfg, &weights)?
        }
    };
    let adaptive = driver.strategy().adaptive();
    while history.entries().len() < cfg.budget {
        let chunk = {
            let mut check = |a: &crate::space::Arch| super::cost::check(limits, &mut model, &mut latencies, a, image);
            if scorers.is_empty() {
                driver.next(&mut check)?.into_iter().collect()
            } else if adaptive {
                driver.next_batch(&mut check)?
            } else {
                // Proposals that ignore scores: tell placeholders now and score a chunk at once.
                let mut v = Vec::new();
                while v.len() < 4 * scorers.len() {
                    let Some(a) = driver.next(&mut check)? else { break };
                    driver.record(a.clone(), Observation { accuracy: f64::NAN, loss: f64::NAN });
                    v.push(a);
                }
                v
            }
        };
        if chunk.is_empty() {
            break;
        }
        // A re-proposed architecture (evolution may repeat one) keeps its score: evaluation is
        // deterministic, so re-running it would only cost time.
        let mut fresh: Vec<crate::space::Arch> = Vec::new();
        for a in &chunk {
            if !seen.contains_key(&a.key()) && !fresh.iter().any(|f| f.key() == a.key()) {
                fresh.push(a.clone());
            }
        }
        let mut scored: HashMap<String, (crate::supernet::Score, Option<String>)> = HashMap::new();
        if scorers.is_empty() {
            for a in &fresh {
                scored.insert(a.key(), (score(&mut model, a, &data.train, val, &cfg.eval, cfg.train.seed)?, None));
            }
        } else {
            for ((s, j), a) in super::adapters::score_all(&mut scorers, &fresh, cfg)?.into_iter().zip(&fresh) {
                scored.insert(a.key(), (s, Some(scorers[j].name.clone())));
            }
        }
        for arch in chunk {
            let key = arch.key();
            let entry = match (seen.get(&key), scored.remove(&key)) {
                (Some(e), _) => HistoryEntry { id: history.entries().len(), eval_ms: 0.0, time: rfc3339(std::time::SystemTime::now()), ..e.clone() },
                (None, Some((s, adapter))) => {
                    evaluated += 1;
                    HistoryEntry {
                        id: history.entries().len(),
                        genotype: arch.text(),
                        key: key.clone(),
                        accuracy: s.accuracy,
                        loss: s.loss,
                        params: s.params,
                        flops: s.flops,
                        latency_ms: latencies.get(&arch),
                        adapter,
                        eval_ms: s.eval_ms,
                        time: rfc3339(std::time::SystemTime::now()),
                    }
                }
                (None, None) => return Err(Error::Search(format!("internal: {key} was neither scored nor seen"))),
            };
            // Recorded before the strategy hears it, so a kill between the two loses nothing.
            history.append(&entry)?;
            if scorers.is_empty() || adaptive {
                driver.record(arch, Observation { accuracy: entry.accuracy, loss: entry.loss });
            }
            seen.insert(key, entry.clone());
            pb.set_position(history.entries().len() as u64);
            let best = top_k(history.entries(), 1)[0].accuracy;
            pb.set_message(format!("best val acc {:.2}%", 100.0 * best));
        }
    }
    pb.finish_and_clear();
    let search_seconds = t_search.elapsed().as_secs_f64();
    let random_proposals = driver.strategy().random_proposals();
    let mut summary = finish(&run, space.as_ref(), history.entries(), &epochs, random_proposals)?;
    summary.train_seconds = train_seconds;
    summary.search_seconds = search_seconds;
    summary.evaluated = evaluated;
    summary.rejected = driver.rejected();
    Ok(summary)
}

/// Writes what a finished search leaves besides its history (pareto.json, best.json,
/// best.genotype.txt) from the history's entries and the supernet's epochs, and sums it up.
/// One function for a single-process search and a merge of shards, so both write the same
/// bytes. Timings, evaluations and rejections are the caller's to fill in.
pub(crate) fn finish(run: &RunDir, space: &dyn crate::space::Space, entries: &[HistoryEntry], epochs: &[EpochMetrics], random_proposals: usize) -> Result<SearchSummary> {
    let top: Vec<HistoryEntry> = top_k(entries, 10).into_iter().cloned().collect();
    let pareto = Pareto::of(entries);
    run.write_json_recorded("pareto.json", &serde_json::to_value(&pareto).map_err(|e| Error::Invalid(format!("pareto.json: {e}")))?)?;
    let random: Vec<f64> = entries.iter().take(random_proposals).map(|e| e.accuracy).collect();
    let random_median = crate::stats::quantile(&random, 0.5);
    if let Some(best) = top.first() {
        // A DARTS cell as a spec `train` takes; another space's architecture as its text form.
        let arch = match space.parse(&best.genotype)? {
            crate::space::Arch::Darts(genotype) => {
                let spec = Spec { name: Some(format!("cellnas search, candidate {}", best.id)), ..Spec::new(genotype) };
                json!({ "spec": serde_json::from_str::<serde_json::Value>(&spec.to_json_pretty()).expect("spec JSON") })
            }
            other => json!({ "space": other.space(), "arch": other.text() }),
        };
        let mut best_json = json!({
            "metrics": { "val_accuracy": best.accuracy, "val_loss": best.loss, "params": best.params, "flops": best.flops, "candidate": best.id },
            "baseline": {
                "supernet_train_accuracy": epochs.last().map(|m| m.accuracy),
                "random_candidates": random.len(),
                "random_median_val_accuracy": random_median,
            },
        });
        best_json.as_object_mut().expect("an object").extend(arch.as_object().expect("an object").clone());
        run.write_json_recorded("best.json", &best_json)?;
        run.write_recorded("best.genotype.txt", format!("{}\n", best.genotype).as_bytes())?;
    }
    Ok(SearchSummary {
        top,
        epochs: epochs.to_vec(),
        train_seconds: epochs.iter().map(|m| m.seconds).sum(),
        search_seconds: 0.0,
        evaluated: 0,
        candidates: entries.len(),
        random_candidates: random.len(),
        random_median,
        pareto,
        rejected: 0,
    })
}

/// The config of a run written by an older cellnas, as this one would write it when the run's
/// settings are the same: a bare strategy name stands for its default settings and an absent
/// `batch` for 1. So `given` is changed to say what the stored file says wherever the two mean
/// the same, and the resume check compares meaning, not spelling. A file that cannot be read is
/// left to `RunDir::resume` to report.
fn legacy_view(dir: &Path, given: &mut serde_json::Value) {
    let Ok(stored) = std::fs::read(dir.join("config.json")) else { return };
    let Ok(stored) = serde_json::from_slice::<serde_json::Value>(&stored) else { return };
    let Some(given) = given.as_object_mut() else { return };
    if let Some(name) = stored.get("strategy").and_then(|s| s.as_str()) {
        let same = StrategyConfig::from_name(name).ok().and_then(|s| serde_json::to_value(s).ok());
        if same.as_ref() == given.get("strategy") {
            given.insert("strategy".into(), name.into());
        }
    }
    if stored.get("batch").is_none() && given.get("batch") == Some(&serde_json::json!(1)) {
        given.remove("batch");
    }
}
