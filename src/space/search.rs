//! The discrete DARTS search space: which ops an edge may take and how many intermediate nodes
//! a cell has. Random sampling (the random-search baseline) and the one-step mutation of
//! regularized evolution (Real et al., AmoebaNet) both live here so that every searcher draws
//! from the same distribution over the same set.

use super::genotype::{Cell, Edge, Genotype};
use super::op::Op;
use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Candidate ops (never `none`: a derived architecture cannot use it) and the number of
/// intermediate nodes per cell. Fields are private so every value went through `new`'s checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSpace")]
pub struct SearchSpace {
    ops: Vec<Op>,
    nodes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    ops: Vec<Op>,
    nodes: usize,
}

impl TryFrom<RawSpace> for SearchSpace {
    type Error = Error;
    fn try_from(raw: RawSpace) -> Result<SearchSpace> {
        SearchSpace::new(raw.ops, raw.nodes)
    }
}

/// The DARTS space: the 7 ops other than `none`, 4 intermediate nodes.
impl Default for SearchSpace {
    fn default() -> SearchSpace {
        SearchSpace { ops: Op::SEARCHABLE.to_vec(), nodes: 4 }
    }
}

impl SearchSpace {
    /// Rejects an empty op list, `none`, repeated ops (they would skew uniform sampling) and
    /// zero nodes.
    pub fn new(ops: Vec<Op>, nodes: usize) -> Result<SearchSpace> {
        if ops.is_empty() {
            return Err(Error::Spec(format!("search space has no ops; choose some of {}", Op::list(&Op::SEARCHABLE))));
        }
        if ops.contains(&Op::None) {
            return Err(Error::Spec(format!(
                "search space ops include 'none', which no derived architecture may use; choose from {}",
                Op::list(&Op::SEARCHABLE)
            )));
        }
        for (k, op) in ops.iter().enumerate() {
            if ops[..k].contains(op) {
                return Err(Error::Spec(format!("search space lists op '{op}' twice")));
            }
        }
        if nodes == 0 {
            return Err(Error::Spec("search space needs at least 1 intermediate node per cell (DARTS uses 4)".into()));
        }
        Ok(SearchSpace { ops, nodes })
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Intermediate nodes per cell.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// A uniform random genotype: each node's two inputs are a uniform ordered pair of distinct
    /// earlier nodes, each edge's op uniform over `ops`, concat all intermediate nodes.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Genotype {
        let normal = self.sample_cell(rng);
        let reduce = self.sample_cell(rng);
        Genotype { normal, reduce }
    }

    fn sample_cell<R: Rng + ?Sized>(&self, rng: &mut R) -> Cell {
        let nodes = (2..self.nodes + 2)
            .map(|node| {
                // Second input drawn from the node-1 others, then shifted past the first: uniform
                // over distinct pairs without rejection.
                let a = rng.random_range(0..node);
                let mut b = rng.random_range(0..node - 1);
                if b >= a {
                    b += 1;
                }
                let op_a = self.ops[rng.random_range(0..self.ops.len())];
                let op_b = self.ops[rng.random_range(0..self.ops.len())];
                [Edge::new(op_a, a), Edge::new(op_b, b)]
            })
            .collect();
        Cell { nodes, concat: (2..self.nodes + 2).collect() }
    }

    /// One regularized-evolution mutation: pick the normal or reduce cell, then either give one
    /// edge a different op from `ops`, or move one edge to a different earlier node that is not
    /// the node's other input. Choices that cannot change anything (one op; a node with no
    /// other free input) are skipped, so the result differs from `g` whenever any change is
    /// possible; it is then also a different architecture (a node's input-to-op map changes).
    /// `g` is expected to be in this space (`contains`).
    pub fn mutate<R: Rng + ?Sized>(&self, g: &Genotype, rng: &mut R) -> Genotype {
        let mut out = g.clone();
        let options = [self.mutable_edges(&g.normal), self.mutable_edges(&g.reduce)];
        let cells: Vec<usize> = (0..2).filter(|&c| !options[c].0.is_empty() || !options[c].1.is_empty()).collect();
        if cells.is_empty() {
            return out;
        }
        let c = cells[rng.random_range(0..cells.len())];
        let (op_edges, input_edges) = &options[c];
        let change_op = match (op_edges.is_empty(), input_edges.is_empty()) {
            (false, true) => true,
            (true, false) => false,
            _ => rng.random_bool(0.5),
        };
        let cell = if c == 0 { &mut out.normal } else { &mut out.reduce };
        if change_op {
            let (i, e) = op_edges[rng.random_range(0..op_edges.len())];
            let current = cell.nodes[i][e].op;
            let choices: Vec<Op> = self.ops.iter().copied().filter(|&op| op != current).collect();
            cell.nodes[i][e].op = choices[rng.random_range(0..choices.len())];
        } else {
            let (i, e) = input_edges[rng.random_range(0..input_edges.len())];
            let choices = Self::free_inputs(cell, i, e);
            cell.nodes[i][e].input = choices[rng.random_range(0..choices.len())];
        }
        out
    }

    /// (edges whose op can change, edges whose input can change), as (node slot, edge 0/1).
    fn mutable_edges(&self, cell: &Cell) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
        let mut ops = Vec::new();
        let mut inputs = Vec::new();
        for (i, pair) in cell.nodes.iter().enumerate() {
            for (e, edge) in pair.iter().enumerate() {
                if self.ops.iter().any(|&op| op != edge.op) {
                    ops.push((i, e));
                }
                if !Self::free_inputs(cell, i, e).is_empty() {
                    inputs.push((i, e));
                }
            }
        }
        (ops, inputs)
    }

    /// Earlier nodes edge `e` of node slot `i` could move to: not its current input, not the
    /// node's other input.
    fn free_inputs(cell: &Cell, i: usize, e: usize) -> Vec<usize> {
        let pair = cell.nodes[i];
        (0..i + 2).filter(|&n| n != pair[e].input && n != pair[1 - e].input).collect()
    }

    /// Ok when `g` is valid, both cells have `nodes()` intermediate nodes, and every op is in
    /// `ops()`. (Concat is not constrained; sampling always uses all intermediate nodes.)
    pub fn contains(&self, g: &Genotype) -> Result<()> {
        g.validate()?;
        for (name, cell) in g.cells() {
            if cell.nodes.len() != self.nodes {
                return Err(Error::Spec(format!(
                    "{name} cell has {} intermediate nodes; this search space has {}",
                    cell.nodes.len(),
                    self.nodes
                )));
            }
            for (node, edge) in cell.edges() {
                if !self.ops.contains(&edge.op) {
                    return Err(Error::Spec(format!(
                        "{name} cell, node {node}: op '{}' is not in this search space (ops: {})",
                        edge.op,
                        Op::list(&self.ops)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Distinct architectures of one cell: node `n` (n = 2..) picks an unordered pair of
    /// distinct inputs (n choose 2) and an op for each edge, so prod over n of C(n,2) * ops^2.
    /// For the DARTS space that is 180 * 7^8 ~ 1.04e9, the "~10^9 per cell" of the DARTS
    /// paper; a genotype (two cells) is the square. f64 because it overflows u64 quickly.
    pub fn size(&self) -> f64 {
        let ops = self.ops.len() as f64;
        (2..self.nodes + 2).map(|n| (n * (n - 1) / 2) as f64 * ops * ops).product()
    }

    /// log10 of `size()`, summed term by term so it stays finite for any node count.
    pub fn log10_size(&self) -> f64 {
        let ops = self.ops.len() as f64;
        (2..self.nodes + 2).map(|n| ((n * (n - 1) / 2) as f64).log10() + 2.0 * ops.log10()).sum()
    }
}

/// e.g. "7 ops (max_pool_3x3, ...), 4 nodes, ~10^9.0 architectures per cell".
impl fmt::Display for SearchSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops ({}), {} nodes, ~10^{:.1} architectures per cell",
            self.ops.len(),
            Op::list(&self.ops),
            self.nodes,
            self.log10_size()
        )
    }
}
