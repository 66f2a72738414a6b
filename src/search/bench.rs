//! Strategies compared on a table of scores instead of a supernet (`cellnas bench-search`): every
//! architecture of a finite space scored once (a grid search's history.jsonl), then each
//! strategy run many times, one seed each, looking its proposals up in the table. The
//! strategies run exactly as in a search (the same `Driver`, batches and repeat rule: a repeat
//! costs a proposal and reuses its score), so a curve here is what a search of that budget
//! would find on that supernet, in milliseconds instead of minutes.

use super::{Driver, HistoryEntry, Observation, StrategyConfig};
use crate::error::{Error, Result};
use crate::space::Space;
use std::collections::HashMap;
use std::sync::Arc;

/// Scores by architecture key.
pub struct ScoreTable {
    scores: HashMap<String, Observation>,
    best: f64,
}

impl ScoreTable {
    /// From a history (a grid search's); it must hold every architecture of `space`, else an
    /// error saying how many it has and how to make a full one.
    pub fn from_history(space: &dyn Space, entries: &[HistoryEntry]) -> Result<ScoreTable> {
        let scores: HashMap<String, Observation> = entries.iter().map(|e| (e.key.clone(), Observation { accuracy: e.accuracy, loss: e.loss })).collect();
        let want = space.grid_len();
        if want != Some(scores.len() as u64) {
            return Err(Error::Invalid(format!(
                "the table has {} distinct architectures, the {} space {}; make a full one with `cellnas search --strategy grid --budget N` over a finite space",
                scores.len(),
                space.name(),
                match want {
                    Some(n) => format!("{n}"),
                    None => format!("~10^{:.1}", space.size().log10()),
                }
            )));
        }
        let best = scores.values().map(|o| super::score(o.accuracy)).fold(f64::NEG_INFINITY, f64::max);
        Ok(ScoreTable { scores, best })
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The best accuracy in the table (what an oracle finds).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// The fraction of the table scoring strictly above `accuracy`.
    pub fn fraction_above(&self, accuracy: f64) -> f64 {
        self.scores.values().filter(|o| super::score(o.accuracy) > accuracy).count() as f64 / self.scores.len() as f64
    }
}

/// Best accuracy found after each proposal (entry k: after k + 1 proposals), one run of
/// `strategy` with `seed`; shorter than `budget` when the strategy runs out.
pub fn best_curve(space: &Arc<dyn Space>, table: &ScoreTable, strategy: &StrategyConfig, seed: u64, budget: usize, batch: usize) -> Result<Vec<f64>> {
    let mut driver = Driver::new(strategy.build(space.clone(), seed, budget)?, batch, budget);
    let mut best = f64::NEG_INFINITY;
    let mut curve = Vec::with_capacity(budget);
    while let Some(arch) = driver.next(&mut |_| Ok(None))? {
        let key = arch.key();
        let obs = *table.scores.get(&key).ok_or_else(|| Error::Search(format!("{key} is not in the table")))?;
        best = best.max(super::score(obs.accuracy));
        curve.push(best);
        driver.record(arch, obs);
    }
    Ok(curve)
}

/// Mean and (population) standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt())
}
