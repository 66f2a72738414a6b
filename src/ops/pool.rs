//! 2-D max and average pooling (NCHW) and global average pooling, forward and backward.
//! Shader: `shaders/pool.wgsl`.
//!
//! Semantics follow PyTorch: output size floor((H + 2p - k) / s) + 1; max pooling pads with
//! -infinity (padding never wins) and on ties the first maximum in row-major window order takes
//! the gradient; average pooling divides by the number of real elements in the window
//! (count_include_pad = false). The backward passes gather, for each input element, over the
//! outputs whose window covers it (max compares against each output's argmax, saved by
//! [`forward_with_argmax`] or recomputed by [`backward`]), so no atomics are needed and results
//! are bitwise reproducible.
//!
//! Fast paths (`shaders/pool_rows.wgsl`) for strides 1 and 2 and small windows (the network's
//! 3x3, pad 1): each invocation covers 8 columns of a few rows and loads each row segment of
//! x (or of dy and the argmax) once for all the windows that read it. Other shapes, and every
//! shape under `CELLNAS_POOL_GENERIC=1`, run the one-element-per-invocation kernels of
//! `shaders/pool.wgsl`.

use super::{OpCase, Pass, BENCH_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};

const MAX_FORWARD: Kernel = kernel!("pool.wgsl", "max_forward", [1: Read, 2: ReadWrite]);
const MAX_FORWARD_ARG: Kernel = kernel!("pool.wgsl", "max_forward_arg", [1: Read, 2: ReadWrite, 4: ReadWrite]);
const AVG_FORWARD: Kernel = kernel!("pool.wgsl", "avg_forward", [1: Read, 2: ReadWrite]);
const MAX_BACKWARD_ARG: Kernel = kernel!("pool.wgsl", "max_backward_arg", [5: Read, 3: Read, 2: ReadWrite]);
const AVG_BACKWARD: Kernel = kernel!("pool.wgsl", "avg_backward", [3: Read, 2: ReadWrite]);
const GLOBAL_AVG_FORWARD: Kernel = kernel!("pool.wgsl", "global_avg_forward", [1: Read, 2: ReadWrite]);
const GLOBAL_AVG_BACKWARD: Kernel = kernel!("pool.wgsl", "global_avg_backward", [3: Read, 2: ReadWrite]);
const AVG_ROWS: Kernel = kernel!("pool_rows.wgsl", "avg_rows", [1: Read, 2: ReadWrite]);
const MAX_ROWS: Kernel = kernel!("pool_rows.wgsl", "max_rows", [1: Read, 2: ReadWrite]);
const MAX_ROWS_ARG: Kernel = kernel!("pool_rows.wgsl", "max_rows_arg", [1: Read, 2: ReadWrite, 3: ReadWrite]);
const AVG_BACK_ROWS: Kernel = kernel!("pool_rows.wgsl", "avg_back_rows", [1: Read, 2: ReadWrite]);
const MAX_BACK_ROWS: Kernel = kernel!("pool_rows.wgsl", "max_back_rows", [1: Read, 4: Read, 2: ReadWrite]);

/// Row segment room of pool_rows.wgsl (SEG there).
const ROWS_SEG: usize = 20;

/// Whether the row kernels can take this pooling (else the general ones); an adapter's
/// autotune cache may still choose the general ones (crate::autotune::pool_rows).
pub fn fast(p: &Pool2d) -> bool {
    let generic = std::env::var_os("CELLNAS_POOL_GENERIC").is_some_and(|v| !v.is_empty() && v != "0");
    (p.stride == 1 || p.stride == 2) && 7 * p.stride + p.kernel <= ROWS_SEG && !generic
}

/// Parameters of pool_rows.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    xtiles: u32,
    rtiles: u32,
    tiles: u32,
}

/// Records a pool_rows kernel over tiles of 8 columns x `rows` rows of `cols` x `height`
/// planes (outputs forward, inputs backward).
fn launch_rows(step: &mut Step, k: &Kernel, q: &Params, p: &Pool2d, rows: usize, (height, cols): (u32, u32), bufs: &[&Tensor]) -> Result<()> {
    let (xtiles, rtiles) = ((cols as usize).div_ceil(8), (height as usize).div_ceil(rows));
    let tiles = u32::try_from(q.planes as usize * xtiles * rtiles).map_err(|_| Error::Invalid("pool2d: too many tiles".into()))?;
    let r = RowParams { planes: q.planes, h: q.h, w: q.w, oh: q.oh, ow: q.ow, xtiles: xtiles as u32, rtiles: rtiles as u32, tiles };
    let wg = step.gpu().wg1d();
    let consts = [("WG", wg as f64), ("K", p.kernel as f64), ("S", p.stride as f64), ("PAD", p.padding as f64), ("R", rows as f64)];
    let groups = step.gpu().grid(tiles, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &consts, &r, &bufs, groups)
}

/// Output rows per forward invocation: stride 2 windows share fewer input rows.
fn forward_rows(p: &Pool2d) -> usize {
    if p.stride == 1 { 4 } else { 2 }
}

/// Input rows per backward invocation (a multiple of the stride).
const BACK_ROWS: usize = 4;

/// Workgroup shape of the 2-D pooling kernels (`@workgroup_size(8, 8, 1)` in the shader).
const TILE: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    pad: u32,
    plane0: u32,
}

/// Output shape of pooling `x` ([N, C, H, W]) with `p`.
pub fn out_shape(x: &[usize], p: &Pool2d) -> Result<Vec<usize>> {
    let &[n, c, h, w] = x else {
        return Err(Error::Shape { op: "pool2d", message: format!("input must be [N, C, H, W], got {x:?}") });
    };
    if p.kernel == 0 || p.stride == 0 {
        return Err(Error::Invalid(format!("pool2d: kernel and stride must be at least 1, got {p:?}")));
    }
    // A window made only of padding would have no maximum and no average.
    if p.padding >= p.kernel {
        return Err(Error::Invalid(format!("pool2d: padding {} must be smaller than kernel {}", p.padding, p.kernel)));
    }
    if h + 2 * p.padding < p.kernel || w + 2 * p.padding < p.kernel {
        return Err(Error::Shape {
            op: "pool2d",
            message: format!("kernel {} does not fit input {h}x{w} with padding {}", p.kernel, p.padding),
        });
    }
    let o = |d: usize| (d + 2 * p.padding - p.kernel) / p.stride + 1;
    Ok(vec![n, c, o(h), o(w)])
}

fn fits_u32(op: &'static str, shape: &[usize]) -> Result<u32> {
    u32::try_from(numel(shape)).map_err(|_| Error::Shape { op, message: format!("{shape:?} has more than 2^32 elements") })
}

/// Dispatches `k` over `planes` channel planes of `cols` x `rows` (8x8 workgroups, z over
/// planes), split into several dispatches only when z would exceed the per-dimension limit.
fn launch_planes(step: &mut Step, k: &Kernel, params: Params, stride: usize, cols: usize, rows: usize, bufs: &[&Tensor]) -> Result<()> {
    let maxd = step.gpu().limits.max_compute_workgroups_per_dimension.max(1) as usize;
    let (gx, gy) = (cols.div_ceil(TILE as usize), rows.div_ceil(TILE as usize));
    if gx > maxd || gy > maxd {
        return Err(Error::Invalid(format!("pool2d: {rows}x{cols} planes exceed {maxd} workgroups per dimension")));
    }
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    let total = params.planes as usize;
    let consts = [("S", stride as f64), ("WG", step.gpu().wg1d() as f64)];
    let mut at = 0;
    while at < total {
        let n = (total - at).min(maxd);
        let p = Params { planes: n as u32, plane0: at as u32, ..params };
        step.dispatch(k, &consts, &p, &bufs, [gx as u32, gy as u32, n as u32])?;
        at += n;
    }
    Ok(())
}

/// A 1-D kernel over `total` elements (grid folded by the host; the shader uses `flat_id`).
fn launch_flat(step: &mut Step, k: &Kernel, params: Params, stride: usize, total: usize, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(total as u32, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("S", stride as f64), ("WG", wg as f64)], &params, &bufs, groups)
}

/// Checks x, the output-shaped tensor and the input-shaped tensor; params for a dispatch over
/// `total` elements.
fn pool_params(op: &'static str, x: &Tensor, p: &Pool2d, y_like: &Tensor, x_like: &Tensor) -> Result<Params> {
    let ys = out_shape(&x.shape, p)?;
    if y_like.shape != ys {
        return Err(Error::Shape { op, message: format!("output is {:?}, input {:?} with {p:?} gives {ys:?}", y_like.shape, x.shape) });
    }
    if x_like.shape != x.shape {
        return Err(Error::Shape { op, message: format!("gradient {:?} does not match input {:?}", x_like.shape, x.shape) });
    }
    fits_u32(op, &x.shape)?;
    fits_u32(op, &ys)?;
    let u = |v: usize| v as u32;
    Ok(Params {
        planes: u(x.shape[0] * x.shape[1]),
        h: u(x.shape[2]),
        w: u(x.shape[3]),
        oh: u(ys[2]),
        ow: u(ys[3]),
        k: u(p.kernel),
        pad: u(p.padding),
        plane0: 0,
    })
}

/// y = pool(x); x is [N, C, H, W], y is `out_shape(x, p)`.
pub fn forward(step: &mut Step, x: &Tensor, p: &Pool2d, y: &Tensor) -> Result<()> {
    forward_on(step, x, p, y, crate::autotune::pool_rows(step.gpu(), &x.shape, p))
}

fn forward_on(step: &mut Step, x: &Tensor, p: &Pool2d, y: &Tensor, rows: bool) -> Result<()> {
    let params = pool_params("pool2d", x, p, y, x)?;
    if rows {
        let k = if p.kind == PoolKind::Max { &MAX_ROWS } else { &AVG_ROWS };
        return launch_rows(step, k, &params, p, forward_rows(p), (params.oh, params.ow), &[x, y]);
    }
    let k = match p.kind {
        PoolKind::Max => &MAX_FORWARD,
        PoolKind::Avg => &AVG_FORWARD,
    };
    launch_flat(step, k, params, p.stride, y.numel(), &[x, y])
}

/// Max pooling forward that also writes, for each output, the index within its plane
/// (iy * W + ix) of the input it took, as u32 bits, into `argmax` (a tensor of y's shape).
/// [`backward_with_argmax`] then needs neither x nor a second look at the windows.
pub fn forward_with_argmax(step: &mut Step, x: &Tensor, p: &Pool2d, y: &Tensor, argmax: &Tensor) -> Result<()> {
    forward_with_argmax_on(step, x, p, y, argmax, crate::autotune::pool_rows(step.gpu(), &x.shape, p))
}

fn forward_with_argmax_on(step: &mut Step, x: &Tensor, p: &Pool2d, y: &Tensor, argmax: &Tensor, rows: bool) -> Result<()> {
    const OP: &str = "max_pool forward_with_argmax";
    if p.kind != PoolKind::Max {
        return Err(Error::Invalid(format!("{OP}: needs max pooling, got {:?}", p.kind)));
    }
    let params = pool_params(OP, x, p, y, x)?;
    if argmax.shape != y.shape {
        return Err(Error::Shape { op: OP, message: format!("argmax is {:?}, output is {:?}", argmax.shape, y.shape) });
    }
    if rows {
        return launch_rows(step, &MAX_ROWS_ARG, &params, p, forward_rows(p), (params.oh, params.ow), &[x, y, argmax]);
    }
    launch_flat(step, &MAX_FORWARD_ARG, params, p.stride, y.numel(), &[x, y, argmax])
}

/// Max pooling backward from the argmax saved by [`forward_with_argmax`]: each input gathers
/// dy over the outputs covering it that took it, in row-major order. `x` only gives the shape.
pub fn backward_with_argmax(step: &mut Step, x: &Tensor, dy: &Tensor, argmax: &Tensor, p: &Pool2d, dx: &Tensor) -> Result<()> {
    backward_with_argmax_on(step, x, dy, argmax, p, dx, crate::autotune::pool_rows(step.gpu(), &x.shape, p))
}

fn backward_with_argmax_on(step: &mut Step, x: &Tensor, dy: &Tensor, argmax: &Tensor, p: &Pool2d, dx: &Tensor, rows: bool) -> Result<()> {
    const OP: &str = "max_pool backward_with_argmax";
    if p.kind != PoolKind::Max {
        return Err(Error::Invalid(format!("{OP}: needs max pooling, got {:?}", p.kind)));
    }
    let params = pool_params(OP, x, p, dy, dx)?;
    if argmax.shape != dy.shape {
        return Err(Error::Shape { op: OP, message: format!("argmax is {:?}, output gradient is {:?}", argmax.shape, dy.shape) });
    }
    if rows {
        return launch_rows(step, &MAX_BACK_ROWS, &params, p, BACK_ROWS, (params.h, params.w), &[dy, argmax, dx]);
    }
    launch_planes(step, &MAX_BACKWARD_ARG, params, p.stride, x.shape[3], x.shape[2], &[argmax, dy, dx])
}

/// dx = gradient of sum(dy * pool(x)) with respect to x. Max pooling recomputes each window's
/// argmax from x (same tie rule as the forward pass) into scratch, so nothing needs saving;
/// training code that keeps the argmax from [`forward_with_argmax`] skips that.
pub fn backward(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Pool2d, dx: &Tensor) -> Result<()> {
    backward_on(step, x, dy, p, dx, crate::autotune::pool_rows(step.gpu(), &x.shape, p))
}

fn backward_on(step: &mut Step, x: &Tensor, dy: &Tensor, p: &Pool2d, dx: &Tensor, rows: bool) -> Result<()> {
    let params = pool_params("pool2d_backward", x, p, dy, dx)?;
    match p.kind {
        PoolKind::Max => {
            let y = Tensor::empty(step.gpu(), &dy.shape);
            let argmax = Tensor::empty(step.gpu(), &dy.shape);
            forward_with_argmax_on(step, x, p, &y, &argmax, rows)?;
            backward_with_argmax_on(step, x, dy, &argmax, p, dx, rows)
        }
        PoolKind::Avg if rows => launch_rows(step, &AVG_BACK_ROWS, &params, p, BACK_ROWS, (params.h, params.w), &[dy, dx]),
        PoolKind::Avg => launch_flat(step, &AVG_BACKWARD, params, p.stride, x.numel(), &[dy, dx]),
    }
}

/// [N, C, H, W] and a matching [N, C] (or [N, C, 1, 1]) tensor.
fn global_params(op: &'static str, x: &Tensor, y: &Tensor) -> Result<Params> {
    let &[n, c, h, w] = &x.shape[..] else {
        return Err(Error::Shape { op, message: format!("input must be [N, C, H, W], got {:?}", x.shape) });
    };
    if y.shape != [n, c] && y.shape != [n, c, 1, 1] {
        return Err(Error::Shape { op, message: format!("pooled tensor must be [{n}, {c}] for input {:?}, got {:?}", x.shape, y.shape) });
    }
    if h * w == 0 {
        return Err(Error::Shape { op, message: format!("no spatial elements to average in {:?}", x.shape) });
    }
    fits_u32(op, &x.shape)?;
    Ok(Params { planes: (n * c) as u32, h: h as u32, w: w as u32, ..Default::default() })
}

/// y[n, c] = mean over h, w of x[n, c, h, w].
pub fn global_avg_pool(step: &mut Step, x: &Tensor, y: &Tensor) -> Result<()> {
    let params = global_params("global_avg_pool", x, y)?;
    let wg = step.gpu().wg1d();
    let chunk = step.gpu().limits.max_compute_workgroups_per_dimension.max(1) as usize * wg as usize;
    let total = params.planes as usize;
    let mut at = 0;
    while at < total {
        let n = (total - at).min(chunk);
        let p = Params { planes: n as u32, plane0: at as u32, ..params };
        step.dispatch(&GLOBAL_AVG_FORWARD, &[("WG", wg as f64)], &p, &[&x.buf, &y.buf], [(n as u32).div_ceil(wg), 1, 1])?;
        at += n;
    }
    Ok(())
}

/// dx[n, c, h, w] = dy[n, c] / (H * W).
pub fn global_avg_pool_backward(step: &mut Step, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let params = global_params("global_avg_pool_backward", dx, dy)?;
    launch_flat(step, &GLOBAL_AVG_BACKWARD, params, 1, dx.numel(), &[dy, dx])
}

pub mod reference {
    use super::{out_shape, Pool2d, PoolKind};

    /// Real input positions of output (oy, ox)'s window: rows y0..y1, columns x0..x1.
    fn window(s: [usize; 4], p: &Pool2d, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
        let start = |o: usize| (o * p.stride) as isize - p.padding as isize;
        let (ys, xs) = (start(oy), start(ox));
        let y1 = (ys + p.kernel as isize).min(s[2] as isize) as usize;
        let x1 = (xs + p.kernel as isize).min(s[3] as isize) as usize;
        (ys.max(0) as usize, y1, xs.max(0) as usize, x1)
    }

    /// Index into x of the value output (n, c, oy, ox) takes (max) or the window's cells (avg).
    fn cells(s: [usize; 4], p: &Pool2d, plane: usize, oy: usize, ox: usize) -> Vec<usize> {
        let (y0, y1, x0, x1) = window(s, p, oy, ox);
        (y0..y1).flat_map(|y| (x0..x1).map(move |x| plane + y * s[3] + x)).collect()
    }

    /// First maximum in row-major order.
    fn argmax(x: &[f64], cells: &[usize]) -> usize {
        let mut best = cells[0];
        for &j in cells {
            if x[j] > x[best] {
                best = j;
            }
        }
        best
    }

    pub fn pool_forward(x: &[f64], s: [usize; 4], p: &Pool2d) -> Vec<f64> {
        let o = out_shape(&s, p).unwrap();
        let mut y = Vec::new();
        for nc in 0..s[0] * s[1] {
            for oy in 0..o[2] {
                for ox in 0..o[3] {
                    let cells = cells(s, p, nc * s[2] * s[3], oy, ox);
                    y.push(match p.kind {
                        PoolKind::Max => x[argmax(x, &cells)],
                        PoolKind::Avg => cells.iter().map(|&j| x[j]).sum::<f64>() / cells.len() as f64,
                    });
                }
            }
        }
        y
    }

    /// Scatters each output's gradient to the inputs it came from.
    pub fn pool_backward(x: &[f64], s: [usize; 4], dy: &[f64], p: &Pool2d) -> Vec<f64> {
        let o = out_shape(&s, p).unwrap();
        let mut dx = vec![0.0; x.len()];
        let mut i = 0;
        for nc in 0..s[0] * s[1] {
            for oy in 0..o[2] {
                for ox in 0..o[3] {
                    let cells = cells(s, p, nc * s[2] * s[3], oy, ox);
                    match p.kind {
                        PoolKind::Max => dx[argmax(x, &cells)] += dy[i],
                        PoolKind::Avg => {
                            for &j in &cells {
                                dx[j] += dy[i] / cells.len() as f64;
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
        dx
    }

    pub fn global_avg_pool(x: &[f64], s: [usize; 4]) -> Vec<f64> {
        let hw = s[2] * s[3];
        x.chunks(hw).map(|plane| plane.iter().sum::<f64>() / hw as f64).collect()
    }

    pub fn global_avg_pool_backward(dy: &[f64], s: [usize; 4]) -> Vec<f64> {
        let hw = s[2] * s[3];
        dy.iter().flat_map(|&g| std::iter::repeat_n(g / hw as f64, hw)).collect()
    }
}

struct PoolCase {
    shape: [usize; 4],
    p: Pool2d,
    /// Run the general kernels even where the row kernels apply.
    general: bool,
}

impl PoolCase {
    fn boxed(shape: [usize; 4], kind: PoolKind, kernel: usize, stride: usize, padding: usize) -> Box<dyn OpCase> {
        Box::new(PoolCase { shape, p: Pool2d { kind, kernel, stride, padding }, general: false })
    }
    fn rows(&self, gpu: &crate::gpu::Gpu) -> bool {
        crate::autotune::pool_rows(gpu, &self.shape, &self.p) && !self.general
    }
}

impl OpCase for PoolCase {
    fn name(&self) -> &'static str {
        match self.p.kind {
            PoolKind::Max => "max_pool",
            PoolKind::Avg => "avg_pool",
        }
    }
    fn shape(&self) -> String {
        let [n, c, h, w] = self.shape;
        format!("n{n} c{c} {h}x{w} k{} s{} p{}", self.p.kernel, self.p.stride, self.p.padding)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.shape.to_vec()]
    }
    fn output(&self) -> Vec<usize> {
        out_shape(&self.shape, &self.p).expect("pool case shape")
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::pool_forward(&x[0], self.shape, &self.p)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![reference::pool_backward(&x[0], self.shape, dy, &self.p)]
    }
    /// Max pooling saves its argmax, as training does; `backward` without it is covered by
    /// tests/pool.rs.
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        if self.p.kind == PoolKind::Max {
            let argmax = Tensor::empty(step.gpu(), &y.shape);
            forward_with_argmax_on(step, &x[0], &self.p, y, &argmax, self.rows(step.gpu()))?;
            return Ok(vec![argmax]);
        }
        forward_on(step, &x[0], &self.p, y, self.rows(step.gpu()))?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        match s.first() {
            Some(argmax) => backward_with_argmax_on(step, &x[0], dy, argmax, &self.p, dx, self.rows(step.gpu())),
            None => backward_on(step, &x[0], dy, &self.p, dx, self.rows(step.gpu())),
        }
    }
    /// One comparison or add per window cell of every output, in either direction.
    fn flops(&self, _pass: Pass) -> f64 {
        (numel(&self.output()) * self.p.kernel * self.p.kernel) as f64
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let (nx, ny) = (numel(&self.shape) as f64, numel(&self.output()) as f64);
        match (pass, self.p.kind) {
            (Pass::Forward, _) => 4.0 * (nx + ny),
            // Reads dy and the saved argmax.
            (_, PoolKind::Max) => 4.0 * (nx + 2.0 * ny),
            (_, PoolKind::Avg) => 4.0 * (nx + ny),
        }
    }
}

struct GlobalAvgCase([usize; 4]);

impl OpCase for GlobalAvgCase {
    fn name(&self) -> &'static str {
        "global_avg_pool"
    }
    fn shape(&self) -> String {
        let [n, c, h, w] = self.0;
        format!("n{n} c{c} {h}x{w}")
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.0.to_vec()]
    }
    fn output(&self) -> Vec<usize> {
        self.0[..2].to_vec()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::global_avg_pool(&x[0], self.0)
    }
    fn backward_ref(&self, _x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![reference::global_avg_pool_backward(dy, self.0)]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        global_avg_pool(step, &x[0], y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        global_avg_pool_backward(step, dy, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        numel(&self.0) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        4.0 * (numel(&self.0) + self.0[0] * self.0[1]) as f64
    }
}

fn pool_test_cases(kind: PoolKind) -> Vec<Box<dyn OpCase>> {
    pool_cases(kind, false)
}

fn pool_cases(kind: PoolKind, general: bool) -> Vec<Box<dyn OpCase>> {
    let boxed = |shape, kind, kernel, stride, padding| -> Box<dyn OpCase> {
        Box::new(PoolCase { shape, p: Pool2d { kind, kernel, stride, padding }, general })
    };
    vec![
        boxed([1, 3, 7, 7], kind, 3, 1, 1),
        boxed([1, 5, 7, 7], kind, 3, 2, 1),
        boxed([1, 17, 9, 7], kind, 3, 2, 1),
        // 3x3 window on a 1x1 plane: everything but the centre is padding.
        boxed([2, 5, 1, 1], kind, 3, 1, 1),
        boxed([1, 3, 1, 1], kind, 3, 2, 1),
        // No padding, and a stride larger than the window (some inputs get no gradient).
        boxed([1, 3, 8, 6], kind, 2, 2, 0),
        boxed([1, 3, 7, 7], kind, 2, 3, 1),
        // Planes wider and taller than one 8x8 workgroup tile, not multiples of it.
        boxed([1, 2, 11, 19], kind, 3, 1, 1),
        boxed([2, 1, 19, 10], kind, 3, 2, 1),
        // Row kernels: tiles of 8 columns x 2 or 4 rows, whole (16x16, 8x8 outputs) and cut
        // (tails in both directions), stride 1 and 2, a window larger than the padding allows
        // to reach (k5 p2), k2 p1.
        boxed([1, 2, 16, 16], kind, 3, 1, 1),
        boxed([2, 2, 16, 16], kind, 3, 2, 1),
        boxed([1, 3, 13, 21], kind, 3, 2, 1),
        boxed([1, 2, 10, 9], kind, 5, 1, 2),
        boxed([1, 2, 11, 12], kind, 5, 2, 2),
        boxed([1, 2, 9, 10], kind, 2, 2, 1),
    ]
}

fn pool_bench_cases(kind: PoolKind) -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().flat_map(|&s| [1, 2].map(|stride| PoolCase::boxed(s, kind, 3, stride, 1))).collect()
}

/// The test cases of both kinds on the general kernels of pool.wgsl (the fallback).
/// The pooling `p` of an `x`-shaped input, max pooling saving its argmax as training does
/// (what autotune times).
pub fn case(x: [usize; 4], p: Pool2d) -> Box<dyn OpCase> {
    Box::new(PoolCase { shape: x, p, general: false })
}

pub fn general_test_cases() -> Vec<Box<dyn OpCase>> {
    [PoolKind::Max, PoolKind::Avg].into_iter().flat_map(|kind| pool_cases(kind, true)).collect()
}

pub fn max_pool_test_cases() -> Vec<Box<dyn OpCase>> {
    pool_test_cases(PoolKind::Max)
}
pub fn max_pool_bench_cases() -> Vec<Box<dyn OpCase>> {
    pool_bench_cases(PoolKind::Max)
}
pub fn avg_pool_test_cases() -> Vec<Box<dyn OpCase>> {
    pool_test_cases(PoolKind::Avg)
}
pub fn avg_pool_bench_cases() -> Vec<Box<dyn OpCase>> {
    pool_bench_cases(PoolKind::Avg)
}
pub fn global_avg_pool_test_cases() -> Vec<Box<dyn OpCase>> {
    [[1, 3, 7, 7], [2, 5, 1, 1], [1, 17, 9, 7]].iter().map(|&s| Box::new(GlobalAvgCase(s)) as Box<dyn OpCase>).collect()
}
pub fn global_avg_pool_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&s| Box::new(GlobalAvgCase(s)) as Box<dyn OpCase>).collect()
}
