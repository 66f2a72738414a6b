//! Random search: uniform samples from the space, each architecture at most once. The baseline
//! every other strategy has to beat (Li & Talwalkar 2019 found it close to DARTS on this space).

use super::{Observation, Strategy};
use crate::space::{Arch, Space};
use std::sync::Arc;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Draws allowed per proposal before giving up on finding an unseen architecture. The DARTS
/// space has ~10^18 genotypes, so a duplicate is rare and this only ends searches of tiny
/// spaces that are (nearly) exhausted; the bound keeps `propose` from looping forever there.
pub(crate) const MAX_DRAWS: usize = 1000;

/// A uniform sample whose `key()` is not in `seen` (and is added to it), or None after
/// `MAX_DRAWS` duplicates in a row.
pub(crate) fn sample_unseen(space: &dyn Space, rng: &mut ChaCha8Rng, seen: &mut HashSet<String>) -> Option<Arch> {
    (0..MAX_DRAWS).map(|_| space.sample(rng)).find(|g| seen.insert(g.key()))
}

/// Uniform random search without repeats. Observations are ignored; proposals depend only on
/// the seed.
pub struct RandomSearch {
    space: Arc<dyn Space>,
    rng: ChaCha8Rng,
    /// Keys of everything proposed so far (not just observed), so a proposal never repeats.
    seen: HashSet<String>,
}

impl RandomSearch {
    pub fn new(space: impl Into<Arc<dyn Space>>, seed: u64) -> RandomSearch {
        RandomSearch { space: space.into(), rng: ChaCha8Rng::seed_from_u64(seed), seen: HashSet::new() }
    }

    pub fn space(&self) -> &dyn Space {
        self.space.as_ref()
    }
}

impl Strategy for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }

    /// Fewer than `n` (down to none) once `MAX_DRAWS` samples in a row were all seen before:
    /// the space is exhausted, or so nearly that further search is pointless.
    fn ask(&mut self, n: usize) -> Vec<Arch> {
        (0..n).map_while(|_| sample_unseen(self.space.as_ref(), &mut self.rng, &mut self.seen)).collect()
    }

    fn tell(&mut self, _results: &[(Arch, Observation)]) {}

    fn adaptive(&self) -> bool {
        false
    }
}
