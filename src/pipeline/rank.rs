//! `cellnas rank`: does a search run's supernet rank architectures the way stand-alone training
//! does? K architectures sampled uniformly from the run's space (plus the run's top N) get
//! their inherited-weight score on the run's supernet and a stand-alone training at a declared
//! fidelity; rank.json holds both per architecture and the statistics between them.
//!
//! Files: `config.json`, `archs.json` (the list, fixed at the start), `inherited.json` (all
//! inherited scores, written once), `train/NN/` (one `cellnas train` run per architecture,
//! resumable on its own), `rank.json` (the result). A killed rank resumes with `--resume`:
//! finished trainings are read back, the one in flight continues from its checkpoint.
//!
//! With `early_stop` (rank_stop.rs) each training is scored on the validation split after every
//! epoch and may stop early; a stopped architecture has no test accuracy, and the statistics
//! take its predicted final validation accuracy in its place (`Ranked::final_estimate`), with
//! the same statistics over the fully trained ones only beside them (`stats_trained`).

use super::data::{load, DataConfig};
use super::standalone::{run_train, StandaloneConfig};
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::darts::NetConfig;
use crate::nn::params::name_seed;
use crate::run::{config_diff, load_checkpoint, read_jsonl, write_atomic, RunDir};
use crate::search::{top_k, HistoryEntry};
use crate::space::{Arch as SpaceArch, Spec};
use crate::stats;
use crate::supernet::score;
use crate::train::{Model, TrainConfig};
use super::rank_stop::{incumbent, read_curve, train_or_stop, Outcome, Stopped};
use super::search::SearchConfig;
use crate::tune::EarlyStop;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankConfig {
    /// The search run whose supernet and history are ranked.
    pub search_run: PathBuf,
    /// Architectures sampled uniformly from the run's space.
    pub archs: usize,
    /// Best architectures of the run's history added to them.
    pub top: usize,
    /// Seed of the uniform sample.
    pub sample_seed: u64,
    /// k of precision@k.
    pub precision_k: usize,
    /// BN recalibration batches for the inherited scores, instead of the search run's own
    /// (to study how recalibration size changes the ranking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalibration_batches: Option<usize>,
    /// The stand-alone fidelity: data (the search run's split), network size, training recipe.
    pub data: DataConfig,
    pub net: NetConfig,
    pub train: TrainConfig,
    pub precise_bn: usize,
    pub eval_batch_size: usize,
    /// Learning-curve stopping of the stand-alone trainings (off: every one trains to the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
    pub resume_ignore: Value,
}

/// One ranked architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    pub id: usize,
    /// "uniform" (the random sample) or "top" (from the search's history).
    pub source: String,
    pub genotype: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inherited {
    pub key: String,
    pub accuracy: f64,
    pub loss: f64,
}

/// Per architecture in rank.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    #[serde(flatten)]
    pub arch: Arch,
    pub inherited_accuracy: f64,
    /// None when the training stopped early.
    pub standalone_test_accuracy: Option<f64>,
    pub standalone_val_accuracy: Option<f64>,
    pub params: u64,
    pub train_seconds: f64,
    /// Validation accuracy after each epoch trained (with early stopping on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_curve: Option<Vec<f64>>,
    #[serde(default)]
    pub stopped_early: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<Stopped>,
}

impl Ranked {
    /// The stand-alone figure the statistics use: the test accuracy, or for a stopped training
    /// its predicted final validation accuracy (a stand-in measured on another split).
    pub fn final_estimate(&self) -> f64 {
        self.standalone_test_accuracy.or(self.early_stop.as_ref().map(|s| s.predicted)).unwrap_or(f64::NAN)
    }
}

/// What early stopping saved (rank.json, with --early-stop).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopSummary {
    pub probability: f64,
    pub min_epochs: usize,
    pub stopped: usize,
    /// Epochs trained over all architectures, and what training all to the end takes.
    pub epochs_trained: usize,
    pub epochs_full: usize,
}

/// The statistics between inherited and stand-alone (test) accuracy, over all architectures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankStats {
    pub n: usize,
    pub kendall_tau: Option<f64>,
    /// 90% percentile-bootstrap interval of the tau (1,000 resamples, fixed seed).
    pub kendall_tau_90: Option<[f64; 2]>,
    pub spearman_rho: Option<f64>,
    pub pearson_r: Option<f64>,
    pub precision_k: usize,
    pub precision_at_k: Option<f64>,
    /// Best stand-alone accuracy minus that of the inherited ranking's pick.
    pub regret: Option<f64>,
    /// Stand-alone test accuracy of the uniform sample: the random baseline.
    pub uniform_median: Option<f64>,
    pub uniform_p75: Option<f64>,
    /// Share of the uniform sample each "top" architecture beats, in its order.
    pub top_percentiles: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankReport {
    pub archs: Vec<Ranked>,
    /// Over every architecture, stopped ones at their predicted final (`final_estimate`).
    pub stats: RankStats,
    /// The same over the fully trained architectures only (with --early-stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_trained: Option<RankStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<StopSummary>,
}

impl RankConfig {
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        self.train.validate()?;
        if self.archs + self.top < 2 {
            return Err(Error::Invalid(format!("--archs {} and --top {} give fewer than 2 architectures: nothing to rank", self.archs, self.top)));
        }
        if self.train.epochs == 0 {
            return Err(Error::Invalid("--epochs 0 leaves no stand-alone training: give at least 1".into()));
        }
        if self.recalibration_batches == Some(0) {
            return Err(Error::Invalid("--recalibration-batches must be at least 1".into()));
        }
        if self.precision_k == 0 {
            return Err(Error::Invalid("--precision-k must be at least 1".into()));
        }
        if self.net.supernet {
            return Err(Error::Invalid("ranked architectures train stand-alone (net.supernet must be false)".into()));
        }
        if let Some(es) = &self.early_stop {
            if !(es.probability > 0.0 && es.probability <= 1.0) {
                return Err(Error::Invalid(format!("--early-stop-probability must be in (0, 1], got {}", es.probability)));
            }
            if es.min_epochs < crate::tune::curve::MIN_POINTS {
                return Err(Error::Invalid(format!("--early-stop-min-epochs must be at least {} (the models have three parameters), got {}", crate::tune::curve::MIN_POINTS, es.min_epochs)));
            }
            if self.train.epochs <= es.min_epochs {
                return Err(Error::Invalid(format!("--early-stop with --epochs {} stops nothing: a curve is extrapolated from epoch {} (--early-stop-min-epochs) on, before the last", self.train.epochs, es.min_epochs)));
            }
            if self.data.val_count == 0 {
                return Err(Error::Invalid("--early-stop scores each epoch on the validation split, and the search run has none (--val 0)".into()));
            }
        }
        Ok(())
    }

    /// The `cellnas train` config of one architecture at this fidelity.
    pub fn standalone(&self, arch: &SpaceArch) -> StandaloneConfig {
        StandaloneConfig {
            spec: Spec::new(arch.clone()),
            data: self.data.clone(),
            net: self.net.clone(),
            train: self.train.clone(),
            eval_batch_size: self.eval_batch_size,
            precise_bn: self.precise_bn,
            init_from: None,
            resume_ignore: json!({}),
        }
    }
}

/// The search run's config, refusing a folder that is not a search run.
pub fn read_search_config(dir: &Path) -> Result<SearchConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|_| Error::Config {
        path: dir.to_path_buf(),
        message: "is not a search run (no readable config.json); pass the folder `cellnas search` wrote".into(),
    })?;
    let morphism = serde_json::from_str::<serde_json::Value>(&text).ok().is_some_and(|v| v["method"] == "morphism");
    if morphism {
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: "is a morphism search, which has no supernet: its networks are trained already (best.json, best.safetensors, nets/); pass a supernet search run".into(),
        });
    }
    serde_json::from_str(&text).map_err(|e| Error::Config { path: path.clone(), message: format!("not the config of a `cellnas search` run ({e})") })
}

/// The architectures to rank: `archs` distinct uniform samples by `seed`, then up to `top`
/// best of `history` not already among them.
pub fn choose_archs(search: &SearchConfig, history: &[HistoryEntry], archs: usize, top: usize, seed: u64) -> Result<Vec<Arch>> {
    let space = search.space.space();
    let size = space.size();
    if archs as f64 > size {
        return Err(Error::Invalid(format!("--archs {archs} is more than the run's space holds ({size} architectures)")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed(seed, "rank.archs"));
    let mut out: Vec<Arch> = Vec::new();
    let mut keys = HashSet::new();
    let mut tries = 0usize;
    while out.len() < archs {
        tries += 1;
        if tries > 1000 * archs.max(1) {
            return Err(Error::Invalid(format!("could not draw {archs} distinct architectures from the run's space")));
        }
        let g = space.sample(&mut rng);
        let key = g.key();
        if keys.insert(key.clone()) {
            out.push(Arch { id: out.len(), source: "uniform".into(), genotype: g.text(), key });
        }
    }
    for e in top_k(history, history.len()).into_iter().filter(|e| !e.accuracy.is_nan()).take(top) {
        if keys.insert(e.key.clone()) {
            out.push(Arch { id: out.len(), source: "top".into(), genotype: e.genotype.clone(), key: e.key.clone() });
        }
    }
    Ok(out)
}

pub fn run_rank(gpu: &Arc<Gpu>, cfg: &RankConfig, out: &Path, job: &JobOptions, reuse: &[PathBuf]) -> Result<RankReport> {
    cfg.validate()?;
    let mut search = read_search_config(&cfg.search_run)?;
    if let Some(r) = cfg.recalibration_batches {
        search.eval.recalibration_batches = r;
    }
    let search_run = RunDir::verified(&cfg.search_run)?;
    super::data::check_batches(&cfg.data, cfg.train.batch_size)?;
    let say = |s: String| {
        if !job.quiet {
            eprintln!("{s}");
        }
    };
    // The list is fixed once (archs.json), so a resume ranks the same architectures even if
    // the search run's history has grown since. A new rank checks it before creating anything.
    let archs_path = out.join("archs.json");
    // (A rank killed before writing archs.json has trained nothing: choose afresh.)
    let fresh = if job.resume && archs_path.is_file() {
        None
    } else {
        let (history, warnings) = read_jsonl::<HistoryEntry>(&search_run.history_path())?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        if cfg.top > 0 && history.is_empty() {
            say(format!("note: {} has no search history yet, so no --top architectures", cfg.search_run.display()));
        }
        Some(choose_archs(&search, &history, cfg.archs, cfg.top, cfg.sample_seed)?)
    };
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if job.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    super::kernels::pin(gpu, &run, job.resume)?;
    let archs: Vec<Arch> = match fresh {
        Some(archs) => {
            run.write_json_recorded("archs.json", &archs)?;
            archs
        }
        None => {
            let bytes = std::fs::read(&archs_path).map_err(|e| Error::io(&archs_path, e))?;
            serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: archs_path.clone(), message: format!("not an architecture list ({e})") })?
        }
    };
    let space = search.space.space();
    let genotypes = archs.iter().map(|a| space.parse(&a.genotype)).collect::<Result<Vec<_>>>()?;

    let inherited = inherited_scores(gpu, &search, &search_run, &archs, &genotypes, &run, &say)?;
    if job.first_phase_only {
        return Ok(RankReport { stats: rank_stats(&[], cfg.precision_k), stats_trained: None, early_stop: None, archs: Vec::new() });
    }
    if job.resume && !job.merging {
        super::shard::refuse_unsharded(out)?;
    }

    // Each training is its own run folder; a finished one (metrics.json) is read back.
    let data = match cfg.early_stop {
        Some(_) => Some(super::data::load(gpu, &cfg.data, cfg.train.seed)?),
        None => None,
    };
    let mut ranked: Vec<Ranked> = Vec::new();
    for ((arch, g), inh) in archs.iter().zip(&genotypes).zip(&inherited) {
        let dir = out.join("train").join(format!("{:02}", arch.id));
        let scfg = cfg.standalone(g);
        let (mut curve, mut stop) = (None, None);
        let metrics = match finished_metrics(&dir, &scfg)? {
            Some(m) => {
                if cfg.early_stop.is_some() {
                    curve = Some(read_curve(&dir, cfg.train.epochs)?);
                }
                m
            }
            None => match (reuse.iter().find_map(|r| find_finished(r, &scfg)), &cfg.early_stop, &data) {
                (Some(src), None, _) => {
                    copy_run(&src, &dir)?;
                    say(format!("[{}/{}] reused {}", arch.id + 1, archs.len(), src.display()));
                    finished_metrics(&dir, &scfg)?.ok_or_else(|| Error::Invalid(format!("{}: copied run has no metrics", dir.display())))?
                }
                (_, Some(es), Some(data)) => {
                    let finished: Vec<Vec<f64>> = ranked.iter().filter(|r| !r.stopped_early).filter_map(|r| r.val_curve.clone()).collect();
                    let inc = incumbent(&finished, cfg.precision_k);
                    let seed = name_seed(cfg.train.seed, &format!("rank.curve{}", arch.id));
                    match train_or_stop(gpu, &scfg, &dir, data, es, inc.as_deref(), seed, job)? {
                        Outcome::Finished { curve: c, metrics } => {
                            curve = Some(c);
                            metrics
                        }
                        Outcome::Stopped { curve: c, stop: s } => {
                            let [_, h, w] = data.train.image_shape();
                            let (params, _) = crate::nn::size(&cfg.net, g, h, w)?;
                            let m = json!({ "params": params, "train_seconds": s.train_seconds });
                            (curve, stop) = (Some(c), Some(s));
                            m
                        }
                    }
                }
                _ => {
                    let resume = dir.join("config.json").is_file();
                    let sub = JobOptions { resume, quiet: true, checkpoint_every: job.checkpoint_every, ..Default::default() };
                    let s = run_train(gpu, &scfg, &dir, &sub)?;
                    json!({ "test_accuracy": s.test_accuracy, "val_accuracy": s.val_accuracy, "params": s.params, "train_seconds": s.train_seconds })
                }
            },
        };
        let r = Ranked {
            arch: arch.clone(),
            inherited_accuracy: inh.accuracy,
            standalone_test_accuracy: metrics["test_accuracy"].as_f64(),
            standalone_val_accuracy: metrics["val_accuracy"].as_f64(),
            params: metrics["params"].as_u64().unwrap_or(0),
            train_seconds: metrics["train_seconds"].as_f64().unwrap_or(0.0),
            val_curve: curve,
            stopped_early: stop.is_some(),
            early_stop: stop,
        };
        let what = match &r.early_stop {
            Some(s) => format!("stopped after {} epochs, predicted {:5.2}% (P below {:.2}% = {:.2})", s.epochs, 100.0 * s.predicted, 100.0 * s.incumbent, s.prob_below),
            None => format!("stand-alone test {:5.2}%", 100.0 * r.final_estimate()),
        };
        say(format!("[{}/{}] {:<7} inherited {:5.2}%  {what}  ({:.0} s)", arch.id + 1, archs.len(), arch.source, 100.0 * r.inherited_accuracy, r.train_seconds));
        ranked.push(r);
    }
    let early_stop = cfg.early_stop.as_ref().map(|es| StopSummary {
        probability: es.probability,
        min_epochs: es.min_epochs,
        stopped: ranked.iter().filter(|r| r.stopped_early).count(),
        epochs_trained: ranked.iter().map(|r| r.early_stop.as_ref().map_or(cfg.train.epochs, |s| s.epochs)).sum(),
        epochs_full: ranked.len() * cfg.train.epochs,
    });
    let trained: Vec<Ranked> = ranked.iter().filter(|r| !r.stopped_early).cloned().collect();
    let stats_trained = cfg.early_stop.is_some().then(|| rank_stats(&trained, cfg.precision_k));
    let report = RankReport { stats: rank_stats(&ranked, cfg.precision_k), stats_trained, early_stop, archs: ranked };
    run.write_json_recorded("rank.json", &report)?;
    Ok(report)
}

/// Inherited scores of every architecture on the search run's supernet, computed once and
/// kept in `path` (a resume reads them back when they are for the same list).
fn inherited_scores(
    gpu: &Arc<Gpu>,
    search: &SearchConfig,
    search_run: &RunDir,
    archs: &[Arch],
    genotypes: &[SpaceArch],
    run: &RunDir,
    say: &dyn Fn(String),
) -> Result<Vec<Inherited>> {
    if let Ok(bytes) = std::fs::read(run.dir().join("inherited.json")) {
        if let Ok(v) = serde_json::from_slice::<Vec<Inherited>>(&bytes) {
            if v.len() == archs.len() && v.iter().zip(archs).all(|(i, a)| i.key == a.key) {
                return Ok(v);
            }
        }
    }
    super::kernels::apply_recorded(gpu, search_run.dir())?;
    let Some((tensors, state)) = load_checkpoint(search_run)? else {
        return Err(Error::Config { path: search_run.dir().to_path_buf(), message: "has no supernet checkpoint yet (train it with `cellnas search`)".into() });
    };
    let epoch = state["epoch"].as_u64().unwrap_or(0);
    if epoch < search.train.epochs as u64 {
        say(format!("note: the supernet has trained {epoch} of its {} epochs; ranking it as it is", search.train.epochs));
    }
    let data = load(gpu, &search.data, search.train.seed)?;
    let val = data.val.as_ref().ok_or_else(|| Error::Invalid("the search run has no validation split".into()))?;
    if let (_, Some(note)) = crate::supernet::recalibration_batches(&search.eval, data.train.n()) {
        eprintln!("{note}");
    }
    let mut model = Model::new(gpu, search.net.clone(), search.train.seed)?;
    model.restore(&tensors)?;
    let mut out = Vec::new();
    for (a, g) in archs.iter().zip(genotypes) {
        search.space.space().contains(g)?;
        let s = score(&mut model, g, &data.train, val, &search.eval, search.train.seed)?;
        out.push(Inherited { key: a.key.clone(), accuracy: s.accuracy, loss: s.loss });
    }
    say(format!("inherited scores of {} architectures on {}'s supernet", out.len(), search_run.dir().display()));
    run.write_json_recorded("inherited.json", &out)?;
    Ok(out)
}

/// metrics.json of a finished `cellnas train` run in `dir` whose config is `cfg`.
pub(crate) fn finished_metrics(dir: &Path, cfg: &StandaloneConfig) -> Result<Option<Value>> {
    let (Ok(stored), Ok(metrics)) = (std::fs::read(dir.join("config.json")), std::fs::read(dir.join("metrics.json"))) else {
        return Ok(None);
    };
    let given = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let stored: Value = serde_json::from_slice(&stored).map_err(|e| Error::Config { path: dir.join("config.json"), message: format!("not valid JSON: {e}") })?;
    let diff = config_diff(&stored, &given);
    if !diff.is_empty() {
        return Err(Error::Config { path: dir.to_path_buf(), message: format!("holds a training of another config:\n  {}", diff.join("\n  ")) });
    }
    let m = serde_json::from_slice(&metrics).map_err(|e| Error::Config { path: dir.join("metrics.json"), message: format!("not valid JSON: {e}") })?;
    Ok(Some(m))
}

/// A finished training of exactly `cfg` among `rank_dir/train/*`.
fn find_finished(rank_dir: &Path, cfg: &StandaloneConfig) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(rank_dir.join("train")).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    dirs.into_iter().find(|d| matches!(finished_metrics(d, cfg), Ok(Some(_))))
}

/// Copies a finished training's files, verified first (a damaged one is not spread); its
/// manifest comes along, so the copy is the same verified run. metrics.json last, so a copy cut
/// short is not finished.
fn copy_run(src: &Path, dst: &Path) -> Result<()> {
    RunDir::verified(src)?;
    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for name in ["config.json", "kernels.json", "weights.safetensors", "metrics.jsonl", "manifest.json", "metrics.json"] {
        let from = src.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
            write_atomic(&dst.join(name), &bytes)?;
        }
    }
    Ok(())
}

pub fn rank_stats(ranked: &[Ranked], k: usize) -> RankStats {
    let x: Vec<f64> = ranked.iter().map(|r| r.inherited_accuracy).collect();
    let y: Vec<f64> = ranked.iter().map(Ranked::final_estimate).collect();
    let uniform: Vec<f64> = ranked.iter().filter(|r| r.arch.source == "uniform").map(Ranked::final_estimate).collect();
    let top_percentiles = ranked
        .iter()
        .filter(|r| r.arch.source == "top")
        .map(|r| if uniform.is_empty() { f64::NAN } else { uniform.iter().filter(|&&u| u < r.final_estimate()).count() as f64 / uniform.len() as f64 })
        .collect();
    RankStats {
        n: ranked.len(),
        kendall_tau: stats::kendall_tau(&x, &y),
        kendall_tau_90: stats::bootstrap_interval(&x, &y, stats::kendall_tau, 1000, 0.9, 1),
        spearman_rho: stats::spearman(&x, &y),
        pearson_r: stats::pearson(&x, &y),
        precision_k: k.min(ranked.len()),
        precision_at_k: stats::precision_at_k(&x, &y, k),
        regret: stats::regret(&x, &y),
        uniform_median: stats::quantile(&uniform, 0.5),
        uniform_p75: stats::quantile(&uniform, 0.75),
        top_percentiles,
    }
}
