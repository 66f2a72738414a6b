//! Channel concatenation of NCHW tensors and its backward (splitting a gradient into the
//! parts' channel slices). Shader: `shaders/concat.wgsl`.

use super::{OpCase, Pass, BENCH_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{nchw, numel, Tensor};

const CONCAT_PART: Kernel = kernel!("concat.wgsl", "concat_part", [1: Read, 2: ReadWrite]);
const SPLIT_PART: Kernel = kernel!("concat.wgsl", "split_part", [1: Read, 2: ReadWrite]);
// The vec4 path; the kernels above are the fallback.
const CONCAT_PART4: Kernel = kernel!("concat.wgsl", "concat_part4", [3: Read, 4: ReadWrite]);
const SPLIT_PART4: Kernel = kernel!("concat.wgsl", "split_part4", [3: Read, 4: ReadWrite]);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    blk: u32,
    stride: u32,
    offset: u32,
    n0: u32,
    _pad: [u32; 3],
}

/// Params of one dispatch per part: the parts must share N, H, W with `whole` and their
/// channels must add up to its channels. [N, C] tensors count as [N, C, 1, 1].
fn part_params(op: &'static str, whole: &Tensor, parts: &[&Tensor]) -> Result<Vec<Params>> {
    let err = |message: String| Error::Shape { op, message };
    if parts.is_empty() {
        return Err(Error::Invalid(format!("{op}: no parts")));
    }
    let rank = whole.shape.len();
    if rank != 2 && rank != 4 {
        return Err(err(format!("expected [N, C, H, W] or [N, C], got {:?}", whole.shape)));
    }
    u32::try_from(whole.numel()).map_err(|_| err(format!("{:?} has more than 2^32 elements", whole.shape)))?;
    let [n, c, h, w] = whole.nchw();
    let hw = h * w;
    let mut at = 0;
    let mut out = Vec::with_capacity(parts.len());
    for t in parts {
        let [pn, pc, ph, pw] = nchw(&t.shape);
        if t.shape.len() != rank || (pn, ph, pw) != (n, h, w) {
            return Err(err(format!("part {:?} does not match {:?} outside the channel axis", t.shape, whole.shape)));
        }
        out.push(Params { n: n as u32, blk: (pc * hw) as u32, stride: (c * hw) as u32, offset: (at * hw) as u32, n0: 0, _pad: [0; 3] });
        at += pc;
    }
    if at != c {
        let shapes: Vec<_> = parts.iter().map(|t| &t.shape).collect();
        return Err(err(format!("parts {shapes:?} have {at} channels in all, the whole {:?} has {c}", whole.shape)));
    }
    Ok(out)
}

/// Values each invocation copies (`PER` in the shader), and vec4s on the vec4 path (`PER4`).
const PER: u32 = 4;
const PER4: u32 = 2;

/// Whether a part's copy takes the vec4 path: its block, the batch stride and its offset all
/// whole vec4s. Public so tests can assert it.
pub fn part_uses_vec4(blk: usize, stride: usize, offset: usize) -> bool {
    blk.is_multiple_of(4) && stride.is_multiple_of(4) && offset.is_multiple_of(4) && blk > 0
}

/// x over the block, y over batch items (split into several dispatches past the grid limit).
/// `kernels` = (scalar, vec4).
fn launch(step: &mut Step, kernels: (&Kernel, &Kernel), params: &Params, src: &Tensor, dst: &Tensor) -> Result<()> {
    let wg = step.gpu().wg1d();
    let maxd = step.gpu().limits.max_compute_workgroups_per_dimension.max(1);
    let vec4 = part_uses_vec4(params.blk as usize, params.stride as usize, params.offset as usize);
    let (k, params, per) = if vec4 {
        (kernels.1, Params { blk: params.blk / 4, stride: params.stride / 4, offset: params.offset / 4, ..*params }, PER4)
    } else {
        (kernels.0, *params, PER)
    };
    let gx = params.blk.div_ceil(per * wg);
    if gx > maxd {
        return Err(Error::Invalid(format!("concat: blocks of {} values exceed the grid limit", params.blk)));
    }
    let mut at = 0;
    while at < params.n {
        let n = (params.n - at).min(maxd);
        let p = Params { n, n0: at, ..params };
        step.dispatch(k, &[("WG", wg as f64)], &p, &[&src.buf, &dst.buf], [gx, n, 1])?;
        at += n;
    }
    Ok(())
}

/// y = the inputs stacked along channels, in order: all [N, Ci, H, W] -> [N, sum Ci, H, W].
pub fn concat_channels(step: &mut Step, xs: &[&Tensor], y: &Tensor) -> Result<()> {
    for (params, x) in part_params("concat_channels", y, xs)?.iter().zip(xs) {
        launch(step, (&CONCAT_PART, &CONCAT_PART4), params, x, y)?;
    }
    Ok(())
}

/// The backward of [`concat_channels`]: each dxs[i] gets its channel slice of dy.
pub fn split_channels(step: &mut Step, dy: &Tensor, dxs: &[&Tensor]) -> Result<()> {
    for (params, dx) in part_params("split_channels", dy, dxs)?.iter().zip(dxs) {
        launch(step, (&SPLIT_PART, &SPLIT_PART4), params, dy, dx)?;
    }
    Ok(())
}

pub mod reference {
    /// Parts of shape [n, chans[i], hw] stacked along the channel axis.
    pub fn concat(xs: &[Vec<f64>], n: usize, chans: &[usize], hw: usize) -> Vec<f64> {
        let mut y = Vec::new();
        for b in 0..n {
            for (x, &c) in xs.iter().zip(chans) {
                y.extend_from_slice(&x[b * c * hw..(b + 1) * c * hw]);
            }
        }
        y
    }

    pub fn split(dy: &[f64], n: usize, chans: &[usize], hw: usize) -> Vec<Vec<f64>> {
        let total: usize = chans.iter().sum();
        let mut at = 0;
        let mut out = Vec::new();
        for &c in chans {
            let mut dx = Vec::new();
            for b in 0..n {
                let start = (b * total + at) * hw;
                dx.extend_from_slice(&dy[start..start + c * hw]);
            }
            out.push(dx);
            at += c;
        }
        out
    }
}

struct ConcatCase {
    n: usize,
    chans: Vec<usize>,
    h: usize,
    w: usize,
}

impl OpCase for ConcatCase {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn shape(&self) -> String {
        format!("n{} c{:?} {}x{}", self.n, self.chans, self.h, self.w)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        self.chans.iter().map(|&c| vec![self.n, c, self.h, self.w]).collect()
    }
    fn output(&self) -> Vec<usize> {
        vec![self.n, self.chans.iter().sum(), self.h, self.w]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::concat(x, self.n, &self.chans, self.h * self.w)
    }
    fn backward_ref(&self, _x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        reference::split(dy, self.n, &self.chans, self.h * self.w)
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        concat_channels(step, &x.iter().collect::<Vec<_>>(), y)?;
        Ok(vec![])
    }
    /// The checker asks for one input's gradient at a time; the other slices land in scratch.
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        let scratch: Vec<Tensor> = x.iter().map(|t| Tensor::empty(step.gpu(), &t.shape)).collect();
        let dxs: Vec<&Tensor> = scratch.iter().enumerate().map(|(i, t)| if i == wrt { dx } else { t }).collect();
        split_channels(step, dy, &dxs)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        0.0
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        8.0 * numel(&self.output()) as f64
    }
}

pub fn concat_test_cases() -> Vec<Box<dyn OpCase>> {
    let case = |n, chans: &[usize], h, w| Box::new(ConcatCase { n, chans: chans.to_vec(), h, w }) as Box<dyn OpCase>;
    vec![
        case(1, &[3, 5, 1], 7, 7),
        case(2, &[5, 17], 1, 1),
        case(3, &[1, 3], 9, 7),
        case(1, &[17, 3, 5], 2, 3),
        // vec4 path for every part (blocks of 8 and 36 vec4s: partial last runs).
        case(2, &[4, 8, 4], 7, 7),
        // 2x6 planes are whole vec4s at any offset. 2x3 planes, 8 channels: only the first
        // part (12 values at offset 0) takes the vec4 path.
        case(2, &[1, 3, 2], 2, 6),
        case(2, &[2, 1, 2, 3], 2, 3),
    ]
}

/// A cell's output: four node outputs of C channels each.
pub fn concat_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&[n, c, h, w]| Box::new(ConcatCase { n, chans: vec![c; 4], h, w }) as Box<dyn OpCase>).collect()
}
