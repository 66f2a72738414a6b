//! A search scored in shards: `search --phase supernet` trains the supernet, any number of
//! processes `search --resume RUN --shard I/N` score candidates, `cellnas merge RUN` writes the
//! history and best architecture (merge.rs). Shards share nothing but the run folder, so a
//! shared filesystem (NFS, a Kubernetes volume, a Slurm scratch directory) is all they need.
//!
//! The protocol (docs/ARCHITECTURE.md has it for users):
//! - Every shard builds the search's rounds from the run's config (rounds.rs): the same
//!   architectures at the same history positions, with no coordinator. Shard I scores the
//!   positions p with p mod N = I that are not repeats of an earlier position.
//! - Files: `shards/plan.json` (the run id and N, written once by the first shard; a shard
//!   started with another N is refused), and per shard `shards/I/lock` (while it runs: a second
//!   process claiming index I is refused), `shards/I/scores.jsonl` (one checksummed line per
//!   scored position, fsynced; a shard only ever writes its own), `shards/I/done.json` (written
//!   atomically when the shard has scored all of its positions).
//! - Adaptive strategies (evolution, bayes, reinforce) go round by round: after its share of a
//!   round a shard waits (polling the other shards' score files) until the round is complete,
//!   tells the strategy, and computes the next round itself. Random and grid have one round.
//! - A shard killed and restarted skips what its scores.jsonl has and continues. A shard that
//!   is lost is retried by running it again with the same index (the scheduler's retry does);
//!   the others wait for it at most `--shard-wait-minutes` and then stop with an error naming
//!   it, and continue where they were when restarted.

use super::data::load;
use super::rounds::{Rounds, Slot};
use super::search::SearchConfig;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::{config_diff, jsonl_line, load_checkpoint, parse_jsonl, write_atomic, write_json_atomic, RunDir};
use crate::search::{rfc3339, HistoryEntry, Observation};
use crate::supernet::score;
use crate::train::Model;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SHARDS: &str = "shards";
pub const PLAN: &str = "plan.json";
pub const SCORES: &str = "scores.jsonl";
pub const DONE: &str = "done.json";
pub(crate) const FORMAT: &str = "cellnas-shards-1";

/// Most shards a run may be split into.
pub const MAX_SHARDS: usize = 100_000;

/// `--shard I/N`: shard I (from 0) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("expected I/N, shard I (counted from 0) of N shards, e.g. 0/4; got {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("{s}: the number of shards must be between 1 and {MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!("{s}: shard index {index} is out of range: shards of {count} are numbered 0 to {}", count - 1));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

pub fn shard_dir(run: &Path, index: usize) -> PathBuf {
    run.join(SHARDS).join(index.to_string())
}

/// `shards/plan.json`: what every shard of the run must agree on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub run_id: String,
    pub shards: usize,
    /// Image height and width, for the merge's cost check (it loads no data).
    pub image_hw: [usize; 2],
}

/// One line of a shard's scores.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scored {
    /// The run id, so that score files copied in from another run are refused.
    pub run: String,
    /// The adapter that scored it (adapters may round differently).
    pub adapter: String,
    /// As the history records it; `id` is the history position.
    pub entry: HistoryEntry,
}

/// `shards/I/done.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    pub run: String,
    pub shard: usize,
    pub shards: usize,
    pub scored: usize,
    pub adapter: String,
    pub host: String,
    pub seconds: f64,
}

pub struct ShardOptions {
    pub quiet: bool,
    /// How long to wait for other shards to complete a round.
    pub wait: Duration,
}

pub struct ShardSummary {
    /// Positions this shard has scored, earlier processes included.
    pub scored: usize,
    /// Of them, in this process.
    pub evaluated: usize,
    pub seconds: f64,
}

/// An error unless `dir` is free of shards: an unsharded `--resume` of a run being scored in
/// shards would score everything again, and the merge would meet two histories.
pub fn refuse_unsharded(dir: &Path) -> Result<()> {
    if dir.join(SHARDS).join(PLAN).is_file() {
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: "is being scored in shards (it has shards/plan.json): run the remaining shards \
                      (`cellnas search --resume RUN --shard I/N`) and then `cellnas merge RUN`"
                .into(),
        });
    }
    Ok(())
}

/// Scores shard `shard`'s part of the search in `dir`, whose supernet must be trained.
pub fn run_shard(gpu: &Arc<Gpu>, cfg: &SearchConfig, dir: &Path, shard: Shard, opts: &ShardOptions) -> Result<ShardSummary> {
    let t0 = Instant::now();
    cfg.validate()?;
    let run = check_run(dir, cfg)?;
    let run_id = run.run_id().map(str::to_string).ok_or_else(|| Error::Config {
        path: dir.to_path_buf(),
        message: "has no manifest (written by an older cellnas); resume it once without --shard to adopt it".into(),
    })?;
    if cfg.constraints.max_latency_ms.is_some() {
        return Err(Error::Invalid(
            "--max-latency-ms cannot be sharded: latency is measured by each process, so shards would disagree on \
             which proposals it refuses; use --max-params or --max-flops, or score the run in one process"
                .into(),
        ));
    }
    let strategy = cfg.strategy.build(cfg.space.space(), cfg.train.seed, cfg.budget)?;
    if strategy.adaptive() && shard.count > 1 && cfg.batch < shard.count {
        return Err(Error::Invalid(format!(
            "--shard {}/{}: the {} strategy proposes --batch {} candidates per round, so {} of the {} shards would \
             have nothing to score; start the run with --batch {} or more",
            shard.index,
            shard.count,
            strategy.name(),
            cfg.batch,
            shard.count - cfg.batch,
            shard.count,
            shard.count
        )));
    }
    let Some((tensors, state)) = load_checkpoint(&run)? else {
        return Err(Error::Config { path: dir.to_path_buf(), message: "has no trained supernet yet: run `cellnas search --phase supernet` first".into() });
    };
    let epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
    if epoch < cfg.train.epochs {
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: format!(
                "its supernet has trained {epoch} of {} epochs; finish it first (`cellnas search --resume {} --phase supernet`)",
                cfg.train.epochs,
                dir.display()
            ),
        });
    }
    super::kernels::apply_recorded(gpu, dir)?;
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    let val = data.val.as_ref().ok_or_else(|| Error::Invalid("a search needs a validation split".into()))?;
    let [_, h, w] = data.train.image_shape();
    let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    model.restore(&tensors)?;

    let own = shard_dir(dir, shard.index);
    std::fs::create_dir_all(&own).map_err(|e| Error::io(&own, e))?;
    let _lock = crate::run::lock::acquire(&own)?;
    claim_plan(dir, &Plan { format: FORMAT.into(), run_id: run_id.clone(), shards: shard.count, image_hw: [h, w] })?;
    let mut log = ScoreLog::open(&own.join(SCORES))?;
    let mut scores: HashMap<usize, Observation> = HashMap::new();
    for s in log.records.iter() {
        check_record(s, &run_id, shard, &log.path)?;
        scores.insert(s.entry.id, observation(&s.entry));
    }
    let adapter = format!("{} ({})", gpu.info.name, gpu.info.backend);
    let mut rounds = Rounds::new(cfg, [h, w])?;
    let mut evaluated = 0;
    let pb = super::bar(cfg.budget.div_ceil(shard.count) as u64, &format!("shard {}/{}", shard.index, shard.count), opts.quiet);
    loop {
        let round = rounds.next()?;
        let Some(last) = round.last().map(|s| s.position) else { break };
        for slot in round.iter().filter(|s| s.repeat_of.is_none() && shard.owns(s.position)) {
            if scores.contains_key(&slot.position) {
                continue;
            }
            let s = score(&mut model, &slot.arch, &data.train, val, &cfg.eval, cfg.train.seed)?;
            let entry = HistoryEntry {
                id: slot.position,
                genotype: slot.arch.text(),
                key: slot.arch.key(),
                accuracy: s.accuracy,
                loss: s.loss,
                params: s.params,
                flops: s.flops,
                latency_ms: None,
                adapter: None,
                eval_ms: s.eval_ms,
                time: rfc3339(std::time::SystemTime::now()),
            };
            log.append(&Scored { run: run_id.clone(), adapter: adapter.clone(), entry: entry.clone() })?;
            scores.insert(slot.position, observation(&entry));
            evaluated += 1;
            pb.inc(1);
        }
        if !rounds.adaptive() || last + 1 >= cfg.budget {
            break;
        }
        let told = wait_for_round(dir, &run_id, shard, &round, &mut scores, opts)?;
        rounds.tell(&round, &told);
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let done = Done { run: run_id, shard: shard.index, shards: shard.count, scored: log.records.len(), adapter, host: host(), seconds };
    write_json_atomic(&own.join(DONE), &done)?;
    Ok(ShardSummary { scored: done.scored, evaluated, seconds })
}

fn observation(e: &HistoryEntry) -> Observation {
    Observation { accuracy: e.accuracy, loss: e.loss }
}

/// The run in `dir`, verified, with `cfg` as its config (not locked: its shards run at once).
fn check_run(dir: &Path, cfg: &SearchConfig) -> Result<RunDir> {
    same_config(dir, cfg, "run")?;
    let run = RunDir::verified(dir)?;
    let history = run.history_path();
    if std::fs::metadata(&history).is_ok_and(|m| m.len() > 0) && !dir.join(SHARDS).join(PLAN).is_file() {
        return Err(Error::Config {
            path: history,
            message: "already holds candidates scored by an unsharded search; continue it with `cellnas search --resume` (no --shard)".into(),
        });
    }
    Ok(run)
}

/// An error listing the differences unless `dir/config.json` is `given` (what a shard of the
/// run, `what` it is, was started with). No lock: the run's shards read it at once.
pub(crate) fn same_config<T: Serialize>(dir: &Path, given: &T, what: &str) -> Result<()> {
    let path = dir.join("config.json");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| Error::io(&path, e))?)
        .map_err(|e| Error::Config { path: path.clone(), message: format!("not valid JSON: {e}") })?;
    let given = serde_json::to_value(given).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let diff = config_diff(&stored, &given);
    if !diff.is_empty() {
        return Err(Error::Config {
            path,
            message: format!("the {what} was started with a different config, so it cannot be sharded with this one. Differing fields:\n  {}", diff.join("\n  ")),
        });
    }
    Ok(())
}

/// Writes `shards/plan.json` if no shard has, else checks that it says the same.
pub(crate) fn claim_plan(dir: &Path, plan: &Plan) -> Result<()> {
    let path = dir.join(SHARDS).join(PLAN);
    if !path.exists() {
        let temp = dir.join(SHARDS).join(format!(".plan.{}.json", std::process::id()));
        write_json_atomic(&temp, plan)?;
        // A hard link is exclusive: of two shards starting at once, one plan wins whole.
        let linked = std::fs::hard_link(&temp, &path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => write_json_atomic(&path, plan)?,
        }
    }
    let have = read_plan(dir)?;
    if have.run_id != plan.run_id {
        return Err(Error::Config { path, message: format!("belongs to run {}, but this run is {}: shards of another run were copied in", have.run_id, plan.run_id) });
    }
    if have.shards != plan.shards {
        return Err(Error::Config {
            path,
            message: format!("this run is scored in {} shards, not {}: use --shard I/{} (I from 0 to {})", have.shards, plan.shards, have.shards, have.shards - 1),
        });
    }
    Ok(())
}

pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(SHARDS).join(PLAN);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: path.clone(), message: format!("not a shard plan: {e}") })?;
    if plan.format != FORMAT || plan.shards == 0 || plan.shards > MAX_SHARDS {
        return Err(Error::Config { path, message: format!("not a {FORMAT} plan of 1 to {MAX_SHARDS} shards") });
    }
    Ok(plan)
}

/// An error unless `s`, read from `path`, is a score of this run at a position of `shard`.
pub fn check_record(s: &Scored, run_id: &str, shard: Shard, path: &Path) -> Result<()> {
    if s.run != run_id {
        return Err(Error::Config { path: path.to_path_buf(), message: format!("holds scores of run {}, but this run is {run_id}: shards of another run were copied in", s.run) });
    }
    if !shard.owns(s.entry.id) {
        return Err(Error::Config {
            path: path.to_path_buf(),
            message: format!("holds position {}, which belongs to shard {} of {}, not {}", s.entry.id, s.entry.id % shard.count, shard.count, shard.index),
        });
    }
    Ok(())
}

/// Every score shard `index` has written so far (a line being written is left for later).
pub fn read_scores(dir: &Path, run_id: &str, shard: Shard) -> Result<Vec<Scored>> {
    let path = shard_dir(dir, shard.index).join(SCORES);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let records = parse_jsonl::<Scored>(&path, &bytes)?.records;
    for s in &records {
        check_record(s, run_id, shard, &path)?;
    }
    Ok(records)
}

/// The scores of every position of `round`, waiting for other shards to write theirs.
fn wait_for_round(dir: &Path, run_id: &str, me: Shard, round: &[Slot], scores: &mut HashMap<usize, Observation>, opts: &ShardOptions) -> Result<Vec<Observation>> {
    let t0 = Instant::now();
    let mut said = false;
    loop {
        let missing: Vec<usize> = round.iter().filter(|s| s.repeat_of.is_none() && !scores.contains_key(&s.position)).map(|s| s.position).collect();
        if missing.is_empty() {
            return Ok(round.iter().map(|s| scores[&s.repeat_of.unwrap_or(s.position)]).collect());
        }
        let mut waiting: Vec<usize> = missing.iter().map(|p| p % me.count).collect();
        waiting.sort_unstable();
        waiting.dedup();
        for &j in &waiting {
            for s in read_scores(dir, run_id, Shard { index: j, count: me.count })? {
                scores.insert(s.entry.id, observation(&s.entry));
            }
        }
        if round.iter().all(|s| s.repeat_of.is_some() || scores.contains_key(&s.position)) {
            continue;
        }
        let names = waiting.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(", ");
        if t0.elapsed() >= opts.wait {
            return Err(Error::Search(format!(
                "shard {}/{}: waited {} min for shards {names} to finish the round at positions {}..={}; restart them \
                 (`cellnas search --resume {} --shard J/{}`), then this shard, which continues where it stopped",
                me.index,
                me.count,
                opts.wait.as_secs() / 60,
                round[0].position,
                round[round.len() - 1].position,
                dir.display(),
                me.count
            )));
        }
        if !said && !opts.quiet {
            eprintln!("shard {}/{}: waiting for shards {names} to finish positions {}..={}", me.index, me.count, round[0].position, round[round.len() - 1].position);
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).ok().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default()
}

/// A shard's own scores.jsonl, open for appending (an incomplete last line, from a kill, is cut).
struct ScoreLog {
    path: PathBuf,
    file: File,
    records: Vec<Scored>,
}

impl ScoreLog {
    fn open(path: &Path) -> Result<ScoreLog> {
        let io = |e| Error::io(path, e);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let parsed = parse_jsonl::<Scored>(path, &bytes)?;
        if let Some(start) = parsed.dropped_from {
            file.set_len(start as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        } else if parsed.unterminated {
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(ScoreLog { path: path.to_path_buf(), file, records: parsed.records })
    }

    fn append(&mut self, s: &Scored) -> Result<()> {
        let line = jsonl_line(&self.path, s)?;
        self.file.write_all(&line).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.records.push(s.clone());
        Ok(())
    }
}

/// Writes `entries` as history.jsonl in one atomic replace (a merge rewrites it whole).
pub(crate) fn write_history(path: &Path, entries: &[HistoryEntry]) -> Result<()> {
    let mut bytes = Vec::new();
    for e in entries {
        bytes.extend(jsonl_line(path, e)?);
    }
    write_atomic(path, &bytes)
}
