//! The DARTS network (docs/ops.md) on the tape: stem, normal and reduction cells built from a
//! genotype, head. The same code builds a supernet path (BN without affine, BN after pools;
//! weights shared by every candidate that picks the same op on the same edge) and a stand-alone
//! network (affine BN, plain pools). Parameter names depend only on (cell, node, input, op),
//! so a candidate's weights are the supernet's own tensors.

use super::graph::{Graph, Var};
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2d;
use crate::ops::crop::shift_window;
use crate::ops::pool::{Pool2d, PoolKind};
use crate::space::{Cell, Genotype, Op};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// Image channels (1 for Fashion-MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    pub classes: usize,
    /// Channels of the first cells (C); doubled at each reduction.
    pub channels: usize,
    pub layers: usize,
    /// Intermediate nodes per cell.
    pub nodes: usize,
    /// True: supernet conventions (BN without affine, BN after pools).
    pub supernet: bool,
    /// With `supernet`: BN layers keep a learnable scale and shift (shared by every path through
    /// them) instead of none. Off by default, as in DARTS and SPOS; left out of config.json
    /// when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub supernet_affine: bool,
    /// Gated residual cells added by deepening (crate::morph): each entry is the index of the
    /// normal cell the gated cell follows (several may follow one, in order). Left out of
    /// config.json when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gated: Vec<usize>,
    /// The network family: DARTS cells (left out of config.json), NB201's skeleton, where
    /// `layers` is the number of cells per stage (N) and `nodes` is 4, or the macro chain, where
    /// `layers` is its depth L and `nodes` is 0 (it has no cells).
    #[serde(default, skip_serializing_if = "NetKind::is_darts")]
    pub kind: NetKind,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    #[default]
    Darts,
    Nb201,
    Macro,
}

impl NetKind {
    pub fn is_darts(&self) -> bool {
        *self == NetKind::Darts
    }
}

/// Upper bounds of the size flags (documented in `--help` through NetConfig::validate's error).
pub const MAX_CHANNELS: usize = 4096;
pub const MAX_LAYERS: usize = 1000;
pub const MAX_NODES: usize = 64;

impl NetConfig {
    /// Whether BN layers have a learnable scale and shift.
    pub fn affine(&self) -> bool {
        !self.supernet || self.supernet_affine
    }

    /// The NB201 network these sizes describe.
    pub fn nb201(&self) -> super::nb201::Nb201Net {
        super::nb201::Nb201Net { in_channels: self.in_channels, classes: self.classes, channels: self.channels, cells_per_stage: self.layers, supernet: self.supernet }
    }

    /// The macro network these sizes describe.
    pub fn macro_net(&self) -> super::macro_net::MacroNet {
        super::macro_net::MacroNet { in_channels: self.in_channels, classes: self.classes, channels: self.channels, layers: self.layers, supernet: self.supernet, supernet_affine: self.supernet_affine }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.kind == NetKind::Macro {
            if self.nodes != 0 {
                return bad(format!("a macro network has no cells, so nodes must be 0, got {}", self.nodes));
            }
            if !self.gated.is_empty() {
                return bad("gated cells are built for DARTS networks only".into());
            }
            return self.macro_net().validate();
        }
        if self.kind == NetKind::Nb201 {
            if self.nodes != crate::space::NB201_NODES {
                return bad(format!("an NB201 network has 4 nodes per cell, got {}", self.nodes));
            }
            if !self.gated.is_empty() || self.supernet_affine {
                return bad("gated cells and affine supernet BN are built for DARTS networks only".into());
            }
            return self.nb201().validate();
        }
        if self.channels == 0 || !self.channels.is_multiple_of(2) {
            return bad(format!("channels must be a positive even number (FactorizedReduce halves them), got {}", self.channels));
        }
        if self.layers < 3 {
            return bad(format!("layers must be at least 3 to place two reduction cells (at layers/3 and 2*layers/3), got {}", self.layers));
        }
        if self.nodes == 0 {
            return bad("nodes must be at least 1".into());
        }
        if self.in_channels == 0 || self.classes < 2 {
            return bad(format!("need at least 1 input channel and 2 classes, got {} and {}", self.in_channels, self.classes));
        }
        // Far beyond any network an adapter holds, and small enough that sizes and parameter
        // counts computed from them cannot overflow before the adapter check refuses them.
        for (what, v, max) in [("channels", self.channels, MAX_CHANNELS), ("layers", self.layers, MAX_LAYERS), ("nodes", self.nodes, MAX_NODES), ("input channels", self.in_channels, 64), ("classes", self.classes, 100_000)] {
            if v > max {
                return bad(format!("{what} must be at most {max}, got {v}"));
            }
        }
        if self.gated.len() > MAX_LAYERS {
            return bad(format!("at most {MAX_LAYERS} gated cells, got {}", self.gated.len()));
        }
        if let Some(&l) = self.gated.iter().find(|&&l| l >= self.layers || self.is_reduction(l)) {
            return bad(format!("a gated cell follows a normal cell, and cell {l} of {} is {}", self.layers, if l >= self.layers { "not there" } else { "a reduction cell" }));
        }
        if !self.gated.is_sorted() {
            return bad(format!("gated cells are listed in network order, got {:?}", self.gated));
        }
        Ok(())
    }

    /// Every cell: base cells, each followed by the gated cells after it.
    pub fn cells(&self) -> usize {
        self.layers + self.gated.len()
    }

    /// The parameter-name prefix of every cell of the normal kind (or the reduction kind),
    /// gated cells included (they are normal cells).
    pub fn cell_prefixes(&self, reduction: bool) -> Vec<String> {
        let mut out = Vec::new();
        for l in (0..self.layers).filter(|&l| self.is_reduction(l) == reduction) {
            out.push(format!("cells.{l}"));
            let after = self.gated.iter().filter(|&&g| g == l).count();
            out.extend((0..after).map(|j| format!("cells.{l}.g{j}")));
        }
        out
    }

    pub fn is_reduction(&self, layer: usize) -> bool {
        layer == self.layers / 3 || layer == 2 * self.layers / 3
    }
}

pub(super) const fn conv(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2d {
    Conv2d { stride, padding, dilation, groups }
}

/// ReLU - conv - BN, the building block of every conv op and of the preprocessing.
pub(super) fn relu_conv_bn(g: &mut Graph, x: Var, name: &str, cout: usize, k: usize, p: Conv2d, affine: bool) -> Result<Var> {
    let c = g.relu_conv(x, &format!("{name}.conv"), cout, k, p)?;
    g.bn(c, &format!("{name}.bn"), affine)
}

/// ReLU - depthwise kxk - pointwise 1x1 - BN.
pub(super) fn dw_pw_bn(g: &mut Graph, x: Var, name: &str, k: usize, stride: usize, dilation: usize, affine: bool) -> Result<Var> {
    let c = g.shape(x)[1];
    let pad = dilation * (k - 1) / 2;
    let d = g.relu_conv(x, &format!("{name}.dw"), c, k, conv(stride, pad, dilation, c))?;
    let p = g.conv(d, &format!("{name}.pw"), c, 1, conv(1, 0, 1, 1))?;
    g.bn(p, &format!("{name}.bn"), affine)
}

/// ReLU; two 1x1 stride-2 convs (the second on the input shifted by one pixel); concat; BN.
pub fn factorized_reduce(g: &mut Graph, x: Var, name: &str, cout: usize, affine: bool) -> Result<Var> {
    let s = g.shape(x).to_vec();
    if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
        return Err(Error::Shape { op: "factorized_reduce", message: format!("{name}: needs even height and width, got {}x{}", s[2], s[3]) });
    }
    let (n1, n2, p) = (format!("{name}.conv1"), format!("{name}.conv2"), conv(2, 0, 1, 1));
    let (a, b) = if g.fuses() {
        // Cropping commutes with the ReLU: conv2 reads the cropped raw input, ReLU on load.
        let a = g.relu_conv(x, &n1, cout / 2, 1, p)?;
        let shifted = g.crop(x, shift_window(s[2], s[3]))?;
        (a, g.relu_conv(shifted, &n2, cout - cout / 2, 1, p)?)
    } else {
        let r = g.relu(x)?;
        let a = g.conv(r, &n1, cout / 2, 1, p)?;
        let shifted = g.crop(r, shift_window(s[2], s[3]))?;
        (a, g.conv(shifted, &n2, cout - cout / 2, 1, p)?)
    };
    let cat = g.concat(&[a, b])?;
    g.bn(cat, &format!("{name}.bn"), affine)
}

/// One op on one edge. `name` is the edge's parameter prefix.
pub fn op(g: &mut Graph, x: Var, op: Op, stride: usize, name: &str, cfg: &NetConfig) -> Result<Var> {
    let affine = cfg.affine();
    let c = g.shape(x)[1];
    let pool = |g: &mut Graph, kind| -> Result<Var> {
        let y = g.pool(x, Pool2d { kind, kernel: 3, stride, padding: 1 })?;
        if cfg.supernet { g.bn(y, &format!("{name}.bn"), affine) } else { Ok(y) }
    };
    match op {
        Op::None => Err(Error::Invalid(format!("{name}: the none op is never part of a path"))),
        Op::SkipConnect if stride == 1 => Ok(x),
        Op::SkipConnect => factorized_reduce(g, x, name, c, affine),
        Op::MaxPool3x3 => pool(g, PoolKind::Max),
        Op::AvgPool3x3 => pool(g, PoolKind::Avg),
        Op::SepConv3x3 | Op::SepConv5x5 => {
            let k = if op == Op::SepConv3x3 { 3 } else { 5 };
            let a = dw_pw_bn(g, x, &format!("{name}.0"), k, stride, 1, affine)?;
            dw_pw_bn(g, a, &format!("{name}.1"), k, 1, 1, affine)
        }
        Op::DilConv3x3 => dw_pw_bn(g, x, name, 3, stride, 2, affine),
        Op::DilConv5x5 => dw_pw_bn(g, x, name, 5, stride, 2, affine),
    }
}

/// A cell's two inputs brought to `c` channels (and, after a reduction, to its size).
pub(super) fn preprocess(g: &mut Graph, s0: Var, s1: Var, pre: &str, c: usize, reduction_prev: bool, cfg: &NetConfig) -> Result<(Var, Var)> {
    let affine = cfg.affine();
    let p0 = if reduction_prev {
        factorized_reduce(g, s0, &format!("{pre}.pre0"), c, affine)?
    } else {
        relu_conv_bn(g, s0, &format!("{pre}.pre0"), c, 1, conv(1, 0, 1, 1), affine)?
    };
    Ok((p0, relu_conv_bn(g, s1, &format!("{pre}.pre1"), c, 1, conv(1, 0, 1, 1), affine)?))
}

/// The stem: conv 3x3 to 3C channels, BN (affine in both networks, as in DARTS's
/// model_search.py and model.py).
pub(super) fn stem(g: &mut Graph, x: Var, cfg: &NetConfig) -> Result<Var> {
    let y = g.conv(x, "stem.conv", 3 * cfg.channels, 3, conv(1, 1, 1, 1))?;
    g.bn(y, "stem.bn", true)
}

#[allow(clippy::too_many_arguments)]
fn cell(g: &mut Graph, s0: Var, s1: Var, cell: &Cell, pre: &str, c: usize, reduction: bool, reduction_prev: bool, cfg: &NetConfig) -> Result<Var> {
    let (p0, p1) = preprocess(g, s0, s1, pre, c, reduction_prev, cfg)?;
    let mut states = vec![p0, p1];
    for (i, edges) in cell.nodes.iter().enumerate() {
        let node = i + 2;
        let mut outs = Vec::with_capacity(2);
        for e in edges {
            let stride = if reduction && e.input < 2 { 2 } else { 1 };
            let name = format!("{pre}.node{node}.from{}.{}", e.input, e.op.name());
            let input = *states.get(e.input).ok_or_else(|| Error::Invalid(format!("{name}: input {} not computed yet", e.input)))?;
            outs.push(op(g, input, e.op, stride, &name, cfg)?);
        }
        states.push(g.add(outs[0], outs[1])?);
    }
    let parts: Vec<Var> = cell.concat.iter().map(|&i| states[i]).collect();
    g.concat(&parts)
}

/// Logits of `x` ([N, in_channels, H, W]) through the network `genotype` defines.
pub fn forward(g: &mut Graph, cfg: &NetConfig, genotype: &Genotype, x: Var) -> Result<Var> {
    let c = cfg.channels;
    let stem = stem(g, x, cfg)?;
    let (mut s0, mut s1) = (stem, stem);
    let mut c_curr = c;
    let mut reduction_prev = false;
    for layer in 0..cfg.layers {
        let reduction = cfg.is_reduction(layer);
        if reduction {
            c_curr *= 2;
        }
        let spec = if reduction { &genotype.reduce } else { &genotype.normal };
        let out = cell(g, s0, s1, spec, &format!("cells.{layer}"), c_curr, reduction, reduction_prev, cfg)?;
        s0 = s1;
        s1 = out;
        // Gated residual cells (deepening): s1 + gate * cell(s0, s1), the gate starting at zero,
        // so each starts as the identity; the next cell still reads (s0, s1) as it did.
        for j in 0..cfg.gated.iter().filter(|&&l| l == layer).count() {
            let pre = format!("cells.{layer}.g{j}");
            let branch = cell(g, s0, s1, &genotype.normal, &pre, c_curr, false, false, cfg)?;
            if g.shape(branch) != g.shape(s1) {
                return Err(Error::Shape { op: "gated cell", message: format!("{pre}: the normal cell gives {:?}, the cell it follows {:?}", g.shape(branch), g.shape(s1)) });
            }
            let gated = g.gate(branch, &format!("{pre}.gate"))?;
            s1 = g.add(s1, gated)?;
        }
        reduction_prev = reduction;
    }
    let pooled = g.global_avg_pool(s1)?;
    g.linear(pooled, "classifier", cfg.classes)
}

/// Parameters and forward FLOPs per image of the network `genotype` defines.
pub fn size(cfg: &NetConfig, genotype: &Genotype, h: usize, w: usize) -> Result<(u64, u64)> {
    let g = Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, genotype, x))?;
    Ok((g.params_used(), g.flops as u64))
}

/// Every tensor (name -> scalars) a checkpoint of this network holds; see
/// [`check_tensors`].
pub fn expected_tensors(cfg: &NetConfig, genotype: &Genotype, h: usize, w: usize) -> Result<std::collections::BTreeMap<String, usize>> {
    Ok(Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, genotype, x))?.tensors_used())
}

/// The tensors of the network as a fresh model with `seed` starts: parameters initialised by
/// name and seed, BN statistics at mean 0 and variance 1; only those `want` says yes to.
pub fn initial_tensors(cfg: &NetConfig, genotype: &Genotype, h: usize, w: usize, seed: u64, want: impl Fn(&str) -> bool) -> Result<Vec<crate::run::NamedTensor>> {
    let g = Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, genotype, x))?;
    let mut out = Vec::new();
    for (name, (shape, init)) in g.param_inits().iter().filter(|(n, _)| want(n)) {
        out.push((name.clone(), shape.clone(), super::params::initial_values(seed, name, shape.iter().product(), *init)));
    }
    for (name, c) in g.tensors_used().into_iter().filter(|(n, _)| n.starts_with("bn:") && want(n)) {
        out.push((name.clone(), vec![c], vec![if name.ends_with(".var") { 1.0 } else { 0.0 }; c]));
    }
    Ok(out)
}

/// A weights file of a stand-alone network must hold exactly its tensors (momentum of its
/// parameters allowed): a missing one would be initialised at random and a foreign one means
/// the file is not this network's, both silently wrong results otherwise.
pub fn check_tensors(expected: &std::collections::BTreeMap<String, usize>, tensors: &[crate::run::NamedTensor], path: &std::path::Path) -> Result<()> {
    let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
    let mut seen = std::collections::BTreeSet::new();
    for (name, _, data) in tensors {
        let base = name.strip_suffix("#momentum").unwrap_or(name);
        let Some(&n) = expected.get(base) else {
            return Err(bad(format!("holds tensor '{name}', which this run's network does not have: the file is another network's")));
        };
        if data.len() != n {
            return Err(bad(format!("tensor '{name}' has {} values, this run's network needs {n}: the file is another network's", data.len())));
        }
        seen.insert(base);
    }
    let missing: Vec<&str> = expected.keys().map(String::as_str).filter(|k| !seen.contains(k)).collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(5).copied().collect::<Vec<_>>().join("', '");
        return Err(bad(format!(
            "lacks {} of the network's {} tensors ('{shown}'{}): it is incomplete or another network's",
            missing.len(),
            expected.len(),
            if missing.len() > 5 { ", ..." } else { "" }
        )));
    }
    Ok(())
}

/// Fails with a clear error, before anything is allocated, when a batch of `batch` images
/// needs a tensor larger than the adapter can bind (`max_storage_buffer_binding_size`, or
/// `max_buffer_size` when smaller); the message names the tensor, the limit and the largest
/// batch that fits. Every activation is proportional to the batch, so the largest one decides.
pub fn check_batch_fits(gpu: &crate::gpu::Gpu, cfg: &NetConfig, genotype: &Genotype, batch: usize, h: usize, w: usize) -> Result<()> {
    let g = Graph::record([1, cfg.in_channels, h, w], |g, x| forward(g, cfg, genotype, x))?;
    check_counted_batch_fits(gpu, &g, batch)
}

/// [`check_batch_fits`] for any network recorded on a counting graph `g` (one image).
pub fn check_counted_batch_fits(gpu: &crate::gpu::Gpu, g: &Graph, batch: usize) -> Result<()> {
    let Some(shape) = g.largest_value().map(|s| s.to_vec()) else { return Ok(()) };
    let per_image = shape.iter().product::<usize>() as u64 * 4;
    let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let need = per_image.checked_mul(batch as u64);
    if need.is_some_and(|n| n <= limit) {
        return check_host_memory(gpu, g, batch);
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut full = shape;
    full[0] = batch;
    Err(Error::Invalid(format!(
        "batch size {batch} does not fit adapter '{}': the activation {full:?} needs {} in one storage buffer, the adapter binds at most {:.0} MiB (max_storage_buffer_binding_size); the largest batch that fits this network is {}",
        gpu.info.name,
        need.map_or("more than 2^64 bytes".to_string(), |n| format!("{:.0} MiB", mib(n))),
        mib(limit),
        limit / per_image.max(1),
    )))
}

/// On a CPU adapter the device memory is the host's: every activation of one forward pass (a
/// lower bound of what a step holds) must fit in what the machine has available.
fn check_host_memory(gpu: &crate::gpu::Gpu, g: &Graph, batch: usize) -> Result<()> {
    if gpu.info.device_type != "Cpu" {
        return Ok(());
    }
    let (per_image, params) = (g.value_scalars().saturating_mul(4), g.params_used().saturating_mul(4));
    let Some(free) = crate::host_memory::available_bytes() else { return Ok(()) };
    let need = per_image.saturating_mul(batch as u64).saturating_add(params);
    if need <= free {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "batch size {batch} does not fit adapter '{}' (a CPU adapter, so its memory is the host's): {}; the largest batch that could fit is {}",
        gpu.info.name,
        crate::host_memory::too_big("one forward pass of this network", need, free),
        free.saturating_sub(params) / per_image.max(1)
    )))
}

/// Input shape, weight shape, settings and ReLU fusion of every convolution, input shape and settings of
/// every pooling, input shape of every ReLU and input shape of every batch norm (and whether it is affine) that
/// the network `genotype` defines runs on
/// `batch` images of `image` [C, H, W] (what `cellnas autotune` times).
#[allow(clippy::type_complexity)]
pub fn op_shapes(cfg: &NetConfig, genotype: &Genotype, batch: usize, image: [usize; 3]) -> Result<(Vec<(Vec<usize>, Vec<usize>, Conv2d, bool)>, Vec<(Vec<usize>, Pool2d)>, Vec<Vec<usize>>, Vec<(Vec<usize>, bool)>)> {
    let mut g = Graph::record([batch, image[0], image[1], image[2]], |g, x| forward(g, cfg, genotype, x))?;
    Ok((std::mem::take(&mut g.convs), std::mem::take(&mut g.pools), std::mem::take(&mut g.relus), std::mem::take(&mut g.bns)))
}
