//! Batch-norm test and bench cases for the checker (`ops::check`) and `cellnas bench`.

use super::*;
use crate::ops::{OpCase, BENCH_SHAPES};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const EPS: f64 = 1e-5;

fn per_channel_shape(s: [usize; 4]) -> Vec<usize> {
    vec![s[1]]
}

fn shape_text(s: [usize; 4], affine: bool) -> String {
    format!("n{} c{} {}x{}{}", s[0], s[1], s[2], s[3], if affine { " affine" } else { "" })
}

/// Training mode: inputs x (and gamma, beta when affine); all differentiable.
struct TrainCase {
    shape: [usize; 4],
    affine: bool,
}

impl TrainCase {
    fn affine_refs<'a>(&self, x: &'a [Vec<f64>]) -> (Option<&'a [f64]>, Option<&'a [f64]>) {
        if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) }
    }
}

impl OpCase for TrainCase {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    fn shape(&self) -> String {
        shape_text(self.shape, self.affine)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let mut v = vec![self.shape.to_vec()];
        if self.affine {
            v.push(per_channel_shape(self.shape));
            v.push(per_channel_shape(self.shape));
        }
        v
    }
    fn output(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let (g, b) = self.affine_refs(x);
        reference::forward_train(&x[0], self.shape, g, b, EPS)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let (g, _) = self.affine_refs(x);
        let (dx, dg, db) = reference::backward_train(&x[0], self.shape, dy, g, EPS);
        if self.affine { vec![dx, dg, db] } else { vec![dx] }
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let gpu = step.gpu().clone();
        let c = self.shape[1];
        let running_mean = Tensor::from_slice_in(step, &[c], &vec![0.0; c])?;
        let running_var = Tensor::from_slice_in(step, &[c], &vec![1.0; c])?;
        let save_mean = Tensor::empty(&gpu, &[c]);
        let save_inv_std = Tensor::empty(&gpu, &[c]);
        let (g, b) = if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) };
        forward_train(step, &x[0], g, b, &running_mean, &running_var, &BatchNorm::default(), y, &save_mean, &save_inv_std)?;
        Ok(vec![save_mean, save_inv_std])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, saved: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        let gamma = self.affine.then(|| &x[1]);
        let (sm, sis) = (&saved[0], &saved[1]);
        if wrt == 0 {
            return backward(step, &x[0], dy, gamma, sm, sis, dx, None, None);
        }
        // The parameter gradients come from the same launcher; dx goes to scratch.
        let scratch = Tensor::empty(step.gpu(), &x[0].shape);
        let (dg, db) = if wrt == 1 { (Some(dx), None) } else { (None, Some(dx)) };
        backward(step, &x[0], dy, gamma, sm, sis, &scratch, dg, db)
    }
    fn flops(&self, pass: Pass) -> f64 {
        let n = numel(&self.shape) as f64;
        match pass {
            // sum; squared deviation (sub + mul-add); normalise (sub + mul-add)
            Pass::Forward => 7.0 * n,
            // two sums (add; sub + mul-add), then dx (sub, mul-add, sub, mul)
            Pass::BackwardInput => 9.0 * n,
            Pass::BackwardWeight => 4.0 * n,
        }
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let n = numel(&self.shape) as f64;
        match pass {
            Pass::Forward => 8.0 * n,
            Pass::BackwardInput => 12.0 * n,
            Pass::BackwardWeight => 8.0 * n,
        }
    }
}

/// Evaluation mode: inputs x, (gamma, beta,) running_mean, running_var. Only the forward is
/// checked: training always runs in training mode, so there is no evaluation-mode backward.
struct EvalCase {
    shape: [usize; 4],
    affine: bool,
}

impl OpCase for EvalCase {
    fn name(&self) -> &'static str {
        "batch_norm_eval"
    }
    fn shape(&self) -> String {
        shape_text(self.shape, self.affine)
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let k = if self.affine { 5 } else { 3 };
        let mut v = vec![per_channel_shape(self.shape); k];
        v[0] = self.shape.to_vec();
        v
    }
    fn output(&self) -> Vec<usize> {
        self.shape.to_vec()
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; self.inputs().len()]
    }
    fn sample_input(&self, i: usize, rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        if i + 1 == self.inputs().len() {
            // A variance: positive, and not so small that eps dominates.
            (0..n).map(|_| rng.random_range(0.1..2.0)).collect()
        } else {
            crate::ops::check::random_vec(rng, n)
        }
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let k = x.len();
        let (g, b) = if self.affine { (Some(&x[1][..]), Some(&x[2][..])) } else { (None, None) };
        reference::normalize(&x[0], self.shape, &x[k - 2], &x[k - 1], g, b, EPS)
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let k = x.len();
        let (g, b) = if self.affine { (Some(&x[1]), Some(&x[2])) } else { (None, None) };
        forward_eval(step, &x[0], g, b, &x[k - 2], &x[k - 1], &BatchNorm::default(), y)?;
        Ok(vec![])
    }
    fn backward(&self, _step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], _dy: &Tensor, _wrt: usize, _dx: &Tensor) -> Result<()> {
        Err(Error::Invalid("batch_norm_eval has no backward (training uses training mode)".into()))
    }
    fn flops(&self, _pass: Pass) -> f64 {
        3.0 * numel(&self.shape) as f64
    }
    fn bytes(&self, _pass: Pass) -> f64 {
        8.0 * numel(&self.shape) as f64
    }
}

/// Scalar path: batch 1 at 7x7, 1x1 spatial (three values per channel), and an odd 9x11 with
/// 17 channels. Vec4 path (see [`unit_planes`]): planes of whole vec4s (U = 1), pairs of
/// 3x2 planes (U = 2), fours of 7x7 planes (U = 4), fours of single values, and one channel
/// (coefficient buffers shorter than a vec4 unless padded).
const TEST_SHAPES: &[[usize; 4]] =
    &[[1, 3, 7, 7], [3, 5, 1, 1], [2, 17, 9, 11], [2, 4, 4, 4], [1, 3, 2, 6], [2, 6, 3, 2], [3, 4, 7, 7], [5, 8, 1, 1], [2, 1, 4, 4]];

/// The training-mode case at one shape (autotune times it; tests check variants with it).
pub fn train_case(shape: [usize; 4], affine: bool) -> Box<dyn OpCase> {
    Box::new(TrainCase { shape, affine })
}

pub fn train_test_cases() -> Vec<Box<dyn OpCase>> {
    TEST_SHAPES
        .iter()
        .flat_map(|&shape| [true, false].map(|affine| Box::new(TrainCase { shape, affine }) as Box<dyn OpCase>))
        .collect()
}
pub fn train_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&shape| Box::new(TrainCase { shape, affine: true }) as Box<dyn OpCase>).collect()
}
pub fn eval_test_cases() -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<Box<dyn OpCase>> = TEST_SHAPES.iter().map(|&shape| Box::new(EvalCase { shape, affine: true }) as Box<dyn OpCase>).collect();
    v.push(Box::new(EvalCase { shape: [2, 5, 3, 3], affine: false }));
    v
}
pub fn eval_bench_cases() -> Vec<Box<dyn OpCase>> {
    BENCH_SHAPES.iter().map(|&shape| Box::new(EvalCase { shape, affine: true }) as Box<dyn OpCase>).collect()
}
