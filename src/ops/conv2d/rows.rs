//! Row kernels (`shaders/conv2d_rows.wgsl`), square kernel, stride 1 or 2:
//! - depthwise (groups = Cin = Cout): 8 outputs in each of R rows D apart per invocation (R = 4
//!   for stride 1, 2 for stride 2), each input row segment and each weight loaded once for all
//!   taps of all R rows. backward_input is the same kernel on dy with the kernel turned by 180
//!   degrees (stride 1 makes the input gradient a correlation); `depthwise_t` for stride 2.
//! - dense (groups 1): 8 output channels x 8 outputs of a row per invocation; backward_input is
//!   the same kernel on dy, flipped and transposed.
//! - backward_weight of both (`weight_rows`): per image, tile of up to 4 output channels, input
//!   channel and kernel row, a sum over the plane that reuses each loaded dy and input segment
//!   for all K taps and channels; then weight_sum over the images in order. Where input and
//!   output rows are whole vec4s (28 wide at stride 1), `weight_rows4` loads them as vec4s: a
//!   quarter of the loads, ~1.8x faster on lavapipe.

use super::general::{launch, WEIGHT_SUM};
use super::{fast_paths, Conv2d, Fuse, Params};
use crate::error::Result;
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

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
pub(super) fn is_depthwise(x: &[usize], w: &[usize], p: &Conv2d) -> bool {
    p.groups == x[1] && w[0] == x[1] && w[2] == w[3] && rows_fit(w[2], p) && fast_paths()
}

/// depthwise_t (stride 2): its dy segment 8 + LO + HI fits the registers.
pub(super) fn transposed_fits(w: &[usize], p: &Conv2d) -> bool {
    let s = p.stride;
    s > 1 && 8 + ((w[2] - 1) * p.dilation).div_ceil(s) + p.padding.div_ceil(s) <= SEG
}

/// Records the depthwise kernel from `input` planes [N*C, ih, iw] to `output` planes with
/// stride `s`, dilation `dil` and padding `pad`; `flip` turns the kernel by 180 degrees.
#[allow(clippy::too_many_arguments)]
pub(super) fn depthwise(step: &mut Step, input: &Tensor, w: &Tensor, s: usize, dil: usize, pad: usize, flip: bool, f: Fuse, output: &Tensor) -> Result<()> {
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
pub(super) fn depthwise_t(step: &mut Step, dy: &Tensor, w: &Tensor, p: &Conv2d, f: Fuse, dx: &Tensor) -> Result<()> {
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
pub(super) fn is_dense(w: &[usize], p: &Conv2d) -> bool {
    let k = w[2];
    p.groups == 1 && k == w[3] && (k > 1 || p.padding > 0) && rows_fit(k, p) && fast_paths()
}

/// Output channels per dense invocation.
const DENSE_CHANNELS: usize = 8;

/// Records the dense kernel from `input` [N, cin, ih, iw] to `output` [N, cout, oh, ow]; weights
/// of (output o, input i) start at o*so + i*si; `flip` turns the kernel by 180 degrees.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense(step: &mut Step, input: &Tensor, w: &Tensor, (so, si): (usize, usize), s: usize, dil: usize, pad: usize, flip: bool, f: Fuse, output: &Tensor) -> Result<()> {
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
pub(super) fn weight_rows(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Conv2d, relu: bool, dw: &Tensor) -> Result<()> {
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

/// weight_rows4 (vec4 loads) needs input and dy rows of whole vec4s.
pub(super) fn weight_rows_aligned(iw: usize, ow: usize) -> bool {
    iw.is_multiple_of(4) && ow.is_multiple_of(4)
}
