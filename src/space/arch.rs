//! What every search space offers the rest of cellnas: an architecture value (`Arch`, one
//! variant per space) and the `Space` trait (sampling, mutation, membership, text form, the
//! FairNAS path set). Strategies, history, supernet training and scoring work through these,
//! so a new space is its module, a variant here and its `Space` implementation.

use super::genotype::Genotype;
use super::macro_space::{MacroArch, MacroSpace};
use super::nb201::{Nb201Cell, Nb201Space};
use super::op::Op;
use super::search::SearchSpace;
use crate::error::Result;
use rand::seq::SliceRandom;
use rand::RngCore;

/// One architecture of one space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// A DARTS genotype: a normal and a reduction cell.
    Darts(Genotype),
    /// A NAS-Bench-201 cell: an op on each of the 6 edges of a 4-node DAG.
    Nb201(Nb201Cell),
    /// An ENAS macro architecture: an op and skip sources per layer of a chain.
    Macro(MacroArch),
}

impl Arch {
    /// The canonical key: equal architectures, equal keys (one history entry).
    pub fn key(&self) -> String {
        match self {
            Arch::Darts(g) => g.key(),
            Arch::Nb201(c) => c.key(),
            Arch::Macro(a) => a.key(),
        }
    }

    /// The space's own text form (DARTS genotype text, an NB201 arch string, macro text), what
    /// history.jsonl records.
    pub fn text(&self) -> String {
        match self {
            Arch::Darts(g) => g.to_darts(),
            Arch::Nb201(c) => c.to_arch_string(),
            Arch::Macro(a) => a.to_text(),
        }
    }

    /// The DARTS genotype, for what only DARTS networks have (morphism, kernel autotune).
    pub fn darts(&self) -> Option<&Genotype> {
        match self {
            Arch::Darts(g) => Some(g),
            Arch::Nb201(_) | Arch::Macro(_) => None,
        }
    }

    /// The name of the space this architecture belongs to.
    pub fn space(&self) -> &'static str {
        match self {
            Arch::Darts(_) => "darts",
            Arch::Nb201(_) => "nb201",
            Arch::Macro(_) => "macro",
        }
    }
}

impl From<Genotype> for Arch {
    fn from(g: Genotype) -> Arch {
        Arch::Darts(g)
    }
}

/// A search space. Implementations are deterministic for a given generator state, which is
/// what lets a search resume by replaying its history.
pub trait Space: Send + Sync + std::fmt::Debug {
    /// Short lowercase name ("darts").
    fn name(&self) -> &'static str;
    /// A uniform sample.
    fn sample(&self, rng: &mut dyn RngCore) -> Arch;
    /// One mutation step (regularized evolution); differs from `arch` whenever any change is
    /// possible.
    fn mutate(&self, arch: &Arch, rng: &mut dyn RngCore) -> Arch;
    /// Ok when `arch` belongs to this space, else an error naming what does not.
    fn contains(&self, arch: &Arch) -> Result<()>;
    /// An architecture from the space's text form.
    fn parse(&self, text: &str) -> Result<Arch>;
    /// The paths of one FairNAS step: every op on every edge slot exactly once.
    fn fair_paths(&self, rng: &mut dyn RngCore) -> Vec<Arch>;
    /// Number of distinct architectures (f64: it overflows integers quickly).
    fn size(&self) -> f64;
}

impl From<SearchSpace> for std::sync::Arc<dyn Space> {
    fn from(space: SearchSpace) -> Self {
        std::sync::Arc::new(space)
    }
}

impl Space for SearchSpace {
    fn name(&self) -> &'static str {
        "darts"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Arch {
        Arch::Darts(SearchSpace::sample(self, rng))
    }

    fn mutate(&self, arch: &Arch, rng: &mut dyn RngCore) -> Arch {
        match arch {
            Arch::Darts(g) => Arch::Darts(SearchSpace::mutate(self, g, rng)),
            other => other.clone(),
        }
    }

    fn contains(&self, arch: &Arch) -> Result<()> {
        match arch {
            Arch::Darts(g) => SearchSpace::contains(self, g),
            other => Err(crate::Error::Spec(format!("a {} architecture is not in a DARTS space", other.space()))),
        }
    }

    fn parse(&self, text: &str) -> Result<Arch> {
        Genotype::from_darts(text).map(Arch::Darts)
    }

    fn fair_paths(&self, rng: &mut dyn RngCore) -> Vec<Arch> {
        let k = self.ops().len();
        // Inputs from ordinary samples; ops replaced by one permutation per edge slot.
        let mut paths: Vec<Genotype> = (0..k).map(|_| SearchSpace::sample(self, rng)).collect();
        for cell in 0..2 {
            for node in 0..self.nodes() {
                for slot in 0..2 {
                    let mut ops: Vec<Op> = self.ops().to_vec();
                    ops.shuffle(rng);
                    for (p, op) in paths.iter_mut().zip(ops) {
                        let c = if cell == 0 { &mut p.normal } else { &mut p.reduce };
                        c.nodes[node][slot].op = op;
                    }
                }
            }
        }
        paths.into_iter().map(Arch::Darts).collect()
    }

    fn size(&self) -> f64 {
        SearchSpace::size(self) * SearchSpace::size(self)
    }
}

impl From<Nb201Space> for std::sync::Arc<dyn Space> {
    fn from(space: Nb201Space) -> Self {
        std::sync::Arc::new(space)
    }
}

impl Space for Nb201Space {
    fn name(&self) -> &'static str {
        "nb201"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Arch {
        Arch::Nb201(Nb201Space::sample(self, rng))
    }

    fn mutate(&self, arch: &Arch, rng: &mut dyn RngCore) -> Arch {
        match arch {
            Arch::Nb201(c) => Arch::Nb201(Nb201Space::mutate(self, c, rng)),
            other => other.clone(),
        }
    }

    fn contains(&self, arch: &Arch) -> Result<()> {
        match arch {
            Arch::Nb201(c) => Nb201Space::contains(self, c),
            other => Err(crate::Error::Spec(format!("a {} architecture is not in an NB201 space", other.space()))),
        }
    }

    fn parse(&self, text: &str) -> Result<Arch> {
        Nb201Cell::parse(text).map(Arch::Nb201)
    }

    fn fair_paths(&self, rng: &mut dyn RngCore) -> Vec<Arch> {
        let k = self.ops().len();
        let mut paths: Vec<Nb201Cell> = (0..k).map(|_| Nb201Space::sample(self, rng)).collect();
        for e in 0..6 {
            let mut ops = self.ops().to_vec();
            ops.shuffle(rng);
            for (p, op) in paths.iter_mut().zip(ops) {
                p.ops[e] = op;
            }
        }
        paths.into_iter().map(Arch::Nb201).collect()
    }

    fn size(&self) -> f64 {
        Nb201Space::size(self) as f64
    }
}

impl From<MacroSpace> for std::sync::Arc<dyn Space> {
    fn from(space: MacroSpace) -> Self {
        std::sync::Arc::new(space)
    }
}

impl Space for MacroSpace {
    fn name(&self) -> &'static str {
        "macro"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Arch {
        Arch::Macro(MacroSpace::sample(self, rng))
    }

    fn mutate(&self, arch: &Arch, rng: &mut dyn RngCore) -> Arch {
        match arch {
            Arch::Macro(a) => Arch::Macro(MacroSpace::mutate(self, a, rng)),
            other => other.clone(),
        }
    }

    fn contains(&self, arch: &Arch) -> Result<()> {
        match arch {
            Arch::Macro(a) => MacroSpace::contains(self, a),
            other => Err(crate::Error::Spec(format!("a {} architecture is not in a macro space", other.space()))),
        }
    }

    fn parse(&self, text: &str) -> Result<Arch> {
        MacroArch::parse(text).map(Arch::Macro)
    }

    /// Each layer's op one permutation of `ops()` across the paths, so every (layer, op) weight
    /// trains once per step; skips as in ordinary samples (they hold no weights of their own,
    /// only the reductions of sources from an earlier stage, which uniform skips reach evenly).
    fn fair_paths(&self, rng: &mut dyn RngCore) -> Vec<Arch> {
        let k = self.ops().len();
        let mut paths: Vec<MacroArch> = (0..k).map(|_| MacroSpace::sample(self, rng)).collect();
        for layer in 0..self.layers() {
            let mut ops = self.ops().to_vec();
            ops.shuffle(rng);
            for (p, op) in paths.iter_mut().zip(ops) {
                p.set_op(layer, op);
            }
        }
        paths.into_iter().map(Arch::Macro).collect()
    }

    fn size(&self) -> f64 {
        MacroSpace::size(self)
    }
}
