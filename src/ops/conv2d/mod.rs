//! 2-D convolution, NCHW, f32, no bias: kernel KHxKW, stride, symmetric zero padding,
//! dilation, groups. Weight [Cout, Cin/groups, KH, KW]. Covers dense, 1x1 pointwise,
//! depthwise (groups = channels) and dilated convolutions.
//!
//! Each pass picks a kernel from the shape (`path` names it): the fast paths where the shape
//! fits one, else the general kernels, which take any shape. Where things are:
//! - `mod.rs` (here): the public API, shape checks, the kernel choice of each pass.
//! - `general.rs`: the general kernels (`shaders/conv2d.wgsl`), and `forward_simple` /
//!   `backward_input_simple`, one element per invocation.
//! - `gemm.rs`: 1x1, stride 1, no padding, groups 1 (pointwise) as a batched GEMM
//!   (`shaders/conv2d_fast.wgsl`).
//! - `stride.rs`: 1x1 with stride > 1 (FactorizedReduce) as a gather / scatter around that GEMM
//!   (`shaders/conv2d_stride.wgsl`).
//! - `rows.rs`: depthwise and dense, square kernel, stride 1 or 2, and their weight gradient
//!   (`shaders/conv2d_rows.wgsl`).
//! - `reference.rs`: the f64 CPU reference; `cases.rs`: the test and bench cases.
//!
//! `CELLNAS_CONV_GENERIC=1` turns the fast paths off, to compare them with the general kernels;
//! an adapter's autotune cache may turn them off per pass and shape class (crate::autotune).
//!
//! ReLU -> conv fused (`forward_with`, `backward_input_with`, `backward_weight_with`; DARTS
//! puts a ReLU in front of every conv op): every kernel reads its input through max(x, 0)
//! or masks the input gradient it stores by x > 0, chosen by override constants, so the fused
//! pass is the plain pass's kernel and the graph never stores relu(x) (see `Fuse`).

mod cases;
mod gemm;
mod general;
pub mod reference;
mod rows;
mod stride;

pub use cases::{bench_cases, relu_bench_cases, relu_test_cases, simple_test_cases, test_cases, ConvCase};
pub use gemm::pointwise_weight_chunks;
pub use general::{backward_input_simple, backward_input_simple_with, forward_simple, forward_simple_with, weight_chunks};

use super::Pass;
use crate::error::{Error, Result};
use crate::gpu::Step;
use crate::tensor::{numel, Tensor};
use gemm::is_pointwise;
use rows::{is_dense, is_depthwise, transposed_fits, weight_rows_aligned};
use stride::{is_strided_pointwise, unstrided};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2d {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

/// A ReLU in front of the convolution, fused into its kernels (the caller never stores
/// relu(x)): `relu` makes a launch read its input x through max(x, 0) (forward, weight
/// gradient); `mask` is the pre-ReLU input, and an input-gradient launch stores dx only where it
/// is > 0 (the ReLU's backward). Both are override constants of every conv shader, so no
/// kernel source is duplicated and a plain conv compiles without either.
#[derive(Clone, Copy, Default)]
struct Fuse<'a> {
    relu: bool,
    mask: Option<&'a Tensor>,
}

impl<'a> Fuse<'a> {
    const NONE: Fuse<'static> = Fuse { relu: false, mask: None };
    fn relu(relu: bool) -> Fuse<'static> {
        Fuse { relu, mask: None }
    }
    fn mask(mask: Option<&'a Tensor>) -> Fuse<'a> {
        Fuse { relu: false, mask }
    }
    fn consts(&self) -> [(&'static str, f64); 2] {
        [("RELU", self.relu as u32 as f64), ("MASK", self.mask.is_some() as u32 as f64)]
    }
    /// The buffer for the kernel's mask binding: the mask, or `other` (bound, never read).
    fn mask_or(&self, other: &'a Tensor) -> &'a Tensor {
        self.mask.unwrap_or(other)
    }
}

fn shape_err(message: String) -> Error {
    Error::Shape { op: "conv2d", message }
}

/// Output shape [N, Cout, Ho, Wo] of input `x` [N, Cin, H, W] and weight `w`
/// [Cout, Cin/groups, KH, KW], or an error saying what does not fit.
pub fn out_shape(x: &[usize], w: &[usize], p: &Conv2d) -> Result<Vec<usize>> {
    if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
        return Err(Error::Invalid(format!("conv2d: stride, dilation and groups must be >= 1, got {p:?}")));
    }
    let (&[n, cin, h, wd], &[cout, cin_g, kh, kw]) = (x, w) else {
        return Err(shape_err(format!("input {x:?} and weight {w:?} must both be 4-D (NCHW, [Cout, Cin/groups, KH, KW])")));
    };
    if cin % p.groups != 0 || cout % p.groups != 0 {
        return Err(shape_err(format!("Cin {cin} and Cout {cout} must both be divisible by groups {}", p.groups)));
    }
    if cin_g != cin / p.groups {
        return Err(shape_err(format!("weight {w:?}: dim 1 must be Cin/groups = {cin}/{} = {}", p.groups, cin / p.groups)));
    }
    if [n, cin, h, wd, cout, kh, kw].contains(&0) {
        return Err(shape_err(format!("empty input {x:?} or weight {w:?}")));
    }
    let out = |size: usize, k: usize| {
        let span = p.dilation * (k - 1) + 1;
        (size + 2 * p.padding >= span).then(|| (size + 2 * p.padding - span) / p.stride + 1)
    };
    match (out(h, kh), out(wd, kw)) {
        (Some(ho), Some(wo)) => Ok(vec![n, cout, ho, wo]),
        _ => Err(shape_err(format!(
            "kernel {kh}x{kw} dilation {} spans more than input {h}x{wd} padded by {}",
            p.dilation, p.padding
        ))),
    }
}

/// Parameters of conv2d.wgsl, and the checked geometry every path starts from.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    cin_g: u32,
    cout_g: u32,
    ctiles: u32,
    xtiles: u32,
    total: u32,
    chunk: u32,
    chunks: u32,
    len: u32,
    nw: u32,
    _pad: [u32; 3],
}

/// Checks the three shapes against each other and fills the geometry part of the params.
fn geometry(x: &[usize], w: &[usize], y: &[usize], p: &Conv2d, what: &str) -> Result<Params> {
    let want = out_shape(x, w, p)?;
    if y != want.as_slice() {
        return Err(shape_err(format!("{what} is {y:?}, but input {x:?} and weight {w:?} with {p:?} give {want:?}")));
    }
    let big = [numel(x), numel(w), numel(y), p.padding, p.stride * want[3] + p.dilation * w[3]];
    if big.iter().any(|&v| v > i32::MAX as usize) {
        return Err(Error::Invalid(format!("conv2d: sizes {x:?} {w:?} {y:?} exceed the 32-bit indexing of the shader")));
    }
    let u = |v: usize| v as u32;
    Ok(Params {
        n: u(x[0]),
        cin: u(x[1]),
        h: u(x[2]),
        w: u(x[3]),
        cout: u(y[1]),
        ho: u(y[2]),
        wo: u(y[3]),
        kh: u(w[2]),
        kw: u(w[3]),
        stride: u(p.stride),
        pad: u(p.padding),
        dil: u(p.dilation),
        cin_g: u(w[1]),
        cout_g: u(y[1] / p.groups),
        nw: u(numel(w)),
        ..Params::default()
    })
}

/// The mask must have dx's shape.
fn check_mask(mask: Option<&Tensor>, dx: &Tensor) -> Result<()> {
    match mask {
        Some(m) if m.shape != dx.shape => Err(shape_err(format!("ReLU mask {:?} must have dx's shape {:?}", m.shape, dx.shape))),
        _ => Ok(()),
    }
}

/// `CELLNAS_CONV_GENERIC=1` turns the fast paths off (to compare them with the general kernels).
fn fast_paths() -> bool {
    std::env::var_os("CELLNAS_CONV_GENERIC").is_none_or(|v| v.is_empty() || v == "0")
}

/// Which kernel a pass of a convolution of this shape runs (for tests): "gemm", "depthwise",
/// "depthwise_t", "dense", "weight_rows", "weight_rows4", "gather+gemm", "gemm+scatter" or "general".
pub fn path(x: &[usize], w: &[usize], p: &Conv2d, pass: super::Pass) -> &'static str {
    use super::Pass;
    let (dw, dense) = (is_depthwise(x, w, p), is_dense(w, p));
    match pass {
        _ if is_pointwise(w, p) => "gemm",
        Pass::BackwardInput if is_strided_pointwise(w, p) => "gemm+scatter",
        _ if is_strided_pointwise(w, p) => "gather+gemm",
        Pass::Forward if dw => "depthwise",
        Pass::Forward if dense => "dense",
        Pass::BackwardInput if dw && transposed_fits(w, p) => "depthwise_t",
        Pass::BackwardInput if p.stride == 1 && p.padding <= (w[2] - 1) * p.dilation && dw => "depthwise",
        Pass::BackwardInput if p.stride == 1 && p.padding <= (w[2] - 1) * p.dilation && dense => "dense",
        Pass::BackwardWeight if (dw || dense) && weight_rows_aligned(x[3], out_shape(x, w, p).map_or(1, |y| y[3])) => "weight_rows4",
        Pass::BackwardWeight if dw || dense => "weight_rows",
        _ => "general",
    }
}

/// [`path`] on `gpu`: "general" where the adapter's autotune choice for this pass and shape
/// class says so (crate::autotune).
pub fn path_on(gpu: &crate::gpu::Gpu, x: &[usize], w: &[usize], p: &Conv2d, pass: super::Pass) -> &'static str {
    if crate::autotune::conv_fast(gpu, x, w, p, pass) { path(x, w, p, pass) } else { "general" }
}

/// y = conv(x, w): x [N, Cin, H, W], w [Cout, Cin/groups, KH, KW], y [N, Cout, Ho, Wo].
pub fn forward(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, y: &Tensor) -> Result<()> {
    forward_with(step, x, w, p, false, y)
}

/// With `relu_input`, y = conv(relu(x), w) with the ReLU applied as the kernels load x (no
/// relu(x) tensor is written). Same kernel choice as without.
pub fn forward_with(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, relu_input: bool, y: &Tensor) -> Result<()> {
    let q = geometry(&x.shape, &w.shape, &y.shape, p, "output")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &x.shape, &w.shape, p, Pass::Forward);
    let f = Fuse::relu(relu_input);
    if fast && is_strided_pointwise(&w.shape, p) {
        let sub = stride::gather(step, x, p.stride, y.shape[2], y.shape[3], relu_input)?;
        return forward_with(step, &sub, w, &unstrided(p), false, y);
    }
    if fast && is_pointwise(&w.shape, p) && gemm::pointwise_forward(step, &q, x, w, f, y)? {
        return Ok(());
    }
    if fast && is_depthwise(&x.shape, &w.shape, p) {
        return rows::depthwise(step, x, w, p.stride, p.dilation, p.padding, false, f, y);
    }
    if fast && is_dense(&w.shape, p) {
        let kk = w.shape[2] * w.shape[3];
        return rows::dense(step, x, w, (q.cin as usize * kk, kk), p.stride, p.dilation, p.padding, false, f, y);
    }
    general::forward(step, q, x, w, p, f, y)
}

/// dx = gradient of sum(dy * conv(x, w)) with respect to x; dx has x's shape.
pub fn backward_input(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, dx: &Tensor) -> Result<()> {
    backward_input_with(step, dy, w, p, None, dx)
}

/// With `relu_input: Some(x)` (the pre-ReLU input), the gradient with respect to x of
/// sum(dy * conv(relu(x), w)): the input gradient written only where x > 0 (0 at x = 0, like
/// the ReLU kernel), in the same kernels and passes as without.
pub fn backward_input_with(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, relu_input: Option<&Tensor>, dx: &Tensor) -> Result<()> {
    let q = geometry(&dx.shape, &w.shape, &dy.shape, p, "dy")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &dx.shape, &w.shape, p, Pass::BackwardInput);
    check_mask(relu_input, dx)?;
    let f = Fuse::mask(relu_input);
    if fast && is_strided_pointwise(&w.shape, p) {
        let sub = Tensor::empty(step.gpu(), &[q.n as usize, q.cin as usize, dy.shape[2], dy.shape[3]]);
        backward_input_with(step, dy, w, &unstrided(p), None, &sub)?;
        return stride::scatter(step, &sub, p.stride, f, dx);
    }
    if fast && is_pointwise(&w.shape, p) && gemm::pointwise_backward_input(step, &q, dy, w, f, dx)? {
        return Ok(());
    }
    // With stride 1 the input gradient is the same correlation of dy with the kernel turned by
    // 180 degrees and padding (K-1)*D - pad on each side.
    let span = (w.shape[2] - 1) * p.dilation;
    let flipped = fast && p.stride == 1 && p.padding <= span;
    if is_depthwise(&dx.shape, &w.shape, p) && flipped {
        return rows::depthwise(step, dy, w, 1, p.dilation, span - p.padding, true, f, dx);
    }
    if fast && is_depthwise(&dx.shape, &w.shape, p) && transposed_fits(&w.shape, p) {
        return rows::depthwise_t(step, dy, w, p, f, dx);
    }
    if is_dense(&w.shape, p) && flipped {
        let kk = w.shape[2] * w.shape[3];
        return rows::dense(step, dy, w, (kk, q.cin as usize * kk), 1, p.dilation, span - p.padding, true, f, dx);
    }
    general::backward_input(step, q, dy, w, p, f, dx)
}

/// dw = gradient of sum(dy * conv(x, w)) with respect to w; dw has w's shape.
pub fn backward_weight(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, dw: &Tensor) -> Result<()> {
    backward_weight_with(step, x, dy, p, false, dw)
}

/// With `relu_input`, the gradient of sum(dy * conv(relu(x), w)): the kernels read max(x, 0).
pub fn backward_weight_with(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, relu_input: bool, dw: &Tensor) -> Result<()> {
    let q = geometry(&x.shape, &dw.shape, &dy.shape, p, "dy")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &x.shape, &dw.shape, p, Pass::BackwardWeight);
    if fast && is_strided_pointwise(&dw.shape, p) {
        let sub = stride::gather(step, x, p.stride, dy.shape[2], dy.shape[3], relu_input)?;
        return backward_weight_with(step, &sub, dy, &unstrided(p), false, dw);
    }
    if fast && is_pointwise(&dw.shape, p) && gemm::pointwise_weight(step, &q, x, dy, relu_input, dw)? {
        return Ok(());
    }
    if fast && (is_depthwise(&x.shape, &dw.shape, p) || is_dense(&dw.shape, p)) {
        return rows::weight_rows(step, x, dy, p, relu_input, dw);
    }
    general::backward_weight(step, q, x, dy, p, Fuse::relu(relu_input), dw)
}
