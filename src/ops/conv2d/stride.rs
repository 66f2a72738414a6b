//! 1x1 convolution with stride > 1, no padding, groups 1 (FactorizedReduce;
//! `shaders/conv2d_stride.wgsl`): the pointwise GEMM on a gathered copy of the stride-grid
//! pixels (forward, weight gradient), or into one that a scatter spreads over dx with zeros
//! between (input gradient).

use super::{fast_paths, Conv2d, Fuse};
use crate::error::Result;
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const GATHER: Kernel = kernel!("conv2d_stride.wgsl", "gather", [1: Read, 2: ReadWrite]);
const GATHER4: Kernel = kernel!("conv2d_stride.wgsl", "gather4", [1: Read, 3: ReadWrite]);
const SCATTER: Kernel = kernel!("conv2d_stride.wgsl", "scatter", [1: Read, 2: ReadWrite, 5: Read]);
const SCATTER4: Kernel = kernel!("conv2d_stride.wgsl", "scatter4", [1: Read, 3: ReadWrite, 6: Read]);
const ZERO4: Kernel = kernel!("conv2d_stride.wgsl", "zero4", [3: ReadWrite]);
const SPREAD: Kernel = kernel!("conv2d_stride.wgsl", "spread", [1: Read, 2: ReadWrite, 5: Read]);
const SPREAD4: Kernel = kernel!("conv2d_stride.wgsl", "spread4", [4: Read, 2: ReadWrite, 5: Read]);

/// Parameters of conv2d_stride.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct StrideParams {
    total: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    quads: u32,
    _pad: [u32; 2],
}

/// A 1x1 convolution with stride > 1, no padding, groups 1 (FactorizedReduce) only reads the
/// pixels on the stride grid: a pointwise one on a gathered copy of them.
pub(super) fn is_strided_pointwise(w: &[usize], p: &Conv2d) -> bool {
    w[2] == 1 && w[3] == 1 && p.stride > 1 && p.padding == 0 && p.groups == 1 && fast_paths()
}

/// The same convolution as a pointwise one on the gathered pixels.
pub(super) fn unstrided(p: &Conv2d) -> Conv2d {
    Conv2d { stride: 1, dilation: 1, ..*p }
}

/// Parameters for `big` [N, C, H, W] and its stride-grid pixels `small` [N, C, Ho, Wo].
fn stride_params(big: &Tensor, small: &Tensor, total: usize) -> StrideParams {
    let u = |v: usize| v as u32;
    let (h, w, ho, wo) = (big.shape[2], big.shape[3], small.shape[2], small.shape[3]);
    StrideParams { total: u(total), h: u(h), w: u(w), ho: u(ho), wo: u(wo), quads: u(w.div_ceil(4)), ..Default::default() }
}

/// A new [N, C, Ho, Wo] tensor of x's pixels on the stride grid (x[:, :, ::s, ::s]).
/// With `relu` the copy is of max(x, 0).
pub(super) fn gather(step: &mut Step, x: &Tensor, s: usize, ho: usize, wo: usize, relu: bool) -> Result<Tensor> {
    let sub = Tensor::empty(step.gpu(), &[x.shape[0], x.shape[1], ho, wo]);
    let q = stride_params(x, &sub, sub.numel());
    let k = if sub.numel().is_multiple_of(4) { &GATHER4 } else { &GATHER };
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(sub.numel().div_ceil(4) as u32, wg);
    step.dispatch(k, &[("WG", wg as f64), ("S", s as f64), ("RELU", relu as u32 as f64)], &q, &[&x.buf, &sub.buf], groups)?;
    Ok(sub)
}

/// dx from the gradient `sub` of its stride-grid pixels: those copied, every other pixel zero.
/// With a mask (the pre-ReLU input), only where it is > 0.
pub(super) fn scatter(step: &mut Step, sub: &Tensor, s: usize, f: Fuse, dx: &Tensor) -> Result<()> {
    let [n, c, h, w] = dx.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    debug_assert!(sub.shape[2] == h.div_ceil(s));
    let wg = step.gpu().wg1d();
    let consts = [("WG", wg as f64), ("S", s as f64)];
    let fconsts = [consts[0], consts[1], f.consts()[1]];
    let m = &f.mask_or(sub).buf;
    let (rows_whole, all_whole) = (w.is_multiple_of(4), dx.numel().is_multiple_of(4));
    if !rows_whole && all_whole {
        // Rows of scalars: zero dx as vec4s, then write the grid pixels (measured faster).
        let q = stride_params(dx, sub, dx.numel() / 4);
        step.dispatch(&ZERO4, &consts, &q, &[&dx.buf], step.gpu().grid(q.total.div_ceil(4), wg))?;
        let q = stride_params(dx, sub, sub.numel());
        let k = if sub.numel().is_multiple_of(4) { &SPREAD4 } else { &SPREAD };
        return step.dispatch(k, &fconsts, &q, &[&sub.buf, &dx.buf, m], step.gpu().grid(q.total.div_ceil(4), wg));
    }
    let q = stride_params(dx, sub, n * c * sub.shape[2] * w.div_ceil(4));
    if !rows_whole {
        return step.dispatch(&SCATTER, &fconsts, &q, &[&sub.buf, &dx.buf, m], step.gpu().grid(q.total, wg));
    }
    // scatter4 reads the mask as vec4s; unmasked, a 4-float buffer fills the binding (a vec4
    // binding needs 16 bytes, which sub need not have).
    let m4 = f.mask.cloned().unwrap_or_else(|| Tensor::empty(step.gpu(), &[4]));
    step.dispatch(&SCATTER4, &fconsts, &q, &[&sub.buf, &dx.buf, &m4.buf], step.gpu().grid(q.total, wg))
}
