//! Morphs as values: what a morphism search may apply to a network, and the drawing of a
//! child's morphs by seed.

use super::{deepen, grow_kernel, widen};
use crate::error::Result;
use crate::nn::darts::NetConfig;
use crate::run::NamedTensor;
use crate::space::{Genotype, Op};
use rand::Rng;

/// One function-preserving change of a network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "morph", rename_all = "snake_case")]
pub enum Morph {
    /// Every channel doubled (Net2WiderNet).
    Widen,
    /// A gated residual cell after normal cell `after`.
    Deepen { after: usize },
    /// A 3x3 separable or dilated convolution edge grown to 5x5, in every cell of its kind.
    GrowKernel { reduction: bool, node: usize, edge: usize },
}

/// The largest network a morphism search may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_channels: usize,
    /// Cells, gated cells included.
    pub max_cells: usize,
}

impl std::fmt::Display for Morph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Morph::Widen => write!(f, "widen x2"),
            Morph::Deepen { after } => write!(f, "deepen after cell {after}"),
            Morph::GrowKernel { reduction, node, edge } => write!(f, "5x5 {} node {node} edge {edge}", if *reduction { "reduce" } else { "normal" }),
        }
    }
}

impl Morph {
    /// The network and cell after this morph, without tensors.
    pub fn shape(&self, net: &NetConfig, genotype: &Genotype) -> (NetConfig, Genotype) {
        let (mut net, mut genotype) = (net.clone(), genotype.clone());
        match self {
            Morph::Widen => net.channels = net.channels.saturating_mul(2),
            Morph::Deepen { after } => {
                let at = net.gated.partition_point(|&l| l <= *after);
                net.gated.insert(at, *after);
            }
            Morph::GrowKernel { reduction, node, edge } => {
                let cell = if *reduction { &mut genotype.reduce } else { &mut genotype.normal };
                if let Some(e) = cell.nodes.get_mut(*node).and_then(|n| n.get_mut(*edge)) {
                    e.op = match e.op {
                        Op::SepConv3x3 => Op::SepConv5x5,
                        Op::DilConv3x3 => Op::DilConv5x5,
                        op => op,
                    };
                }
            }
        }
        (net, genotype)
    }

    /// The network, cell and tensors after this morph. `image` is [H, W]; `seed` initialises
    /// what a deepened cell cannot copy.
    pub fn apply(&self, net: &NetConfig, genotype: &Genotype, image: [usize; 2], seed: u64, tensors: Vec<NamedTensor>) -> Result<(NetConfig, Genotype, Vec<NamedTensor>)> {
        match *self {
            Morph::Widen => {
                let (net, t) = widen(net, 2, tensors)?;
                Ok((net, genotype.clone(), t))
            }
            Morph::Deepen { after } => {
                let (net, t) = deepen(net, genotype, after, image, seed, tensors)?;
                Ok((net, genotype.clone(), t))
            }
            Morph::GrowKernel { reduction, node, edge } => {
                let (g, t) = grow_kernel(genotype, net, reduction, node, edge, tensors)?;
                Ok((net.clone(), g, t))
            }
        }
    }
}

/// Every morph of each kind that applies to (`net`, `genotype`) within `limits`: widening,
/// deepening after each normal cell, growing each 3x3 edge.
pub fn available(net: &NetConfig, genotype: &Genotype, limits: &Limits) -> Vec<Vec<Morph>> {
    let mut kinds = Vec::new();
    if net.channels.saturating_mul(2) <= limits.max_channels {
        kinds.push(vec![Morph::Widen]);
    }
    if net.cells() < limits.max_cells {
        kinds.push((0..net.layers).filter(|&l| !net.is_reduction(l)).map(|after| Morph::Deepen { after }).collect());
    }
    let mut grow = Vec::new();
    for (reduction, cell) in [(false, &genotype.normal), (true, &genotype.reduce)] {
        for (node, edges) in cell.nodes.iter().enumerate() {
            for (edge, e) in edges.iter().enumerate() {
                if matches!(e.op, Op::SepConv3x3 | Op::DilConv3x3) {
                    grow.push(Morph::GrowKernel { reduction, node, edge });
                }
            }
        }
    }
    if !grow.is_empty() {
        kinds.push(grow);
    }
    kinds
}

/// A child's morphs: 1 to `most` of them, each a uniform kind among those still available,
/// then a uniform morph of that kind; fewer when nothing more applies.
pub fn draw<R: Rng + ?Sized>(net: &NetConfig, genotype: &Genotype, limits: &Limits, most: usize, rng: &mut R) -> Vec<Morph> {
    let count = rng.random_range(1..=most.max(1));
    let (mut net, mut genotype) = (net.clone(), genotype.clone());
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let kinds = available(&net, &genotype, limits);
        if kinds.is_empty() {
            break;
        }
        let kind = &kinds[rng.random_range(0..kinds.len())];
        let m = kind[rng.random_range(0..kind.len())].clone();
        (net, genotype) = m.shape(&net, &genotype);
        out.push(m);
    }
    out
}
