//! A search's proposals as rounds: the unit a sharded search scores in parallel. A round of an
//! adaptive strategy is one batch of its ask/tell (`--batch`): its proposals are known once
//! the previous round's scores are told. A strategy whose proposals ignore scores (random,
//! grid) has one round, the whole budget. Every shard and the merge build the same rounds from
//! the run's config, so they agree on which architecture sits at which history position
//! without telling each other.

use super::search::SearchConfig;
use crate::error::Result;
use crate::search::{Driver, Observation, Strategy, Violation};
use crate::space::Arch;
use std::collections::HashMap;

/// One position of a round: the architecture, and the earlier position with the same
/// architecture when it is a repeat (a repeat is not scored again: it takes that score, as a
/// single-process search does).
#[derive(Clone, Debug)]
pub struct Slot {
    pub position: usize,
    pub arch: Arch,
    pub repeat_of: Option<usize>,
}

pub struct Rounds {
    driver: Driver<Box<dyn Strategy>>,
    adaptive: bool,
    first: HashMap<String, usize>,
    /// The size-only cost check (latency is refused in sharded runs: it differs by process).
    limits: crate::search::Constraints,
    net: crate::nn::darts::NetConfig,
    hw: [usize; 2],
}

impl Rounds {
    /// The rounds of `cfg`'s search on images of `hw` (height, width).
    pub fn new(cfg: &SearchConfig, hw: [usize; 2]) -> Result<Rounds> {
        let strategy = cfg.strategy.build(cfg.space.space(), cfg.train.seed, cfg.budget)?;
        let adaptive = strategy.adaptive();
        Ok(Rounds {
            driver: Driver::new(strategy, cfg.batch, cfg.budget),
            adaptive,
            first: HashMap::new(),
            limits: cfg.constraints.clone(),
            net: cfg.net.clone(),
            hw,
        })
    }

    pub fn adaptive(&self) -> bool {
        self.adaptive
    }

    pub fn strategy(&self) -> &dyn Strategy {
        self.driver.strategy().as_ref()
    }

    pub fn rejected(&self) -> usize {
        self.driver.rejected()
    }

    /// The next round (empty when the budget is spent or the strategy has nothing more). An
    /// adaptive strategy's round must be told (`tell`) before the next one is asked for.
    pub fn next(&mut self) -> Result<Vec<Slot>> {
        let (limits, net, [h, w]) = (&self.limits, &self.net, self.hw);
        let mut check = |a: &Arch| -> Result<Option<Violation>> {
            if limits.is_none() {
                return Ok(None);
            }
            let (p, f) = super::cost::size(net, a, h, w)?;
            Ok(limits.check_size(p, f))
        };
        let mut slots = Vec::new();
        loop {
            let start = self.driver.handed();
            let batch = self.driver.next_batch(&mut check)?;
            if batch.is_empty() {
                break;
            }
            for (i, arch) in batch.into_iter().enumerate() {
                let position = start + i;
                let repeat_of = self.first.get(&arch.key()).copied();
                if repeat_of.is_none() {
                    self.first.insert(arch.key(), position);
                }
                slots.push(Slot { position, arch, repeat_of });
            }
            if self.adaptive {
                break;
            }
            // Scores do not change what comes next: tell placeholders and go on to the end.
            for s in &slots[slots.len() - (self.driver.handed() - start)..] {
                self.driver.record(s.arch.clone(), Observation { accuracy: f64::NAN, loss: f64::NAN });
            }
        }
        Ok(slots)
    }

    /// The scores of a round from `next`, in its order (a no-op for a strategy that ignores them).
    pub fn tell(&mut self, round: &[Slot], scores: &[Observation]) {
        if !self.adaptive {
            return;
        }
        for (s, o) in round.iter().zip(scores) {
            self.driver.record(s.arch.clone(), *o);
        }
    }
}
