//! Every op: one shader file in `shaders/`, one module here holding its launchers (forward,
//! backward to input, backward to weights), its plain CPU reference (`reference` submodule,
//! used by tests only) and its cases (test shapes and bench shapes). Adding an op means adding
//! its module and one line to [`FAMILIES`]; tests (`tests/ops.rs`), criterion benches and
//! `cellnas bench` all iterate this registry.

pub mod batchnorm;
pub mod batchnorm_wg;
pub mod check;
pub mod concat;
pub mod conv2d;
pub mod crop;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod mix;
pub mod arena;
pub mod optim;
pub mod optim_multi;
pub mod pool;

use crate::error::Result;
use crate::gpu::Step;
use crate::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

/// Which launcher a benchmark row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::BackwardInput => "backward_input",
            Pass::BackwardWeight => "backward_weight",
        }
    }
    /// Gradient of input 0 is "backward_input"; of any other input (weights, scale, bias) is
    /// "backward_weight".
    pub fn of_input(i: usize) -> Pass {
        if i == 0 { Pass::BackwardInput } else { Pass::BackwardWeight }
    }
}

/// One op at one shape: what the checker and the benchmarks need to run it.
pub trait OpCase: Send + Sync {
    fn name(&self) -> &'static str;
    /// Human-readable shape and settings, e.g. "n1 c3 7x7 k3 s2 p1 g1".
    fn shape(&self) -> String;
    /// Shapes of the inputs (input 0 is the activation, then weights/parameters).
    fn inputs(&self) -> Vec<Vec<usize>>;
    fn output(&self) -> Vec<usize>;
    /// Which inputs get a gradient (and so a backward check).
    fn differentiable(&self) -> Vec<bool> {
        vec![true; self.inputs().len()]
    }
    /// Random values for input `i` (default uniform in [-1, 1], never zero).
    fn sample_input(&self, _i: usize, rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        check::random_vec(rng, n)
    }
    /// (atol, rtol) for GPU vs reference; see `check` for the rationale.
    fn tolerance(&self) -> (f64, f64) {
        (1e-4, 1e-4)
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64>;
    /// Gradient of sum(dy * forward(x)) with respect to each input (empty for inputs that are
    /// not differentiable).
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>>;
    /// Record the forward pass writing `y`; returns tensors saved for the backward pass.
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>>;
    /// Record the launcher that writes the gradient of input `wrt` into `dx`.
    fn backward(&self, step: &mut Step, x: &[Tensor], y: &Tensor, saved: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()>;
    /// Floating-point operations of a pass (multiply-add = 2), for GFLOP/s.
    fn flops(&self, pass: Pass) -> f64;
    /// Bytes a pass must move at least once, for GB/s of memory-bound ops.
    fn bytes(&self, pass: Pass) -> f64;
}

pub type Cases = fn() -> Vec<Box<dyn OpCase>>;

/// An op family: its test cases (odd, tiny shapes) and its bench cases (supernet shapes).
pub struct Family {
    pub name: &'static str,
    pub test_cases: Cases,
    pub bench_cases: Cases,
}

/// The registry.
pub const FAMILIES: &[Family] = &[
    Family { name: "relu", test_cases: elementwise::relu_test_cases, bench_cases: elementwise::relu_bench_cases },
    Family { name: "zero", test_cases: elementwise::zero_test_cases, bench_cases: elementwise::zero_bench_cases },
    Family { name: "add", test_cases: elementwise::add_test_cases, bench_cases: elementwise::add_bench_cases },
    Family { name: "conv2d", test_cases: conv2d::test_cases, bench_cases: conv2d::bench_cases },
    Family { name: "conv2d_fused", test_cases: conv2d::relu_test_cases, bench_cases: conv2d::relu_bench_cases },
    Family { name: "linear", test_cases: linear::test_cases, bench_cases: linear::bench_cases },
    Family { name: "softmax_cross_entropy", test_cases: loss::cross_entropy_test_cases, bench_cases: loss::cross_entropy_bench_cases },
    Family { name: "sgd", test_cases: optim::sgd_test_cases, bench_cases: optim::sgd_bench_cases },
    Family { name: "adam", test_cases: optim::adam_test_cases, bench_cases: optim::adam_bench_cases },
    Family { name: "sgd_multi", test_cases: optim_multi::test_cases, bench_cases: optim_multi::bench_cases },
    Family { name: "grad_norm", test_cases: optim::grad_norm_test_cases, bench_cases: optim::grad_norm_bench_cases },
    Family { name: "max_pool", test_cases: pool::max_pool_test_cases, bench_cases: pool::max_pool_bench_cases },
    Family { name: "avg_pool", test_cases: pool::avg_pool_test_cases, bench_cases: pool::avg_pool_bench_cases },
    Family { name: "global_avg_pool", test_cases: pool::global_avg_pool_test_cases, bench_cases: pool::global_avg_pool_bench_cases },
    Family { name: "concat", test_cases: concat::concat_test_cases, bench_cases: concat::concat_bench_cases },
    Family { name: "crop", test_cases: crop::test_cases, bench_cases: crop::bench_cases },
    Family { name: "batch_norm", test_cases: batchnorm::train_test_cases, bench_cases: batchnorm::train_bench_cases },
    Family { name: "mix", test_cases: mix::mix_test_cases, bench_cases: mix::mix_bench_cases },
    Family { name: "softmax_rows", test_cases: mix::softmax_test_cases, bench_cases: mix::softmax_bench_cases },
    Family { name: "batch_norm_eval", test_cases: batchnorm::eval_test_cases, bench_cases: batchnorm::eval_bench_cases },
];

pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Shapes tests use: batch 1, 1x1 and 7x7 spatial, channel counts not multiples of any
/// workgroup size, odd sizes.
pub const ODD_SHAPES: &[[usize; 4]] = &[[1, 3, 7, 7], [2, 5, 1, 1], [3, 17, 9, 11], [1, 1, 1, 1]];
/// Activation shapes of the supernet at batch 64.
pub const BENCH_SHAPES: &[[usize; 4]] = &[[64, 16, 28, 28], [64, 32, 14, 14], [64, 64, 7, 7]];

/// "64x16x28x28": shapes in names and bench ids.
pub fn fmt_shape(s: &[usize]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}
