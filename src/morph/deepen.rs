//! Deepening: a gated residual cell added after a normal cell. The new cell computes
//! s1 + gate * cell(s0, s1) with a per-channel gate that starts at zero (ReZero, Bachlechner et
//! al. 2020), so it starts as the identity, in evaluation and in training mode, and the cell
//! after it still reads the same two inputs. The gate is learned; until it moves away from zero
//! the branch's own weights get no gradient, so training first opens the gate.
//!
//! Why not a plain DARTS cell: a cell reads the two cells before it, so a cell inserted between
//! cells i and i+1 would change what cell i+1 reads (s_i instead of s_{i-1}), and no setting of
//! the new cell makes that the identity. The gated cell costs one extra depthwise 1x1
//! convolution and one addition per cell.
//!
//! The branch starts with the weights and BN statistics of the cell it follows where the shapes
//! agree (a trained starting point); the rest (a preprocessing whose input differs in width)
//! starts as a fresh model's would with `seed`: by name and seed, BN at mean 0 variance 1.

use crate::error::{Error, Result};
use crate::nn::darts::{self, NetConfig};
use crate::run::NamedTensor;
use crate::space::Genotype;
use std::collections::BTreeMap;

/// The network `net` with one more gated cell after normal cell `after` (behind any already
/// there), and its tensors: `tensors` plus the new cell's (see the module docs); momentum of
/// the copied tensors is not carried. `image` is [H, W] of the network's input.
pub fn deepen(net: &NetConfig, genotype: &Genotype, after: usize, image: [usize; 2], seed: u64, tensors: Vec<NamedTensor>) -> Result<(NetConfig, Vec<NamedTensor>)> {
    let mut deep = net.clone();
    let at = deep.gated.partition_point(|&l| l <= after);
    deep.gated.insert(at, after);
    deep.validate().map_err(|e| Error::Invalid(format!("deepening after cell {after}: {e}")))?;
    let j = net.gated.iter().filter(|&&l| l == after).count();
    let (from, to) = (format!("cells.{after}."), format!("cells.{after}.g{j}."));
    let expected = darts::expected_tensors(&deep, genotype, image[0], image[1])?;
    let mut copies: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (name, shape, data) in &tensors {
        let (bn, bare) = name.strip_prefix("bn:").map_or(("", name.as_str()), |r| ("bn:", r));
        // The base cell's own tensors only (not those of gated cells after it).
        let Some(rest) = bare.strip_prefix(&from).filter(|r| !r.starts_with('g') && !r.ends_with("#momentum")) else { continue };
        let copy = format!("{bn}{to}{rest}");
        if expected.get(&copy) == Some(&data.len()) {
            copies.insert(copy, (shape.clone(), data.clone()));
        }
    }
    let mut out = tensors;
    let gate = format!("{to}gate");
    let c = expected.get(&gate).copied().ok_or_else(|| Error::Invalid(format!("deepening: the deepened network has no '{gate}'")))?;
    let fresh = darts::initial_tensors(&deep, genotype, image[0], image[1], seed, |n| {
        let bare = n.strip_prefix("bn:").unwrap_or(n);
        bare.starts_with(&to) && n != gate && !copies.contains_key(n)
    })?;
    out.push((gate, vec![c, 1, 1, 1], vec![0.0; c]));
    out.extend(copies.into_iter().map(|(n, (s, d))| (n, s, d)));
    out.extend(fresh);
    Ok((deep, out))
}

/// Where `extra` gated cells go: one at a time into the stage (cells between reductions) with
/// the fewest cells so far, the earliest on a tie, after its last normal cell; an 8-cell
/// DARTS network's stages come out of a 5-cell one.
pub fn placement(net: &NetConfig, extra: usize) -> Vec<usize> {
    // (cells in the stage so far, its last normal cell)
    let mut stages: Vec<(usize, usize)> = Vec::new();
    let mut count = 0;
    for l in 0..net.layers {
        if net.is_reduction(l) {
            count = 0;
            continue;
        }
        count += 1 + net.gated.iter().filter(|&&g| g == l).count();
        match stages.last_mut() {
            Some(s) if l > 0 && !net.is_reduction(l - 1) => *s = (count, l),
            _ => stages.push((count, l)),
        }
    }
    let mut out = Vec::with_capacity(extra);
    for _ in 0..extra {
        let Some(s) = stages.iter_mut().min_by_key(|s| s.0) else { break };
        s.0 += 1;
        out.push(s.1);
    }
    out
}
