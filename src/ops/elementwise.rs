//! ReLU, add, accumulate (gradient summing), fill (zero) and scale over flat buffers.
//! Shader: `shaders/elementwise.wgsl`.

use super::{OpCase, Pass, BENCH_SHAPES, ODD_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const RELU: Kernel = kernel!("elementwise.wgsl", "relu_forward", [1: Read, 2: ReadWrite]);
const RELU_BACKWARD: Kernel = kernel!("elementwise.wgsl", "relu_backward", [1: Read, 3: Read, 2: ReadWrite]);
const ADD: Kernel = kernel!("elementwise.wgsl", "add", [1: Read, 3: Read, 2: ReadWrite]);
const ACCUMULATE: Kernel = kernel!("elementwise.wgsl", "accumulate", [1: Read, 2: ReadWrite]);
const FILL: Kernel = kernel!("elementwise.wgsl", "fill", [2: ReadWrite]);
const SCALE: Kernel = kernel!("elementwise.wgsl", "scale", [1: Read, 2: ReadWrite]);
// The vec4 path, when the length is a multiple of 4; the kernels above are the fallback.
const RELU4: Kernel = kernel!("elementwise.wgsl", "relu_forward4", [4: Read, 5: ReadWrite]);
const RELU_BACKWARD4: Kernel = kernel!("elementwise.wgsl", "relu_backward4", [4: Read, 6: Read, 5: ReadWrite]);
const ADD4: Kernel = kernel!("elementwise.wgsl", "add4", [4: Read, 6: Read, 5: ReadWrite]);
const ACCUMULATE4: Kernel = kernel!("elementwise.wgsl", "accumulate4", [4: Read, 5: ReadWrite]);
const FILL4: Kernel = kernel!("elementwise.wgsl", "fill4", [5: ReadWrite]);
const SCALE4: Kernel = kernel!("elementwise.wgsl", "scale4", [4: Read, 5: ReadWrite]);

/// vec4s per invocation on the vec4 path. relu and accumulate at the bench shapes on lavapipe
/// (min of 15 GPU times): 1, 2 and 4 within noise of each other (4 a little ahead for relu,
/// 2 for accumulate), 8 clearly slower.
const VEC4S_PER_INVOCATION: u32 = 2;

/// Whether a flat op over `n` values takes the vec4 path. Public so tests can assert it.
pub fn uses_vec4(n: usize) -> bool {
    n.is_multiple_of(4) && n > 0
}

/// Elements per invocation (contiguous). On lavapipe, relu at [64,16,28,28] and wg1d: 8 was
/// ~1.3x faster than 1 (median over shapes and two runs); 4 and 16, a workgroup of 64, and
/// interleaving the K elements WG apart were no better than 8. An unguarded fast path for
/// whole chunks (`i0 + K <= n`) measured 0.6x: keep the per-element guard.
const PER_INVOCATION: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    value: f32,
}

fn same_len(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.numel() != b.numel() {
        return Err(Error::Shape { op, message: format!("{:?} vs {:?}", a.shape, b.shape) });
    }
    Ok(())
}

fn launch(step: &mut Step, k: &Kernel, n: usize, value: f32, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid((n as u32).div_ceil(PER_INVOCATION), wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("WG", wg as f64), ("K", PER_INVOCATION as f64)], &Params { n: n as u32, value }, &bufs, groups)
}

/// The vec4 kernel `k4` when n allows it, else the scalar `k`.
fn launch_either(step: &mut Step, k: &Kernel, k4: &Kernel, n: usize, value: f32, bufs: &[&Tensor]) -> Result<()> {
    if !uses_vec4(n) {
        return launch(step, k, n, value, bufs);
    }
    let wg = step.gpu().wg1d();
    let per = VEC4S_PER_INVOCATION;
    let n4 = (n / 4) as u32;
    let groups = step.gpu().grid(n4.div_ceil(per), wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k4, &[("WG", wg as f64), ("KV", per as f64)], &Params { n: n4, value }, &bufs, groups)
}

/// y = max(x, 0)
pub fn relu(step: &mut Step, x: &Tensor, y: &Tensor) -> Result<()> {
    same_len("relu", x, y)?;
    if !crate::autotune::relu_vec4(step.gpu(), &x.shape) {
        return launch(step, &RELU, x.numel(), 0.0, &[x, y]);
    }
    launch_either(step, &RELU, &RELU4, x.numel(), 0.0, &[x, y])
}

/// dx = dy * (x > 0)
pub fn relu_backward(step: &mut Step, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    same_len("relu_backward", x, dy)?;
    same_len("relu_backward", x, dx)?;
    if !crate::autotune::relu_vec4(step.gpu(), &x.shape) {
        return launch(step, &RELU_BACKWARD, x.numel(), 0.0, &[x, dy, dx]);
    }
    launch_either(step, &RELU_BACKWARD, &RELU_BACKWARD4, x.numel(), 0.0, &[x, dy, dx])
}

/// y = a + b
pub fn add(step: &mut Step, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<()> {
    same_len("add", a, b)?;
    same_len("add", a, y)?;
    launch_either(step, &ADD, &ADD4, a.numel(), 0.0, &[a, b, y])
}

/// acc += x: a value that feeds several consumers sums their gradients this way.
pub fn accumulate(step: &mut Step, x: &Tensor, acc: &Tensor) -> Result<()> {
    same_len("accumulate", x, acc)?;
    launch_either(step, &ACCUMULATE, &ACCUMULATE4, x.numel(), 0.0, &[x, acc])
}

/// y = value everywhere (the `none` op's output, gradient reset).
pub fn fill(step: &mut Step, y: &Tensor, value: f32) -> Result<()> {
    launch_either(step, &FILL, &FILL4, y.numel(), value, &[y])
}

/// y = x * value
pub fn scale(step: &mut Step, x: &Tensor, value: f32, y: &Tensor) -> Result<()> {
    same_len("scale", x, y)?;
    launch_either(step, &SCALE, &SCALE4, x.numel(), value, &[x, y])
}

pub mod reference {
    pub fn relu(x: &[f64]) -> Vec<f64> {
        x.iter().map(|&v| v.max(0.0)).collect()
    }
    pub fn relu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
        x.iter().zip(dy).map(|(&v, &g)| if v > 0.0 { g } else { 0.0 }).collect()
    }
    pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }
}

struct ReluCase(Vec<usize>);

impl OpCase for ReluCase {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn shape(&self) -> String {
        super::fmt_shape(&self.0)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.0.clone()]
    }
    fn output(&self) -> Vec<usize> {
        self.0.clone()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::relu(&x[0])
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![reference::relu_backward(&x[0], dy)]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        relu(step, &x[0], y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        relu_backward(step, &x[0], dy, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        crate::tensor::numel(&self.0) as f64
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let n = crate::tensor::numel(&self.0) as f64;
        if pass == Pass::Forward { 8.0 * n } else { 12.0 * n }
    }
}

/// add's test also covers accumulate: the case computes y = a + b as acc(a) += b.
struct AddCase {
    shape: Vec<usize>,
    accumulate: bool,
}

impl OpCase for AddCase {
    fn name(&self) -> &'static str {
        if self.accumulate { "accumulate" } else { "add" }
    }
    fn shape(&self) -> String {
        super::fmt_shape(&self.shape)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.shape.clone(), self.shape.clone()]
    }
    fn output(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::add(&x[0], &x[1])
    }
    fn backward_ref(&self, _x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![dy.to_vec(), dy.to_vec()]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        if self.accumulate {
            // y starts poisoned; copy a in first so only the accumulate kernel decides the result.
            step.copy(&x[0].buf, 0, &y.buf, 0, 4 * y.numel() as u64);
            accumulate(step, &x[1], y)?;
        } else {
            add(step, &x[0], &x[1], y)?;
        }
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        // The gradient of a sum passes through unchanged: scale by one exercises `scale`.
        scale(step, dy, 1.0, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        crate::tensor::numel(&self.shape) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        12.0 * crate::tensor::numel(&self.shape) as f64
    }
}

/// The `none` op: zeros of the input's shape; its gradient is zero too.
struct ZeroCase(Vec<usize>);

impl OpCase for ZeroCase {
    fn name(&self) -> &'static str {
        "zero"
    }
    fn shape(&self) -> String {
        super::fmt_shape(&self.0)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![self.0.clone()]
    }
    fn output(&self) -> Vec<usize> {
        self.0.clone()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        vec![0.0; x[0].len()]
    }
    fn backward_ref(&self, x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![vec![0.0; x[0].len()]]
    }
    fn forward(&self, step: &mut Step, _x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        fill(step, y, 0.0)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], _dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        fill(step, dx, 0.0)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        0.0
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        4.0 * crate::tensor::numel(&self.0) as f64
    }
}

/// ODD_SHAPES all take the scalar path; these take the vec4 path (9 vec4s: a partial last run).
const ALIGNED_SHAPES: &[[usize; 4]] = &[[2, 4, 4, 4], [1, 3, 2, 6]];

fn test_shapes() -> impl Iterator<Item = &'static [usize; 4]> {
    ODD_SHAPES.iter().chain(ALIGNED_SHAPES)
}

pub fn zero_test_cases() -> Vec<Box<dyn OpCase>> {
    test_shapes().map(|s| Box::new(ZeroCase(s.to_vec())) as Box<dyn OpCase>).collect()
}
pub fn zero_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|s| Box::new(ZeroCase(s.to_vec())) as Box<dyn OpCase>).collect()
}

/// A ReLU of `shape` (what autotune times).
pub fn relu_case(shape: &[usize]) -> Box<dyn OpCase> {
    Box::new(ReluCase(shape.to_vec()))
}

pub fn relu_test_cases() -> Vec<Box<dyn OpCase>> {
    test_shapes().map(|s| Box::new(ReluCase(s.to_vec())) as Box<dyn OpCase>).collect()
}
pub fn relu_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|s| Box::new(ReluCase(s.to_vec())) as Box<dyn OpCase>).collect()
}
pub fn add_test_cases() -> Vec<Box<dyn OpCase>> {
    test_shapes()
        .flat_map(|s| [false, true].map(|accumulate| Box::new(AddCase { shape: s.to_vec(), accumulate }) as Box<dyn OpCase>))
        .collect()
}
pub fn add_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|s| Box::new(AddCase { shape: s.to_vec(), accumulate: false }) as Box<dyn OpCase>).collect()
}
