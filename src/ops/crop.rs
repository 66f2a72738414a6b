//! Spatial crop (a window of every channel plane) and its backward. FactorizedReduce uses it
//! for the path that reads `x[:, :, 1:, 1:]`. Shader: `shaders/crop.wgsl`.

use super::{fmt_shape, OpCase, Pass, BENCH_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const FORWARD: Kernel = kernel!("crop.wgsl", "crop_forward", [1: Read, 2: ReadWrite]);
const BACKWARD: Kernel = kernel!("crop.wgsl", "crop_backward", [1: Read, 2: ReadWrite]);
// The flat path (vec4 stores); the tile kernels above are the fallback.
const FORWARD4: Kernel = kernel!("crop.wgsl", "crop_forward4", [1: Read, 3: ReadWrite]);
const BACKWARD4: Kernel = kernel!("crop.wgsl", "crop_backward4", [1: Read, 3: ReadWrite]);

/// vec4s each invocation of the flat path writes.
const VEC4S_PER_INVOCATION: u32 = 2;

/// Whether a crop writing `n` values takes the flat path (vec4 stores). Public so tests can
/// assert it.
pub fn uses_flat(n: usize) -> bool {
    n.is_multiple_of(4) && n > 0
}

/// The flat path over the `n` written values (all planes in one dispatch).
fn launch_flat(step: &mut Step, k: &Kernel, p: &Params, n: usize, src: &Tensor, dst: &Tensor) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(((n / 4) as u32).div_ceil(VEC4S_PER_INVOCATION), wg);
    let consts = [("WG", wg as f64), ("KV", VEC4S_PER_INVOCATION as f64)];
    step.dispatch(k, &consts, p, &[&src.buf, &dst.buf], groups)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    top: u32,
    left: u32,
    plane0: u32,
}

/// A window of `oh x ow` at (`top`, `left`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub oh: usize,
    pub ow: usize,
}

fn params(x: &[usize], y: &[usize], c: &Crop) -> Result<Params> {
    let err = |m: String| Error::Shape { op: "crop", message: m };
    let (&[n, ch, h, w], &[yn, ych, yh, yw]) = (x, y) else {
        return Err(err(format!("expected 4-D tensors, got {x:?} and {y:?}")));
    };
    if c.top + c.oh > h || c.left + c.ow > w || c.oh == 0 || c.ow == 0 {
        return Err(err(format!("window {c:?} does not fit in {h}x{w}")));
    }
    if (yn, ych, yh, yw) != (n, ch, c.oh, c.ow) {
        return Err(err(format!("cropped tensor is {y:?}, expected [{n}, {ch}, {}, {}]", c.oh, c.ow)));
    }
    let u = |v: usize| v as u32;
    Ok(Params { planes: u(n * ch), h: u(h), w: u(w), oh: u(c.oh), ow: u(c.ow), top: u(c.top), left: u(c.left), plane0: 0 })
}

/// 8x8 tiles over the `cols` x `rows` plane being written, z over planes (split into several
/// dispatches past the grid limit).
fn launch(step: &mut Step, k: &Kernel, p: &Params, cols: u32, rows: u32, src: &Tensor, dst: &Tensor) -> Result<()> {
    let maxd = step.gpu().limits.max_compute_workgroups_per_dimension.max(1);
    let (gx, gy) = (cols.div_ceil(8), rows.div_ceil(8));
    if gx > maxd || gy > maxd {
        return Err(Error::Invalid(format!("crop: {rows}x{cols} planes exceed the grid limit")));
    }
    let mut at = 0;
    while at < p.planes {
        let n = (p.planes - at).min(maxd);
        let q = Params { planes: n, plane0: at, ..*p };
        step.dispatch(k, &[], &q, &[&src.buf, &dst.buf], [gx, gy, n])?;
        at += n;
    }
    Ok(())
}

/// y = x[:, :, top..top+oh, left..left+ow]
pub fn forward(step: &mut Step, x: &Tensor, c: &Crop, y: &Tensor) -> Result<()> {
    let p = params(&x.shape, &y.shape, c)?;
    if uses_flat(y.numel()) {
        return launch_flat(step, &FORWARD4, &p, y.numel(), x, y);
    }
    launch(step, &FORWARD, &p, p.ow, p.oh, x, y)
}

/// dx = dy placed in the window, zeros elsewhere.
pub fn backward(step: &mut Step, dy: &Tensor, c: &Crop, dx: &Tensor) -> Result<()> {
    let p = params(&dx.shape, &dy.shape, c)?;
    if uses_flat(dx.numel()) {
        return launch_flat(step, &BACKWARD4, &p, dx.numel(), dy, dx);
    }
    launch(step, &BACKWARD, &p, p.w, p.h, dy, dx)
}

pub mod reference {
    use super::Crop;

    pub fn forward(x: &[f64], s: [usize; 4], c: &Crop) -> Vec<f64> {
        let [n, ch, h, w] = s;
        let mut y = Vec::with_capacity(n * ch * c.oh * c.ow);
        for plane in 0..n * ch {
            for r in 0..c.oh {
                for col in 0..c.ow {
                    y.push(x[(plane * h + r + c.top) * w + col + c.left]);
                }
            }
        }
        y
    }

    pub fn backward(dy: &[f64], s: [usize; 4], c: &Crop) -> Vec<f64> {
        let [n, ch, h, w] = s;
        let mut dx = vec![0.0; n * ch * h * w];
        for plane in 0..n * ch {
            for r in 0..c.oh {
                for col in 0..c.ow {
                    dx[(plane * h + r + c.top) * w + col + c.left] = dy[(plane * c.oh + r) * c.ow + col];
                }
            }
        }
        dx
    }
}

struct CropCase {
    x: [usize; 4],
    c: Crop,
}

impl OpCase for CropCase {
    fn name(&self) -> &'static str {
        "crop"
    }
    fn shape(&self) -> String {
        format!("{} window {}x{} at {},{}", fmt_shape(&self.x), self.c.oh, self.c.ow, self.c.top, self.c.left)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.x.to_vec()]
    }
    fn output(&self) -> Vec<usize> {
        vec![self.x[0], self.x[1], self.c.oh, self.c.ow]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::forward(&x[0], self.x, &self.c)
    }
    fn backward_ref(&self, _x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![reference::backward(dy, self.x, &self.c)]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        forward(step, &x[0], &self.c, y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        backward(step, dy, &self.c, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        0.0
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let out = (self.x[0] * self.x[1] * self.c.oh * self.c.ow) as f64;
        let whole = crate::tensor::numel(&self.x) as f64;
        if pass == Pass::Forward { 8.0 * out } else { 4.0 * (out + whole) }
    }
}

/// The shift FactorizedReduce needs: drop the first row and column.
pub fn shift_window(h: usize, w: usize) -> Crop {
    Crop { top: 1, left: 1, oh: h - 1, ow: w - 1 }
}

pub fn test_cases() -> Vec<Box<dyn OpCase>> {
    let cases = [
        ([1, 3, 7, 7], shift_window(7, 7)),
        ([2, 5, 2, 2], shift_window(2, 2)),
        ([1, 17, 9, 11], Crop { top: 2, left: 0, oh: 5, ow: 11 }),
        ([3, 1, 4, 6], Crop { top: 0, left: 3, oh: 4, ow: 3 }),
        // Wider and taller than one 8x8 tile, not multiples of it.
        ([1, 2, 19, 13], Crop { top: 1, left: 2, oh: 17, ow: 10 }),
        // The cases above already mix the paths (a side of 36, 340 or 40 values is flat, of 10,
        // 147 or 935 is not). These are flat both ways, with vec4s that span rows and planes.
        ([2, 2, 3, 6], Crop { top: 1, left: 1, oh: 2, ow: 3 }),
        ([2, 2, 6, 6], shift_window(6, 6)),
        ([4, 1, 7, 7], Crop { top: 1, left: 0, oh: 6, ow: 6 }),
    ];
    cases.into_iter().map(|(x, c)| Box::new(CropCase { x, c }) as Box<dyn OpCase>).collect()
}

pub fn bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&x| Box::new(CropCase { x, c: shift_window(x[2], x[3]) }) as Box<dyn OpCase>).collect()
}
