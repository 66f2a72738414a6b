//! A discrete DARTS architecture: a normal cell and a reduction cell, each a small DAG.
//!
//! Node numbering follows DARTS: in a cell, nodes 0 and 1 are the two inputs (outputs of the
//! previous two cells), intermediate node `i` has index `i + 2`, and each intermediate node is
//! the sum of exactly two edges `op(input)` from distinct earlier nodes. The cell output is the
//! channel concatenation of the nodes listed in `concat`.

use super::op::Op;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The most intermediate nodes a cell may have, as for DARTS concat lists (crate::space::darts).
pub const MAX_NODES: usize = 1024;

/// One edge into an intermediate node: `op` applied to node `input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub op: Op,
    pub input: usize,
}

impl Edge {
    pub fn new(op: Op, input: usize) -> Edge {
        Edge { op, input }
    }
}

/// One cell: `nodes[i]` are the two edges summed into node `i + 2`, in the order given. DARTS
/// derivation lists a node's edges strongest first, not by input, so published genotypes have
/// pairs like (1, 0); the order is kept so text round-trips exactly (the sum ignores it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub nodes: Vec<[Edge; 2]>,
    pub concat: Vec<usize>,
}

impl Cell {
    /// Checks the cell on its own; `name` ("normal" or "reduce") goes into the messages.
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(Error::Spec(format!("{name} cell has no intermediate nodes; expected at least one")));
        }
        // Bounded before the checks below, which are quadratic in the concat list.
        if self.nodes.len() > MAX_NODES {
            return Err(Error::Spec(format!(
                "{name} cell has {} intermediate nodes; at most {MAX_NODES} are supported (cells have a handful)",
                self.nodes.len()
            )));
        }
        if self.concat.len() > self.nodes.len() {
            return Err(Error::Spec(format!(
                "{name}_concat lists {} nodes, but the cell has only {} intermediate nodes to concatenate",
                self.concat.len(),
                self.nodes.len()
            )));
        }
        for (i, edges) in self.nodes.iter().enumerate() {
            let node = i + 2;
            for (e, edge) in edges.iter().enumerate() {
                let at = format!("{name} cell, node {node} (intermediate node {i}), edge {e}");
                if edge.input >= node {
                    return Err(Error::Spec(format!(
                        "{at}: input {} is out of range; allowed 0..={} (0 and 1 are the cell inputs, \
                         2.. the earlier intermediate nodes)",
                        edge.input,
                        node - 1
                    )));
                }
                if edge.op == Op::None {
                    return Err(Error::Spec(format!(
                        "{at}: op 'none' is not allowed in a genotype (DARTS derivation excludes 'none'; \
                         it only lets the supernet switch an edge off); use one of {}",
                        Op::list(&Op::SEARCHABLE)
                    )));
                }
            }
            if edges[0].input == edges[1].input {
                return Err(Error::Spec(format!(
                    "{name} cell, node {node} (intermediate node {i}): both edges read node {}; \
                     the two inputs of a node must be distinct earlier nodes",
                    edges[0].input
                )));
            }
        }
        let last = self.nodes.len() + 1;
        if self.concat.is_empty() {
            return Err(Error::Spec(format!("{name}_concat is empty; expected some of the intermediate nodes 2..={last}")));
        }
        for (k, &c) in self.concat.iter().enumerate() {
            if c < 2 || c > last {
                return Err(Error::Spec(format!(
                    "{name}_concat[{k}] = {c} is out of range; expected intermediate nodes 2..={last}"
                )));
            }
            if self.concat[..k].contains(&c) {
                return Err(Error::Spec(format!("{name}_concat lists node {c} twice")));
            }
        }
        Ok(())
    }

    /// Every edge with the index of the node it feeds: `(node, edge)`, node counted from 2.
    pub fn edges(&self) -> impl Iterator<Item = (usize, Edge)> + '_ {
        self.nodes.iter().enumerate().flat_map(|(i, pair)| pair.iter().map(move |&e| (i + 2, e)))
    }

    /// Same cell with each node's two edges sorted by input (then op). The sum is commutative,
    /// so this is the same architecture; used by `Genotype::key`.
    pub fn canonical(&self) -> Cell {
        let nodes = self
            .nodes
            .iter()
            .map(|&[a, b]| if (b.input, b.op) < (a.input, a.op) { [b, a] } else { [a, b] })
            .collect();
        Cell { nodes, concat: self.concat.clone() }
    }
}

/// A full architecture: the cell used at stride 1 and the one used where the network reduces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genotype {
    pub normal: Cell,
    pub reduce: Cell,
}

impl Genotype {
    /// Checks both cells: inputs of node `n` in `0..n` and distinct, no `none` op, concat
    /// indices existing intermediate nodes without repeats. Errors name the cell and node.
    pub fn validate(&self) -> Result<()> {
        self.normal.validate("normal")?;
        self.reduce.validate("reduce")
    }

    /// The two cells with their names, in DARTS order.
    pub fn cells(&self) -> [(&'static str, &Cell); 2] {
        [("normal", &self.normal), ("reduce", &self.reduce)]
    }

    /// Same architecture with each node's edges in a fixed order (see `Cell::canonical`).
    pub fn canonical(&self) -> Genotype {
        Genotype { normal: self.normal.canonical(), reduce: self.reduce.canonical() }
    }

    /// Canonical string for deduplication: the DARTS text of `canonical()`. Two genotypes that
    /// differ only in the order of a node's two edges get the same key. (Graph isomorphisms
    /// that renumber nodes are not merged.)
    pub fn key(&self) -> String {
        self.canonical().to_darts()
    }
}
