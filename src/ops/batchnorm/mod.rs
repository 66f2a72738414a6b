//! Batch normalisation (2-D: per channel over N, H, W), training and evaluation mode.
//! Shader: `shaders/batchnorm.wgsl`.
//!
//! Follows PyTorch: normalisation uses the biased batch variance, the running variance is
//! updated with the unbiased one, `running = (1 - momentum) * running + momentum * batch`.
//! Per-channel reductions are two-stage with a split that depends only on the shape, so the
//! same inputs give bitwise the same outputs. An autotune cache may choose the workgroup-memory
//! reductions of `../batchnorm_wg.rs` instead, per pass and plane size.
//!
//! Here: the launchers; `reference.rs`: the f64 CPU reference; `cases.rs`: test and bench cases.

use super::Pass;
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};

const SUM_PARTIAL: Kernel = kernel!("batchnorm.wgsl", "sum_partial", [1: Read, 3: ReadWrite]);
const SQ_PARTIAL: Kernel = kernel!("batchnorm.wgsl", "sq_partial", [1: Read, 6: Read, 3: ReadWrite]);
pub(super) const MEAN_FINAL: Kernel = kernel!("batchnorm.wgsl", "mean_final", [1: Read, 4: Read, 5: ReadWrite]);
pub(super) const VAR_FINAL: Kernel =
    kernel!("batchnorm.wgsl", "var_final", [4: Read, 6: Read, 7: ReadWrite, 9: ReadWrite, 10: ReadWrite, 11: ReadWrite]);
const EVAL_COEF: Kernel = kernel!("batchnorm.wgsl", "eval_coef", [14: Read, 11: ReadWrite]);
const NORMALIZE: Kernel = kernel!("batchnorm.wgsl", "normalize", [1: Read, 12: Read, 13: ReadWrite]);
const BACKWARD_PARTIAL: Kernel = kernel!("batchnorm.wgsl", "backward_partial", [1: Read, 2: Read, 6: Read, 3: ReadWrite]);
pub(super) const BACKWARD_FINAL: Kernel = kernel!("batchnorm.wgsl", "backward_final", [4: Read, 6: Read, 8: Read, 11: ReadWrite]);
const BACKWARD_DX: Kernel = kernel!("batchnorm.wgsl", "backward_dx", [1: Read, 2: Read, 12: Read, 13: ReadWrite]);
// The vec4 path (unit kernels), for shapes whose planes group into aligned units.
const SUM_UNITS: Kernel = kernel!("batchnorm.wgsl", "sum_units", [15: Read, 1: Read, 3: ReadWrite]);
const SQ_UNITS: Kernel = kernel!("batchnorm.wgsl", "sq_units", [15: Read, 6: Read, 3: ReadWrite]);
const BACKWARD_UNITS: Kernel = kernel!("batchnorm.wgsl", "backward_units", [15: Read, 16: Read, 6: Read, 3: ReadWrite]);
const NORMALIZE_UNITS: Kernel = kernel!("batchnorm.wgsl", "normalize_units", [15: Read, 12: Read, 18: Read, 17: ReadWrite]);
const BACKWARD_DX_UNITS: Kernel = kernel!("batchnorm.wgsl", "backward_dx_units", [15: Read, 16: Read, 12: Read, 18: Read, 17: ReadWrite]);

/// Most vec4s per invocation in the per-element unit kernels (the largest divisor of the unit
/// length up to this is taken: 7 at the supernet's 28x28, 14x14 and 7x7).
const UNIT_VEC4S: u32 = 8;

/// Workgroup size of the unit reductions (one invocation per unit): small, so that the few
/// hundred units of a supernet layer spread over several workgroups.
const UNIT_REDUCE_WG: u32 = 64;

/// Elements per invocation in the per-element passes. One lavapipe run of batch_norm_eval
/// (mostly normalize) at [64,16,28,28] with this code: 1 -> 16.6 ms, 4 -> 9.0, 8 -> 6.4,
/// 16 -> 7.9 (a loaded machine; see docs/PERFORMANCE.md for the before/after medians).
const PER_INVOCATION: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub eps: f32,
    pub momentum: f32,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm { eps: 1e-5, momentum: 0.1 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) c: u32,
    pub(super) hw: u32,
    pub(super) m: u32,
    pub(super) parts: u32,
    pub(super) dn: u32,
    pub(super) ds: u32,
    pub(super) affine: u32,
    pub(super) eps: f32,
    pub(super) momentum: f32,
    pub(super) total: u32,
    pub(super) units: u32,
    pub(super) lvec: u32,
    pub(super) pc: u32,
    pub(super) pj: u32,
    /// Values per slab (workgroup kernels only, batchnorm_wg.rs).
    pub(super) slab: u32,
}

/// Planes per unit of the vec4 path for this shape, or None when it must take the scalar path:
/// U planes of H*W values fill whole vec4s (U = 1, 2 or 4), and C % U == 0 keeps a unit inside
/// one image. Public so tests can assert which path a shape takes.
pub fn unit_planes(shape: &[usize]) -> Option<usize> {
    let [_, c, h, w] = crate::tensor::nchw(shape);
    let hw = h * w;
    let u = if hw % 4 == 0 {
        1
    } else if hw % 2 == 0 {
        2
    } else {
        4
    };
    (c % u == 0 && hw > 0).then_some(u)
}

/// Shape facts every launcher needs, after validation.
#[derive(Clone)]
pub(super) struct Geometry {
    pub(super) c: usize,
    /// Planes per unit when the vec4 path is taken.
    unit: Option<usize>,
    pub(super) params: Params,
}

impl Geometry {
    fn of(op: &'static str, x: &Tensor, affine: bool, bn: &BatchNorm) -> Result<Geometry> {
        if x.shape.len() != 4 && x.shape.len() != 2 {
            return Err(Error::Shape { op, message: format!("x must be [N, C, H, W] or [N, C], got {:?}", x.shape) });
        }
        let [n, c, h, w] = x.nchw();
        let m = n * h * w;
        if m == 0 || c == 0 {
            return Err(Error::Shape { op, message: format!("x {:?} is empty", x.shape) });
        }
        if x.numel() > u32::MAX as usize / 2 {
            return Err(Error::Invalid(format!("{op}: x {:?} has too many elements for 32-bit indexing", x.shape)));
        }
        let hw = h * w;
        let unit = unit_planes(&x.shape);
        // Scalar path: about sqrt(m) partials of about sqrt(m) values each, so both stages stay
        // short. Vec4 path: one partial per plane (N per channel).
        let parts = match unit {
            Some(_) => n,
            None => ((m as f64).sqrt().ceil() as usize).clamp(1, m),
        };
        let (pc, pj) = if unit.is_some() { (1, c) } else { (parts, 1) };
        let u = unit.unwrap_or(1);
        let params = Params {
            n: n as u32,
            c: c as u32,
            hw: hw as u32,
            m: m as u32,
            parts: parts as u32,
            dn: (parts / hw) as u32,
            ds: (parts % hw) as u32,
            affine: affine as u32,
            eps: bn.eps,
            momentum: bn.momentum,
            total: x.numel() as u32,
            units: (n * c / u) as u32,
            lvec: (u * hw / 4) as u32,
            pc: pc as u32,
            pj: pj as u32,
            slab: 0,
        };
        Ok(Geometry { c, unit, params })
    }

    fn parts(&self) -> usize {
        self.params.parts as usize
    }

    fn per_channel(&self, op: &'static str, what: &str, t: &Tensor) -> Result<()> {
        if t.numel() != self.c {
            return Err(Error::Shape { op, message: format!("{what} must have {} values (one per channel), has shape {:?}", self.c, t.shape) });
        }
        Ok(())
    }

    pub(super) fn dispatch_per_channel(&self, step: &mut Step, k: &Kernel, bufs: &[&Tensor]) -> Result<()> {
        self.dispatch(step, k, self.c, bufs)
    }

    /// The per-element passes (normalize, backward_dx): PER_INVOCATION elements each.
    fn dispatch_elements(&self, step: &mut Step, k: &Kernel, n: usize, bufs: &[&Tensor]) -> Result<()> {
        let wg = step.gpu().wg1d();
        let per = PER_INVOCATION;
        let groups = step.gpu().grid((n as u32).div_ceil(per), wg);
        let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
        step.dispatch(k, &[("WG", wg as f64), ("K", per as f64)], &self.params, &bufs, groups)
    }

    /// A unit reduction: one invocation per unit.
    fn dispatch_unit_reduce(&self, step: &mut Step, k: &Kernel, bufs: &[&Tensor]) -> Result<()> {
        let wg = UNIT_REDUCE_WG.min(step.gpu().wg1d());
        let groups = step.gpu().grid(self.params.units, wg);
        let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
        step.dispatch(k, &[("WG", wg as f64), ("U", self.u() as f64)], &self.params, &bufs, groups)
    }

    /// A per-element unit kernel: each invocation takes a run of vec4s inside one unit.
    fn dispatch_unit_elements(&self, step: &mut Step, k: &Kernel, bufs: &[&Tensor]) -> Result<()> {
        let lvec = self.params.lvec.max(1);
        let per = (1..=UNIT_VEC4S).rev().find(|d| lvec.is_multiple_of(*d)).unwrap_or(1);
        let wg = step.gpu().wg1d();
        let groups = step.gpu().grid((self.params.units * lvec) / per, wg);
        let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
        step.dispatch(k, &[("WG", wg as f64), ("U", self.u() as f64), ("KV", per as f64)], &self.params, &bufs, groups)
    }

    fn u(&self) -> usize {
        self.unit.unwrap_or(1)
    }

    fn dispatch(&self, step: &mut Step, k: &Kernel, n: usize, bufs: &[&Tensor]) -> Result<()> {
        let wg = step.gpu().wg1d();
        let groups = step.gpu().grid(n as u32, wg);
        let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
        step.dispatch(k, &[("WG", wg as f64)], &self.params, &bufs, groups)
    }
}

impl Geometry {
    fn normalize(&self, step: &mut Step, x: &Tensor, coef: &Tensor, y: &Tensor) -> Result<()> {
        if self.unit.is_some() {
            self.dispatch_unit_elements(step, &NORMALIZE_UNITS, &[x, coef, coef, y])
        } else {
            self.dispatch_elements(step, &NORMALIZE, x.numel(), &[x, coef, y])
        }
    }
}

fn same_shape(op: &'static str, what: &str, x: &Tensor, t: &Tensor) -> Result<()> {
    if x.shape != t.shape {
        return Err(Error::Shape { op, message: format!("{what} has shape {:?}, x has {:?}", t.shape, x.shape) });
    }
    Ok(())
}

fn check_affine(op: &'static str, g: &Geometry, gamma: Option<&Tensor>, beta: Option<&Tensor>) -> Result<()> {
    match (gamma, beta) {
        (Some(gm), Some(bt)) => {
            g.per_channel(op, "gamma", gm)?;
            g.per_channel(op, "beta", bt)
        }
        (None, None) => Ok(()),
        _ => Err(Error::Invalid(format!("{op}: gamma and beta must be given together (affine) or both omitted"))),
    }
}

/// A coefficient buffer of `n` values, padded to whole vec4s: the unit kernels bind it as a
/// vec4 array too, which wgpu rejects when the buffer is smaller than one vec4.
fn coef_buffer(gpu: &crate::gpu::Gpu, n: usize) -> Tensor {
    Tensor::empty(gpu, &[n.next_multiple_of(4)])
}

/// gamma and beta into the scale and shift slots of the coefficient buffer.
fn copy_affine(step: &mut Step, c: usize, gamma: Option<&Tensor>, beta: Option<&Tensor>, coef: &Tensor) {
    let bytes = 4 * c as u64;
    if let (Some(gm), Some(bt)) = (gamma, beta) {
        step.copy(&gm.buf, 0, &coef.buf, 0, bytes);
        step.copy(&bt.buf, 0, &coef.buf, bytes, bytes);
    }
}

/// Training mode: batch statistics; writes y, saves mean and inv_std ([C] each) for backward,
/// and updates running_mean/running_var in place. gamma/beta None = no affine (DARTS supernet).
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
    step: &mut Step,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    bn: &BatchNorm,
    y: &Tensor,
    save_mean: &Tensor,
    save_inv_std: &Tensor,
) -> Result<()> {
    const OP: &str = "batch_norm forward_train";
    let g = Geometry::of(OP, x, gamma.is_some(), bn)?;
    if g.params.m == 1 {
        return Err(Error::Invalid(format!(
            "{OP}: x {:?} has one value per channel (N*H*W = 1): the unbiased variance for the running \
             statistics is undefined; use a larger batch or evaluation mode",
            x.shape
        )));
    }
    same_shape(OP, "y", x, y)?;
    check_affine(OP, &g, gamma, beta)?;
    for (what, t) in [("running_mean", running_mean), ("running_var", running_var), ("save_mean", save_mean), ("save_inv_std", save_inv_std)] {
        g.per_channel(OP, what, t)?;
    }
    let gpu = step.gpu().clone();
    let coef = coef_buffer(&gpu, 3 * g.c);
    // Copies first: a copy between dispatches splits the compute pass.
    copy_affine(step, g.c, gamma, beta, &coef);
    if crate::autotune::batch_norm_workgroup(&gpu, &x.shape, Pass::Forward) {
        super::batchnorm_wg::forward_stats(step, &g, x, save_mean, save_inv_std, running_mean, running_var, &coef)?;
        return g.normalize(step, x, &coef, y);
    }
    let part = Tensor::empty(&gpu, &[g.c * g.parts()]);
    let chunks = g.c * g.parts();
    if g.unit.is_some() {
        g.dispatch_unit_reduce(step, &SUM_UNITS, &[x, x, &part])?;
    } else {
        g.dispatch(step, &SUM_PARTIAL, chunks, &[x, &part])?;
    }
    g.dispatch_per_channel(step, &MEAN_FINAL, &[x, &part, save_mean])?;
    if g.unit.is_some() {
        g.dispatch_unit_reduce(step, &SQ_UNITS, &[x, save_mean, &part])?;
    } else {
        g.dispatch(step, &SQ_PARTIAL, chunks, &[x, save_mean, &part])?;
    }
    g.dispatch_per_channel(step, &VAR_FINAL, &[&part, save_mean, save_inv_std, running_mean, running_var, &coef])?;
    g.normalize(step, x, &coef, y)
}

/// Evaluation mode: running statistics.
#[allow(clippy::too_many_arguments)]
pub fn forward_eval(
    step: &mut Step,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    bn: &BatchNorm,
    y: &Tensor,
) -> Result<()> {
    const OP: &str = "batch_norm forward_eval";
    let g = Geometry::of(OP, x, gamma.is_some(), bn)?;
    same_shape(OP, "y", x, y)?;
    check_affine(OP, &g, gamma, beta)?;
    g.per_channel(OP, "running_mean", running_mean)?;
    g.per_channel(OP, "running_var", running_var)?;
    let coef = coef_buffer(step.gpu(), 3 * g.c);
    copy_affine(step, g.c, gamma, beta, &coef);
    step.copy(&running_mean.buf, 0, &coef.buf, 8 * g.c as u64, 4 * g.c as u64);
    g.dispatch_per_channel(step, &EVAL_COEF, &[running_var, &coef])?;
    g.normalize(step, x, &coef, y)
}

/// Backward in training mode. dgamma/dbeta written when given (affine).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    step: &mut Step,
    x: &Tensor,
    dy: &Tensor,
    gamma: Option<&Tensor>,
    save_mean: &Tensor,
    save_inv_std: &Tensor,
    dx: &Tensor,
    dgamma: Option<&Tensor>,
    dbeta: Option<&Tensor>,
) -> Result<()> {
    const OP: &str = "batch_norm backward";
    let g = Geometry::of(OP, x, gamma.is_some(), &BatchNorm::default())?;
    same_shape(OP, "dy", x, dy)?;
    same_shape(OP, "dx", x, dx)?;
    for (what, t) in [("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
        if let Some(t) = t {
            g.per_channel(OP, what, t)?;
        }
    }
    g.per_channel(OP, "save_mean", save_mean)?;
    g.per_channel(OP, "save_inv_std", save_inv_std)?;
    let gpu = step.gpu().clone();
    let coef = coef_buffer(&gpu, 6 * g.c);
    let bytes = 4 * g.c as u64;
    // Copies before and after the dispatches, not between them: a copy splits the compute pass
    // (and a timed step with three passes fails validation in the runtime).
    if let Some(gm) = gamma {
        step.copy(&gm.buf, 0, &coef.buf, 2 * bytes, bytes);
    }
    if crate::autotune::batch_norm_workgroup(&gpu, &x.shape, Pass::BackwardInput) {
        super::batchnorm_wg::backward_stats(step, &g, x, dy, save_mean, save_inv_std, &coef)?;
    } else {
        let part = Tensor::empty(&gpu, &[2 * g.c * g.parts()]);
        if g.unit.is_some() {
            g.dispatch_unit_reduce(step, &BACKWARD_UNITS, &[x, dy, save_mean, &part])?;
        } else {
            g.dispatch(step, &BACKWARD_PARTIAL, g.c * g.parts(), &[x, dy, save_mean, &part])?;
        }
        g.dispatch_per_channel(step, &BACKWARD_FINAL, &[&part, save_mean, save_inv_std, &coef])?;
    }
    if g.unit.is_some() {
        g.dispatch_unit_elements(step, &BACKWARD_DX_UNITS, &[x, dy, &coef, &coef, dx])?;
    } else {
        g.dispatch_elements(step, &BACKWARD_DX, x.numel(), &[x, dy, &coef, dx])?;
    }
    if let Some(db) = dbeta {
        step.copy(&coef.buf, 0, &db.buf, 0, bytes);
    }
    if let Some(dg) = dgamma {
        step.copy(&coef.buf, bytes, &dg.buf, 0, bytes);
    }
    Ok(())
}

/// Plain f64 loops over NCHW, for tests.
pub mod reference;

mod cases;
pub use cases::{eval_bench_cases, eval_test_cases, train_bench_cases, train_case, train_test_cases};
