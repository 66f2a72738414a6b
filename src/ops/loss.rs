//! Softmax cross-entropy fused with its gradient, and the correct-prediction count.
//! Shader: `shaders/loss.wgsl`. Both reduce over the batch in one workgroup with a fixed order,
//! so results are bitwise reproducible on one adapter.
//!
//! Labels are u32 in a storage buffer ([`crate::tensor::upload_u32`]). A label >= C is a host
//! bug (the data loader validates labels); the kernels never index with it: that row's loss is
//! NaN (so the batch loss is NaN), its dlogits row is 0, and it never counts as correct.

use super::{OpCase, Pass};
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Kernel, Step};
use crate::kernel;
use crate::tensor::{upload_u32_in, Tensor};

const CROSS_ENTROPY: Kernel = kernel!("loss.wgsl", "softmax_cross_entropy", [1: Read, 2: Read, 3: ReadWrite, 4: ReadWrite]);
const COUNT_CORRECT: Kernel = kernel!("loss.wgsl", "count_correct", [1: Read, 2: Read, 5: ReadWrite]);
const SCALE_BY_SCALAR: Kernel = kernel!("loss.wgsl", "scale_by_scalar", [1: Read, 6: Read, 4: ReadWrite]);

/// The shader's workgroup arrays hold this many partial sums.
const MAX_WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    pad: [u32; 2],
}

/// (N, C) of logits [N, C] (trailing 1s allowed), checking the labels buffer holds N labels.
fn dims(op: &'static str, logits: &Tensor, labels: &Buffer) -> Result<(u32, u32)> {
    let n = logits.shape.first().copied().unwrap_or(0);
    if logits.shape.len() < 2 || n == 0 || logits.numel() == 0 {
        return Err(Error::Shape { op, message: format!("logits must be a non-empty [N, C], got {:?}", logits.shape) });
    }
    if logits.numel() > u32::MAX as usize {
        return Err(Error::Invalid(format!("{op}: logits {:?} too large to index with u32", logits.shape)));
    }
    if labels.size() < 4 * n as u64 {
        return Err(Error::Shape { op, message: format!("labels buffer holds {} u32s, need N = {n}", labels.size() / 4) });
    }
    Ok((n as u32, (logits.numel() / n) as u32))
}

/// Mean softmax cross-entropy over the batch, fused with its gradient:
/// loss[0] = mean_n(-log softmax(logits_n)[label_n]); dlogits = (softmax - onehot) / N.
/// Numerically stable (the row max is subtracted). A label >= C gives loss NaN and a zero
/// dlogits row (see the module docs); it is never used as an index.
pub fn softmax_cross_entropy(step: &mut Step, logits: &Tensor, labels: &Buffer, loss: &Tensor, dlogits: &Tensor) -> Result<()> {
    let op = "softmax_cross_entropy";
    let (n, c) = dims(op, logits, labels)?;
    if loss.numel() != 1 {
        return Err(Error::Shape { op, message: format!("loss must hold one value, got {:?}", loss.shape) });
    }
    if dlogits.shape != logits.shape {
        return Err(Error::Shape { op, message: format!("dlogits {:?} vs logits {:?}", dlogits.shape, logits.shape) });
    }
    let wg = step.gpu().wg1d().min(MAX_WG);
    let p = Params { n, c, pad: [0; 2] };
    step.dispatch(&CROSS_ENTROPY, &[("WG", wg as f64)], &p, &[&logits.buf, labels, &loss.buf, &dlogits.buf], [1, 1, 1])
}

/// Number of rows whose argmax (first max on ties) equals the label, as one u32 in
/// `correct[0]`. Integer partial sums in a fixed order: deterministic.
pub fn count_correct(step: &mut Step, logits: &Tensor, labels: &Buffer, correct: &Buffer) -> Result<()> {
    let (n, c) = dims("count_correct", logits, labels)?;
    let wg = step.gpu().wg1d().min(MAX_WG);
    let p = Params { n, c, pad: [0; 2] };
    step.dispatch(&COUNT_CORRECT, &[("WG", wg as f64)], &p, &[&logits.buf, labels, correct], [1, 1, 1])
}

/// y = x * s[0], with the scalar read on the GPU (a loss gradient that never visits the host).
fn scale_by_scalar(step: &mut Step, x: &Tensor, s: &Tensor, y: &Tensor) -> Result<()> {
    if x.numel() != y.numel() || s.numel() != 1 {
        return Err(Error::Shape { op: "scale_by_scalar", message: format!("x {:?}, s {:?}, y {:?}", x.shape, s.shape, y.shape) });
    }
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(x.numel() as u32, wg);
    let p = Params { n: x.numel() as u32, c: 0, pad: [0; 2] };
    step.dispatch(&SCALE_BY_SCALAR, &[("WG", wg as f64)], &p, &[&x.buf, &s.buf, &y.buf], groups)
}

pub mod reference {
    /// (mean loss, dlogits) for logits [n, c]; labels must be < c.
    pub fn softmax_cross_entropy(logits: &[f64], labels: &[u32], n: usize, c: usize) -> (f64, Vec<f64>) {
        let mut total = 0.0;
        let mut grad = vec![0.0; n * c];
        for r in 0..n {
            let row = &logits[r * c..(r + 1) * c];
            let label = labels[r] as usize;
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|z| (z - mx).exp()).sum();
            total += s.ln() - (row[label] - mx);
            for j in 0..c {
                let hot = if j == label { 1.0 } else { 0.0 };
                grad[r * c + j] = ((row[j] - mx).exp() / s - hot) / n as f64;
            }
        }
        (total / n as f64, grad)
    }

    /// Rows whose first maximal logit is at the label (on the f32 values the GPU sees).
    pub fn count_correct(logits: &[f32], labels: &[u32], n: usize, c: usize) -> u32 {
        let mut hits = 0;
        for r in 0..n {
            let row = &logits[r * c..(r + 1) * c];
            let mut arg = 0;
            for j in 1..c {
                if row[j] > row[arg] {
                    arg = j;
                }
            }
            hits += (arg as u32 == labels[r]) as u32;
        }
        hits
    }
}

/// Cross-entropy on logits [n, c] with fixed labels. The op's output is the scalar loss; its
/// backward is dy[0] * dlogits (dlogits saved by the fused forward).
struct CrossEntropyCase {
    n: usize,
    c: usize,
    /// Logits are uniform in [-spread, spread]: large values test the max subtraction.
    spread: f32,
    labels: Vec<u32>,
}

fn ce_case(n: usize, c: usize, spread: f32) -> Box<dyn OpCase> {
    use rand::Rng;
    let mut rng = super::check::rng_for(&format!("labels {n}x{c}"));
    let labels = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
    Box::new(CrossEntropyCase { n, c, spread, labels })
}

impl OpCase for CrossEntropyCase {
    fn name(&self) -> &'static str {
        "softmax_cross_entropy"
    }
    fn shape(&self) -> String {
        format!("n{} c{} spread {}", self.n, self.c, self.spread)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        vec![vec![self.n, self.c]]
    }
    fn output(&self) -> Vec<usize> {
        vec![1]
    }
    fn sample_input(&self, _i: usize, rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f32> {
        super::check::random_vec(rng, n).into_iter().map(|v| v * self.spread).collect()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        vec![reference::softmax_cross_entropy(&x[0], &self.labels, self.n, self.c).0]
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let (_, g) = reference::softmax_cross_entropy(&x[0], &self.labels, self.n, self.c);
        vec![g.iter().map(|v| v * dy[0]).collect()]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let labels = upload_u32_in(step, &self.labels)?;
        let dlogits = Tensor::empty(step.gpu(), &x[0].shape);
        softmax_cross_entropy(step, &x[0], &labels, y, &dlogits)?;
        Ok(vec![dlogits])
    }
    fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, saved: &[Tensor], dy: &Tensor, _wrt: usize, dx: &Tensor) -> Result<()> {
        scale_by_scalar(step, &saved[0], dy, dx)
    }
    fn flops(&self, pass: Pass) -> f64 {
        // Forward: max, exp and sum per element, then softmax minus one-hot, scaled (~8 ops).
        let nc = (self.n * self.c) as f64;
        if pass == Pass::Forward { 8.0 * nc } else { nc }
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let nc = (self.n * self.c) as f64;
        if pass == Pass::Forward { 4.0 * (2.0 * nc + self.n as f64 + 1.0) } else { 4.0 * (2.0 * nc + 1.0) }
    }
}

pub fn cross_entropy_test_cases() -> Vec<Box<dyn OpCase>> {
    vec![ce_case(1, 10, 1.0), ce_case(5, 3, 1.0), ce_case(3, 17, 1.0), ce_case(7, 1, 1.0), ce_case(4, 10, 200.0), ce_case(300, 3, 1.0)]
}

pub fn cross_entropy_bench_cases() -> Vec<Box<dyn OpCase>> {
    vec![ce_case(64, 10, 1.0), ce_case(256, 10, 1.0)]
}
