//! Pointwise convolution (1x1, stride 1, no padding, groups 1; `shaders/conv2d_fast.wgsl`) as a
//! batched register-tiled GEMM, 8 rows x 4 columns per invocation. Forward is W x X[n],
//! backward_input W^T x dY[n], backward_weight dY[n] x X[n]^T per chunk of pixels, chunks then
//! summed in order. Where strides and sizes allow (multiples of 4), `gemm4` reads vec4s; `gemm`
//! reads floats at any strides.

use super::general::{launch, WEIGHT_SUM};
use super::{fast_paths, Conv2d, Fuse, Params};
use crate::error::Result;
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

// Every gemm also binds a fused ReLU's mask (7, or 8 as vec4); see `Fuse`.
const GEMM: Kernel = kernel!("conv2d_fast.wgsl", "gemm", [1: Read, 2: Read, 3: ReadWrite, 7: Read]);
// gemm4 reads A as vec4 (binding 5) and B both as floats (2) and as vec4 (4).
const GEMM4: Kernel = kernel!("conv2d_fast.wgsl", "gemm4", [5: Read, 2: Read, 4: Read, 3: ReadWrite, 7: Read]);
// The same with vec4 stores (binding 6) where output rows are whole vec4s.
const GEMM4V: Kernel = kernel!("conv2d_fast.wgsl", "gemm4v", [5: Read, 2: Read, 4: Read, 6: ReadWrite, 8: Read]);

/// Parameters of the `gemm` kernel in conv2d_fast.wgsl (see there for the meaning).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    k: u32,
    j: u32,
    mtiles: u32,
    sam: u32,
    sak: u32,
    sbk: u32,
    sbj: u32,
    a_batch: u32,
    b_batch: u32,
    c_batch: u32,
    kchunks: u32,
    kchunk: u32,
    _pad: [u32; 3],
}

/// Rows of C per gemm invocation.
const GEMM_ROWS: usize = 8;

/// A 1x1 convolution without stride, padding or groups is a matrix product per image.
pub(super) fn is_pointwise(w: &[usize], p: &Conv2d) -> bool {
    w[2] == 1 && w[3] == 1 && p.stride == 1 && p.padding == 0 && p.groups == 1 && fast_paths()
}

/// How many chunks the pointwise weight gradient splits N*HW into (for tests).
pub fn pointwise_weight_chunks(x: &[usize], cout: usize) -> usize {
    x[0] * pointwise_weight_plan(x[0], cout, x[1], x[2] * x[3]).0
}

/// Records `gemm` over `batches` batch entries (each a chunk of k); Ok(false) when the grid
/// does not fit the adapter's limits, so the caller falls back to the general kernel.
fn gemm(step: &mut Step, mut q: GemmParams, batches: usize, bufs: [&Tensor; 3], f: Fuse) -> Result<bool> {
    // gemm4's tile has 8 rows; the scalar gemm's shrinks to the matrix.
    let k4 = q.k.is_multiple_of(4) && q.kchunk.is_multiple_of(4) && q.a_batch.is_multiple_of(4) && q.b_batch.is_multiple_of(4);
    let av = if !k4 {
        0
    } else if q.sak == 1 && q.sam.is_multiple_of(4) {
        1
    } else if q.sam == 1 && q.sak.is_multiple_of(4) && q.m.is_multiple_of(4) {
        2
    } else {
        0
    };
    let mt = if av > 0 { GEMM_ROWS } else { GEMM_ROWS.min(q.m as usize) };
    q.mtiles = (q.m as usize).div_ceil(mt) as u32;
    let bv = if q.sbj == 1 && q.sbk.is_multiple_of(4) {
        1
    } else if q.sbk == 1 && q.sbj.is_multiple_of(4) {
        2
    } else {
        0
    };
    // Two column groups per tile where B rows are vec4s along j (forward, backward_input):
    // fewer loads per multiply-add, measured 10-20% faster on lavapipe.
    let jv = if av > 0 && bv == 1 { 2 } else { 1 };
    let jtiles = (q.j as usize).div_ceil(4 * jv);
    // Lanes share the rows, so a workgroup only spans columns; keep it no wider than needed.
    let wg = (jtiles.next_power_of_two().min(64) as u32).min(step.gpu().wg1d());
    let groups = [jtiles.div_ceil(wg as usize), batches * q.mtiles as usize, 1];
    let max = step.gpu().limits.max_compute_workgroups_per_dimension as usize;
    if groups[0] > max || groups[1] > max {
        return Ok(false);
    }
    let groups = groups.map(|g| g as u32);
    let m = &f.mask_or(bufs[0]).buf;
    let bufs4 = [&bufs[0].buf, &bufs[1].buf, &bufs[1].buf, &bufs[2].buf, m];
    let bufs = [&bufs[0].buf, &bufs[1].buf, &bufs[2].buf, m];
    let [r, mk] = f.consts();
    if av > 0 {
        let c = [("WG", wg as f64), ("AV", av as f64), ("BV", bv as f64), ("JV", jv as f64), r, mk];
        let whole_rows = q.j.is_multiple_of(4) && q.c_batch.is_multiple_of(4);
        step.dispatch(if whole_rows { &GEMM4V } else { &GEMM4 }, &c, &q, &bufs4, groups)?;
    } else {
        step.dispatch(&GEMM, &[("WG", wg as f64), ("MT", mt as f64), r, mk], &q, &bufs, groups)?;
    }
    Ok(true)
}

/// Y[n] = W [Cout, Cin] x X[n] [Cin, HW]; Ok(false) where [`gemm`] does not fit.
pub(super) fn pointwise_forward(step: &mut Step, q: &Params, x: &Tensor, w: &Tensor, f: Fuse, y: &Tensor) -> Result<bool> {
    let (cin, cout, hw) = (q.cin, q.cout, q.h * q.w);
    let g = GemmParams { m: cout, k: cin, j: hw, sam: cin, sak: 1, sbk: hw, sbj: 1, ..Default::default() };
    let g = GemmParams { b_batch: cin * hw, c_batch: cout * hw, kchunks: 1, kchunk: cin, ..g };
    gemm(step, g, q.n as usize, [w, x, y], f)
}

/// dX[n] = W^T [Cin, Cout] x dY[n] [Cout, HW]; Ok(false) where [`gemm`] does not fit.
pub(super) fn pointwise_backward_input(step: &mut Step, q: &Params, dy: &Tensor, w: &Tensor, f: Fuse, dx: &Tensor) -> Result<bool> {
    let (cin, cout, hw) = (q.cin, q.cout, q.h * q.w);
    let g = GemmParams { m: cin, k: cout, j: hw, sam: 1, sak: cin, sbk: hw, sbj: 1, ..Default::default() };
    let g = GemmParams { b_batch: cout * hw, c_batch: cin * hw, kchunks: 1, kchunk: cout, ..g };
    gemm(step, g, q.n as usize, [w, dy, dx], f)
}

/// Each image's pixels are split into chunks of at least this many...
const GEMM_MIN_CHUNK: usize = 128;
/// ...aiming for about this many gemm invocations in all.
const GEMM_ITEMS: usize = 1 << 14;

/// The split of a pointwise weight gradient's sum over N*HW: (chunks per image, chunk length).
/// A function of the shapes only, so the summation order never changes for a given shape.
fn pointwise_weight_plan(n: usize, cout: usize, cin: usize, hw: usize) -> (usize, usize) {
    let per_chunk = cout.div_ceil(GEMM_ROWS) * cin.div_ceil(4);
    let want = GEMM_ITEMS.div_ceil(per_chunk * n).max(1);
    let kchunks = want.min(hw / GEMM_MIN_CHUNK).max(1);
    let kchunk = hw.div_ceil(kchunks).next_multiple_of(4);
    (hw.div_ceil(kchunk), kchunk)
}

/// dW[co, ci] = sum over n, p of dY[n, co, p] * X[n, ci, p]: gemm per chunk of pixels into
/// partial sums, then weight_sum adds the chunks in order.
pub(super) fn pointwise_weight(step: &mut Step, q: &Params, x: &Tensor, dy: &Tensor, relu: bool, dw: &Tensor) -> Result<bool> {
    let (n, cin, cout, hw) = (q.n as usize, q.cin as usize, q.cout as usize, (q.h * q.w) as usize);
    let (kchunks, kchunk) = pointwise_weight_plan(n, cout, cin, hw);
    let chunks = n * kchunks;
    let u = |v: usize| v as u32;
    let g = GemmParams {
        m: u(cout),
        k: u(hw),
        j: u(cin),
        sam: u(hw),
        sak: 1,
        sbk: 1,
        sbj: u(hw),
        a_batch: u(cout * hw),
        b_batch: u(cin * hw),
        c_batch: u(cout * cin),
        kchunks: u(kchunks),
        kchunk: u(kchunk),
        ..Default::default()
    };
    if chunks == 1 {
        return gemm(step, g, 1, [dy, x, dw], Fuse::relu(relu));
    }
    let partial = Tensor::empty(step.gpu(), &[chunks, cout * cin]);
    if !gemm(step, g, chunks, [dy, x, &partial], Fuse::relu(relu))? {
        return Ok(false);
    }
    let s = Params { nw: u(cout * cin), chunks: u(chunks), total: u(cout * cin), ..Params::default() };
    launch(step, &WEIGHT_SUM, 1, Fuse::NONE, &s, &[&partial, dw])?;
    Ok(true)
}
