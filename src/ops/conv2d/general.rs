//! The general kernels (`shaders/conv2d.wgsl`): any kernel size, stride, padding, dilation and
//! groups. Every shape the fast paths do not take ends here, and the fast paths are tested
//! against the same reference.
//!
//! - forward: register tile of up to 4 output channels x 4 output pixels per invocation.
//! - backward_input: a gather (no atomics), tile of up to 4 input channels x 4 input pixels
//!   one stride apart, so the tile shares every stride test.
//! - backward_weight: the sum over N*Ho*Wo is long while the weight may be tiny (depthwise),
//!   so it is split into fixed chunks of output rows summed in order into a scratch buffer,
//!   then a second dispatch sums the chunks in order. Deterministic, and parallel even for 144
//!   weights. Tile: up to 4 output channels sharing each x load.
//!
//! `forward_simple` / `backward_input_simple` compute one element per invocation: the readable
//! statement of the math, tested against the reference like the tiled ones.

use super::{check_mask, geometry, out_shape, Conv2d, Fuse, Params};
use crate::error::Result;
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const FORWARD: Kernel = kernel!("conv2d.wgsl", "forward", [1: Read, 2: Read, 3: ReadWrite]);
const FORWARD_SIMPLE: Kernel = kernel!("conv2d.wgsl", "forward_simple", [1: Read, 2: Read, 3: ReadWrite]);
// The input-gradient kernels also bind the pre-ReLU input (4) for a fused ReLU's mask.
const BACKWARD_INPUT: Kernel = kernel!("conv2d.wgsl", "backward_input", [1: Read, 2: Read, 3: ReadWrite, 4: Read]);
const BACKWARD_INPUT_SIMPLE: Kernel = kernel!("conv2d.wgsl", "backward_input_simple", [1: Read, 2: Read, 3: ReadWrite, 4: Read]);
const WEIGHT_PARTIAL: Kernel = kernel!("conv2d.wgsl", "weight_partial", [1: Read, 2: Read, 3: ReadWrite]);
pub(super) const WEIGHT_SUM: Kernel = kernel!("conv2d.wgsl", "weight_sum", [1: Read, 3: ReadWrite]);

/// Pixels per register tile (fixed in the shader).
const TILE_X: usize = 4;
/// Most channels per register tile (the shader has four accumulators).
const TILE_C: usize = 4;
/// backward_weight aims for about this many stage-1 invocations...
const WEIGHT_ITEMS: usize = 1 << 17;
/// ...but never chunks of fewer output positions than this, where stage 2 would cost as much
/// as stage 1.
const MIN_CHUNK: usize = 32;

pub(super) fn launch(step: &mut Step, k: &Kernel, ct: usize, f: Fuse, params: &Params, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(params.total, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    let [r, m] = f.consts();
    step.dispatch(k, &[("WG", wg as f64), ("CT", ct as f64), r, m], params, &bufs, groups)
}

/// The tiled forward on `q` from [`geometry`].
pub(super) fn forward(step: &mut Step, mut q: Params, x: &Tensor, w: &Tensor, p: &Conv2d, f: Fuse, y: &Tensor) -> Result<()> {
    let ct = TILE_C.min(q.cout_g as usize);
    q.ctiles = (q.cout_g as usize).div_ceil(ct) as u32;
    q.xtiles = (q.wo as usize).div_ceil(TILE_X) as u32;
    q.total = q.n * p.groups as u32 * q.ctiles * q.ho * q.xtiles;
    launch(step, &FORWARD, ct, f, &q, &[x, w, y])
}

/// The tiled input gradient (a gather) on `q` from [`geometry`].
pub(super) fn backward_input(step: &mut Step, mut q: Params, dy: &Tensor, w: &Tensor, p: &Conv2d, f: Fuse, dx: &Tensor) -> Result<()> {
    let ct = TILE_C.min(q.cin_g as usize);
    q.ctiles = (q.cin_g as usize).div_ceil(ct) as u32;
    // Per row: for each residue r < stride, tiles of 4 pixels r, r+s, r+2s, r+3s, ...
    let s = p.stride;
    q.xtiles = (s * (dx.shape[3].div_ceil(s)).div_ceil(TILE_X)) as u32;
    q.total = q.n * p.groups as u32 * q.ctiles * q.h * q.xtiles;
    launch(step, &BACKWARD_INPUT, ct, f, &q, &[dy, w, dx, f.mask_or(w)])
}

/// The weight gradient in chunks of output rows, then the chunks summed in order, on `q` from
/// [`geometry`].
pub(super) fn backward_weight(step: &mut Step, mut q: Params, x: &Tensor, dy: &Tensor, p: &Conv2d, f: Fuse, dw: &Tensor) -> Result<()> {
    let (ct, ctiles, chunk, chunks) = weight_plan(&q, p.groups);
    let nw = dw.numel();
    q.ctiles = ctiles as u32;
    q.len = q.n * q.ho;
    q.chunk = chunk as u32;
    q.chunks = chunks as u32;
    q.total = (chunks * p.groups * ctiles) as u32 * q.cin_g * q.kh * q.kw;
    if chunks == 1 {
        return launch(step, &WEIGHT_PARTIAL, ct, f, &q, &[x, dy, dw]);
    }
    let partial = Tensor::empty(step.gpu(), &[chunks, nw]);
    launch(step, &WEIGHT_PARTIAL, ct, f, &q, &[x, dy, &partial])?;
    q.total = nw as u32;
    launch(step, &WEIGHT_SUM, 1, Fuse::NONE, &q, &[&partial, dw])
}

/// Same result as [`forward`](super::forward), one output per invocation.
pub fn forward_simple(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, y: &Tensor) -> Result<()> {
    forward_simple_with(step, x, w, p, false, y)
}

/// Same result as [`forward_with`](super::forward_with), one output per invocation.
pub fn forward_simple_with(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, relu_input: bool, y: &Tensor) -> Result<()> {
    let mut q = geometry(&x.shape, &w.shape, &y.shape, p, "output")?;
    q.total = y.numel() as u32;
    launch(step, &FORWARD_SIMPLE, 1, Fuse::relu(relu_input), &q, &[x, w, y])
}

/// Same result as [`backward_input`](super::backward_input), one element per invocation.
pub fn backward_input_simple(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, dx: &Tensor) -> Result<()> {
    backward_input_simple_with(step, dy, w, p, None, dx)
}

/// Same result as [`backward_input_with`](super::backward_input_with), one element per invocation.
pub fn backward_input_simple_with(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, relu_input: Option<&Tensor>, dx: &Tensor) -> Result<()> {
    let mut q = geometry(&dx.shape, &w.shape, &dy.shape, p, "dy")?;
    check_mask(relu_input, dx)?;
    q.total = dx.numel() as u32;
    let f = Fuse::mask(relu_input);
    launch(step, &BACKWARD_INPUT_SIMPLE, 1, f, &q, &[dy, w, dx, f.mask_or(w)])
}

/// backward_weight's split of the N*Ho output rows: (channel tile, channel tiles per group,
/// rows per chunk, chunks). A function of the shapes only, so the summation order (and so the
/// result, bit for bit) never changes for a given shape.
fn weight_plan(q: &Params, groups: usize) -> (usize, usize, usize, usize) {
    let (cout_g, rows, wo) = (q.cout_g as usize, (q.n * q.ho) as usize, q.wo as usize);
    let ct = TILE_C.min(cout_g);
    let ctiles = cout_g.div_ceil(ct);
    let items = groups * ctiles * (q.cin_g * q.kh * q.kw) as usize;
    let want = (WEIGHT_ITEMS / items).max(1);
    let chunk = rows.div_ceil(want).max(MIN_CHUNK.div_ceil(wo));
    (ct, ctiles, chunk, rows.div_ceil(chunk))
}

/// How many chunks backward_weight splits the batch*spatial axis into (for tests).
pub fn weight_chunks(x: &[usize], w: &[usize], p: &Conv2d) -> Result<usize> {
    let y = out_shape(x, w, p)?;
    Ok(weight_plan(&geometry(x, w, &y, p, "dy")?, p.groups).3)
}
