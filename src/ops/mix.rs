//! Mixed ops of gradient-based search (DARTS): softmax over the rows of the architecture
//! parameters alpha (one row per edge, one column per op), the weighted sum of the op outputs
//! with the weights read on the device, and the gradients back to the weights (a deterministic
//! two-pass dot product) and to alpha. Shader: `shaders/mix.wgsl`.

use super::{OpCase, Pass, BENCH_SHAPES, ODD_SHAPES};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};

const WEIGHTED_ADD: Kernel = kernel!("mix.wgsl", "weighted_add", [1: Read, 3: Read, 2: ReadWrite]);
const AXPY: Kernel = kernel!("mix.wgsl", "axpy", [1: Read, 2: ReadWrite]);
const DOT_PARTIAL: Kernel = kernel!("mix.wgsl", "dot_partial", [1: Read, 4: Read, 5: ReadWrite]);
const DOT_FINAL: Kernel = kernel!("mix.wgsl", "dot_final", [6: Read, 2: ReadWrite]);
const SOFTMAX: Kernel = kernel!("mix.wgsl", "softmax_forward", [1: Read, 2: ReadWrite]);
const SOFTMAX_BACKWARD: Kernel = kernel!("mix.wgsl", "softmax_backward", [3: Read, 4: Read, 2: ReadWrite]);

/// Elements per invocation (the shader's K) of the elementwise entries and of dot_partial.
const PER_INVOCATION: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    index: u32,
    accumulate: u32,
    groups: u32,
    rows: u32,
    cols: u32,
    value: f32,
    pad: u32,
}

fn elements(op: &'static str, t: &Tensor) -> Result<u32> {
    u32::try_from(t.numel()).map_err(|_| Error::Shape { op, message: format!("{:?} has more than 2^32 elements", t.shape) })
}

fn same_len(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.numel() != b.numel() {
        return Err(Error::Shape { op, message: format!("{:?} vs {:?}", a.shape, b.shape) });
    }
    Ok(())
}

fn in_range(op: &'static str, w: &Tensor, index: usize) -> Result<u32> {
    if index >= w.numel() {
        return Err(Error::Shape { op, message: format!("weight {index} of {:?}", w.shape) });
    }
    Ok(index as u32)
}

fn elementwise(step: &mut Step, k: &Kernel, p: Params, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(p.n.div_ceil(PER_INVOCATION), wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("WG", wg as f64), ("K", PER_INVOCATION as f64)], &p, &bufs, groups)
}

/// y = w[index] * x, or y += w[index] * x with `accumulate`: one term of a mixed op (and the
/// input gradient of one, w[index] * dy).
pub fn weighted_add(step: &mut Step, x: &Tensor, w: &Tensor, index: usize, y: &Tensor, accumulate: bool) -> Result<()> {
    same_len("weighted_add", x, y)?;
    let p = Params { n: elements("weighted_add", x)?, index: in_range("weighted_add", w, index)?, accumulate: accumulate as u32, ..Default::default() };
    elementwise(step, &WEIGHTED_ADD, p, &[x, w, y])
}

/// y += value * x.
pub fn axpy(step: &mut Step, value: f32, x: &Tensor, y: &Tensor) -> Result<()> {
    same_len("axpy", x, y)?;
    elementwise(step, &AXPY, Params { n: elements("axpy", x)?, value, ..Default::default() }, &[x, y])
}

/// out[index] = sum(x * dy), or out[index] += it with `accumulate`: the gradient of the weight
/// a mixed-op term was scaled by. Deterministic: a partial sum per block in a fixed order, then
/// one workgroup sums the partials in order.
pub fn weighted_dot(step: &mut Step, x: &Tensor, dy: &Tensor, out: &Tensor, index: usize, accumulate: bool) -> Result<()> {
    same_len("weighted_dot", x, dy)?;
    let n = elements("weighted_dot", x)?;
    let index = in_range("weighted_dot", out, index)?;
    let wg = super::optim::reduce_wg(step);
    let groups = n.div_ceil(wg * PER_INVOCATION);
    let partials = Tensor::empty(step.gpu(), &[groups.max(1) as usize]);
    let consts = [("WG", wg as f64), ("K", PER_INVOCATION as f64)];
    if n > 0 {
        let grid = step.gpu().grid(groups * wg, wg);
        let p = Params { n, groups, ..Default::default() };
        step.dispatch(&DOT_PARTIAL, &consts, &p, &[&x.buf, &dy.buf, &partials.buf], grid)?;
    }
    let p = Params { n: groups, index, accumulate: accumulate as u32, ..Default::default() };
    step.dispatch(&DOT_FINAL, &consts, &p, &[&partials.buf, &out.buf], [1, 1, 1])
}

fn rows_cols(op: &'static str, t: &Tensor) -> Result<(u32, u32)> {
    match t.shape[..] {
        [r, c] if r > 0 && c > 0 => Ok((elements(op, t)? / c as u32, c as u32)),
        _ => Err(Error::Shape { op, message: format!("expects [rows, cols] with both positive, got {:?}", t.shape) }),
    }
}

fn per_row(step: &mut Step, k: &Kernel, rows: u32, cols: u32, bufs: &[&Tensor]) -> Result<()> {
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(rows, wg);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("WG", wg as f64)], &Params { rows, cols, ..Default::default() }, &bufs, groups)
}

/// w = softmax of each row of alpha [rows, cols].
pub fn softmax_rows(step: &mut Step, alpha: &Tensor, w: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols("softmax_rows", alpha)?;
    same_len("softmax_rows", alpha, w)?;
    per_row(step, &SOFTMAX, rows, cols, &[alpha, w])
}

/// dalpha = w * (dw - sum_row(w * dw)), given w = softmax_rows(alpha).
pub fn softmax_rows_backward(step: &mut Step, w: &Tensor, dw: &Tensor, dalpha: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols("softmax_rows_backward", w)?;
    same_len("softmax_rows_backward", w, dw)?;
    same_len("softmax_rows_backward", w, dalpha)?;
    per_row(step, &SOFTMAX_BACKWARD, rows, cols, &[w, dw, dalpha])
}

pub mod reference {
    pub fn softmax_rows(alpha: &[f64], cols: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(alpha.len());
        for row in alpha.chunks(cols) {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|a| (a - m).exp()).sum();
            out.extend(row.iter().map(|a| (a - m).exp() / s));
        }
        out
    }

    pub fn softmax_rows_backward(w: &[f64], dw: &[f64], cols: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(w.len());
        for (wr, dr) in w.chunks(cols).zip(dw.chunks(cols)) {
            let s: f64 = wr.iter().zip(dr).map(|(a, b)| a * b).sum();
            out.extend(wr.iter().zip(dr).map(|(a, b)| a * (b - s)));
        }
        out
    }

    /// sum_k w[index_k] * xs[k].
    pub fn mix(xs: &[&[f64]], w: &[f64], index: &[usize]) -> Vec<f64> {
        let mut y = vec![0.0; xs[0].len()];
        for (x, &i) in xs.iter().zip(index) {
            for (o, v) in y.iter_mut().zip(*x) {
                *o += w[i] * v;
            }
        }
        y
    }
}

/// A mixed op's sum over its terms: inputs x_0..x_{k-1} and the weights w; y = sum_k
/// w[index_k] x_k. Indices may repeat (a weight shared by several terms, as alpha is shared
/// by every cell of a kind), so its gradient accumulates.
struct MixCase {
    shape: Vec<usize>,
    weights: usize,
    index: Vec<usize>,
}

impl OpCase for MixCase {
    fn name(&self) -> &'static str {
        "mix"
    }
    fn shape(&self) -> String {
        format!("{} weights {} index {:?}", super::fmt_shape(&self.shape), self.weights, self.index)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let mut v = vec![self.shape.clone(); self.index.len()];
        v.push(vec![self.weights]);
        v
    }
    fn output(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let k = self.index.len();
        let xs: Vec<&[f64]> = x[..k].iter().map(|v| v.as_slice()).collect();
        reference::mix(&xs, &x[k], &self.index)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let k = self.index.len();
        let w = &x[k];
        let mut out: Vec<Vec<f64>> = self.index.iter().map(|&i| dy.iter().map(|g| w[i] * g).collect()).collect();
        let mut dw = vec![0.0; self.weights];
        for (xk, &i) in x[..k].iter().zip(&self.index) {
            dw[i] += xk.iter().zip(dy).map(|(a, b)| a * b).sum::<f64>();
        }
        out.push(dw);
        out
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let k = self.index.len();
        for (j, &i) in self.index.iter().enumerate() {
            weighted_add(step, &x[j], &x[k], i, y, j > 0)?;
        }
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        let k = self.index.len();
        if wrt < k {
            return weighted_add(step, dy, &x[k], self.index[wrt], dx, false);
        }
        // Weights no term uses get zero; each used one is written by its first term, then added to.
        super::elementwise::fill(step, dx, 0.0)?;
        for (j, &i) in self.index.iter().enumerate() {
            weighted_dot(step, &x[j], dy, dx, i, self.index[..j].contains(&i))?;
        }
        Ok(())
    }
    fn flops(&self, _pass: Pass) -> f64 {
        2.0 * (numel(&self.shape) * self.index.len()) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        8.0 * (numel(&self.shape) * self.index.len()) as f64
    }
}

/// y = y0 + value * x.
struct AxpyCase {
    n: usize,
    value: f32,
}

impl OpCase for AxpyCase {
    fn name(&self) -> &'static str {
        "axpy"
    }
    fn shape(&self) -> String {
        format!("n{} value {}", self.n, self.value)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![vec![self.n], vec![self.n]]
    }
    fn output(&self) -> Vec<usize> {
        vec![self.n]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        x[0].iter().zip(&x[1]).map(|(a, b)| b + self.value as f64 * a).collect()
    }
    fn backward_ref(&self, _x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![dy.iter().map(|g| self.value as f64 * g).collect(), dy.to_vec()]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        step.copy(&x[1].buf, 0, &y.buf, 0, 4 * self.n as u64);
        axpy(step, self.value, &x[0], y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        // dx = value * dy through axpy on a zeroed dx; dy0 = dy through axpy with 1.
        super::elementwise::fill(step, dx, 0.0)?;
        axpy(step, if wrt == 0 { self.value } else { 1.0 }, dy, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        2.0 * self.n as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        12.0 * self.n as f64
    }
}

/// Softmax over each row of alpha [rows, cols].
struct SoftmaxCase {
    rows: usize,
    cols: usize,
}

impl OpCase for SoftmaxCase {
    fn name(&self) -> &'static str {
        "softmax_rows"
    }
    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![vec![self.rows, self.cols]]
    }
    fn output(&self) -> Vec<usize> {
        vec![self.rows, self.cols]
    }
    fn sample_input(&self, _i: usize, rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f32> {
        // Spread wide enough that a max-free softmax would lose digits.
        super::check::random_vec(rng, n).into_iter().map(|v| 8.0 * v).collect()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        reference::softmax_rows(&x[0], self.cols)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        vec![reference::softmax_rows_backward(&reference::softmax_rows(&x[0], self.cols), dy, self.cols)]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        softmax_rows(step, &x[0], y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], y: &Tensor, _s: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        softmax_rows_backward(step, y, dy, dx)
    }
    fn flops(&self, _pass: Pass) -> f64 {
        4.0 * (self.rows * self.cols) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        8.0 * (self.rows * self.cols) as f64
    }
}

pub fn mix_test_cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for s in ODD_SHAPES {
        cases.push(Box::new(MixCase { shape: s.to_vec(), weights: 5, index: vec![3, 0, 3] }));
    }
    // More elements than one dot_partial block, so the partials and their final sum both count.
    cases.push(Box::new(MixCase { shape: vec![2, 5, 37, 41], weights: 2, index: vec![1] }));
    for n in [1, 13, 4099] {
        cases.push(Box::new(AxpyCase { n, value: -0.37 }));
    }
    cases
}

pub fn mix_bench_cases() -> Vec<Box<dyn OpCase>> {
    // One node of a DARTS cell at the supernet's shapes: 7 ops on each of 2 inputs.
    BENCH_SHAPES.iter().map(|s| Box::new(MixCase { shape: s.to_vec(), weights: 16, index: (0..14).collect() }) as Box<dyn OpCase>).collect()
}

pub fn softmax_test_cases() -> Vec<Box<dyn OpCase>> {
    [(1, 1), (14, 8), (3, 5), (67, 3)].into_iter().map(|(rows, cols)| Box::new(SoftmaxCase { rows, cols }) as Box<dyn OpCase>).collect()
}

pub fn softmax_bench_cases() -> Vec<Box<dyn OpCase>> {
    vec![Box::new(SoftmaxCase { rows: 14, cols: 8 })]
}
