//! The NAS-Bench-201 network (Dong & Yang, ICLR 2020; `TinyNetwork` with `InferCell` in its
//! reference code) on the tape: stem conv 3x3 + BN; three stages of N cells at C, 2C, 4C
//! channels with a residual reduction block between stages; BN, ReLU, global average pool,
//! linear classifier. One cell (`Nb201Cell`) is used everywhere.
//!
//! Supernet form (`supernet: true`): the cell ops' BNs have no affine scale and shift, as
//! NB201's search cells build them with `affine=False`; the stem, reduction-block and final BNs
//! stay affine in both forms, as NB201's search networks keep them. Parameter names depend only
//! on (stage, cell, edge, op), so a candidate's weights are the supernet's own tensors.
//!
//! An op whose output reaches the logits only through `none` edges gets no gradient at all
//! (the tape skips what nothing downstream needs), where PyTorch would give it zeros: the
//! path's SGD update then leaves it, its momentum and its weight decay alone.
//!
//! One difference from the reference code: its `ReLUConvBN` gives the conv a bias where the BN
//! has no affine (the supernet form). A constant per channel in front of a BN that normalises
//! with batch statistics cancels out, so it is left out; stand-alone networks (affine BN, no
//! bias there either) have exactly NB201's parameters.

use super::graph::{Graph, Var};
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2d;
use crate::ops::pool::{Pool2d, PoolKind};
use crate::space::{Nb201Cell, Nb201Op, NB201_NODES};
use std::collections::BTreeMap;

/// The NB201 network's shape. NB201's benchmark trains C = 16, N = 5.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nb201Net {
    /// Image channels (1 for Fashion-MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    pub classes: usize,
    /// Channels of the first stage (C); 2C and 4C in the next two.
    pub channels: usize,
    /// Cells per stage (N).
    pub cells_per_stage: usize,
    /// True: supernet conventions (cell-op BNs without affine).
    pub supernet: bool,
}

/// Upper bounds of the config: far beyond any network an adapter holds, small enough that sizes
/// and counts computed from them cannot overflow.
pub const MAX_CHANNELS: usize = 4096;
pub const MAX_CELLS_PER_STAGE: usize = 300;
/// Largest image side accepted.
pub const MAX_IMAGE: usize = 1 << 16;

/// Stages; a reduction block sits between consecutive ones, so images halve twice.
const STAGES: usize = 3;

impl Nb201Net {
    /// Whether the cell ops' BNs have a learnable scale and shift.
    pub fn affine(&self) -> bool {
        !self.supernet
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("NB201 network: {m}")));
        if self.in_channels == 0 || self.classes < 2 {
            return bad(format!("need at least 1 input channel and 2 classes, got {} and {}", self.in_channels, self.classes));
        }
        if self.channels == 0 || self.cells_per_stage == 0 {
            return bad(format!("channels and cells per stage must be at least 1 (NB201 uses 16 and 5), got {} and {}", self.channels, self.cells_per_stage));
        }
        for (what, v, max) in [("channels", self.channels, MAX_CHANNELS), ("cells per stage", self.cells_per_stage, MAX_CELLS_PER_STAGE), ("input channels", self.in_channels, 64), ("classes", self.classes, 100_000)] {
            if v > max {
                return bad(format!("{what} must be at most {max}, got {v}"));
            }
        }
        Ok(())
    }
}

/// Each reduction block halves H and W with a 2x2 stride-2 average pool on the shortcut and a
/// 3x3 stride-2 pad-1 conv on the other branch; on an odd side these give different sizes (as
/// in the reference code, which fails there too), so both sides must divide by 4.
pub fn check_image(h: usize, w: usize) -> Result<()> {
    let ok = |d: usize| d > 0 && d <= MAX_IMAGE && d.is_multiple_of(1 << (STAGES - 1));
    if ok(h) && ok(w) {
        return Ok(());
    }
    Err(Error::Shape {
        op: "nb201",
        message: format!("image {h}x{w}: the NB201 network halves height and width twice (its residual reduction blocks need even sides), so both must be positive multiples of 4 up to {MAX_IMAGE}"),
    })
}

const fn conv(stride: usize, padding: usize) -> Conv2d {
    Conv2d { stride, padding, dilation: 1, groups: 1 }
}

/// ReLU - conv kxk - BN, channels kept or changed to `cout`.
fn relu_conv_bn(g: &mut Graph, x: Var, name: &str, cout: usize, k: usize, stride: usize, affine: bool) -> Result<Var> {
    let c = g.relu_conv(x, &format!("{name}.conv"), cout, k, conv(stride, k / 2))?;
    g.bn(c, &format!("{name}.bn"), affine)
}

/// The op on one edge; None for `none`, which contributes nothing to its node's sum.
fn edge(g: &mut Graph, x: Var, op: Nb201Op, name: &str, cfg: &Nb201Net) -> Result<Option<Var>> {
    let c = g.shape(x)[1];
    Ok(match op {
        Nb201Op::None => None,
        Nb201Op::SkipConnect => Some(x),
        Nb201Op::NorConv1x1 => Some(relu_conv_bn(g, x, name, c, 1, 1, cfg.affine())?),
        Nb201Op::NorConv3x3 => Some(relu_conv_bn(g, x, name, c, 3, 1, cfg.affine())?),
        // NB201 averages over the real pixels of each window (count_include_pad=False), which
        // is the only mode of the pool kernels (and DARTS' convention too). No BN after it in
        // either form: NB201's search cells have none there.
        Nb201Op::AvgPool3x3 => Some(g.pool(x, Pool2d { kind: PoolKind::Avg, kernel: 3, stride: 1, padding: 1 })?),
    })
}

/// Node i = sum over j < i of op(j -> i)(node j); the cell's output is node 3. A node whose
/// edges are all `none` is zeros, and ops reading it still run (as NB201's Zero op feeds them).
fn cell(g: &mut Graph, x: Var, cell: &Nb201Cell, pre: &str, cfg: &Nb201Net) -> Result<Var> {
    let mut nodes = vec![x];
    for to in 1..NB201_NODES {
        let mut sum: Option<Var> = None;
        for (from, &input) in nodes.iter().enumerate() {
            let op = cell.op(to, from).ok_or_else(|| Error::Invalid(format!("{pre}: no edge {from} -> {to}")))?;
            let Some(y) = edge(g, input, op, &format!("{pre}.node{to}.from{from}.{}", op.name()), cfg)? else { continue };
            sum = Some(match sum {
                None => y,
                Some(s) => g.add(s, y)?,
            });
        }
        let node = match sum {
            Some(v) => v,
            None => {
                let shape = g.shape(x).to_vec();
                g.zeros(&shape)?
            }
        };
        nodes.push(node);
    }
    Ok(nodes[NB201_NODES - 1])
}

/// ResNet basic block at stride 2: ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, plus a shortcut of a
/// 2x2/2 average pool then a 1x1 conv, summed.
fn reduction(g: &mut Graph, x: Var, name: &str, cout: usize) -> Result<Var> {
    let s = g.shape(x).to_vec();
    if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
        return Err(Error::Shape { op: "nb201 reduction", message: format!("{name}: needs even height and width, got {}x{}", s[2], s[3]) });
    }
    let a = relu_conv_bn(g, x, &format!("{name}.conv_a"), cout, 3, 2, true)?;
    let b = relu_conv_bn(g, a, &format!("{name}.conv_b"), cout, 3, 1, true)?;
    let pooled = g.pool(x, Pool2d { kind: PoolKind::Avg, kernel: 2, stride: 2, padding: 0 })?;
    let shortcut = g.conv(pooled, &format!("{name}.shortcut.conv"), cout, 1, conv(1, 0))?;
    g.add(shortcut, b)
}

/// Logits of `x` ([N, in_channels, H, W], H and W multiples of 4) through the network `c`
/// defines.
pub fn forward(g: &mut Graph, cfg: &Nb201Net, c: &Nb201Cell, x: Var) -> Result<Var> {
    cfg.validate()?;
    let s = g.shape(x).to_vec();
    if s.len() != 4 || s[0] == 0 || s[1] != cfg.in_channels {
        return Err(Error::Shape { op: "nb201", message: format!("input must be [N >= 1, {}, H, W], got {s:?}", cfg.in_channels) });
    }
    check_image(s[2], s[3])?;
    let stem = g.conv(x, "stem.conv", cfg.channels, 3, conv(1, 1))?;
    let mut h = g.bn(stem, "stem.bn", true)?;
    for stage in 0..STAGES {
        let ch = cfg.channels << stage;
        if stage > 0 {
            h = reduction(g, h, &format!("reduce{stage}"), ch)?;
        }
        for k in 0..cfg.cells_per_stage {
            h = cell(g, h, c, &format!("stage{stage}.cell{k}"), cfg)?;
        }
    }
    let h = g.bn(h, "lastact.bn", true)?;
    let h = g.relu(h)?;
    let pooled = g.global_avg_pool(h)?;
    g.linear(pooled, "classifier", cfg.classes)
}

/// Parameters and forward FLOPs (2 per multiply-add) per image of the network `c` defines.
pub fn size(cfg: &Nb201Net, c: &Nb201Cell, h: usize, w: usize) -> Result<(u64, u64)> {
    let g = Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, c, x))?;
    Ok((g.params_used(), g.flops as u64))
}

/// Every tensor (name -> scalars) a checkpoint of this network holds: parameters and each BN
/// layer's "bn:<layer>.mean" / ".var" (check a file with `darts::check_tensors`).
pub fn expected_tensors(cfg: &Nb201Net, c: &Nb201Cell, h: usize, w: usize) -> Result<BTreeMap<String, usize>> {
    Ok(Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, c, x))?.tensors_used())
}
