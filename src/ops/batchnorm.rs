//! Batch normalisation (2-D: per channel over N, H, W), training and evaluation mode.
//! Shader: `shaders/batchnorm.wgsl`.
//!
//! Follows PyTorch: normalisation uses the biased batch variance, the running variance is
//! updated with the unbiased one, `running = (1 - momentum) * running + momentum * batch`.
//! Per-channel reductions are two-stage with a split that depends only on the shape, so the
//! same inputs give bitwise the same outputs. An autotune cache may choose the workgroup-memory
//! reductions of `batchnorm_wg.rs` instead, per pass and plane size.

use super::{OpCase, Pass, BENCH_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
pub mod reference {
    fn index(s: [usize; 4], n: usize, c: usize, i: usize) -> usize {
        (n * s[1] + c) * s[2] * s[3] + i
    }

    /// Per-channel mean and biased variance over N, H, W (two-pass).
    pub fn batch_stats(x: &[f64], s: [usize; 4]) -> (Vec<f64>, Vec<f64>) {
        let m = (s[0] * s[2] * s[3]) as f64;
        let mut mean = vec![0.0; s[1]];
        let mut var = vec![0.0; s[1]];
        for c in 0..s[1] {
            for n in 0..s[0] {
                for i in 0..s[2] * s[3] {
                    mean[c] += x[index(s, n, c, i)];
                }
            }
            mean[c] /= m;
            for n in 0..s[0] {
                for i in 0..s[2] * s[3] {
                    var[c] += (x[index(s, n, c, i)] - mean[c]).powi(2);
                }
            }
            var[c] /= m;
        }
        (mean, var)
    }

    /// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given per-channel statistics.
    pub fn normalize(x: &[f64], s: [usize; 4], mean: &[f64], var: &[f64], gamma: Option<&[f64]>, beta: Option<&[f64]>, eps: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for n in 0..s[0] {
            for c in 0..s[1] {
                let g = gamma.map_or(1.0, |g| g[c]);
                let b = beta.map_or(0.0, |b| b[c]);
                for i in 0..s[2] * s[3] {
                    let k = index(s, n, c, i);
                    y[k] = (x[k] - mean[c]) / (var[c] + eps).sqrt() * g + b;
                }
            }
        }
        y
    }

    pub fn forward_train(x: &[f64], s: [usize; 4], gamma: Option<&[f64]>, beta: Option<&[f64]>, eps: f64) -> Vec<f64> {
        let (mean, var) = batch_stats(x, s);
        normalize(x, s, &mean, &var, gamma, beta, eps)
    }

    /// The running statistics after one training forward on x.
    pub fn update_running(x: &[f64], s: [usize; 4], running_mean: &mut [f64], running_var: &mut [f64], momentum: f64) {
        let m = (s[0] * s[2] * s[3]) as f64;
        let (mean, var) = batch_stats(x, s);
        for c in 0..s[1] {
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c];
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * m / (m - 1.0);
        }
    }

    /// Training-mode gradients (dx, dgamma, dbeta); dgamma/dbeta are those of an affine layer
    /// (gamma None means gamma = 1).
    pub fn backward_train(x: &[f64], s: [usize; 4], dy: &[f64], gamma: Option<&[f64]>, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let m = (s[0] * s[2] * s[3]) as f64;
        let (mean, var) = batch_stats(x, s);
        let mut dx = vec![0.0; x.len()];
        let mut dgamma = vec![0.0; s[1]];
        let mut dbeta = vec![0.0; s[1]];
        for c in 0..s[1] {
            let inv_std = 1.0 / (var[c] + eps).sqrt();
            let xhat = |k: usize| (x[k] - mean[c]) * inv_std;
            for n in 0..s[0] {
                for i in 0..s[2] * s[3] {
                    let k = index(s, n, c, i);
                    dbeta[c] += dy[k];
                    dgamma[c] += dy[k] * xhat(k);
                }
            }
            let g = gamma.map_or(1.0, |g| g[c]);
            for n in 0..s[0] {
                for i in 0..s[2] * s[3] {
                    let k = index(s, n, c, i);
                    dx[k] = g * inv_std / m * (m * dy[k] - dbeta[c] - xhat(k) * dgamma[c]);
                }
            }
        }
        (dx, dgamma, dbeta)
    }
}

const EPS: f64 = 1e-5;

fn per_channel_shape(s: [usize; 4]) -> Vec<usize> {
    vec![s[1]]
}

fn shape_text(s: [usize; 4], affine: bool) -> String {
    format!("n{} c{} {}x{}{}", s[0], s[1], s[2], s[3], if affine { " affine" } else { "" })
}

/// Training mode: inputs x (and gamma, beta when affine); all differentiable.
struct TrainCase {
    shape: [usize; 4],
    affine: bool,
}

impl TrainCase {
    fn affine_refs<'a>(&self, x: &'a [Vec<f64>]) -> (Option<&'a [f64]>, Option<&'a [f64]>) {
        if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) }
    }
}

impl OpCase for TrainCase {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn shape(&self) -> String {
        shape_text(self.shape, self.affine)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let mut v = vec![self.shape.to_vec()];
        if self.affine {
            v.push(per_channel_shape(self.shape));
            v.push(per_channel_shape(self.shape));
        }
        v
    }
    fn output(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let (g, b) = self.affine_refs(x);
        reference::forward_train(&x[0], self.shape, g, b, EPS)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let (g, _) = self.affine_refs(x);
        let (dx, dg, db) = reference::backward_train(&x[0], self.shape, dy, g, EPS);
        if self.affine { vec![dx, dg, db] } else { vec![dx] }
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let gpu = step.gpu().clone();
        let c = self.shape[1];
        let running_mean = Tensor::from_slice(&gpu, &[c], &vec![0.0; c])?;
        let running_var = Tensor::from_slice(&gpu, &[c], &vec![1.0; c])?;
        let save_mean = Tensor::empty(&gpu, &[c]);
        let save_inv_std = Tensor::empty(&gpu, &[c]);
        let (g, b) = if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) };
        forward_train(step, &x[0], g, b, &running_mean, &running_var, &BatchNorm::default(), y, &save_mean, &save_inv_std)?;
        Ok(vec![save_mean, save_inv_std])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, saved: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        let gamma = self.affine.then(|| &x[1]);
        let (sm, sis) = (&saved[0], &saved[1]);
        if wrt == 0 {
            return backward(step, &x[0], dy, gamma, sm, sis, dx, None, None);
        }
        // The parameter gradients come from the same launcher; dx goes to scratch.
        let scratch = Tensor::empty(step.gpu(), &x[0].shape);
        let (dg, db) = if wrt == 1 { (Some(dx), None) } else { (None, Some(dx)) };
        backward(step, &x[0], dy, gamma, sm, sis, &scratch, dg, db)
    }
    fn flops(&self, pass: Pass) -> f64 {
        let n = numel(&self.shape) as f64;
        match pass {
            // sum; squared deviation (sub + mul-add); normalise (sub + mul-add)
            Pass::Forward => 7.0 * n,
            // two sums (add; sub + mul-add), then dx (sub, mul-add, sub, mul)
            Pass::BackwardInput => 9.0 * n,
            Pass::BackwardWeight => 4.0 * n,
        }
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let n = numel(&self.shape) as f64;
        match pass {
            Pass::Forward => 8.0 * n,
            Pass::BackwardInput => 12.0 * n,
            Pass::BackwardWeight => 8.0 * n,
        }
    }
}

/// Evaluation mode: inputs x, (gamma, beta,) running_mean, running_var. Only the forward is
/// checked: training always runs in training mode, so there is no evaluation-mode backward.
struct EvalCase {
    shape: [usize; 4],
    affine: bool,
}

impl OpCase for EvalCase {
    fn name(&self) -> &'static str {
        "batch_norm_eval"
    }
    fn shape(&self) -> String {
        shape_text(self.shape, self.affine)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let k = if self.affine { 5 } else { 3 };
        let mut v = vec![per_channel_shape(self.shape); k];
        v[0] = self.shape.to_vec();
        v
    }
    fn output(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; self.inputs().len()]
    }
    fn sample_input(&self, i: usize, rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        if i + 1 == self.inputs().len() {
            // A variance: positive, and not so small that eps dominates.
            (0..n).map(|_| rng.random_range(0.1..2.0)).collect()
        } else {
            super::check::random_vec(rng, n)
        }
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let k = x.len();
        let (g, b) = if self.affine { (Some(&x[1][..]), Some(&x[2][..])) } else { (None, None) };
        reference::normalize(&x[0], self.shape, &x[k - 2], &x[k - 1], g, b, EPS)
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let k = x.len();
        let (g, b) = if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) };
        forward_eval(step, &x[0], g, b, &x[k - 2], &x[k - 1], &BatchNorm::default(), y)?;
        Ok(vec![])
    }
    fn backward(&self, _step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], _dy: &Tensor, _wrt: usize, _dx: &Tensor) -> Result<()> {
        Err(Error::Invalid("batch_norm_eval has no backward (training uses training mode)".into()))
    }
    fn flops(&self, _pass: Pass) -> f64 {
        3.0 * numel(&self.shape) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        8.0 * numel(&self.shape) as f64
    }
}

/// Scalar path: batch 1 at 7x7, 1x1 spatial (three values per channel), and an odd 9x11 with
/// 17 channels. Vec4 path (see [`unit_planes`]): planes of whole vec4s (U = 1), pairs of
/// 3x2 planes (U = 2), fours of 7x7 planes (U = 4), fours of single values, and one channel
/// (coefficient buffers shorter than a vec4 unless padded).
const TEST_SHAPES: &[[usize; 4]] =
    &[[1, 3, 7, 7], [3, 5, 1, 1], [2, 17, 9, 11], [2, 4, 4, 4], [1, 3, 2, 6], [2, 6, 3, 2], [3, 4, 7, 7], [5, 8, 1, 1], [2, 1, 4, 4]];

/// The training-mode case at one shape (autotune times it; tests check variants with it).
pub fn train_case(shape: [usize; 4], affine: bool) -> Box<dyn OpCase> {
    Box::new(TrainCase { shape, affine })
}

pub fn train_test_cases() -> Vec<Box<dyn OpCase>> {
    TEST_SHAPES
        .iter()
        .flat_map(|&shape| [true, false].map(|affine| Box::new(TrainCase { shape, affine }) as Box<dyn OpCase>))
        .collect()
}
pub fn train_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&shape| Box::new(TrainCase { shape, affine: true }) as Box<dyn OpCase>).collect()
}
pub fn eval_test_cases() -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<Box<dyn OpCase>> = TEST_SHAPES.iter().map(|&shape| Box::new(EvalCase { shape, affine: true }) as Box<dyn OpCase>).collect();
    v.push(Box::new(EvalCase { shape: [2, 5, 3, 3], affine: false }));
    v
}
pub fn eval_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&shape| Box::new(EvalCase { shape, affine: true }) as Box<dyn OpCase>).collect()
}

