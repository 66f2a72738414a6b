//! `Driver`: runs a strategy's ask/tell in batches of a fixed size under a budget and cost
//! constraints, handing out one proposal at a time. The search loop and `replay` both go
//! through it, so a resumed search repeats exactly what the interrupted one did: the same
//! asks (same sizes), the same rejections, the same tells at the same points, also when the
//! kill fell in the middle of a batch (the rest of that batch is then handed out first).

use super::{HistoryEntry, Observation, Strategy};
use crate::error::{Error, Result};
use crate::space::Arch;
use std::collections::VecDeque;

/// Consecutive proposals refused by the cost constraints after which the search stops with an
/// error naming the flag: a strategy that keeps proposing infeasible architectures would
/// otherwise loop for ever.
pub const MAX_REJECTS: usize = 1000;

/// Why a proposal breaks a cost constraint: the flag and, e.g., "12345 parameters, more than
/// 10000".
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub flag: &'static str,
    pub message: String,
}

/// The cost check a driver applies to every proposal before handing it out: `Ok(None)` when it
/// is within every constraint. It must be deterministic for an architecture (latency is, through
/// the run's cache).
pub type Check<'a> = dyn FnMut(&Arch) -> Result<Option<Violation>> + 'a;

/// See the module docs.
pub struct Driver<S> {
    strategy: S,
    batch: usize,
    budget: usize,
    /// Asked, not handed out yet.
    queue: VecDeque<Arch>,
    /// Handed out, not recorded yet.
    outstanding: usize,
    /// Recorded results of the current batch, told when the batch is complete.
    told: Vec<(Arch, Observation)>,
    /// Handed out in all (the history's length once recorded).
    handed: usize,
    rejected: usize,
}

impl<S: Strategy> Driver<S> {
    /// `batch` proposals per ask (at least 1), at most `budget` handed out in all.
    pub fn new(strategy: S, batch: usize, budget: usize) -> Driver<S> {
        Driver { strategy, batch: batch.max(1), budget, queue: VecDeque::new(), outstanding: 0, told: Vec::new(), handed: 0, rejected: 0 }
    }

    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// Proposals refused by the constraints so far.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// The next proposal within the constraints, or None when the budget is spent or the
    /// strategy has nothing more. Proposals come in the order the strategy made them; one that
    /// `check` refuses is `reject`ed and the strategy asked for another in its place.
    pub fn next(&mut self, check: &mut Check) -> Result<Option<Arch>> {
        if self.handed >= self.budget {
            return Ok(None);
        }
        if self.queue.is_empty() {
            if self.outstanding > 0 {
                return Err(Error::Search("a batch's results must be recorded before the next batch is asked for".into()));
            }
            let n = self.batch.min(self.budget - self.handed);
            self.queue.extend(self.strategy.ask(n));
        }
        let mut refused: Vec<Violation> = Vec::new();
        loop {
            let Some(arch) = self.queue.pop_front() else {
                return Ok(None);
            };
            match check(&arch)? {
                None => {
                    self.handed += 1;
                    self.outstanding += 1;
                    return Ok(Some(arch));
                }
                Some(v) => {
                    self.strategy.reject(&arch);
                    self.rejected += 1;
                    refused.push(v);
                    if refused.len() >= MAX_REJECTS {
                        return Err(too_many_rejects(&refused));
                    }
                    if self.queue.is_empty() {
                        self.queue.extend(self.strategy.ask(1));
                    }
                }
            }
        }
    }

    /// Every proposal of the current batch not handed out yet, handed out (all of the next
    /// batch when none is open): what a sharded search scores as one round. Empty when the
    /// budget is spent or the strategy has nothing more.
    pub fn next_batch(&mut self, check: &mut Check) -> Result<Vec<Arch>> {
        let mut out = Vec::new();
        while let Some(arch) = self.next(check)? {
            out.push(arch);
            if self.queue.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// Proposals handed out so far (the next one's position in the history).
    pub fn handed(&self) -> usize {
        self.handed
    }

    /// The score of the oldest proposal handed out and not yet recorded (proposals are recorded
    /// in the order they were handed out). Completes the batch, and tells it, when it was the
    /// last one.
    pub fn record(&mut self, arch: Arch, obs: Observation) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.told.push((arch, obs));
        if self.queue.is_empty() && self.outstanding == 0 {
            let told = std::mem::take(&mut self.told);
            self.strategy.tell(&told);
        }
    }

    /// Puts the strategy back in the state of the run that wrote `history`: each entry must be
    /// what the strategy proposes at that point (same `key()`), else an error naming the first
    /// entry that differs (the history came from another strategy, seed, space or constraints,
    /// and continuing would silently mix two searches).
    pub fn replay(&mut self, history: &[HistoryEntry], check: &mut Check) -> Result<()> {
        let name = self.strategy.name();
        for entry in history {
            let Some(arch) = self.next(check)? else {
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
                     seed, search space or constraints?)",
                    entry.id, entry.key
                )));
            }
            self.record(arch, Observation { accuracy: entry.accuracy, loss: entry.loss });
        }
        Ok(())
    }
}

/// The error after `MAX_REJECTS` refusals in a row: the flag that refused most of them.
fn too_many_rejects(refused: &[Violation]) -> Error {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for v in refused {
        match counts.iter_mut().find(|(f, _)| *f == v.flag) {
            Some(c) => c.1 += 1,
            None => counts.push((v.flag, 1)),
        }
    }
    let (flag, n) = counts.iter().copied().max_by_key(|&(_, n)| n).expect("at least one refusal");
    let example = refused.iter().rev().find(|v| v.flag == flag).map(|v| v.message.clone()).unwrap_or_default();
    Error::Search(format!(
        "{flag}: the strategy proposed {} architectures in a row outside the cost constraints ({n} of them refused by {flag}, \
         the last: {example}); loosen {flag}",
        refused.len()
    ))
}

impl Strategy for Box<dyn Strategy> {
    fn name(&self) -> &'static str {
        self.as_ref().name()
    }
    fn ask(&mut self, n: usize) -> Vec<Arch> {
        self.as_mut().ask(n)
    }
    fn tell(&mut self, results: &[(Arch, Observation)]) {
        self.as_mut().tell(results)
    }
    fn reject(&mut self, arch: &Arch) {
        self.as_mut().reject(arch)
    }
    fn random_proposals(&self) -> usize {
        self.as_ref().random_proposals()
    }
    fn adaptive(&self) -> bool {
        self.as_ref().adaptive()
    }
}
