//! Search strategies over a `Space`, and the history that records a search.
//!
//! A strategy only proposes architectures in batches (`ask`) and learns from their scores
//! (`tell`); evaluating them (training or inheriting supernet weights) and enforcing the budget
//! are the caller's job, through `Driver`, which also applies cost constraints. Each evaluation
//! is appended to `history.jsonl` (see `history`), and a killed search resumes by replaying that
//! file into a fresh strategy built from the same config, seed and space (`Driver::replay`):
//! strategies are deterministic, so replay puts them back in exactly the state of the
//! uninterrupted run, a half-told batch included.

mod bayes;
pub mod bench;
mod config;
pub mod cost;
mod driver;
mod evolution;
mod grid;
mod history;
mod random;
mod reinforce;

pub use bayes::{Acquisition, BayesOpt, MAX_POINTS};
pub use config::{BayesSettings, EvolutionSettings, GridSettings, ReinforceSettings, StrategyConfig};
pub use cost::{Constraints, Pareto, ParetoPoint};
pub use reinforce::Reinforce;
pub use grid::{GridSearch, GRID_LIMIT};
pub use driver::{Driver, Violation, MAX_REJECTS};
pub use evolution::{EvolutionConfig, Member, RegularizedEvolution};
pub use history::{rfc3339, History, HistoryEntry};
pub use random::RandomSearch;

use crate::error::Result;
use crate::space::{Arch, Space};
use std::cmp::Ordering;
use std::sync::Arc;

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

/// What every search strategy does, as ask/tell: `ask(n)` proposes up to `n` architectures,
/// `tell` gives back the scores of those that were evaluated, in proposal order. A runner may
/// evaluate a batch's proposals in any way it likes (one at a time today; sharded later), as
/// long as it tells them in proposal order once the batch is done (`Driver` does exactly that).
///
/// Implementations must be deterministic for their seed: the same sequence of asks, tells and
/// rejections gives the same proposals, which is what lets `replay` resume a search.
pub trait Strategy {
    /// Short lowercase name, as accepted by `strategy_from_name`.
    fn name(&self) -> &'static str;
    /// Up to `n` new proposals; fewer (possibly none) when the strategy has nothing more to
    /// propose. Budget is enforced by the caller.
    fn ask(&mut self, n: usize) -> Vec<Arch>;
    /// Scores of evaluated proposals, in proposal order (each proposal told once, or rejected).
    fn tell(&mut self, results: &[(Arch, Observation)]);
    /// A proposal refused before evaluation (it breaks a cost constraint): it will never be
    /// told. Strategies that count proposals uncount it here.
    fn reject(&mut self, _arch: &Arch) {}
    /// How many of the first proposals are uniform samples of the space, blind to any score:
    /// the random baseline a search is compared with. All of them unless overridden.
    fn random_proposals(&self) -> usize {
        usize::MAX
    }
    /// Whether proposals depend on the scores told. A strategy that says false (random, grid)
    /// proposes the same sequence whatever it is told, so a sharded search can hand out its
    /// whole budget in one round instead of waiting for each batch's scores (pipeline::shard).
    fn adaptive(&self) -> bool {
        true
    }
    /// One proposal: `ask(1)`.
    fn propose(&mut self) -> Option<Arch> {
        self.ask(1).pop()
    }
    /// One result: `tell` of one.
    fn observe(&mut self, arch: &Arch, obs: &Observation) {
        self.tell(&[(arch.clone(), *obs)]);
    }
}

/// Names accepted by `strategy_from_name`.
pub const STRATEGIES: [&str; 5] = ["random", "evolution", "grid", "bayes", "reinforce"];

/// Builds a strategy by name with its default settings (`StrategyConfig::from_name`).
pub fn strategy_from_name(name: &str, space: Arc<dyn Space>, seed: u64, budget: usize) -> Result<Box<dyn Strategy>> {
    StrategyConfig::from_name(name)?.build(space, seed, budget)
}

/// Feeds a recorded history back into a freshly built strategy, one proposal per batch (the
/// sequential loop): for each entry the strategy proposes, the proposal must be the recorded
/// architecture (same `key()`), and the recorded metrics are told. `Driver::replay` does the
/// same for any batch size and cost constraints.
pub fn replay(strategy: &mut dyn Strategy, history: &[HistoryEntry]) -> Result<()> {
    let mut driver = Driver::new(Borrowed(strategy), 1, usize::MAX);
    driver.replay(history, &mut |_| Ok(None))
}

/// A `&mut dyn Strategy` as a strategy, so `replay` can drive a borrowed one.
struct Borrowed<'a>(&'a mut dyn Strategy);

impl Strategy for Borrowed<'_> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn ask(&mut self, n: usize) -> Vec<Arch> {
        self.0.ask(n)
    }
    fn tell(&mut self, results: &[(Arch, Observation)]) {
        self.0.tell(results)
    }
    fn reject(&mut self, arch: &Arch) {
        self.0.reject(arch)
    }
    fn random_proposals(&self) -> usize {
        self.0.random_proposals()
    }
    fn adaptive(&self) -> bool {
        self.0.adaptive()
    }
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
