//! Grid search: every architecture of a finite space, in the space's grid order (`Space::grid_at`:
//! the space's decisions counted like an odometer, the last decision fastest). The budget caps
//! how many are evaluated, so a budget below the space's size evaluates a prefix of the grid
//! (the CLI warns). A space of more than `limit` architectures is refused when the strategy is
//! built: enumerating a corner of a huge space is rarely what was meant, and the error says how
//! to restrict it.

use super::{Observation, Strategy};
use crate::error::Result;
use crate::space::{Arch, Space};
use std::sync::Arc;

/// The default `--grid-limit`: NB201's 15625 cells and small restricted DARTS or macro spaces
/// pass, the full DARTS space (~10^18) does not.
pub const GRID_LIMIT: u64 = 100_000;

pub struct GridSearch {
    space: Arc<dyn Space>,
    next: u64,
    len: u64,
}

impl GridSearch {
    /// An error (naming the space's size and `--grid-limit`) when it has more than `limit`.
    pub fn new(space: Arc<dyn Space>, limit: u64) -> Result<GridSearch> {
        drop(space.enumerate(limit)?);
        let len = space.grid_len().expect("enumerate checked the size");
        Ok(GridSearch { space, next: 0, len })
    }

    /// Architectures in the grid.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Strategy for GridSearch {
    fn name(&self) -> &'static str {
        "grid"
    }

    /// The next `n` in grid order; fewer at the end of the grid.
    fn ask(&mut self, n: usize) -> Vec<Arch> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.next < self.len {
            out.extend(self.space.grid_at(self.next));
            self.next += 1;
        }
        out
    }

    fn tell(&mut self, _results: &[(Arch, Observation)]) {}

    fn adaptive(&self) -> bool {
        false
    }

    /// None: grid order is not a random sample.
    fn random_proposals(&self) -> usize {
        0
    }
}
