//! Optimizers on the GPU (SGD, Adam/AdamW, PyTorch semantics, in place), the global squared
//! gradient norm and gradient clipping without a host readback. Shader: `shaders/optim.wgsl`.
//!
//! These ops are not differentiable. Their cases take every tensor as a non-differentiable
//! input, copy them into scratch, run the launcher and write the updated tensors, concatenated,
//! into the output, so the checker compares them (NaN-poisoned) against the f64 reference.

use super::{OpCase, Pass};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

const SGD: Kernel = kernel!("optim.wgsl", "sgd_step", [1: Read, 2: ReadWrite, 3: ReadWrite]);
const ADAM: Kernel = kernel!("optim.wgsl", "adam_step", [1: Read, 2: ReadWrite, 3: ReadWrite, 4: ReadWrite]);
const NORM_PARTIAL: Kernel = kernel!("optim.wgsl", "norm_partial", [1: Read, 5: ReadWrite]);
const NORM_FINAL: Kernel = kernel!("optim.wgsl", "norm_final", [6: Read, 7: ReadWrite]);
const CLIP: Kernel = kernel!("optim.wgsl", "clip", [8: Read, 2: ReadWrite]);

/// Must match PER_INVOCATION in the shader.
pub(super) const PER_INVOCATION: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) offset: u32,
    pub(super) groups: u32,
    pub(super) nesterov: u32,
    pub(super) lr: f32,
    pub(super) momentum: f32,
    pub(super) weight_decay: f32,
    pub(super) decoupled: u32,
    pub(super) beta1: f32,
    pub(super) beta2: f32,
    pub(super) eps: f32,
    pub(super) step_size: f32,
    pub(super) bc2_sqrt: f32,
    pub(super) max_norm: f32,
    pub(super) pad: [u32; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// true = AdamW (decay applied to the weight, not added to the gradient).
    pub decoupled: bool,
}

fn elements(op: &'static str, t: &Tensor) -> Result<u32> {
    u32::try_from(t.numel()).map_err(|_| Error::Shape { op, message: format!("{:?} has more than 2^32 elements", t.shape) })
}

fn same_len(op: &'static str, what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.numel() != b.numel() {
        return Err(Error::Shape { op, message: format!("{what} is {:?} but param is {:?}", b.shape, a.shape) });
    }
    Ok(())
}

fn launch_1d(step: &mut Step, k: &Kernel, params: &Params, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(params.n, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("WG", wg as f64)], params, &bufs, groups)
}

/// PyTorch SGD semantics: g = grad + wd*param; buf = momentum*buf + g (buf starts at 0, the
/// caller fills it with zeros once; PyTorch's first-step buf=g equals this when buf starts at 0
/// and dampening is 0); update = nesterov ? g + momentum*buf : buf; param -= lr*update. In place
/// on param and momentum_buf.
pub fn sgd_step(step: &mut Step, param: &Tensor, grad: &Tensor, momentum_buf: &Tensor, cfg: &Sgd) -> Result<()> {
    let n = elements("sgd_step", param)?;
    same_len("sgd_step", "grad", param, grad)?;
    same_len("sgd_step", "momentum_buf", param, momentum_buf)?;
    if cfg.nesterov && cfg.momentum <= 0.0 {
        return Err(Error::Invalid("sgd_step: nesterov needs a momentum above 0 (as in PyTorch)".into()));
    }
    let params = Params {
        n,
        nesterov: cfg.nesterov as u32,
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    launch_1d(step, &SGD, &params, &[grad, param, momentum_buf])
}

/// PyTorch Adam/AdamW; t is the 1-based step count for bias correction. In place on param, m, v.
pub fn adam_step(step: &mut Step, param: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, cfg: &Adam, t: u32) -> Result<()> {
    let n = elements("adam_step", param)?;
    same_len("adam_step", "grad", param, grad)?;
    same_len("adam_step", "m", param, m)?;
    same_len("adam_step", "v", param, v)?;
    if t == 0 {
        return Err(Error::Invalid("adam_step: the step count t is 1-based, got 0".into()));
    }
    if !(0.0..1.0).contains(&cfg.beta1) || !(0.0..1.0).contains(&cfg.beta2) {
        return Err(Error::Invalid(format!("adam_step: betas must lie in [0, 1), got {} and {}", cfg.beta1, cfg.beta2)));
    }
    // Bias corrections in f64: 1 - beta^t loses most of its digits in f32 for betas near 1.
    let bc1 = 1.0 - (cfg.beta1 as f64).powi(t.min(i32::MAX as u32) as i32);
    let bc2 = 1.0 - (cfg.beta2 as f64).powi(t.min(i32::MAX as u32) as i32);
    let params = Params {
        n,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        decoupled: cfg.decoupled as u32,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        step_size: (cfg.lr as f64 / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
        ..Default::default()
    };
    launch_1d(step, &ADAM, &params, &[grad, param, m, v])
}

/// Workgroup size of the reductions: the tree needs a power of two.
pub(super) fn reduce_wg(step: &Step) -> u32 {
    let wg = step.gpu().wg1d();
    1 << (31 - wg.leading_zeros())
}

/// Sum of squares of all given gradient tensors into out[0]. Deterministic: each tensor gets
/// one dispatch writing a partial sum per block of WG*8 elements (in-block order fixed) at a
/// known offset of one scratch buffer, then one workgroup sums the partials in a fixed order.
pub fn grad_norm_sq(step: &mut Step, grads: &[&Tensor], out: &Tensor) -> Result<()> {
    if out.numel() < 1 {
        return Err(Error::Shape { op: "grad_norm_sq", message: format!("out is {:?}, needs at least one element", out.shape) });
    }
    let wg = reduce_wg(step);
    let block = wg * PER_INVOCATION;
    let mut layout = Vec::with_capacity(grads.len());
    let mut total: u32 = 0;
    for g in grads {
        let n = elements("grad_norm_sq", g)?;
        let groups = n.div_ceil(block);
        layout.push((n, total, groups));
        total = total
            .checked_add(groups)
            .ok_or_else(|| Error::Invalid("grad_norm_sq: too many partial sums".into()))?;
    }
    let partials = Tensor::empty(step.gpu(), &[total.max(1) as usize]);
    let consts = [("WG", wg as f64)];
    for (g, &(n, offset, groups)) in grads.iter().zip(&layout) {
        if n == 0 {
            continue;
        }
        let grid = step.gpu().grid(groups * wg, wg);
        let params = Params { n, offset, groups, ..Default::default() };
        step.dispatch(&NORM_PARTIAL, &consts, &params, &[&g.buf, &partials.buf], grid)?;
    }
    let params = Params { n: total, ..Default::default() };
    step.dispatch(&NORM_FINAL, &consts, &params, &[&partials.buf, &out.buf], [1, 1, 1])
}

/// Gradient clipping without a host readback: scale every grad in place by
/// min(1, max_norm / (sqrt(norm_sq[0]) + 1e-6)) (PyTorch clip_grad_norm_ semantics).
pub fn clip_grads(step: &mut Step, grads: &[&Tensor], norm_sq: &Tensor, max_norm: f32) -> Result<()> {
    if norm_sq.numel() < 1 {
        return Err(Error::Shape { op: "clip_grads", message: format!("norm_sq is {:?}, needs at least one element", norm_sq.shape) });
    }
    for g in grads {
        let params = Params { n: elements("clip_grads", g)?, max_norm, ..Default::default() };
        launch_1d(step, &CLIP, &params, &[norm_sq, g])?;
    }
    Ok(())
}

pub mod reference {
    use super::{Adam, Sgd};

    /// Returns (param', buf').
    pub fn sgd(param: &[f64], grad: &[f64], buf: &[f64], cfg: &Sgd) -> (Vec<f64>, Vec<f64>) {
        let (lr, mom, wd) = (cfg.lr as f64, cfg.momentum as f64, cfg.weight_decay as f64);
        let mut p = param.to_vec();
        let mut b = buf.to_vec();
        for i in 0..p.len() {
            let g = grad[i] + wd * p[i];
            b[i] = if mom != 0.0 { mom * b[i] + g } else { g };
            let update = if cfg.nesterov { g + mom * b[i] } else { b[i] };
            p[i] -= lr * update;
        }
        (p, b)
    }

    /// Returns (param', m', v').
    pub fn adam(param: &[f64], grad: &[f64], m: &[f64], v: &[f64], cfg: &Adam, t: u32) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (lr, b1, b2, eps, wd) = (cfg.lr as f64, cfg.beta1 as f64, cfg.beta2 as f64, cfg.eps as f64, cfg.weight_decay as f64);
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        let (mut p, mut m, mut v) = (param.to_vec(), m.to_vec(), v.to_vec());
        for i in 0..p.len() {
            let mut g = grad[i];
            if cfg.decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                g += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let denom = v[i].sqrt() / bc2.sqrt() + eps;
            p[i] -= lr / bc1 * m[i] / denom;
        }
        (p, m, v)
    }

    pub fn grad_norm_sq(grads: &[&[f64]]) -> f64 {
        grads.iter().flat_map(|g| g.iter()).map(|x| x * x).sum()
    }

    pub fn clip_grads(grads: &[&[f64]], max_norm: f64) -> Vec<Vec<f64>> {
        let coef = (max_norm / (grad_norm_sq(grads).sqrt() + 1e-6)).min(1.0);
        grads.iter().map(|g| g.iter().map(|x| x * coef).collect()).collect()
    }
}

/// Scratch copies of the tensors a launcher updates in place, so the launcher's in-place update leaves the case's
/// inputs intact (benches run forward repeatedly).
fn scratch_copies(step: &mut Step, x: &[Tensor]) -> Vec<Tensor> {
    x.iter()
        .map(|t| {
            let s = Tensor::empty(step.gpu(), &t.shape);
            step.copy(&t.buf, 0, &s.buf, 0, 4 * t.numel() as u64);
            s
        })
        .collect()
}

/// Copies `parts` back to back into y.
fn concat_into(step: &mut Step, parts: &[&Tensor], y: &Tensor) {
    let mut at = 0;
    for t in parts {
        let bytes = 4 * t.numel() as u64;
        step.copy(&t.buf, 0, &y.buf, at, bytes);
        at += bytes;
    }
}

fn no_backward() -> Result<()> {
    Err(Error::Invalid("optimizer ops have no backward pass".into()))
}

struct SgdCase {
    n: usize,
    cfg: Sgd,
}

impl OpCase for SgdCase {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn shape(&self) -> String {
        let c = &self.cfg;
        format!("n{} lr{} momentum{} wd{}{}", self.n, c.lr, c.momentum, c.weight_decay, if c.nesterov { " nesterov" } else { "" })
    }
    /// param, grad, momentum buffer.
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![vec![self.n]; 3]
    }
    /// [param', buf'].
    fn output(&self) -> Vec<usize> {
        vec![2 * self.n]
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; 3]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let (p, b) = reference::sgd(&x[0], &x[1], &x[2], &self.cfg);
        [p, b].concat()
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![vec![]; 3]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let s = scratch_copies(step, &[x[0].clone(), x[2].clone()]);
        sgd_step(step, &s[0], &x[1], &s[1], &self.cfg)?;
        concat_into(step, &[&s[0], &s[1]], y);
        Ok(vec![])
    }
    fn backward(&self, _: &mut Step, _: &[Tensor], _: &Tensor, _: &[Tensor], _: &Tensor, _: usize, _: &Tensor) -> Result<()> {
        no_backward()
    }
    fn flops(&self, _pass: Pass) -> f64 {
        // weight decay, momentum, nesterov, lr: a multiply-add each.
        8.0 * self.n as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        // Read param, grad, buf; write param, buf.
        20.0 * self.n as f64
    }
}

struct AdamCase {
    n: usize,
    cfg: Adam,
    t: u32,
}

impl OpCase for AdamCase {
    fn name(&self) -> &'static str {
        if self.cfg.decoupled { "adamw" } else { "adam" }
    }
    fn shape(&self) -> String {
        let c = &self.cfg;
        format!("n{} t{} lr{} betas{},{} eps{} wd{}", self.n, self.t, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay)
    }
    /// param, grad, m, v.
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![vec![self.n]; 4]
    }
    /// [param', m', v'].
    fn output(&self) -> Vec<usize> {
        vec![3 * self.n]
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; 4]
    }
    fn sample_input(&self, i: usize, rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        let v = super::check::random_vec(rng, n);
        // The second moment is an average of squares.
        if i == 3 { v.iter().map(|x| x * x).collect() } else { v }
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let (p, m, v) = reference::adam(&x[0], &x[1], &x[2], &x[3], &self.cfg, self.t);
        [p, m, v].concat()
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![vec![]; 4]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let s = scratch_copies(step, &[x[0].clone(), x[2].clone(), x[3].clone()]);
        adam_step(step, &s[0], &x[1], &s[1], &s[2], &self.cfg, self.t)?;
        concat_into(step, &[&s[0], &s[1], &s[2]], y);
        Ok(vec![])
    }
    fn backward(&self, _: &mut Step, _: &[Tensor], _: &Tensor, _: &[Tensor], _: &Tensor, _: usize, _: &Tensor) -> Result<()> {
        no_backward()
    }
    fn flops(&self, _pass: Pass) -> f64 {
        // decay, two moments, sqrt, divides and the update: about 16 per element.
        16.0 * self.n as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        // Read param, grad, m, v; write param, m, v.
        28.0 * self.n as f64
    }
}

struct GradNormCase {
    sizes: Vec<usize>,
}

impl OpCase for GradNormCase {
    fn name(&self) -> &'static str {
        "grad_norm"
    }
    fn shape(&self) -> String {
        format!("sizes {:?}", self.sizes)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        self.sizes.iter().map(|&n| vec![n]).collect()
    }
    fn output(&self) -> Vec<usize> {
        vec![1]
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; self.sizes.len()]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let grads: Vec<&[f64]> = x.iter().map(|v| v.as_slice()).collect();
        vec![reference::grad_norm_sq(&grads)]
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![vec![]; self.sizes.len()]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let grads: Vec<&Tensor> = x.iter().collect();
        grad_norm_sq(step, &grads, y)?;
        Ok(vec![])
    }
    fn backward(&self, _: &mut Step, _: &[Tensor], _: &Tensor, _: &[Tensor], _: &Tensor, _: usize, _: &Tensor) -> Result<()> {
        no_backward()
    }
    fn flops(&self, _pass: Pass) -> f64 {
        2.0 * self.sizes.iter().sum::<usize>() as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        4.0 * self.sizes.iter().sum::<usize>() as f64
    }
}

const TEST_SIZES: &[usize] = &[1, 7, 1000, 4099];
const BENCH_PARAMS: usize = 1 << 20;

fn sgd_configs() -> [Sgd; 4] {
    let plain = Sgd { lr: 0.1, momentum: 0.0, weight_decay: 0.0, nesterov: false };
    [
        plain,
        Sgd { momentum: 0.9, ..plain },
        Sgd { momentum: 0.9, nesterov: true, ..plain },
        Sgd { momentum: 0.9, weight_decay: 0.05, ..plain },
    ]
}

fn adam_configs() -> [Adam; 2] {
    let adam = Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05, decoupled: false };
    [adam, Adam { decoupled: true, ..adam }]
}

pub fn sgd_test_cases() -> Vec<Box<dyn OpCase>> {
    sgd_configs()
        .into_iter()
        .flat_map(|cfg| TEST_SIZES.iter().map(move |&n| Box::new(SgdCase { n, cfg }) as Box<dyn OpCase>))
        .collect()
}
pub fn sgd_bench_cases() -> Vec<Box<dyn OpCase>> {
    vec![Box::new(SgdCase { n: BENCH_PARAMS, cfg: sgd_configs()[3] })]
}
pub fn adam_test_cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for cfg in adam_configs() {
        for t in [1, 5] {
            for &n in &TEST_SIZES[1..] {
                cases.push(Box::new(AdamCase { n, cfg, t }));
            }
        }
    }
    cases
}
pub fn adam_bench_cases() -> Vec<Box<dyn OpCase>> {
    adam_configs().into_iter().map(|cfg| Box::new(AdamCase { n: BENCH_PARAMS, cfg, t: 100 }) as Box<dyn OpCase>).collect()
}
pub fn grad_norm_test_cases() -> Vec<Box<dyn OpCase>> {
    [vec![1], vec![17, 1, 4099], vec![70000, 1, 17, 4099], vec![0, 5, 0]]
        .into_iter()
        .map(|sizes| Box::new(GradNormCase { sizes }) as Box<dyn OpCase>)
        .collect()
}
pub fn grad_norm_bench_cases() -> Vec<Box<dyn OpCase>> {
    // One big tensor, and the same count spread over many (one dispatch each), like a network.
    [vec![BENCH_PARAMS], vec![BENCH_PARAMS / 64; 64]]
        .into_iter()
        .map(|sizes| Box::new(GradNormCase { sizes }) as Box<dyn OpCase>)
        .collect()
}
