//! DARTS's continuous relaxation (Liu et al. 2019) on the tape: every intermediate node of a
//! cell reads every earlier node through a mixed op, the sum over the candidate ops weighted by
//! softmax(alpha) of that edge. One alpha per cell kind ([edges, ops], shared by every normal
//! cell, and by every reduction cell). Op weights and BN layers have the names of the SPOS
//! supernet's (`cells.L.nodeN.fromJ.OP`), so the discrete genotype derived from alpha is
//! scored with these weights by the same code that scores a supernet path.

use super::darts::{op, preprocess, stem, NetConfig, NetKind};
use super::graph::{Graph, Var};
use super::params::Init;
use crate::error::{Error, Result};
use crate::space::{Cell, Edge, Genotype, Op};

/// Parameter names of the architecture weights.
pub const ALPHA_NORMAL: &str = "alpha.normal";
pub const ALPHA_REDUCE: &str = "alpha.reduce";

/// Whether a parameter is an architecture weight (trained by Adam on the held-out half) rather
/// than a network weight (SGD on the training half).
pub fn is_alpha(name: &str) -> bool {
    name.starts_with("alpha.")
}

/// Edges of a cell with `nodes` intermediate nodes: node i reads the 2 inputs and the i nodes
/// before it.
pub fn edges(nodes: usize) -> usize {
    (0..nodes).map(|i| i + 2).sum()
}

/// The op set of the relaxation: `ops` (column order of alpha), `none` among them or not.
pub fn check_ops(ops: &[Op]) -> Result<()> {
    let real = ops.iter().filter(|&&o| o != Op::None).count();
    if real == 0 {
        return Err(Error::Invalid("--ops: gradient-based search mixes ops, and the set has none besides 'none'".into()));
    }
    if ops.len() < 2 {
        return Err(Error::Invalid(format!(
            "--ops: gradient-based search mixes at least 2 ops on an edge (the softmax of one weight is always 1, so nothing is learned), got only '{}'",
            ops[0]
        )));
    }
    Ok(())
}

/// Logits of `x` through the relaxed network of `cfg` (supernet conventions: BN without
/// affine, BN after pools) with candidate ops `ops`.
pub fn forward(g: &mut Graph, cfg: &NetConfig, ops: &[Op], x: Var) -> Result<Var> {
    check_ops(ops)?;
    if cfg.kind != NetKind::Darts || !cfg.gated.is_empty() {
        return Err(Error::Invalid("the relaxed network is built for plain DARTS cell networks".into()));
    }
    let e = edges(cfg.nodes);
    // Zero: a uniform mixture to start, where DARTS draws 1e-3 * N(0, 1); the ops' outputs
    // differ, so the gradients break the tie from the first step.
    let w_normal = g.softmax_param(ALPHA_NORMAL, e, ops.len(), Init::Const(0.0))?;
    let w_reduce = g.softmax_param(ALPHA_REDUCE, e, ops.len(), Init::Const(0.0))?;
    let stem = stem(g, x, cfg)?;
    let (mut s0, mut s1) = (stem, stem);
    let mut c_curr = cfg.channels;
    let mut reduction_prev = false;
    for layer in 0..cfg.layers {
        let reduction = cfg.is_reduction(layer);
        if reduction {
            c_curr *= 2;
        }
        let w = if reduction { w_reduce } else { w_normal };
        let out = cell(g, s0, s1, w, ops, &format!("cells.{layer}"), c_curr, reduction, reduction_prev, cfg)?;
        (s0, s1) = (s1, out);
        reduction_prev = reduction;
    }
    let pooled = g.global_avg_pool(s1)?;
    g.linear(pooled, "classifier", cfg.classes)
}

#[allow(clippy::too_many_arguments)]
fn cell(g: &mut Graph, s0: Var, s1: Var, w: Var, ops: &[Op], pre: &str, c: usize, reduction: bool, reduction_prev: bool, cfg: &NetConfig) -> Result<Var> {
    let (p0, p1) = preprocess(g, s0, s1, pre, c, reduction_prev, cfg)?;
    let mut states = vec![p0, p1];
    let mut edge = 0;
    for i in 0..cfg.nodes {
        let node = i + 2;
        let mut terms = Vec::new();
        for j in 0..states.len() {
            let stride = if reduction && j < 2 { 2 } else { 1 };
            for (k, &o) in ops.iter().enumerate() {
                // `none` outputs zeros: its term adds nothing, but its weight is in the softmax.
                if o == Op::None {
                    continue;
                }
                let name = format!("{pre}.node{node}.from{j}.{}", o.name());
                terms.push((op(g, states[j], o, stride, &name, cfg)?, edge * ops.len() + k));
            }
            edge += 1;
        }
        states.push(g.mix(&terms, w)?);
    }
    g.concat(&states[2..])
}

/// The discrete genotype alpha describes, as DARTS derives it: each node keeps its 2 inputs
/// whose strongest op other than `none` weighs most (the earlier input on a tie), each with
/// that op, strongest first. `normal` and `reduce` are softmax(alpha) [edges * ops], row-major.
pub fn derive(normal: &[f32], reduce: &[f32], ops: &[Op], nodes: usize) -> Result<Genotype> {
    let cell = |w: &[f32]| -> Result<Cell> {
        let k = ops.len();
        if w.len() != edges(nodes) * k {
            return Err(Error::Invalid(format!("architecture weights have {} values, {} edges x {k} ops need {}", w.len(), edges(nodes), edges(nodes) * k)));
        }
        let mut out = Vec::with_capacity(nodes);
        let mut first = 0;
        for i in 0..nodes {
            let inputs = i + 2;
            // (input, strength, best op) per incoming edge.
            let mut cand: Vec<(usize, f32, Op)> = (0..inputs)
                .map(|j| {
                    let row = &w[(first + j) * k..(first + j + 1) * k];
                    let (o, v) = ops.iter().zip(row).filter(|(o, _)| **o != Op::None).fold((Op::None, f32::NEG_INFINITY), |best, (o, v)| if *v > best.1 { (*o, *v) } else { best });
                    (j, v, o)
                })
                .collect();
            // Stable: equal strengths keep input order.
            cand.sort_by(|a, b| b.1.total_cmp(&a.1));
            out.push([Edge::new(cand[0].2, cand[0].0), Edge::new(cand[1].2, cand[1].0)]);
            first += inputs;
        }
        Ok(Cell { nodes: out, concat: (2..nodes + 2).collect() })
    };
    let g = Genotype { normal: cell(normal)?, reduce: cell(reduce)? };
    g.validate()?;
    Ok(g)
}

/// Parameters, FLOPs per image and the counting graph of the relaxed network.
pub fn record(cfg: &NetConfig, ops: &[Op], h: usize, w: usize) -> Result<Graph<'static>> {
    Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, ops, x))
}
