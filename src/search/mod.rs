//! Search strategies over a `SearchSpace`, and the history that records a search.
//!
//! A strategy only proposes genotypes and learns from their scores; evaluating them (training or
//! inheriting supernet weights) and enforcing the budget are the caller's job. Each evaluation
//! is appended to `history.jsonl` (see `history`), and a killed search resumes by replaying that
//! file into a fresh strategy built with the same name, seed and space (`replay`): strategies
//! are deterministic, so replay puts them back in exactly the state of the uninterrupted run.

mod evolution;
mod history;
mod random;

pub use evolution::{EvolutionConfig, Member, RegularizedEvolution};
pub use history::{rfc3339, History, HistoryEntry};
pub use random::RandomSearch;

use crate::error::{Error, Result};
use crate::space::{Arch, Space};
use std::sync::Arc;
use std::cmp::Ordering;

/// A genotype handed out for evaluation, with the id it will have in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: usize,
    pub arch: Arch,
}

/// The score of one evaluated genotype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Validation accuracy with inherited (supernet) weights, 0..1, higher is better.
    pub accuracy: f64,
    pub loss: f64,
}

/// What every search strategy does. Implementations must be deterministic for their seed: the
/// same sequence of observations gives the same sequence of proposals, which is what lets
/// `replay` resume a search.
pub trait Strategy {
    /// Short lowercase name, as accepted by `strategy_from_name`.
    fn name(&self) -> &'static str;
    /// Next candidate to evaluate, or None when the strategy has nothing more to propose (budget
    /// is enforced by the caller).
    fn propose(&mut self) -> Option<Arch>;
    /// Result of evaluating a proposed architecture (called in proposal order, once per proposal).
    fn observe(&mut self, arch: &Arch, obs: &Observation);
    /// How many of the first proposals are uniform samples of the space, blind to any score:
    /// the random baseline a search is compared with. All of them unless overridden.
    fn random_proposals(&self) -> usize {
        usize::MAX
    }
}

/// Names accepted by `strategy_from_name`.
pub const STRATEGIES: [&str; 2] = ["random", "evolution"];

/// Builds a strategy by name: "random" (`RandomSearch`) or "evolution"
/// (`RegularizedEvolution` with `EvolutionConfig::for_budget(budget)`).
pub fn strategy_from_name(name: &str, space: Arc<dyn Space>, seed: u64, budget: usize) -> Result<Box<dyn Strategy>> {
    match name {
        "random" => Ok(Box::new(RandomSearch::new(space, seed))),
        "evolution" => {
            let (population, sample_size) = EvolutionConfig::for_budget(budget);
            Ok(Box::new(RegularizedEvolution::new(space, seed, population, sample_size)?))
        }
        _ => Err(Error::Invalid(format!(
            "unknown search strategy '{name}'; available: {}",
            STRATEGIES.join(", ")
        ))),
    }
}

/// Feeds a recorded history back into a freshly built strategy: for each entry, in order, the
/// strategy proposes, the proposal must be the recorded architecture (same `key()`), and the
/// recorded metrics are observed. Afterwards the strategy is in the state of the uninterrupted
/// run, so its next proposal is the one that run would have made. A mismatch means the history
/// came from another strategy, seed or space, and continuing would silently mix two searches,
/// so it is an error naming the first entry that differs.
///
/// Replay alternates propose and observe, so it reproduces runs that observed each proposal
/// before asking for the next, the sequential loop. (A strategy's later proposals may depend on
/// how many observations it had when proposing; a runner that keeps several evaluations in
/// flight would need to record that interleaving too.)
pub fn replay(strategy: &mut dyn Strategy, history: &[HistoryEntry]) -> Result<()> {
    let name = strategy.name();
    for entry in history {
        let Some(arch) = strategy.propose() else {
            return Err(Error::Search(format!(
                "history entry {}: the {name} strategy has nothing more to propose, but the history records \
                 more evaluations; the history does not match this strategy/seed/space",
                entry.id
            )));
        };
        let key = arch.key();
        if key != entry.key {
            return Err(Error::Search(format!(
                "history entry {} does not match this strategy/seed/space: it records {}, but the {name} \
                 strategy proposes {key} at that point (was the search started with another strategy, \
                 seed or search space?)",
                entry.id, entry.key
            )));
        }
        strategy.observe(&arch, &Observation { accuracy: entry.accuracy, loss: entry.loss });
    }
    Ok(())
}

/// The `k` best entries: highest accuracy first (NaN counts as worst), ties broken by fewer
/// params (the cheaper architecture), then lower id (found first).
pub fn top_k(entries: &[HistoryEntry], k: usize) -> Vec<&HistoryEntry> {
    let mut sorted: Vec<&HistoryEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        score(b.accuracy)
            .total_cmp(&score(a.accuracy))
            .then(a.params.cmp(&b.params))
            .then(a.id.cmp(&b.id))
    });
    sorted.truncate(k);
    sorted
}

/// Accuracy as a sort key: NaN (a diverged evaluation) ranks below everything.
pub(crate) fn score(accuracy: f64) -> f64 {
    if accuracy.is_nan() {
        f64::NEG_INFINITY
    } else {
        accuracy
    }
}

/// `a` better than `b` by accuracy alone (used where ties have their own rule).
pub(crate) fn better(a: f64, b: f64) -> bool {
    score(a).total_cmp(&score(b)) == Ordering::Greater
}
