//! Kernel growth: a 3x3 separable or dilated convolution on one edge of a cell becomes the 5x5
//! one, its depthwise filters zero-padded by a ring. With the padding growing by the same ring
//! (dilation x 1 per side), every output sums the same products plus zeros, so the network's
//! function is unchanged; the 5x5's outer taps start at zero and train from there.

use crate::error::{Error, Result};
use crate::nn::darts::NetConfig;
use crate::run::NamedTensor;
use crate::space::{Genotype, Op};

/// The 5x5 op a 3x3 one grows into.
fn grown(op: Op) -> Option<Op> {
    match op {
        Op::SepConv3x3 => Some(Op::SepConv5x5),
        Op::DilConv3x3 => Some(Op::DilConv5x5),
        _ => None,
    }
}

/// Grows edge `edge` (0 or 1) of intermediate node `node` (0-based) of the normal cell, or of the
/// reduction cell when `reduction`, in every cell of that kind of the network `net` (gated cells are normal cells): returns
/// the new genotype and `tensors` with that edge's tensors renamed to the 5x5 op and its
/// depthwise filters (and their momentum) padded. Other tensors pass through unchanged.
pub fn grow_kernel(genotype: &Genotype, net: &NetConfig, reduction: bool, node: usize, edge: usize, tensors: Vec<NamedTensor>) -> Result<(Genotype, Vec<NamedTensor>)> {
    let kind = if reduction { "reduction" } else { "normal" };
    let mut out = genotype.clone();
    let cell = if reduction { &mut out.reduce } else { &mut out.normal };
    let e = cell
        .nodes
        .get_mut(node)
        .and_then(|n| n.get_mut(edge))
        .ok_or_else(|| Error::Invalid(format!("the {kind} cell has no node {node} edge {edge}")))?;
    let old = e.op;
    let new = grown(old).ok_or_else(|| Error::Invalid(format!("{kind} cell node {node} edge {edge} is {}: only sep_conv_3x3 and dil_conv_3x3 grow to 5x5", old.name())))?;
    e.op = new;
    let input = e.input;
    out.validate().map_err(|err| Error::Invalid(format!("growing {kind} cell node {node} edge {edge} to {}: {err}", new.name())))?;
    let prefixes: Vec<(String, String)> = net
        .cell_prefixes(reduction)
        .into_iter()
        .map(|cell| {
            let at = format!("{cell}.node{}.from{input}.", node + 2);
            (format!("{at}{}.", old.name()), format!("{at}{}.", new.name()))
        })
        .collect();
    let mut grown_tensors = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        let (bn, bare) = match name.strip_prefix("bn:") {
            Some(rest) => ("bn:", rest),
            None => ("", name.as_str()),
        };
        let Some((from, to)) = prefixes.iter().find(|(from, _)| bare.starts_with(from.as_str())) else {
            grown_tensors.push((name, shape, data));
            continue;
        };
        let renamed = format!("{bn}{to}{}", &bare[from.len()..]);
        let base = renamed.strip_suffix("#momentum").unwrap_or(&renamed);
        if base.ends_with(".dw") {
            let (s, d) = pad_ring(&renamed, &shape, &data)?;
            grown_tensors.push((renamed, s, d));
        } else {
            grown_tensors.push((renamed, shape, data));
        }
    }
    Ok((out, grown_tensors))
}

/// [C, 1, 3, 3] filters inside a ring of zeros: [C, 1, 5, 5].
fn pad_ring(name: &str, shape: &[usize], data: &[f32]) -> Result<(Vec<usize>, Vec<f32>)> {
    if shape.len() != 4 || shape[1] != 1 || shape[2] != 3 || shape[3] != 3 || data.len() != shape[0] * 9 {
        return Err(Error::Shape { op: "grow_kernel", message: format!("'{name}' is {shape:?}, expected depthwise 3x3 filters [C, 1, 3, 3]") });
    }
    let mut out = vec![0.0; shape[0] * 25];
    for (c, f) in data.chunks_exact(9).enumerate() {
        for y in 0..3 {
            for x in 0..3 {
                out[c * 25 + (y + 1) * 5 + x + 1] = f[y * 3 + x];
            }
        }
    }
    Ok((vec![shape[0], 1, 5, 5], out))
}
