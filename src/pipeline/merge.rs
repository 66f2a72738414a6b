//! `cellnas merge RUN`: the history of a search scored in shards (shard.rs), rebuilt in the
//! order a single process would have written it, then the same best.json, best.genotype.txt
//! and pareto.json a single process writes (search::finish). Merging is a pure function of the
//! shards' files: it can be run again, and it changes nothing in them.

use super::rounds::Rounds;
use super::search::{finish, SearchConfig, SearchSummary};
use super::shard::{read_plan, read_scores, shard_dir, write_history, Done, Shard, DONE, PLAN, SHARDS};
use crate::error::{Error, Result};
use crate::run::{read_jsonl, RunDir};
use crate::search::{HistoryEntry, Observation};
use crate::train::EpochMetrics;
use std::collections::HashMap;
use std::path::Path;

/// Merges the shards of the search in `dir` (which must all have finished) into its history.
/// Takes the run's lock, so a merge never runs beside another merge or an unsharded resume.
pub fn merge(dir: &Path) -> Result<SearchSummary> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Config { path: dir.to_path_buf(), message: "is not a cellnas run (no config.json)".into() },
        _ => Error::io(&path, e),
    })?;
    let stored: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Config { path: path.clone(), message: format!("not valid JSON: {e}") })?;
    let cfg: SearchConfig = serde_json::from_value(stored.clone()).map_err(|e| Error::Config { path: path.clone(), message: format!("not a search run's config: {e}") })?;
    no_shards(dir)?;
    let run = RunDir::resume(dir, &stored)?;
    let run_id = run.run_id().unwrap_or_default().to_string();
    let plan = finished_shards(dir, &run_id)?;
    let n = plan.shards;
    let mut scored: HashMap<usize, HistoryEntry> = HashMap::new();
    for i in 0..n {
        for s in read_scores(dir, &run_id, Shard { index: i, count: n })? {
            if scored.insert(s.entry.id, s.entry).is_some() {
                return Err(Error::Config { path: shard_dir(dir, i).join(super::shard::SCORES), message: "scores one position twice".into() });
            }
        }
    }

    // The rounds again, told the recorded scores: the single-process history, position by position.
    let mut rounds = Rounds::new(&cfg, plan.image_hw)?;
    let mut entries: Vec<HistoryEntry> = Vec::new();
    loop {
        let round = rounds.next()?;
        if round.is_empty() {
            break;
        }
        let mut told = Vec::with_capacity(round.len());
        for slot in &round {
            let entry = match slot.repeat_of {
                // A single process keeps a repeat's score without evaluating it again.
                Some(first) => HistoryEntry { id: slot.position, eval_ms: 0.0, ..entries[first].clone() },
                None => {
                    let Some(e) = scored.remove(&slot.position) else {
                        return Err(Error::Config {
                            path: shard_dir(dir, slot.position % n).join(super::shard::SCORES),
                            message: format!(
                                "has no score for position {} although its shard says it finished: the file was damaged or \
                                 replaced; delete shards/{}/done.json and run that shard again",
                                slot.position,
                                slot.position % n
                            ),
                        });
                    };
                    if e.key != slot.arch.key() {
                        return Err(Error::Config {
                            path: shard_dir(dir, slot.position % n).join(super::shard::SCORES),
                            message: format!("position {} scores {}, but the search proposes {} there: it was scored for another config", slot.position, e.key, slot.arch.key()),
                        });
                    }
                    e
                }
            };
            told.push(Observation { accuracy: entry.accuracy, loss: entry.loss });
            entries.push(entry);
        }
        rounds.tell(&round, &told);
    }
    if let Some(p) = scored.keys().min() {
        return Err(Error::Config {
            path: shard_dir(dir, p % n).join(super::shard::SCORES),
            message: format!("scores position {p}, which the search never proposes: it was scored for another config"),
        });
    }
    write_history(&run.history_path(), &entries)?;
    let epochs = supernet_epochs(&run, cfg.train.epochs)?;
    let space = cfg.space.space();
    let mut summary = finish(&run, space.as_ref(), &entries, &epochs, rounds.strategy().random_proposals())?;
    summary.evaluated = entries.iter().filter(|e| e.eval_ms > 0.0).count();
    summary.rejected = rounds.rejected();
    Ok(summary)
}

/// The plan of the shards of run `run_id` in `dir`, once every one of them has finished: an
/// error names the shards without a done.json, or any that belongs to another run.
pub fn finished_shards(dir: &Path, run_id: &str) -> Result<super::shard::Plan> {
    no_shards(dir)?;
    let plan = read_plan(dir)?;
    if plan.run_id != run_id {
        return Err(Error::Config {
            path: dir.join(SHARDS).join(PLAN),
            message: format!("belongs to run {}, but this run is {run_id}: shards of another run were copied in", plan.run_id),
        });
    }
    let n = plan.shards;
    let missing: Vec<usize> = (0..n).filter(|&i| !shard_dir(dir, i).join(DONE).is_file()).collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: format!(
                "{} of its {n} shards have not finished (no shards/I/done.json): {list}; run them \
                 (`--resume {} --shard I/{n}`) and merge again",
                missing.len(),
                dir.display()
            ),
        });
    }
    for i in 0..n {
        let done_path = shard_dir(dir, i).join(DONE);
        let bytes = std::fs::read(&done_path).map_err(|e| Error::io(&done_path, e))?;
        let done: Done = serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: done_path.clone(), message: format!("not a shard's done record: {e}") })?;
        if done.run != run_id || done.shards != n || done.shard != i {
            return Err(Error::Config {
                path: done_path,
                message: format!("is shard {}/{} of run {}, expected shard {i}/{n} of run {run_id}: shards of another run were copied in", done.shard, done.shards, done.run),
            });
        }
    }
    Ok(plan)
}

fn no_shards(dir: &Path) -> Result<()> {
    if !dir.join(SHARDS).join(PLAN).is_file() {
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: "has no shards to merge (no shards/plan.json): run its shards (`--resume RUN --shard I/N`) first".into(),
        });
    }
    Ok(())
}

/// The supernet's per-epoch metrics (metrics.jsonl), one per epoch up to `epochs`.
fn supernet_epochs(run: &RunDir, epochs: usize) -> Result<Vec<EpochMetrics>> {
    let (records, _) = read_jsonl::<EpochMetrics>(&run.metrics_path())?;
    let mut out: Vec<EpochMetrics> = Vec::new();
    for m in records.into_iter().filter(|m| m.epoch < epochs) {
        // A resumed epoch may have been logged twice; the later record is the one kept.
        out.retain(|o| o.epoch != m.epoch);
        out.push(m);
    }
    out.sort_by_key(|m| m.epoch);
    Ok(out)
}
