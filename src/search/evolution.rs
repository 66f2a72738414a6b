//! Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
//! Architecture Search", Algorithm 1:
//!
//! 1. The first P proposals are random architectures; as each is observed it joins the
//!    population.
//! 2. Every later proposal: draw S members uniformly at random with replacement, take the one
//!    with the highest accuracy as parent, propose `space.mutate(parent)`.
//! 3. Every observation appends the child to the population and, once the population exceeds
//!    P, removes the oldest member, whatever its accuracy.
//!
//! Step 3 is the "regularization": a good architecture survives only through descendants that
//! score well too, which favours architectures that retrain well over lucky evaluations.

use super::random::sample_unseen;
use super::{better, Observation, Strategy};
use crate::error::{Error, Result};
use crate::space::{Arch, Space};
use std::sync::Arc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashSet, VecDeque};

/// Population and tournament sizes.
pub struct EvolutionConfig;

impl EvolutionConfig {
    /// P of the paper's CIFAR-10 experiments.
    pub const POPULATION: usize = 100;
    /// S of the paper's CIFAR-10 experiments.
    pub const SAMPLE_SIZE: usize = 25;

    /// `(population, sample_size)` for a search of `budget` evaluations:
    /// P = min(100, max(budget / 4, 2)), S = min(P, max(2, P / 4)).
    ///
    /// Why: the first P evaluations are random, so P at most a quarter of the budget leaves at
    /// least three quarters for evolution (P = 100 of the paper is meant for thousands of
    /// evaluations; at budget 100 it would make the whole search random). S = P/4 keeps the
    /// paper's selection pressure (25 of 100). S is at least 2 because with S = 1 the parent is
    /// a uniform pick, a random walk that ignores accuracy; P is at least 2 so there is a
    /// choice to make.
    pub fn for_budget(budget: usize) -> (usize, usize) {
        let population = (budget / 4).clamp(2, Self::POPULATION);
        let sample_size = (population / 4).max(2).min(population);
        (population, sample_size)
    }
}

/// One member of the population.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub arch: Arch,
    pub accuracy: f64,
    /// How many observations came before this one (0 for the first), i.e. its age rank.
    pub born: usize,
}

/// Aging evolution; see the module docs.
pub struct RegularizedEvolution {
    space: Arc<dyn Space>,
    rng: ChaCha8Rng,
    population_size: usize,
    sample_size: usize,
    /// Oldest first, so index order is age order.
    population: VecDeque<Member>,
    proposed: usize,
    observed: usize,
    /// Keys of the random initial proposals, so the initial population has no repeats.
    seen: HashSet<String>,
}

impl RegularizedEvolution {
    /// `population` (P) and `sample_size` (S) must be at least 1. S may exceed P: the sample
    /// is drawn with replacement, so that only means stronger selection.
    pub fn new(space: impl Into<Arc<dyn Space>>, seed: u64, population: usize, sample_size: usize) -> Result<RegularizedEvolution> {
        if population == 0 || sample_size == 0 {
            return Err(Error::Invalid(format!(
                "regularized evolution needs population and sample size of at least 1, got population \
                 {population}, sample size {sample_size}"
            )));
        }
        Ok(RegularizedEvolution {
            space: space.into(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            population_size: population,
            sample_size,
            population: VecDeque::with_capacity(population + 1),
            proposed: 0,
            observed: 0,
            seen: HashSet::new(),
        })
    }

    pub fn space(&self) -> &dyn Space {
        self.space.as_ref()
    }

    /// P.
    pub fn population_size(&self) -> usize {
        self.population_size
    }

    /// S.
    pub fn sample_size(&self) -> usize {
        self.sample_size
    }

    /// The current population, oldest first.
    pub fn population(&self) -> &VecDeque<Member> {
        &self.population
    }

    /// Index of the tournament winner: the best of S uniform draws with replacement. Equal
    /// accuracies go to the older member, so the choice depends only on the rng and the
    /// observations.
    fn select_parent(&mut self) -> usize {
        let n = self.population.len();
        let mut best = self.rng.random_range(0..n);
        for _ in 1..self.sample_size {
            let i = self.rng.random_range(0..n);
            let (a, b) = (self.population[i].accuracy, self.population[best].accuracy);
            if better(a, b) || (!better(b, a) && i < best) {
                best = i;
            }
        }
        best
    }
}

impl Strategy for RegularizedEvolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn random_proposals(&self) -> usize {
        self.population_size
    }

    /// Always `n`. In a space too small for any mutation to change a genotype, it keeps
    /// proposing the same one; the caller's budget ends the search. Within a batch, parents
    /// come from the population as of the last tell.
    fn ask(&mut self, n: usize) -> Vec<Arch> {
        (0..n).map(|_| self.next_proposal()).collect()
    }

    fn tell(&mut self, results: &[(Arch, Observation)]) {
        for (arch, obs) in results {
            self.population.push_back(Member { arch: arch.clone(), accuracy: obs.accuracy, born: self.observed });
            self.observed += 1;
            while self.population.len() > self.population_size {
                self.population.pop_front();
            }
        }
    }

    /// A refused proposal does not count towards the P random ones, so the initial population
    /// is P architectures within the constraints.
    fn reject(&mut self, _arch: &Arch) {
        self.proposed = self.proposed.saturating_sub(1);
    }
}

impl RegularizedEvolution {
    fn next_proposal(&mut self) -> Arch {
        // Random while the initial population is being proposed, and also when nothing has been
        // observed yet (only if a caller proposes ahead of observing): there is no parent.
        let genotype = if self.proposed < self.population_size || self.population.is_empty() {
            // Unseen if possible; a tiny exhausted space may repeat, evolution still needs P members.
            match sample_unseen(self.space.as_ref(), &mut self.rng, &mut self.seen) {
                Some(g) => g,
                None => self.space.sample(&mut self.rng),
            }
        } else {
            let parent = self.select_parent();
            self.space.mutate(&self.population[parent].arch, &mut self.rng)
        };
        self.proposed += 1;
        genotype
    }
}
