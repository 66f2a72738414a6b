//! The ENAS macro network (Pham et al. 2018, whole-network search) on the tape: a stem (conv
//! 3x3 and BN to C channels); L layers in a chain, layer i = op_i(layer i-1) plus the sum of its
//! skip sources (then a BN); BN, ReLU, global average pool, linear classifier.
//!
//! - Ops are ReLU-conv-BN (conv_kxk), ReLU-depthwise kxk-pointwise-BN (sep_conv_kxk, one
//!   separable conv as in ENAS, not DARTS' two) and 3x3 stride-1 pools (followed by a BN in
//!   the supernet, as DARTS does, so a layer's output scale does not depend on which op the
//!   path took). Every op keeps the shape, so a layer's output is [N, D, H, W] at its stage.
//! - Skips are summed, not concatenated and mixed by a 1x1 conv as ENAS's fixed-architecture
//!   network does (its search network sums too), and a layer with skips ends with a BN of the
//!   sum (`layers.<i>.bn`, as ENAS's search network has): without it each layer would add the
//!   variance of its sources, growing about 1.5x per layer with half the skips present, until
//!   deep layers' own ops were drowned by the early layers' outputs. Summing keeps every layer
//!   at D channels, so no weight depends on the skip set: a candidate's tensors are exactly the
//!   supernet's, and names depend only on (layer, op), or the layer for the sum's BN. The cost
//!   is expressiveness: the network cannot weigh one source against another (a 1x1 conv over
//!   the concatenation can), only the BN's per-channel scale of the whole sum.
//! - Reductions sit at fixed depths, before layers L/3 and 2L/3 (ENAS's pool layers for L = 12:
//!   after layers 3 and 7): H and W halve and channels double (C, 2C, 4C). A source from an
//!   earlier stage, the chain's previous layer included, is brought to the current shape by a
//!   FactorizedReduce per (reduction, source layer), as ENAS reduces every earlier layer at each
//!   pool layer. They are built when first needed and shared by every later reader, so a path
//!   computes only the reductions its skips use; names depend only on (reduction, source).
//! - Supernet form (`supernet`): layer-op and reduction BNs without affine (unless
//!   `supernet_affine`); the stem and head BNs are affine in both forms, as in DARTS and NB201.

use super::darts::{conv, dw_pw_bn, factorized_reduce, relu_conv_bn};
use super::graph::{Graph, Var};
use crate::error::{Error, Result};
use crate::ops::pool::{Pool2d, PoolKind};
use crate::space::{MacroArch, MacroOp, MACRO_MAX_LAYERS};
use std::collections::BTreeMap;

/// The macro network's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroNet {
    /// Image channels (1 for Fashion-MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    pub classes: usize,
    /// Channels of the first stage (C); 2C and 4C after the two reductions.
    pub channels: usize,
    /// Depth L; an architecture must have exactly this many layers.
    pub layers: usize,
    /// True: supernet conventions (BN without affine in layer ops and reductions, BN after pools).
    pub supernet: bool,
    /// With `supernet`: those BNs keep a learnable scale and shift anyway.
    pub supernet_affine: bool,
}

/// Upper bounds of the config: far beyond any network an adapter holds, small enough that sizes
/// and counts computed from them cannot overflow.
pub const MAX_CHANNELS: usize = 4096;
/// Largest image side accepted.
pub const MAX_IMAGE: usize = 1 << 16;
/// Fewest layers: two reductions at distinct depths inside the chain need L >= 3.
pub const MIN_LAYERS: usize = 3;

impl MacroNet {
    /// Whether the layer ops' and reductions' BNs have a learnable scale and shift.
    pub fn affine(&self) -> bool {
        !self.supernet || self.supernet_affine
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("macro network: {m}")));
        if self.in_channels == 0 || self.classes < 2 {
            return bad(format!("need at least 1 input channel and 2 classes, got {} and {}", self.in_channels, self.classes));
        }
        if self.channels == 0 {
            return bad("channels must be at least 1".into());
        }
        if !(MIN_LAYERS..=MACRO_MAX_LAYERS).contains(&self.layers) {
            return bad(format!("layers must be {MIN_LAYERS} to {MACRO_MAX_LAYERS} (reductions before layers L/3 and 2L/3), got {}", self.layers));
        }
        for (what, v, max) in [("channels", self.channels, MAX_CHANNELS), ("input channels", self.in_channels, 64), ("classes", self.classes, 100_000)] {
            if v > max {
                return bad(format!("{what} must be at most {max}, got {v}"));
            }
        }
        Ok(())
    }

    /// The layers before which the network reduces (distinct and inside the chain for L >= 3).
    pub fn reductions(&self) -> [usize; 2] {
        [self.layers / 3, 2 * self.layers / 3]
    }

    /// Stage (0, 1, 2) of `layer`: how many reductions come before it.
    pub fn stage(&self, layer: usize) -> usize {
        self.reductions().iter().filter(|&&r| r <= layer).count()
    }
}

/// Two factorized reductions each need even sides, so both must divide by 4.
pub fn check_image(h: usize, w: usize) -> Result<()> {
    let ok = |d: usize| d > 0 && d <= MAX_IMAGE && d.is_multiple_of(4);
    if ok(h) && ok(w) {
        return Ok(());
    }
    Err(Error::Shape {
        op: "macro",
        message: format!("image {h}x{w}: the macro network halves height and width twice (factorized reductions need even sides), so both must be positive multiples of 4 up to {MAX_IMAGE}"),
    })
}

/// The op of one layer, shape kept. `name` is the (layer, op) parameter prefix.
fn layer_op(g: &mut Graph, x: Var, op: MacroOp, name: &str, cfg: &MacroNet) -> Result<Var> {
    let affine = cfg.affine();
    let c = g.shape(x)[1];
    let pool = |g: &mut Graph, kind| -> Result<Var> {
        let y = g.pool(x, Pool2d { kind, kernel: 3, stride: 1, padding: 1 })?;
        if cfg.supernet { g.bn(y, &format!("{name}.bn"), affine) } else { Ok(y) }
    };
    match op {
        MacroOp::Conv3x3 => relu_conv_bn(g, x, name, c, 3, conv(1, 1, 1, 1), affine),
        MacroOp::Conv5x5 => relu_conv_bn(g, x, name, c, 5, conv(1, 2, 1, 1), affine),
        MacroOp::SepConv3x3 => dw_pw_bn(g, x, name, 3, 1, 1, affine),
        MacroOp::SepConv5x5 => dw_pw_bn(g, x, name, 5, 1, 1, affine),
        MacroOp::MaxPool3x3 => pool(g, PoolKind::Max),
        MacroOp::AvgPool3x3 => pool(g, PoolKind::Avg),
    }
}

/// Layer outputs by (layer, stage): each layer's own, and its reductions once some reader
/// needed them.
struct Outputs<'c> {
    cfg: &'c MacroNet,
    at: BTreeMap<(usize, usize), Var>,
}

impl Outputs<'_> {
    /// Layer `j`'s output at `stage`, reducing it (and memoising each step) where it is from an
    /// earlier stage.
    fn get(&mut self, g: &mut Graph, j: usize, stage: usize) -> Result<Var> {
        if let Some(&v) = self.at.get(&(j, stage)) {
            return Ok(v);
        }
        if stage <= self.cfg.stage(j) {
            return Err(Error::Invalid(format!("macro network: layer {j} is read at stage {stage} before it is computed")));
        }
        let prev = self.get(g, j, stage - 1)?;
        let v = factorized_reduce(g, prev, &format!("reduce{stage}.from{j}"), self.cfg.channels << stage, self.cfg.affine())?;
        self.at.insert((j, stage), v);
        Ok(v)
    }
}

/// Logits of `x` ([N, in_channels, H, W], H and W multiples of 4) through the network `arch`
/// defines.
pub fn forward(g: &mut Graph, cfg: &MacroNet, arch: &MacroArch, x: Var) -> Result<Var> {
    cfg.validate()?;
    if arch.len() != cfg.layers {
        return Err(Error::Invalid(format!("macro network has {} layers, the architecture {}: a macro architecture fixes the depth (--layers)", cfg.layers, arch.len())));
    }
    let s = g.shape(x).to_vec();
    if s.len() != 4 || s[0] == 0 || s[1] != cfg.in_channels {
        return Err(Error::Shape { op: "macro", message: format!("input must be [N >= 1, {}, H, W], got {s:?}", cfg.in_channels) });
    }
    check_image(s[2], s[3])?;
    let stem = g.conv(x, "stem.conv", cfg.channels, 3, conv(1, 1, 1, 1))?;
    let stem = g.bn(stem, "stem.bn", true)?;
    let mut outs = Outputs { cfg, at: BTreeMap::new() };
    let mut last = stem;
    for (i, layer) in arch.layers().iter().enumerate() {
        let stage = cfg.stage(i);
        let input = if i == 0 { stem } else { outs.get(g, i - 1, stage)? };
        let mut y = layer_op(g, input, layer.op, &format!("layers.{i}.{}", layer.op.name()), cfg)?;
        for &src in &layer.skips {
            let v = outs.get(g, src, stage)?;
            y = g.add(y, v)?;
        }
        if !layer.skips.is_empty() {
            y = g.bn(y, &format!("layers.{i}.bn"), cfg.affine())?;
        }
        outs.at.insert((i, stage), y);
        last = y;
    }
    let h = g.bn(last, "head.bn", true)?;
    let h = g.relu(h)?;
    let pooled = g.global_avg_pool(h)?;
    g.linear(pooled, "classifier", cfg.classes)
}

/// A graph that only counts, with the network recorded on one image.
fn counted(cfg: &MacroNet, arch: &MacroArch, h: usize, w: usize) -> Result<Graph<'static>> {
    let mut g = Graph::count();
    let x = g.input_shape(&[1, cfg.in_channels, h, w]);
    forward(&mut g, cfg, arch, x)?;
    Ok(g)
}

/// Parameters and forward FLOPs (2 per multiply-add) per image of the network `arch` defines.
pub fn size(cfg: &MacroNet, arch: &MacroArch, h: usize, w: usize) -> Result<(u64, u64)> {
    let g = counted(cfg, arch, h, w)?;
    Ok((g.params_used(), g.flops as u64))
}

/// Every tensor (name -> scalars) a checkpoint of this network holds: parameters and each BN
/// layer's "bn:<layer>.mean" / ".var".
pub fn expected_tensors(cfg: &MacroNet, arch: &MacroArch, h: usize, w: usize) -> Result<BTreeMap<String, usize>> {
    Ok(counted(cfg, arch, h, w)?.tensors_used())
}
