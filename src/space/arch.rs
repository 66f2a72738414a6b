//! What every search space offers the rest of cellnas: an architecture value (`Arch`, one
//! variant per space) and the `Space` trait (sampling, mutation, membership, text form, the
//! FairNAS path set). Strategies, history, supernet training and scoring work through these,
//! so a new space is its module, a variant here and its `Space` implementation.

use super::genotype::{Cell, Edge, Genotype};
use super::macro_space::{MacroArch, MacroLayer, MacroSpace};
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

    /// The space as a fixed list of categorical decisions: how many choices each has. Every
    /// architecture of the space is one choice per decision and back (`to_decisions`,
    /// `from_decisions`, a bijection), which is what grid search counts through and a
    /// controller samples. The order is each space's documented grid order
    /// (docs/ARCHITECTURE.md, "Strategies").
    fn decisions(&self) -> Vec<usize>;
    /// The architecture of one choice per decision; an error names a decision out of range.
    #[allow(clippy::wrong_self_convention)] // a constructor of the space's architectures
    fn from_decisions(&self, choices: &[usize]) -> Result<Arch>;
    /// The choices of `arch`; an error when it is not in the space.
    fn to_decisions(&self, arch: &Arch) -> Result<Vec<usize>>;
    /// A fixed-length vector of 0/1 values (`encoding_len` of them) for surrogate models: equal
    /// architectures, equal vectors, and a changed decision changes few entries.
    fn encode(&self, arch: &Arch) -> Result<Vec<f32>>;
    fn encoding_len(&self) -> usize;

    /// Architectures in grid order, when they fit a u64: the product of `decisions()`.
    fn grid_len(&self) -> Option<u64> {
        self.decisions().iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))
    }

    /// The `i`-th architecture in grid order: `i` written in the mixed radix of `decisions()`,
    /// the first decision the most significant digit (so the last decision changes fastest).
    /// None past the end.
    fn grid_at(&self, i: u64) -> Option<Arch> {
        if i >= self.grid_len()? {
            return None;
        }
        let radix = self.decisions();
        let mut choices = vec![0; radix.len()];
        let mut rest = i;
        for (c, &r) in choices.iter_mut().zip(&radix).rev() {
            *c = (rest % r as u64) as usize;
            rest /= r as u64;
        }
        self.from_decisions(&choices).ok()
    }

    /// Every architecture in grid order, when there are at most `limit`; else an error that
    /// says how many there are and how to restrict the space.
    fn enumerate(&self, limit: u64) -> Result<Box<dyn Iterator<Item = Arch> + '_>> {
        match self.grid_len() {
            Some(n) if n <= limit => Ok(Box::new((0..n).filter_map(move |i| self.grid_at(i)))),
            n => Err(crate::Error::Invalid(format!(
                "--strategy grid: the {} space has {}, more than --grid-limit {limit}; restrict it (--ops, and --nodes or \
                 --layers) or search it with random, evolution, bayes or reinforce",
                self.name(),
                match n {
                    Some(n) => format!("{n} architectures"),
                    None => format!("~10^{:.1} architectures", self.size().log10()),
                }
            ))),
        }
    }
}

/// A decision's choice, or an error naming it: `choices[k] < radix[k]` for every k, and one
/// choice per decision.
pub(super) fn check_choices(space: &str, radix: &[usize], choices: &[usize]) -> Result<()> {
    if choices.len() != radix.len() {
        return Err(crate::Error::Spec(format!("the {space} space has {} decisions, got {} choices", radix.len(), choices.len())));
    }
    match choices.iter().zip(radix).position(|(c, r)| c >= r) {
        None => Ok(()),
        Some(k) => Err(crate::Error::Spec(format!("{space} decision {k}: choice {} of {} (choices count from 0)", choices[k], radix[k]))),
    }
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

    /// Normal cell, then reduce cell; per intermediate node n (2, 3, ...): its pair of inputs
    /// a < b (C(n,2) choices, lexicographic: (0,1), (0,2), ..., (1,2), ...), the op on the edge
    /// from a, the op on the edge from b (`ops()` order). Concat is every intermediate node.
    fn decisions(&self) -> Vec<usize> {
        let k = self.ops().len();
        (0..2).flat_map(|_| (2..self.nodes() + 2).flat_map(move |n| [n * (n - 1) / 2, k, k])).collect()
    }

    fn from_decisions(&self, choices: &[usize]) -> Result<Arch> {
        check_choices("darts", &self.decisions(), choices)?;
        let per_cell = 3 * self.nodes();
        let cell = |c: &[usize]| Cell {
            nodes: (2..self.nodes() + 2)
                .zip(c.chunks(3))
                .map(|(n, d)| {
                    let (a, b) = darts_pair(n, d[0]);
                    [Edge::new(self.ops()[d[1]], a), Edge::new(self.ops()[d[2]], b)]
                })
                .collect(),
            concat: (2..self.nodes() + 2).collect(),
        };
        Ok(Arch::Darts(Genotype { normal: cell(&choices[..per_cell]), reduce: cell(&choices[per_cell..]) }))
    }

    fn to_decisions(&self, arch: &Arch) -> Result<Vec<usize>> {
        Space::contains(self, arch)?;
        let g = arch.darts().expect("contains checked the space").canonical();
        let mut out = Vec::with_capacity(6 * self.nodes());
        for (name, cell) in g.cells() {
            if cell.concat != (2..self.nodes() + 2).collect::<Vec<_>>() {
                return Err(crate::Error::Spec(format!("{name}_concat is not every intermediate node, which the space's decisions assume")));
            }
            for (i, [a, b]) in cell.nodes.iter().enumerate() {
                let n = i + 2;
                let pair = (0..n * (n - 1) / 2).find(|&p| darts_pair(n, p) == (a.input, b.input)).expect("canonical inputs a < b < n");
                let op = |o: Op| self.ops().iter().position(|&x| x == o).expect("contains checked the ops");
                out.extend([pair, op(a.op), op(b.op)]);
            }
        }
        Ok(out)
    }

    /// Per cell, per intermediate node n, per earlier node j < n, per op: 1 when an edge j -> n
    /// carries that op. The edge order within a node does not matter (as for the key), and
    /// two cells sharing an edge share its entry.
    fn encode(&self, arch: &Arch) -> Result<Vec<f32>> {
        Space::contains(self, arch)?;
        let g = arch.darts().expect("contains checked the space");
        let k = self.ops().len();
        let mut v = Vec::with_capacity(self.encoding_len());
        for (_, cell) in g.cells() {
            for (i, pair) in cell.nodes.iter().enumerate() {
                let start = v.len();
                v.resize(start + (i + 2) * k, 0.0);
                for e in pair {
                    let op = self.ops().iter().position(|&x| x == e.op).expect("contains checked the ops");
                    v[start + e.input * k + op] = 1.0;
                }
            }
        }
        Ok(v)
    }

    fn encoding_len(&self) -> usize {
        2 * self.ops().len() * (2..self.nodes() + 2).sum::<usize>()
    }
}

/// Pair `p` of node `n`'s inputs, lexicographic over a < b < n.
fn darts_pair(n: usize, mut p: usize) -> (usize, usize) {
    for a in 0..n {
        let count = n - 1 - a;
        if p < count {
            return (a, a + 1 + p);
        }
        p -= count;
    }
    (0, 1)
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

    /// The op of each edge in arch-string order (`Nb201Cell::EDGES`), `ops()` order: grid order
    /// is `Nb201Space::all`'s.
    fn decisions(&self) -> Vec<usize> {
        vec![self.ops().len(); 6]
    }

    fn from_decisions(&self, choices: &[usize]) -> Result<Arch> {
        check_choices("nb201", &Space::decisions(self), choices)?;
        Ok(Arch::Nb201(Nb201Cell::new(std::array::from_fn(|e| self.ops()[choices[e]]))))
    }

    fn to_decisions(&self, arch: &Arch) -> Result<Vec<usize>> {
        Space::contains(self, arch)?;
        let Arch::Nb201(c) = arch else { unreachable!("contains checked the space") };
        Ok(c.ops.iter().map(|op| self.ops().iter().position(|o| o == op).expect("contains checked the ops")).collect())
    }

    /// `Nb201Space::encode`: one-hot op per edge over `ops()`.
    fn encode(&self, arch: &Arch) -> Result<Vec<f32>> {
        match arch {
            Arch::Nb201(c) => Nb201Space::encode(self, c),
            other => Space::contains(self, other).map(|_| Vec::new()),
        }
    }

    fn encoding_len(&self) -> usize {
        6 * self.ops().len()
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

    /// Layer by layer: its op (`ops()` order), then its skip from each earlier layer, 0 first
    /// (2 choices: absent, present).
    fn decisions(&self) -> Vec<usize> {
        (0..self.layers()).flat_map(|i| std::iter::once(self.ops().len()).chain(std::iter::repeat_n(2, i))).collect()
    }

    fn from_decisions(&self, choices: &[usize]) -> Result<Arch> {
        check_choices("macro", &Space::decisions(self), choices)?;
        let mut at = 0;
        let layers = (0..self.layers())
            .map(|i| {
                let op = self.ops()[choices[at]];
                let skips = (0..i).filter(|&s| choices[at + 1 + s] == 1).collect();
                at += 1 + i;
                MacroLayer { op, skips }
            })
            .collect();
        MacroArch::new(layers).map(Arch::Macro)
    }

    fn to_decisions(&self, arch: &Arch) -> Result<Vec<usize>> {
        Space::contains(self, arch)?;
        let Arch::Macro(a) = arch else { unreachable!("contains checked the space") };
        let mut out = Vec::new();
        for (i, l) in a.layers().iter().enumerate() {
            out.push(self.ops().iter().position(|&o| o == l.op).expect("contains checked the ops"));
            out.extend((0..i).map(|s| usize::from(l.skips.contains(&s))));
        }
        Ok(out)
    }

    /// `MacroSpace::encode`: one-hot op per layer over `ops()`, then every skip bit.
    fn encode(&self, arch: &Arch) -> Result<Vec<f32>> {
        match arch {
            Arch::Macro(a) => MacroSpace::encode(self, a),
            other => Space::contains(self, other).map(|_| Vec::new()),
        }
    }

    fn encoding_len(&self) -> usize {
        let l = self.layers();
        l * self.ops().len() + l * (l - 1) / 2
    }
}
