//! 2-D convolution, NCHW, f32, no bias: kernel KHxKW, stride, symmetric zero padding,
//! dilation, groups. Weight [Cout, Cin/groups, KH, KW]. Covers dense, 1x1 pointwise,
//! depthwise (groups = channels) and dilated convolutions. Shader: `shaders/conv2d.wgsl`.
//!
//! - forward: register tile of up to 4 output channels x 4 output pixels per invocation.
//! - backward_input: a gather (no atomics), tile of up to 4 input channels x 4 input pixels
//!   one stride apart, so the tile shares every stride test.
//! - backward_weight: the sum over N*Ho*Wo is long while the weight may be tiny (depthwise),
//!   so it is split into fixed chunks of output rows summed in order into a scratch buffer,
//!   then a second dispatch sums the chunks in order. Deterministic, and parallel even for 144
//!   weights. Tile: up to 4 output channels sharing each x load.
//!
//! Fast paths (`shaders/conv2d_fast.wgsl`), chosen from the shape; everything else falls back
//! to the kernels above:
//! - 1x1, stride 1, no padding, groups 1 (pointwise): a batched register-tiled GEMM, 8 rows x 4
//!   columns per invocation. Forward is W x X[n], backward_input W^T x dY[n], backward_weight
//!   dY[n] x X[n]^T per chunk of pixels, chunks then summed in order. Where strides and sizes
//!   allow (multiples of 4), `gemm4` reads vec4s; `gemm` reads floats at any strides.
//! - 1x1, stride > 1, no padding, groups 1 (FactorizedReduce; `shaders/conv2d_stride.wgsl`):
//!   the pointwise GEMM on a gathered copy of the stride-grid pixels (forward, weight gradient),
//!   or into one that a scatter spreads over dx with zeros between (input gradient).
//! - depthwise (groups = Cin = Cout), square kernel, stride 1 or 2 (`shaders/conv2d_rows.wgsl`):
//!   8 outputs in each of R rows D apart per invocation (R = 4 for stride 1, 2 for stride 2),
//!   each input row segment and each weight loaded once for all taps of all R rows. backward_input is the same kernel on dy with the kernel turned
//!   by 180 degrees (stride 1 makes the input gradient a correlation).
//! - dense (groups 1), square kernel, stride 1 (same shader): 8 output channels x 8 outputs of
//!   a row per invocation; backward_input is the same kernel on dy, flipped and transposed.
//! - backward_weight of both (same shader, `weight_rows`): per image, tile of up to 4 output
//!   channels, input channel and kernel row, a sum over the plane that reuses each loaded dy
//!   and input segment for all K taps and channels; then weight_sum over the images in order.
//!   Where input and output rows are whole vec4s (28 wide at stride 1), `weight_rows4` loads
//!   them as vec4s: a quarter of the loads, ~1.8x faster on lavapipe.
//!
//! `CELLNAS_CONV_GENERIC=1` turns the fast paths off, to compare them with the kernels above;
//! an adapter's autotune cache may turn them off per pass and shape class (crate::autotune).
//!
//! ReLU -> conv fused (`forward_with`, `backward_input_with`, `backward_weight_with`; DARTS
//! puts a ReLU in front of every conv op): every kernel above reads its input through max(x, 0)
//! or masks the input gradient it stores by x > 0, chosen by override constants, so the fused
//! pass is the plain pass's kernel and the graph never stores relu(x) (see `Fuse`).
//!
//! `forward_simple` / `backward_input_simple` compute one element per invocation: the readable
//! statement of the math, tested against the reference like the tiled ones.

use super::{OpCase, Pass, BENCH_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};

const FORWARD: Kernel = kernel!("conv2d.wgsl", "forward", [1: Read, 2: Read, 3: ReadWrite]);
const FORWARD_SIMPLE: Kernel = kernel!("conv2d.wgsl", "forward_simple", [1: Read, 2: Read, 3: ReadWrite]);
// The input-gradient kernels also bind the pre-ReLU input (4) for a fused ReLU's mask.
const BACKWARD_INPUT: Kernel = kernel!("conv2d.wgsl", "backward_input", [1: Read, 2: Read, 3: ReadWrite, 4: Read]);
const BACKWARD_INPUT_SIMPLE: Kernel = kernel!("conv2d.wgsl", "backward_input_simple", [1: Read, 2: Read, 3: ReadWrite, 4: Read]);
const WEIGHT_PARTIAL: Kernel = kernel!("conv2d.wgsl", "weight_partial", [1: Read, 2: Read, 3: ReadWrite]);
const WEIGHT_SUM: Kernel = kernel!("conv2d.wgsl", "weight_sum", [1: Read, 3: ReadWrite]);
// Every gemm also binds a fused ReLU's mask (7, or 8 as vec4); see `Fuse`.
const GEMM: Kernel = kernel!("conv2d_fast.wgsl", "gemm", [1: Read, 2: Read, 3: ReadWrite, 7: Read]);
// gemm4 reads A as vec4 (binding 5) and B both as floats (2) and as vec4 (4).
const GEMM4: Kernel = kernel!("conv2d_fast.wgsl", "gemm4", [5: Read, 2: Read, 4: Read, 3: ReadWrite, 7: Read]);
// The same with vec4 stores (binding 6) where output rows are whole vec4s.
const GEMM4V: Kernel = kernel!("conv2d_fast.wgsl", "gemm4v", [5: Read, 2: Read, 4: Read, 6: ReadWrite, 8: Read]);

/// Pixels per register tile (fixed in the shader).
const TILE_X: usize = 4;
/// Most channels per register tile (the shader has four accumulators).
const TILE_C: usize = 4;
/// backward_weight aims for about this many stage-1 invocations...
const WEIGHT_ITEMS: usize = 1 << 17;
/// ...but never chunks of fewer output positions than this, where stage 2 would cost as much
/// as stage 1.
const MIN_CHUNK: usize = 32;

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

fn launch(step: &mut Step, k: &Kernel, ct: usize, f: Fuse, params: &Params, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(params.total, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    let [r, m] = f.consts();
    step.dispatch(k, &[("WG", wg as f64), ("CT", ct as f64), r, m], params, &bufs, groups)
}

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

// The row kernels bind a fused ReLU's mask as floats (6) and, depthwise and dense, as vec4s (7).
const DEPTHWISE: Kernel = kernel!("conv2d_rows.wgsl", "depthwise", [1: Read, 2: Read, 3: ReadWrite, 6: Read, 7: Read]);
const DENSE: Kernel = kernel!("conv2d_rows.wgsl", "dense", [1: Read, 2: Read, 3: ReadWrite, 6: Read, 7: Read]);
const WEIGHT_ROWS: Kernel = kernel!("conv2d_rows.wgsl", "weight_rows", [1: Read, 2: Read, 3: ReadWrite]);
const WEIGHT_ROWS4: Kernel = kernel!("conv2d_rows.wgsl", "weight_rows4", [4: Read, 5: Read, 3: ReadWrite]);
const DEPTHWISE_T: Kernel = kernel!("conv2d_rows.wgsl", "depthwise_t", [1: Read, 2: Read, 3: ReadWrite, 6: Read]);

/// Register room of conv2d_rows.wgsl: an input row segment (SEG) and K accumulators (KMAX).
const SEG: usize = 24;
const KMAX: usize = 13;

/// The row kernels handle strides 1 and 2 where the 8-output row segment fits the registers.
fn rows_fit(k: usize, p: &Conv2d) -> bool {
    (p.stride == 1 || p.stride == 2) && k <= KMAX && 7 * p.stride + 1 + (k - 1) * p.dilation <= SEG
}

/// Parameters of conv2d_rows.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DwParams {
    c: u32,
    ih: u32,
    iw: u32,
    oh: u32,
    ow: u32,
    pad: u32,
    xtiles: u32,
    tiles: u32,
    pairs: u32,
    cin: u32,
    cout: u32,
    ctiles: u32,
    so: u32,
    si: u32,
    cin_g: u32,
    cout_g: u32,
}

/// Depthwise (one input and one output channel per group), square kernel, stride 1 or 2, and
/// an input row segment that fits the shader's registers.
fn is_depthwise(x: &[usize], w: &[usize], p: &Conv2d) -> bool {
    p.groups == x[1] && w[0] == x[1] && w[2] == w[3] && rows_fit(w[2], p) && fast_paths()
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

/// depthwise_t (stride 2): its dy segment 8 + LO + HI fits the registers.
fn transposed_fits(w: &[usize], p: &Conv2d) -> bool {
    let s = p.stride;
    s > 1 && 8 + ((w[2] - 1) * p.dilation).div_ceil(s) + p.padding.div_ceil(s) <= SEG
}

/// Records the depthwise kernel from `input` planes [N*C, ih, iw] to `output` planes with
/// stride `s`, dilation `dil` and padding `pad`; `flip` turns the kernel by 180 degrees.
#[allow(clippy::too_many_arguments)]
fn depthwise(step: &mut Step, input: &Tensor, w: &Tensor, s: usize, dil: usize, pad: usize, flip: bool, f: Fuse, output: &Tensor) -> Result<()> {
    let [n, c, ih, iw] = input.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    let (oh, ow) = (output.shape[2], output.shape[3]);
    let xtiles = ow.div_ceil(8);
    let u = |v: usize| v as u32;
    let q = DwParams { c: u(c), ih: u(ih), iw: u(iw), oh: u(oh), ow: u(ow), pad: u(pad), xtiles: u(xtiles), ..Default::default() };
    // Row groups (oy, oy + dil, ...): blocks of rows*dil rows hold dil groups.
    let rows = depthwise_rows(s);
    let pairs = oh.div_ceil(rows * dil) * dil;
    let q = DwParams { tiles: u(n * c * pairs * xtiles), pairs: u(pairs), ..q };
    let wg = step.gpu().wg1d();
    let k = w.shape[2] as f64;
    let [r, m] = row_consts(f, ow);
    let consts = [("WG", wg as f64), ("K", k), ("D", dil as f64), ("S", s as f64), ("FLIP", flip as u32 as f64), ("R", rows as f64), r, m];
    let groups = step.gpu().grid(q.tiles, wg);
    let (m, m4) = row_masks(step, f, ow, w);
    step.dispatch(&DEPTHWISE, &consts, &q, &[&input.buf, &w.buf, &output.buf, &m.buf, &m4.buf], groups)
}

/// Output rows per depthwise invocation: more rows share each loaded input row and weight
/// (stride 1: 4 rows measured 25-50% faster than 2 on lavapipe); stride 2 keeps 2, where 4
/// rows was not faster.
fn depthwise_rows(stride: usize) -> usize {
    if stride == 1 { 4 } else { 2 }
}

/// Records depthwise_t: dx planes from dy planes for stride > 1, one dispatch per residue of
/// (iy, ix) mod stride (each writes its own pixels).
fn depthwise_t(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, f: Fuse, dx: &Tensor) -> Result<()> {
    let [n, c, h, wd] = dx.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    let (oh, ow, s) = (dy.shape[2], dy.shape[3], p.stride);
    let u = |v: usize| v as u32;
    let wg = step.gpu().wg1d();
    for ry in 0..s.min(h) {
        for rx in 0..s.min(wd) {
            let (rows, xtiles) = ((h - ry).div_ceil(s), (wd - rx).div_ceil(s).div_ceil(8));
            let q = DwParams { c: u(c), ih: u(oh), iw: u(ow), oh: u(h), ow: u(wd), xtiles: u(xtiles), pairs: u(rows), ..Default::default() };
            let q = DwParams { tiles: u(n * c * rows * xtiles), ..q };
            let consts = [
                ("WG", wg as f64),
                ("K", w.shape[2] as f64),
                ("D", p.dilation as f64),
                ("S", s as f64),
                ("RX", rx as f64),
                ("RY", ry as f64),
                ("PAD", p.padding as f64),
                f.consts()[0],
                f.consts()[1],
            ];
            let groups = step.gpu().grid(q.tiles, wg);
            step.dispatch(&DEPTHWISE_T, &consts, &q, &[&dy.buf, &w.buf, &dx.buf, &f.mask_or(w).buf], groups)?;
        }
    }
    Ok(())
}

/// RELU / MASK of the depthwise and dense kernels writing rows `ow` wide: the mask read as vec4s
/// (MASK = 2) where those rows are whole vec4s.
fn row_consts(f: Fuse, ow: usize) -> [(&'static str, f64); 2] {
    let [r, m] = f.consts();
    if f.mask.is_some() && ow.is_multiple_of(4) { [r, ("MASK", 2.0)] } else { [r, m] }
}

/// Buffers for the row kernels' mask bindings (floats, vec4s). A vec4 binding needs at least 16
/// bytes, which neither the weights nor a tiny mask need have: where the vec4 mask is not read,
/// a 4-float buffer from the pool fills it.
fn row_masks<'a>(step: &Step, f: Fuse<'a>, ow: usize, w: &'a Tensor) -> (Tensor, Tensor) {
    let m = f.mask_or(w).clone();
    match f.mask {
        Some(x) if ow.is_multiple_of(4) => (m, x.clone()),
        _ => (m, Tensor::empty(step.gpu(), &[4])),
    }
}

/// Dense (groups 1), square kernel, stride 1 or 2, row segment within the shader's room.
fn is_dense(w: &[usize], p: &Conv2d) -> bool {
    let k = w[2];
    p.groups == 1 && k == w[3] && (k > 1 || p.padding > 0) && rows_fit(k, p) && fast_paths()
}

/// Output channels per dense invocation.
const DENSE_CHANNELS: usize = 8;

/// Records the dense kernel from `input` [N, cin, ih, iw] to `output` [N, cout, oh, ow]; weights
/// of (output o, input i) start at o*so + i*si; `flip` turns the kernel by 180 degrees.
#[allow(clippy::too_many_arguments)]
fn dense(step: &mut Step, input: &Tensor, w: &Tensor, (so, si): (usize, usize), s: usize, dil: usize, pad: usize, flip: bool, f: Fuse, output: &Tensor) -> Result<()> {
    let [n, cin, ih, iw] = input.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    let (cout, oh, ow) = (output.shape[1], output.shape[2], output.shape[3]);
    let ct = DENSE_CHANNELS.min(cout);
    let (xtiles, ctiles) = (ow.div_ceil(8), cout.div_ceil(ct));
    let u = |v: usize| v as u32;
    let q = DwParams { ih: u(ih), iw: u(iw), oh: u(oh), ow: u(ow), pad: u(pad), xtiles: u(xtiles), ..Default::default() };
    let q = DwParams { cin: u(cin), cout: u(cout), ctiles: u(ctiles), so: u(so), si: u(si), tiles: u(n * ctiles * oh * xtiles), ..q };
    let wg = step.gpu().wg1d();
    let k = w.shape[2] as f64;
    let [r, m] = row_consts(f, ow);
    let consts = [("WG", wg as f64), ("K", k), ("D", dil as f64), ("S", s as f64), ("FLIP", flip as u32 as f64), ("CT", ct as f64), r, m];
    let groups = step.gpu().grid(q.tiles, wg);
    let (m, m4) = row_masks(step, f, ow, w);
    step.dispatch(&DENSE, &consts, &q, &[&input.buf, &w.buf, &output.buf, &m.buf, &m4.buf], groups)
}

/// weight_rows sums at least about this many outputs per invocation (whole images).
const WEIGHT_ROWS_OUTPUTS: usize = 256;
/// Output channels per weight_rows invocation (the shader has four accumulator rows).
const WEIGHT_ROWS_CHANNELS: usize = 4;

/// dw for stride 1 or 2, square kernel, any groups: per chunk of images, channel tile, input channel
/// and kernel row a sum over the planes (weight_rows), then weight_sum adds the chunks in order.
fn weight_rows(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, relu: bool, dw: &Tensor) -> Result<()> {
    let [n, cin, ih, iw] = x.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    let [_, cout, oh, ow] = dy.shape[..] else { unreachable!("conv2d shapes are 4-D") };
    let (k, nw) = (dw.shape[2], dw.numel());
    let (cin_g, cout_g) = (cin / p.groups, cout / p.groups);
    let ct = WEIGHT_ROWS_CHANNELS.min(cout_g);
    let ctiles = cout_g.div_ceil(ct);
    let u = |v: usize| v as u32;
    let q = DwParams { c: u(p.groups), ih: u(ih), iw: u(iw), oh: u(oh), ow: u(ow), pad: u(p.padding), ..Default::default() };
    // Images per chunk: enough outputs per invocation to amortise it (a function of the shape
    // only, so the summation order is fixed).
    let images = WEIGHT_ROWS_OUTPUTS.div_ceil(oh * ow).clamp(1, n);
    let chunks = n.div_ceil(images);
    let items = chunks * p.groups * ctiles * cin_g * k;
    let q = DwParams { cin: u(cin), cout: u(cout), ctiles: u(ctiles), so: u(nw), si: u(images), pairs: u(n), ..q };
    let q = DwParams { cin_g: u(cin_g), cout_g: u(cout_g), tiles: u(items), ..q };
    let wg = step.gpu().wg1d();
    let relu = ("RELU", relu as u32 as f64);
    let consts = [("WG", wg as f64), ("K", k as f64), ("D", p.dilation as f64), ("S", p.stride as f64), ("CT", ct as f64), relu];
    let groups = step.gpu().grid(q.tiles, wg);
    let partial = (chunks > 1).then(|| Tensor::empty(step.gpu(), &[chunks, nw]));
    let out = partial.as_ref().unwrap_or(dw);
    if weight_rows_aligned(iw, ow) {
        let off = (4 - p.padding % 4) % 4;
        let consts = [consts[0], consts[1], consts[2], consts[3], consts[4], relu, ("OFF", off as f64)];
        step.dispatch(&WEIGHT_ROWS4, &consts, &q, &[&x.buf, &dy.buf, &out.buf], groups)?;
    } else {
        step.dispatch(&WEIGHT_ROWS, &consts, &q, &[&x.buf, &dy.buf, &out.buf], groups)?;
    }
    let Some(partial) = partial else { return Ok(()) };
    let s = Params { nw: u(nw), chunks: u(chunks), total: u(nw), ..Params::default() };
    launch(step, &WEIGHT_SUM, 1, Fuse::NONE, &s, &[&partial, dw])
}

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
fn is_strided_pointwise(w: &[usize], p: &Conv2d) -> bool {
    w[2] == 1 && w[3] == 1 && p.stride > 1 && p.padding == 0 && p.groups == 1 && fast_paths()
}

/// The same convolution as a pointwise one on the gathered pixels.
fn unstrided(p: &Conv2d) -> Conv2d {
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
fn gather(step: &mut Step, x: &Tensor, s: usize, ho: usize, wo: usize, relu: bool) -> Result<Tensor> {
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
fn scatter(step: &mut Step, sub: &Tensor, s: usize, f: Fuse, dx: &Tensor) -> Result<()> {
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

/// weight_rows4 (vec4 loads) needs input and dy rows of whole vec4s.
fn weight_rows_aligned(iw: usize, ow: usize) -> bool {
    iw.is_multiple_of(4) && ow.is_multiple_of(4)
}

/// Rows of C per gemm invocation.
const GEMM_ROWS: usize = 8;

/// `CELLNAS_CONV_GENERIC=1` turns the fast paths off (to compare them with the general kernels).
fn fast_paths() -> bool {
    std::env::var_os("CELLNAS_CONV_GENERIC").is_none_or(|v| v.is_empty() || v == "0")
}

/// A 1x1 convolution without stride, padding or groups is a matrix product per image.
fn is_pointwise(w: &[usize], p: &Conv2d) -> bool {
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

/// y = conv(x, w): x [N, Cin, H, W], w [Cout, Cin/groups, KH, KW], y [N, Cout, Ho, Wo].
pub fn forward(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, y: &Tensor) -> Result<()> {
    forward_with(step, x, w, p, false, y)
}

/// With `relu_input`, y = conv(relu(x), w) with the ReLU applied as the kernels load x (no
/// relu(x) tensor is written). Same kernel choice as without.
pub fn forward_with(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, relu_input: bool, y: &Tensor) -> Result<()> {
    let mut q = geometry(&x.shape, &w.shape, &y.shape, p, "output")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &x.shape, &w.shape, p, Pass::Forward);
    let f = Fuse::relu(relu_input);
    if fast && is_strided_pointwise(&w.shape, p) {
        let sub = gather(step, x, p.stride, y.shape[2], y.shape[3], relu_input)?;
        return forward_with(step, &sub, w, &unstrided(p), false, y);
    }
    if fast && is_pointwise(&w.shape, p) {
        // Y[n] = W [Cout, Cin] x X[n] [Cin, HW].
        let (cin, cout, hw) = (q.cin, q.cout, q.h * q.w);
        let g = GemmParams { m: cout, k: cin, j: hw, sam: cin, sak: 1, sbk: hw, sbj: 1, ..Default::default() };
        let g = GemmParams { b_batch: cin * hw, c_batch: cout * hw, kchunks: 1, kchunk: cin, ..g };
        if gemm(step, g, q.n as usize, [w, x, y], f)? {
            return Ok(());
        }
    }
    if fast && is_depthwise(&x.shape, &w.shape, p) {
        return depthwise(step, x, w, p.stride, p.dilation, p.padding, false, f, y);
    }
    if fast && is_dense(&w.shape, p) {
        let kk = w.shape[2] * w.shape[3];
        return dense(step, x, w, (q.cin as usize * kk, kk), p.stride, p.dilation, p.padding, false, f, y);
    }
    let ct = TILE_C.min(q.cout_g as usize);
    q.ctiles = (q.cout_g as usize).div_ceil(ct) as u32;
    q.xtiles = (q.wo as usize).div_ceil(TILE_X) as u32;
    q.total = q.n * p.groups as u32 * q.ctiles * q.ho * q.xtiles;
    launch(step, &FORWARD, ct, f, &q, &[x, w, y])
}

/// Same result as [`forward`], one output per invocation.
pub fn forward_simple(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, y: &Tensor) -> Result<()> {
    forward_simple_with(step, x, w, p, false, y)
}

/// Same result as [`forward_with`], one output per invocation.
pub fn forward_simple_with(step: &mut Step, x: &Tensor, w: &Tensor, p: &Conv2d, relu_input: bool, y: &Tensor) -> Result<()> {
    let mut q = geometry(&x.shape, &w.shape, &y.shape, p, "output")?;
    q.total = y.numel() as u32;
    launch(step, &FORWARD_SIMPLE, 1, Fuse::relu(relu_input), &q, &[x, w, y])
}

/// dx = gradient of sum(dy * conv(x, w)) with respect to x; dx has x's shape.
pub fn backward_input(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, dx: &Tensor) -> Result<()> {
    backward_input_with(step, dy, w, p, None, dx)
}

/// The mask must have dx's shape.
fn check_mask(mask: Option<&Tensor>, dx: &Tensor) -> Result<()> {
    match mask {
        Some(m) if m.shape != dx.shape => Err(shape_err(format!("ReLU mask {:?} must have dx's shape {:?}", m.shape, dx.shape))),
        _ => Ok(()),
    }
}

/// With `relu_input: Some(x)` (the pre-ReLU input), the gradient with respect to x of
/// sum(dy * conv(relu(x), w)): the input gradient written only where x > 0 (0 at x = 0, like
/// the ReLU kernel), in the same kernels and passes as without.
pub fn backward_input_with(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, relu_input: Option<&Tensor>, dx: &Tensor) -> Result<()> {
    let mut q = geometry(&dx.shape, &w.shape, &dy.shape, p, "dy")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &dx.shape, &w.shape, p, Pass::BackwardInput);
    check_mask(relu_input, dx)?;
    let f = Fuse::mask(relu_input);
    if fast && is_strided_pointwise(&w.shape, p) {
        let sub = Tensor::empty(step.gpu(), &[q.n as usize, q.cin as usize, dy.shape[2], dy.shape[3]]);
        backward_input_with(step, dy, w, &unstrided(p), None, &sub)?;
        return scatter(step, &sub, p.stride, f, dx);
    }
    if fast && is_pointwise(&w.shape, p) {
        // dX[n] = W^T [Cin, Cout] x dY[n] [Cout, HW].
        let (cin, cout, hw) = (q.cin, q.cout, q.h * q.w);
        let g = GemmParams { m: cin, k: cout, j: hw, sam: 1, sak: cin, sbk: hw, sbj: 1, ..Default::default() };
        let g = GemmParams { b_batch: cout * hw, c_batch: cin * hw, kchunks: 1, kchunk: cout, ..g };
        if gemm(step, g, q.n as usize, [w, dy, dx], f)? {
            return Ok(());
        }
    }
    // With stride 1 the input gradient is the same correlation of dy with the kernel turned by
    // 180 degrees and padding (K-1)*D - pad on each side.
    let span = (w.shape[2] - 1) * p.dilation;
    let flipped = fast && p.stride == 1 && p.padding <= span;
    if is_depthwise(&dx.shape, &w.shape, p) && flipped {
        return depthwise(step, dy, w, 1, p.dilation, span - p.padding, true, f, dx);
    }
    if fast && is_depthwise(&dx.shape, &w.shape, p) && transposed_fits(&w.shape, p) {
        return depthwise_t(step, dy, w, p, f, dx);
    }
    if is_dense(&w.shape, p) && flipped {
        let kk = w.shape[2] * w.shape[3];
        return dense(step, dy, w, (kk, q.cin as usize * kk), 1, p.dilation, span - p.padding, true, f, dx);
    }
    let ct = TILE_C.min(q.cin_g as usize);
    q.ctiles = (q.cin_g as usize).div_ceil(ct) as u32;
    // Per row: for each residue r < stride, tiles of 4 pixels r, r+s, r+2s, r+3s, ...
    let s = p.stride;
    q.xtiles = (s * (dx.shape[3].div_ceil(s)).div_ceil(TILE_X)) as u32;
    q.total = q.n * p.groups as u32 * q.ctiles * q.h * q.xtiles;
    launch(step, &BACKWARD_INPUT, ct, f, &q, &[dy, w, dx, f.mask_or(w)])
}

/// Same result as [`backward_input`], one element per invocation.
pub fn backward_input_simple(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, dx: &Tensor) -> Result<()> {
    backward_input_simple_with(step, dy, w, p, None, dx)
}

/// Same result as [`backward_input_with`], one element per invocation.
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
fn pointwise_weight(step: &mut Step, q: &Params, x: &Tensor, dy: &Tensor, relu: bool, dw: &Tensor) -> Result<bool> {
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

/// dw = gradient of sum(dy * conv(x, w)) with respect to w; dw has w's shape.
pub fn backward_weight(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, dw: &Tensor) -> Result<()> {
    backward_weight_with(step, x, dy, p, false, dw)
}

/// With `relu_input`, the gradient of sum(dy * conv(relu(x), w)): the kernels read max(x, 0).
pub fn backward_weight_with(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, relu_input: bool, dw: &Tensor) -> Result<()> {
    let mut q = geometry(&x.shape, &dw.shape, &dy.shape, p, "dy")?;
    let fast = crate::autotune::conv_fast(step.gpu(), &x.shape, &dw.shape, p, Pass::BackwardWeight);
    if fast && is_strided_pointwise(&dw.shape, p) {
        let sub = gather(step, x, p.stride, dy.shape[2], dy.shape[3], relu_input)?;
        return backward_weight_with(step, &sub, dy, &unstrided(p), false, dw);
    }
    if fast && is_pointwise(&dw.shape, p) && pointwise_weight(step, &q, x, dy, relu_input, dw)? {
        return Ok(());
    }
    if fast && (is_depthwise(&x.shape, &dw.shape, p) || is_dense(&dw.shape, p)) {
        return weight_rows(step, x, dy, p, relu_input, dw);
    }
    let f = Fuse::relu(relu_input);
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

/// Plain f64 loops, written as the definition (backward passes scatter, unlike the kernels).
pub mod reference {
    use super::Conv2d;

    fn out_hw(xs: [usize; 4], ws: [usize; 4], p: &Conv2d) -> (usize, usize) {
        let o = super::out_shape(&xs, &ws, p).expect("reference: invalid conv2d shapes");
        (o[2], o[3])
    }

    /// Calls f(x index, w index, y index) for every multiply-add of the convolution.
    fn each_tap(xs: [usize; 4], ws: [usize; 4], p: &Conv2d, mut f: impl FnMut(usize, usize, usize)) {
        let [n, cin, h, w] = xs;
        let [cout, cin_g, kh, kw] = ws;
        let (ho, wo) = out_hw(xs, ws, p);
        let cout_g = cout / p.groups;
        for b in 0..n {
            for co in 0..cout {
                let g = co / cout_g;
                for oy in 0..ho {
                    for ox in 0..wo {
                        let yi = ((b * cout + co) * ho + oy) * wo + ox;
                        for cl in 0..cin_g {
                            let ci = g * cin_g + cl;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                                    let ix = (ox * p.stride + kx * p.dilation) as isize - p.padding as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xi = ((b * cin + ci) * h + iy as usize) * w + ix as usize;
                                    let wi = ((co * cin_g + cl) * kh + ky) * kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn forward(x: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
        let (ho, wo) = out_hw(xs, ws, p);
        let mut y = vec![0.0; xs[0] * ws[0] * ho * wo];
        each_tap(xs, ws, p, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
        y
    }

    /// Gradient of sum(dy * forward(x, w)) with respect to x (shape xs).
    pub fn backward_input(dy: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
        let mut dx = vec![0.0; xs.iter().product()];
        each_tap(xs, ws, p, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
        dx
    }

    /// Gradient of sum(dy * forward(x, w)) with respect to w (shape ws).
    pub fn backward_weight(x: &[f64], xs: [usize; 4], dy: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
        let mut dw = vec![0.0; ws.iter().product()];
        each_tap(xs, ws, p, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
        dw
    }
}

/// One convolution at one shape. `simple` runs the one-element-per-invocation kernels;
/// `relu` is ReLU -> conv fused (reference: relu, then the convolution).
pub struct ConvCase {
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub p: Conv2d,
    pub simple: bool,
    pub relu: bool,
}

impl ConvCase {
    fn new(x: [usize; 4], cout: usize, k: [usize; 2], stride: usize, padding: usize, dilation: usize, groups: usize) -> ConvCase {
        ConvCase { x, w: [cout, x[1] / groups, k[0], k[1]], p: Conv2d { stride, padding, dilation, groups }, simple: false, relu: false }
    }
    fn y(&self) -> Vec<usize> {
        out_shape(&self.x, &self.w, &self.p).expect("conv2d case has valid shapes")
    }
    /// The input as the convolution sees it: relu(x) for a fused case.
    fn act(&self, x: &[f64]) -> Vec<f64> {
        x.iter().map(|&v| if self.relu { v.max(0.0) } else { v }).collect()
    }
    /// Multiply-adds of one pass (the same count for all three).
    fn macs(&self) -> f64 {
        let [cout, cin_g, kh, kw] = self.w;
        let y = self.y();
        (y[0] * cout * y[2] * y[3] * cin_g * kh * kw) as f64
    }
}

impl OpCase for ConvCase {
    fn name(&self) -> &'static str {
        match (self.relu, self.simple) {
            (false, false) => "conv2d",
            (false, true) => "conv2d_simple",
            (true, false) => "conv2d_fused",
            (true, true) => "conv2d_fused_simple",
        }
    }
    fn shape(&self) -> String {
        let [n, c, h, w] = self.x;
        let [co, _, kh, kw] = self.w;
        let p = &self.p;
        format!("n{n} c{c} {h}x{w} -> c{co} k{kh}x{kw} s{} p{} d{} g{}", p.stride, p.padding, p.dilation, p.groups)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.x.to_vec(), self.w.to_vec()]
    }
    fn output(&self) -> Vec<usize> {
        self.y()
    }
    /// f32 accumulation error grows with the longest sum any pass does.
    fn tolerance(&self) -> (f64, f64) {
        let [cout, cin_g, kh, kw] = self.w;
        let y = self.y();
        let longest = (cin_g * kh * kw).max(cout / self.p.groups * kh * kw).max(y[0] * y[2] * y[3]);
        let t = 1e-4 * (longest as f64 / 256.0).max(1.0);
        (t, t)
    }
    // The ReLU cases keep the default inputs: never within 1e-3 of zero, far beyond the
    // checker's finite-difference step, so no difference straddles the kink.
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::forward(&self.act(&x[0]), self.x, &x[1], self.w, &self.p)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let mut dx = reference::backward_input(dy, self.x, &x[1], self.w, &self.p);
        if self.relu {
            dx.iter_mut().zip(&x[0]).for_each(|(d, &v)| *d = if v > 0.0 { *d } else { 0.0 });
        }
        vec![dx, reference::backward_weight(&self.act(&x[0]), self.x, dy, self.w, &self.p)]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        if self.simple {
            forward_simple_with(step, &x[0], &x[1], &self.p, self.relu, y)?;
        } else {
            forward_with(step, &x[0], &x[1], &self.p, self.relu, y)?;
        }
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        let mask = self.relu.then_some(&x[0]);
        match (wrt, self.simple) {
            (0, false) => backward_input_with(step, dy, &x[1], &self.p, mask, dx),
            (0, true) => backward_input_simple_with(step, dy, &x[1], &self.p, mask, dx),
            _ => backward_weight_with(step, &x[0], dy, &self.p, self.relu, dx),
        }
    }
    fn flops(&self, _pass: Pass) -> f64 {
        2.0 * self.macs()
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let (x, w, y) = (numel(&self.x), numel(&self.w), numel(&self.y()));
        4.0 * match pass {
            Pass::Forward => x + w + y,
            Pass::BackwardInput => y + w + x,
            Pass::BackwardWeight => x + y + w,
        } as f64
    }
}

pub fn test_cases() -> Vec<Box<dyn OpCase>> {
    cases().into_iter().map(|case| Box::new(case) as Box<dyn OpCase>).collect()
}

/// Every test case again with a ReLU fused in front: each path's kernels (forward and weight
/// gradient reading relu(x), input gradient masked) at the same odd shapes.
pub fn relu_test_cases() -> Vec<Box<dyn OpCase>> {
    let simple = simple_cases().into_iter().map(|c| ConvCase { simple: true, ..c });
    cases().into_iter().chain(simple).map(|case| Box::new(ConvCase { relu: true, ..case }) as Box<dyn OpCase>).collect()
}

fn cases() -> Vec<ConvCase> {
    let c = ConvCase::new;
    [
        c([1, 3, 7, 7], 5, [3, 3], 1, 1, 1, 1),   // dense 3x3
        c([2, 3, 9, 7], 4, [3, 3], 2, 1, 1, 1),   // stride 2 on odd sizes
        c([2, 5, 6, 5], 7, [1, 1], 1, 0, 1, 1),   // 1x1 pointwise
        c([1, 5, 6, 6], 3, [1, 1], 2, 0, 1, 1),   // 1x1 stride 2: untouched input pixels
        c([2, 5, 7, 6], 5, [3, 3], 1, 1, 1, 5),   // depthwise 3x3
        c([1, 5, 9, 8], 5, [5, 5], 2, 2, 1, 5),   // depthwise 5x5 stride 2
        c([1, 5, 9, 9], 5, [3, 3], 1, 2, 2, 5),   // dilated 3x3 d2
        c([1, 5, 11, 10], 5, [5, 5], 1, 4, 2, 5), // dilated depthwise 5x5 d2
        c([2, 4, 5, 7], 6, [3, 3], 1, 1, 1, 2),   // grouped
        c([2, 4, 7, 5], 8, [3, 2], 2, 1, 2, 2),   // non-square, all options at once
        c([3, 5, 1, 1], 7, [3, 3], 1, 1, 1, 1),   // 1x1 spatial input
        c([1, 17, 7, 7], 17, [3, 3], 1, 1, 1, 1), // 17 channels
        c([1, 17, 5, 5], 17, [3, 3], 1, 1, 1, 17),
        // Pointwise gemm paths: rows (channels) and columns (pixels) not multiples of the
        // 8x4 tile, HW = 1, scalar and vec4 loads, a weight gradient over several chunks.
        c([1, 8, 5, 5], 12, [1, 1], 1, 0, 1, 1),  // vec4 A, scalar B
        c([2, 4, 4, 6], 20, [1, 1], 1, 0, 1, 1),  // vec4 A and B, vec4 stores
        c([2, 4, 4, 5], 12, [1, 1], 1, 0, 1, 1),  // vec4 stores, last tile half wide
        c([3, 8, 1, 1], 12, [1, 1], 1, 0, 1, 1),  // HW = 1
        c([2, 12, 4, 5], 5, [1, 1], 1, 0, 1, 1),  // fewer rows than a tile
        c([1, 4, 16, 20], 9, [1, 1], 1, 0, 1, 1), // weight gradient in 2 chunks, batch 1
        c([2, 12, 2, 6], 8, [1, 1], 1, 0, 1, 1),  // W^T read as vec4 along rows, half a tile
        // Depthwise stride-1 path: rows of 8-wide tiles with tails, 1x1 spatial, no padding
        // (the input gradient then pads by the full span), a 7x7 kernel.
        c([1, 3, 1, 1], 3, [3, 3], 1, 1, 1, 3),
        c([2, 4, 6, 19], 4, [5, 5], 1, 2, 1, 4),
        c([1, 2, 7, 9], 2, [3, 3], 1, 0, 1, 2),
        c([1, 2, 9, 10], 2, [7, 7], 1, 3, 1, 2),
        // Blocks of 4 rows (4*D rows for dilation D) that fill the plane exactly.
        c([2, 3, 8, 8], 3, [3, 3], 1, 2, 2, 3),
        c([1, 2, 16, 8], 2, [5, 5], 1, 2, 1, 2),
        // Dense stride-1 path: a partial channel tile, tails, dilation, no padding.
        c([2, 2, 5, 11], 12, [3, 3], 1, 1, 1, 1),
        c([1, 3, 9, 9], 4, [3, 3], 1, 2, 2, 1),
        c([1, 4, 6, 10], 9, [5, 5], 1, 0, 1, 1),
        // Small planes: the row-segment weight gradient sums several images per chunk, and
        // here more than one chunk (16 + 4 images).
        c([20, 2, 4, 4], 2, [3, 3], 1, 1, 1, 2),
        c([20, 2, 4, 4], 3, [3, 3], 1, 1, 1, 1),
        // Stride-2 row paths (depthwise forward, depthwise_t for dx, weight_rows for dw; dense
        // forward): odd sizes, batch 1, dilation 2, k5, 7x7 -> 4x4, a 1x1 plane (one residue
        // has no pixels), no padding, aligned planes with several 8-wide tiles, and a weight
        // gradient in two chunks of images.
        c([1, 3, 9, 11], 3, [3, 3], 2, 1, 1, 3),
        c([1, 2, 11, 13], 2, [3, 3], 2, 2, 2, 2),
        c([1, 2, 13, 9], 2, [5, 5], 2, 4, 2, 2),
        c([2, 3, 7, 7], 3, [5, 5], 2, 2, 1, 3),
        c([1, 2, 1, 1], 2, [3, 3], 2, 1, 1, 2),
        c([1, 2, 3, 21], 2, [3, 3], 2, 0, 1, 2),
        c([2, 4, 16, 40], 4, [3, 3], 2, 1, 1, 4),
        c([20, 2, 8, 8], 2, [3, 3], 2, 1, 1, 2),
        // weight_rows4 (rows of whole vec4s): padding 0 and 3 (segment offsets 0 and 1), a
        // 28-wide dense case with a tail tile.
        c([1, 2, 6, 12], 2, [5, 5], 1, 0, 1, 2),
        c([1, 2, 9, 8], 2, [7, 7], 1, 3, 1, 2),
        c([2, 3, 5, 28], 5, [3, 3], 1, 1, 1, 1),
        c([1, 3, 9, 19], 10, [3, 3], 2, 1, 1, 1),
        // 1x1 stride > 1 (gather / scatter around the gemm): FactorizedReduce's 27x27 and
        // 13x13 (zero4 + spread, and the scalar scatter where dx is not whole vec4s), odd
        // sizes, batch 1, scalar and vec4 gathers, rows of whole vec4s (vec4 scatter), strides
        // 3 and 4, dilation (ignored by a 1x1 kernel); with padding it takes the dense /
        // general kernels.
        c([1, 4, 27, 27], 3, [1, 1], 2, 0, 1, 1),
        c([2, 6, 13, 13], 5, [1, 1], 2, 0, 1, 1),
        c([1, 3, 13, 13], 2, [1, 1], 2, 0, 1, 1),
        c([2, 3, 7, 9], 4, [1, 1], 2, 0, 1, 1),
        c([2, 4, 8, 12], 6, [1, 1], 2, 0, 1, 1),
        c([1, 3, 28, 28], 4, [1, 1], 2, 0, 1, 1),
        c([1, 2, 10, 8], 3, [1, 1], 3, 0, 1, 1),
        c([1, 2, 9, 8], 3, [1, 1], 4, 0, 1, 1),
        c([1, 3, 7, 7], 2, [1, 1], 2, 0, 2, 1),
        c([1, 2, 6, 5], 3, [1, 1], 2, 0, 1, 1),   // zero4 + spread with scalar loads
        c([1, 5, 6, 6], 3, [1, 1], 2, 1, 1, 1),
    ]
    .into()
}

/// The fast cases again, on the one-element-per-invocation kernels (backward_weight has one).
pub fn simple_test_cases() -> Vec<Box<dyn OpCase>> {
    simple_cases().into_iter().map(|case| Box::new(ConvCase { simple: true, ..case }) as Box<dyn OpCase>).collect()
}

fn simple_cases() -> Vec<ConvCase> {
    let c = ConvCase::new;
    [
        c([1, 3, 7, 7], 5, [3, 3], 1, 1, 1, 1),
        c([2, 3, 9, 7], 4, [3, 3], 2, 1, 1, 1),
        c([1, 5, 11, 10], 5, [5, 5], 1, 4, 2, 5),
        c([2, 4, 7, 5], 8, [3, 2], 2, 1, 2, 2),
        c([3, 5, 1, 1], 7, [3, 3], 1, 1, 1, 1),
    ]
    .into()
}

pub fn bench_cases() -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<Box<dyn OpCase>> = Vec::new();
    for &x in BENCH_SHAPES {
        let ch = x[1];
        v.push(Box::new(ConvCase::new(x, ch, [3, 3], 1, 1, 1, 1))); // dense 3x3
        v.push(Box::new(ConvCase::new(x, ch, [1, 1], 1, 0, 1, 1))); // pointwise
        v.push(Box::new(ConvCase::new(x, ch, [3, 3], 1, 1, 1, ch))); // depthwise 3x3
        v.push(Box::new(ConvCase::new(x, ch, [5, 5], 1, 2, 1, ch))); // depthwise 5x5
        v.push(Box::new(ConvCase::new(x, ch, [3, 3], 1, 2, 2, ch))); // dilated depthwise 3x3
        // Reduction cells: the first depthwise conv of sep_conv / dil_conv has stride 2.
        v.push(Box::new(ConvCase::new(x, ch, [3, 3], 2, 1, 1, ch)));
        v.push(Box::new(ConvCase::new(x, ch, [5, 5], 2, 2, 1, ch)));
        v.push(Box::new(ConvCase::new(x, ch, [3, 3], 2, 2, 2, ch)));
        v.push(Box::new(ConvCase::new(x, ch, [5, 5], 2, 4, 2, ch)));
    }
    // FactorizedReduce (skip_connect in reduction cells): 1x1 stride 2 on the input and on the
    // input cropped by one pixel.
    for (x, cout) in [([64, 32, 28, 28], 8), ([64, 32, 27, 27], 8), ([64, 64, 14, 14], 16), ([64, 64, 13, 13], 16)] {
        v.push(Box::new(ConvCase::new(x, cout, [1, 1], 2, 0, 1, 1)));
    }
    v
}

/// The convolutions DARTS runs behind a ReLU, fused, at supernet shapes: the cell
/// preprocessing's pointwise convs, every first depthwise conv of sep_conv / dil_conv (stride 1
/// and 2), FactorizedReduce's strided 1x1s.
pub fn relu_bench_cases() -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<ConvCase> = Vec::new();
    for &x in BENCH_SHAPES {
        let ch = x[1];
        let c = |k: usize, s, pad, d, g| ConvCase::new(x, ch, [k, k], s, pad, d, g);
        v.extend([c(1, 1, 0, 1, 1), c(3, 1, 1, 1, ch), c(5, 1, 2, 1, ch), c(3, 1, 2, 2, ch), c(3, 2, 1, 1, ch), c(5, 2, 2, 1, ch)]);
    }
    for (x, cout) in [([64, 32, 28, 28], 8), ([64, 32, 27, 27], 8), ([64, 64, 14, 14], 16), ([64, 64, 13, 13], 16)] {
        v.push(ConvCase::new(x, cout, [1, 1], 2, 0, 1, 1));
    }
    v.into_iter().map(|c| Box::new(ConvCase { relu: true, ..c }) as Box<dyn OpCase>).collect()
}
