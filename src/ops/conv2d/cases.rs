//! conv2d's `OpCase`s: the test shapes (odd sizes that reach every kernel's tails) and the
//! bench shapes (the supernet's), plain and with a ReLU fused in front.

use super::{
    backward_input_simple_with, backward_input_with, backward_weight_with, forward_simple_with, forward_with, out_shape, reference,
    Conv2d,
};
use crate::error::Result;
use crate::gpu::Step;
use crate::ops::{OpCase, Pass, BENCH_SHAPES};
use crate::tensor::{numel, Tensor};

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
