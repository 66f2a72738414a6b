//! Per-adapter kernel choice by measurement (burn-style autotune).
//!
//! Where an op has more than one kernel for a shape (conv2d's fast paths vs its general
//! kernels, pooling's row kernels vs the general ones, ReLU's vec4 vs scalar kernels, batch norm's
//! reductions in chunks vs in workgroup memory), the built-in choice is a measurement
//! on lavapipe. A real GPU may prefer the other one, so `cellnas autotune` times the variants
//! of every *choice point* a network hits on the current adapter and writes the winners to a
//! cache file keyed by adapter (name, backend, driver, driver info). [`crate::gpu::Gpu`]
//! loads the entries for its adapter when it opens; kernel choice functions ask
//! [`conv_fast`] / [`pool_rows`] / [`relu_vec4`] / [`batch_norm_workgroup`], which fall back to the documented default (the first
//! variant) where the cache has no entry. `CELLNAS_CONV_GENERIC` / `CELLNAS_POOL_GENERIC` still
//! force the general kernels whatever the cache says.
//!
//! A choice point is a key `"<op>.<pass> <shape class>"`, e.g.
//! `conv2d.forward depthwise k3x3 s1 p1 d1 28x28`. The class leaves out batch and channel
//! counts, so a network has a few dozen classes, and a cache made at one batch size serves
//! others (at the cost of timing only one representative shape per class).
//!
//! Kernel variants may round differently, so a run records the choices it started with
//! (`kernels.json`, see [`crate::pipeline::kernels`]) and a resume uses those, not the cache.

use crate::bench::{median, Prepared};
use crate::error::{Error, Result};
use crate::gpu::{AdapterSummary, Gpu};
use crate::nn::darts::NetConfig;
use crate::ops::conv2d::{self, Conv2d, ConvCase};
use crate::ops::pool::{self, Pool2d, PoolKind};
use crate::ops::{OpCase, Pass};
use crate::space::{Cell, Edge, Genotype, Op};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Choice point key -> variant name, as a run uses them.
pub type Choices = BTreeMap<String, String>;

/// conv2d variants: the shape's fast path (the default), or the general kernels.
pub const CONV_VARIANTS: &[&str] = &["fast", "general"];
/// Pooling variants: the row kernels (the default), or the general ones.
pub const POOL_VARIANTS: &[&str] = &["rows", "general"];
/// ReLU variants: vec4 loads and stores where the length allows (the default), or scalars.
pub const RELU_VARIANTS: &[&str] = &["vec4", "scalar"];
/// Batch-norm reduction variants: today's per-invocation chunks summed by a second dispatch
/// (the default, tuned on lavapipe), or one workgroup per channel slab with a tree in
/// workgroup memory (`ops::batchnorm_wg`).
pub const BATCH_NORM_VARIANTS: &[&str] = &["units", "workgroup"];

/// The variants of the op a key belongs to (None: not a key of any choice point).
pub fn variants_of(key: &str) -> Option<&'static [&'static str]> {
    if key.starts_with("conv2d.") {
        Some(CONV_VARIANTS)
    } else if key.starts_with("max_pool.") || key.starts_with("avg_pool.") {
        Some(POOL_VARIANTS)
    } else if key.starts_with("relu.") {
        Some(RELU_VARIANTS)
    } else if key.starts_with("batch_norm.") {
        Some(BATCH_NORM_VARIANTS)
    } else {
        None
    }
}

/// Structure of a convolution as the fast paths see it; None where only the general kernels
/// exist (grouped convolutions, for instance), so there is nothing to choose.
fn conv_kind(x: &[usize], w: &[usize], p: &Conv2d) -> Option<&'static str> {
    let one = w[2] == 1 && w[3] == 1 && p.padding == 0 && p.groups == 1;
    if one && p.stride == 1 {
        Some("pointwise")
    } else if one {
        Some("strided_pointwise")
    } else if p.groups == x[1] && w[0] == x[1] {
        Some("depthwise")
    } else if p.groups == 1 {
        Some("dense")
    } else {
        None
    }
}

/// The choice point of one pass of a convolution, or None where that pass has no fast kernel
/// to choose (conv2d::path says "general" without any choice).
pub fn conv_key(x: &[usize], w: &[usize], p: &Conv2d, pass: Pass) -> Option<String> {
    let kind = conv_kind(x, w, p)?;
    if conv2d::path(x, w, p, pass) == "general" {
        return None;
    }
    Some(format!(
        "conv2d.{} {kind} k{}x{} s{} p{} d{} {}x{}",
        pass.as_str(),
        w[2],
        w[3],
        p.stride,
        p.padding,
        p.dilation,
        x[2],
        x[3]
    ))
}

/// The choice point of a pooling (both passes: the forward's argmax feeds the backward), or
/// None where the row kernels do not apply.
pub fn pool_key(x: &[usize], p: &Pool2d) -> Option<String> {
    if !pool::fast(p) {
        return None;
    }
    let op = if p.kind == PoolKind::Max { "max_pool" } else { "avg_pool" };
    Some(format!("{op}.both k{} s{} p{} {}x{}", p.kernel, p.stride, p.padding, x[2], x[3]))
}

/// The choice point of a ReLU of an NCHW tensor (both passes), or None where its length
/// rules out the vec4 kernels.
pub fn relu_key(x: &[usize]) -> Option<String> {
    let &[_, _, h, w] = x else { return None };
    crate::ops::elementwise::uses_vec4(x.iter().product()).then(|| format!("relu.both {h}x{w}"))
}

/// Whether a ReLU of this shape may take the vec4 kernels on `gpu` (the length decides too).
pub fn relu_vec4(gpu: &Gpu, x: &[usize]) -> bool {
    gpu.kernel_choice(|| relu_key(x)).is_none_or(|v| v != "scalar")
}

/// The choice point of the reductions of a training batch norm: `batch_norm.forward <HxW>`
/// (batch statistics) or `batch_norm.backward <HxW>` (any other pass); [N, C] is 1x1.
pub fn batch_norm_key(x: &[usize], pass: Pass) -> Option<String> {
    let [_, _, h, w] = crate::tensor::nchw(x);
    let pass = if pass == Pass::Forward { "forward" } else { "backward" };
    Some(format!("batch_norm.{pass} {h}x{w}"))
}

/// Whether the batch-norm launcher of this pass takes the workgroup reductions on `gpu`
/// (only where the adapter's choices say so).
pub fn batch_norm_workgroup(gpu: &Gpu, x: &[usize], pass: Pass) -> bool {
    gpu.kernel_choice(|| batch_norm_key(x, pass)).is_some_and(|v| v == "workgroup")
}

/// Whether this pass of this convolution may take its fast path on `gpu`: false when the
/// adapter's choices say "general" for its choice point. (conv2d also checks the shape and
/// `CELLNAS_CONV_GENERIC`.)
pub fn conv_fast(gpu: &Gpu, x: &[usize], w: &[usize], p: &Conv2d, pass: Pass) -> bool {
    gpu.kernel_choice(|| conv_key(x, w, p, pass)).is_none_or(|v| v != "general")
}

/// Whether this pooling takes the row kernels on `gpu` (shape, env override and choices).
pub fn pool_rows(gpu: &Gpu, x: &[usize], p: &Pool2d) -> bool {
    pool::fast(p) && gpu.kernel_choice(|| pool_key(x, p)).is_none_or(|v| v != "general")
}

// ---------------------------------------------------------------------------------------
// The cache file.

/// Which adapter a cache entry was measured on: all four must match for it to be used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterKey {
    pub name: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterKey {
    pub fn of(info: &AdapterSummary) -> AdapterKey {
        AdapterKey { name: info.name.clone(), backend: info.backend.clone(), driver: info.driver.clone(), driver_info: info.driver_info.clone() }
    }
}

/// One measured choice point.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub variant: String,
    /// Median ms of each variant on `shape`.
    pub ms: BTreeMap<String, f64>,
    /// The representative shape that was timed.
    pub shape: String,
}

/// Everything measured on one adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterEntries {
    pub adapter: AdapterKey,
    /// "timestamp" (GPU timestamp queries) or "host" (wall clock around submit + wait).
    pub timing: String,
    pub entries: BTreeMap<String, Entry>,
}

impl AdapterEntries {
    pub fn choices(&self) -> Choices {
        self.entries.iter().map(|(k, e)| (k.clone(), e.variant.clone())).collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub version: u32,
    pub adapters: Vec<AdapterEntries>,
}

impl CacheFile {
    pub const VERSION: u32 = 1;

    /// Reads and checks a cache file. A missing file is an empty cache; anything unreadable,
    /// unparsable or naming an unknown choice point or variant is an error naming the file.
    pub fn read(path: &Path) -> Result<CacheFile> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile { version: Self::VERSION, adapters: vec![] }),
            Err(e) => return Err(Error::io(path, e)),
        };
        let bad = |message: String| Error::Config { path: path.to_path_buf(), message };
        let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a cellnas autotune cache: {e}")))?;
        if file.version != Self::VERSION {
            return Err(bad(format!("version {} (this cellnas reads version {})", file.version, Self::VERSION)));
        }
        for a in &file.adapters {
            for (key, e) in &a.entries {
                let Some(variants) = variants_of(key) else {
                    return Err(bad(format!("adapter '{}': unknown choice point '{key}'", a.adapter.name)));
                };
                if !variants.contains(&e.variant.as_str()) {
                    return Err(bad(format!("adapter '{}', '{key}': unknown variant '{}' (one of {})", a.adapter.name, e.variant, variants.join(", "))));
                }
            }
        }
        Ok(file)
    }

    /// The entries measured on exactly this adapter.
    pub fn for_adapter(&self, key: &AdapterKey) -> Option<&AdapterEntries> {
        self.adapters.iter().find(|a| &a.adapter == key)
    }

    /// Adds `new` measurements: same keys on the same adapter are replaced, the rest kept.
    pub fn merge(&mut self, new: AdapterEntries) {
        match self.adapters.iter_mut().find(|a| a.adapter == new.adapter) {
            Some(a) => {
                a.timing = new.timing;
                a.entries.extend(new.entries);
            }
            None => self.adapters.push(new),
        }
    }

    /// Written atomically (a killed `cellnas autotune` leaves the old file), folder created.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::run::write_json_atomic(path, self)
    }
}

/// Where the cache comes from when a Gpu opens.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum CacheSource {
    /// `CELLNAS_AUTOTUNE` (a path, or `off`), else [`default_cache_path`].
    #[default]
    Env,
    /// No cache: the documented defaults (tests use this so a developer's cache cannot change
    /// what they check).
    Off,
    File(PathBuf),
}

/// `$XDG_CACHE_HOME/cellnas/autotune.json`, else `~/.cache/cellnas/autotune.json`.
pub fn default_cache_path() -> Option<PathBuf> {
    let nonempty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty()).map(PathBuf::from);
    match nonempty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        Some(x) => Some(x.join("cellnas").join("autotune.json")),
        None => nonempty("HOME").map(|h| h.join(".cache").join("cellnas").join("autotune.json")),
    }
}

impl CacheSource {
    /// The file to read, or None for no cache.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            CacheSource::Off => None,
            CacheSource::File(p) => Some(p.clone()),
            CacheSource::Env => match std::env::var("CELLNAS_AUTOTUNE") {
                Ok(v) if v.eq_ignore_ascii_case("off") => None,
                Ok(v) if !v.is_empty() => Some(PathBuf::from(v)),
                _ => default_cache_path(),
            },
        }
    }
}

/// The choices cached for `adapter` in the file `source` names, and a warning when the file
/// exists but cannot be used (the defaults are then used: a cache must not break a run).
pub fn load_choices(source: &CacheSource, adapter: &AdapterKey) -> (Choices, Option<String>) {
    let Some(path) = source.path() else { return (Choices::new(), None) };
    match CacheFile::read(&path) {
        Ok(file) => (file.for_adapter(adapter).map(|a| a.choices()).unwrap_or_default(), None),
        Err(e) => (Choices::new(), Some(format!("ignoring the autotune cache ({e}); using the default kernels"))),
    }
}

// ---------------------------------------------------------------------------------------
// Choice points of a network, and timing them.

/// What to time for one choice point.
#[derive(Clone, Debug)]
pub enum Site {
    /// `relu`: the network runs this conv with ReLU fused on its input, so that is timed.
    Conv { x: [usize; 4], w: [usize; 4], p: Conv2d, pass: Pass, relu: bool },
    Pool { x: [usize; 4], p: Pool2d },
    Relu { x: [usize; 4] },
    /// Training batch norm: `pass` Forward times forward_train, any other the backward.
    BatchNorm { x: [usize; 4], affine: bool, pass: Pass },
}

#[derive(Clone, Debug)]
pub struct ChoicePoint {
    pub key: String,
    pub variants: &'static [&'static str],
    /// The first shape of the network in this class: the one that is timed.
    pub site: Site,
}

impl ChoicePoint {
    pub fn shape(&self) -> String {
        match &self.site {
            Site::Conv { x, w, p, relu, .. } => ConvCase { x: *x, w: *w, p: *p, simple: false, relu: *relu }.shape(),
            Site::Pool { x, p } => format!("n{} c{} {}x{} k{} s{} p{}", x[0], x[1], x[2], x[3], p.kernel, p.stride, p.padding),
            Site::Relu { x } => format!("n{} c{} {}x{}", x[0], x[1], x[2], x[3]),
            Site::BatchNorm { x, affine, .. } => format!("n{} c{} {}x{}{}", x[0], x[1], x[2], x[3], if *affine { " affine" } else { "" }),
        }
    }
}

fn four(s: &[usize]) -> Result<[usize; 4]> {
    s.try_into().map_err(|_| Error::Invalid(format!("autotune: expected a 4-D shape, got {s:?}")))
}

/// Every choice point the networks of `genotypes` hit on `batch` images of `image` [C, H, W],
/// in order of first use, one per key.
pub fn network_points(cfg: &NetConfig, genotypes: &[Genotype], batch: usize, image: [usize; 3]) -> Result<Vec<ChoicePoint>> {
    let mut points: Vec<ChoicePoint> = Vec::new();
    let mut add = |key: Option<String>, variants, site: Site| {
        if let Some(key) = key.filter(|k| !points.iter().any(|p| &p.key == k)) {
            points.push(ChoicePoint { key, variants, site });
        }
    };
    for g in genotypes {
        let (convs, pools, relus, bns) = crate::nn::darts::op_shapes(cfg, g, batch, image)?;
        for (x, w, p, relu) in convs {
            let (x, w) = (four(&x)?, four(&w)?);
            for pass in [Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight] {
                add(conv_key(&x, &w, &p, pass), CONV_VARIANTS, Site::Conv { x, w, p, pass, relu });
            }
        }
        for (x, p) in pools {
            let x = four(&x)?;
            add(pool_key(&x, &p), POOL_VARIANTS, Site::Pool { x, p });
        }
        for x in relus {
            let x = four(&x)?;
            add(relu_key(&x), RELU_VARIANTS, Site::Relu { x });
        }
        for (x, affine) in bns {
            let x = crate::tensor::nchw(&x);
            for pass in [Pass::Forward, Pass::BackwardInput] {
                add(batch_norm_key(&x, pass), BATCH_NORM_VARIANTS, Site::BatchNorm { x, affine, pass });
            }
        }
    }
    Ok(points)
}

/// One genotype per searchable op of `ops` with that op on every edge, each node reading the
/// two states before it: together they hit every choice point a supernet path can.
pub fn supernet_genotypes(ops: &[Op], nodes: usize) -> Vec<Genotype> {
    let cell = |op| Cell { nodes: (0..nodes).map(|i| [Edge { op, input: i }, Edge { op, input: i + 1 }]).collect(), concat: (2..nodes + 2).collect() };
    ops.iter().filter(|&&op| op != Op::None).map(|&op| Genotype { normal: cell(op), reduce: cell(op) }).collect()
}

/// An alternative must beat the default by this fraction to be chosen: a variant that is only
/// as fast is not worth leaving the documented (and more widely tested) default for.
pub const MARGIN: f64 = 0.05;

/// How one point was timed.
#[derive(Clone, Debug)]
pub struct Timed {
    pub point: ChoicePoint,
    pub entry: Entry,
}

/// Times every variant of each point on `gpu` (`warmup` untimed runs of each, then `reps`
/// rounds that alternate the variants so drift in the machine's load hits all of them alike)
/// and picks the fastest, the default unless another beats it by [`MARGIN`]. Selecting a
/// variant sets the Gpu's choices, so nothing else may run on this Gpu meanwhile; they are
/// restored afterwards.
pub fn tune(gpu: &Arc<Gpu>, points: &[ChoicePoint], warmup: usize, reps: usize, mut progress: impl FnMut(&Timed)) -> Result<(Vec<Timed>, &'static str)> {
    let saved = gpu.kernel_choices();
    let r = tune_inner(gpu, points, warmup, reps.max(1), &mut progress);
    gpu.set_kernel_choices(saved);
    r
}

fn tune_inner(gpu: &Arc<Gpu>, points: &[ChoicePoint], warmup: usize, reps: usize, progress: &mut impl FnMut(&Timed)) -> Result<(Vec<Timed>, &'static str)> {
    let mut timing = "host";
    let mut out = Vec::with_capacity(points.len());
    for point in points {
        // Start from no choices, so that nested choice points (the pointwise GEMM inside a
        // strided one) run their defaults whatever was measured before.
        gpu.set_kernel_choices(Choices::new());
        let (case, passes): (Box<dyn OpCase>, Vec<Pass>) = match &point.site {
            Site::Conv { x, w, p, pass, relu } => (Box::new(ConvCase { x: *x, w: *w, p: *p, simple: false, relu: *relu }), vec![*pass]),
            Site::Pool { x, p } => (pool::case(*x, *p), vec![Pass::Forward, Pass::BackwardInput]),
            Site::Relu { x } => (crate::ops::elementwise::relu_case(x), vec![Pass::Forward, Pass::BackwardInput]),
            Site::BatchNorm { x, affine, pass } => (crate::ops::batchnorm::train_case(*x, *affine), vec![*pass]),
        };
        let prepared = Prepared::new(gpu, case)?;
        let select = |v: &str| gpu.set_kernel_choices(Choices::from([(point.key.clone(), v.to_string())]));
        let once = |gpu: &Arc<Gpu>| -> Result<(f64, bool)> {
            let mut total = (0.0, true);
            for &pass in &passes {
                let (ms, ts) = prepared.time_once(gpu, pass)?;
                total = (total.0 + ms, total.1 && ts);
            }
            Ok(total)
        };
        for v in point.variants {
            select(v);
            for _ in 0..warmup {
                once(gpu)?;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(reps); point.variants.len()];
        for rep in 0..reps {
            // Alternate which variant goes first, so neither always runs on a warmer machine.
            for j in 0..point.variants.len() {
                let i = if rep % 2 == 0 { j } else { point.variants.len() - 1 - j };
                select(point.variants[i]);
                let (ms, ts) = once(gpu)?;
                if ts {
                    timing = "timestamp";
                }
                times[i].push(ms);
            }
        }
        let ms: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        let mut best = 0;
        for (i, &m) in ms.iter().enumerate().skip(1) {
            if m.is_finite() && m < ms[0] * (1.0 - MARGIN) && m < ms[best] {
                best = i;
            }
        }
        let entry = Entry {
            variant: point.variants[best].to_string(),
            ms: point.variants.iter().zip(&ms).filter(|(_, m)| m.is_finite()).map(|(v, m)| (v.to_string(), *m)).collect(),
            shape: point.shape(),
        };
        let t = Timed { point: point.clone(), entry };
        progress(&t);
        out.push(t);
    }
    Ok((out, timing))
}
