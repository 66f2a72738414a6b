//! Fully connected layer, PyTorch `nn.Linear` layout: y[N,M] = x[N,K] * w[M,K]^T + b[M].
//! `x` may carry trailing dimensions (e.g. [N,C,1,1] after global pooling): it is read as
//! [N, numel/N]. Shader: `shaders/linear.wgsl` (one tiled contraction kernel for all passes).

use super::{OpCase, Pass};
use crate::error::{Error, Result};
use crate::gpu::{Kernel, Step};
use crate::kernel;
use crate::tensor::{numel, Tensor};

const MATMUL: Kernel = kernel!("linear.wgsl", "matmul", [1: Read, 2: Read, 3: Read, 4: ReadWrite]);
const BIAS_GRAD: Kernel = kernel!("linear.wgsl", "bias_grad", [1: Read, 4: ReadWrite]);

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    len: u32,
    tiles_c: u32,
    a_row: u32,
    a_step: u32,
    b_col: u32,
    b_step: u32,
    has_bias: u32,
    pad: [u32; 3],
}

fn shape_err(op: &'static str, message: String) -> Error {
    Error::Shape { op, message }
}

/// (N, K, M) from x [N, K..] and w [M, K].
fn dims(op: &'static str, x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let [m, k] = w.shape[..] else {
        return Err(shape_err(op, format!("weight must be [M, K], got {:?}", w.shape)));
    };
    if x.shape.len() < 2 || numel(&x.shape[1..]) != k {
        return Err(shape_err(op, format!("input {:?} does not have K = {k} features per row (weight {:?})", x.shape, w.shape)));
    }
    Ok((x.shape[0], k, m))
}

/// `t` must hold `rows` x `cols` values with `rows` leading.
fn expect(op: &'static str, what: &str, t: &Tensor, rows: usize, cols: usize) -> Result<()> {
    if t.shape.first() != Some(&rows) || t.numel() != rows * cols {
        return Err(shape_err(op, format!("{what} is {:?}, expected [{rows}, {cols}]", t.shape)));
    }
    Ok(())
}

fn expect_bias(op: &'static str, b: &Tensor, m: usize) -> Result<()> {
    if b.shape != [m] {
        return Err(shape_err(op, format!("bias is {:?}, expected [{m}]", b.shape)));
    }
    Ok(())
}

/// One contraction `out[i, j] = sum_l a(i, l) b(j, l) (+ bias[j])`; see the shader header.
fn matmul(step: &mut Step, a: &Tensor, b: &Tensor, bias: Option<&Tensor>, out: &Tensor, p: Params) -> Result<()> {
    let tiles_c = p.cols.div_ceil(4);
    let tiles = p.rows.div_ceil(4) as u64 * tiles_c as u64;
    if tiles > u32::MAX as u64 || out.numel() > u32::MAX as usize {
        return Err(Error::Invalid(format!("linear: output {:?} is too large to index with u32", out.shape)));
    }
    let wg = step.gpu().wg1d();
    let groups = step.gpu().grid(tiles as u32, wg);
    let p = Params { tiles_c, has_bias: bias.is_some() as u32, ..p };
    let bias = bias.unwrap_or(b);
    step.dispatch(&MATMUL, &[("WG", wg as f64)], &p, &[&a.buf, &b.buf, &bias.buf, &out.buf], groups)
}

fn u(v: usize) -> u32 {
    v as u32
}

/// y[N,M] = x[N,K] * w[M,K]^T + b[M] (no bias term when `b` is None).
pub fn forward(step: &mut Step, x: &Tensor, w: &Tensor, b: Option<&Tensor>, y: &Tensor) -> Result<()> {
    let op = "linear forward";
    let (n, k, m) = dims(op, x, w)?;
    expect(op, "output", y, n, m)?;
    if let Some(b) = b {
        expect_bias(op, b, m)?;
    }
    let p = Params { rows: u(n), cols: u(m), len: u(k), a_row: u(k), a_step: 1, b_col: u(k), b_step: 1, ..Default::default() };
    matmul(step, x, w, b, y, p)
}

/// dx[N,K] = dy[N,M] * w[M,K]. `dx` has the shape of the forward input.
pub fn backward_input(step: &mut Step, dy: &Tensor, w: &Tensor, dx: &Tensor) -> Result<()> {
    let op = "linear backward_input";
    let (n, k, m) = dims(op, dx, w)?;
    expect(op, "output gradient", dy, n, m)?;
    let p = Params { rows: u(n), cols: u(k), len: u(m), a_row: u(m), a_step: 1, b_col: 1, b_step: u(k), ..Default::default() };
    matmul(step, dy, w, None, dx, p)
}

/// dw[M,K] = dy[N,M]^T * x[N,K] and db[M] = sum_n dy[n, :]. Each element is summed over N by
/// one invocation in batch order, so the result is deterministic.
pub fn backward_weight(step: &mut Step, x: &Tensor, dy: &Tensor, dw: &Tensor, db: Option<&Tensor>) -> Result<()> {
    let op = "linear backward_weight";
    let (n, k, m) = dims(op, x, dw)?;
    expect(op, "output gradient", dy, n, m)?;
    if let Some(db) = db {
        expect_bias(op, db, m)?;
    }
    let p = Params { rows: u(m), cols: u(k), len: u(n), a_row: 1, a_step: u(m), b_col: 1, b_step: u(k), ..Default::default() };
    matmul(step, dy, x, None, dw, p)?;
    if let Some(db) = db {
        let wg = step.gpu().wg1d();
        let groups = step.gpu().grid(u(m), wg);
        let p = Params { cols: u(m), len: u(n), a_row: 1, a_step: u(m), ..Default::default() };
        step.dispatch(&BIAS_GRAD, &[("WG", wg as f64)], &p, &[&dy.buf, &db.buf], groups)?;
    }
    Ok(())
}

pub mod reference {
    /// y[n,m] = sum_k x[n,k] w[m,k] + b[m]
    pub fn forward(x: &[f64], w: &[f64], b: Option<&[f64]>, n: usize, k: usize, m: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                let mut s = b.map_or(0.0, |b| b[j]);
                for l in 0..k {
                    s += x[i * k + l] * w[j * k + l];
                }
                y[i * m + j] = s;
            }
        }
        y
    }
    /// dx[n,k] = sum_m dy[n,m] w[m,k]
    pub fn backward_input(dy: &[f64], w: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
        let mut dx = vec![0.0; n * k];
        for i in 0..n {
            for l in 0..k {
                dx[i * k + l] = (0..m).map(|j| dy[i * m + j] * w[j * k + l]).sum();
            }
        }
        dx
    }
    /// (dw[m,k] = sum_n dy[n,m] x[n,k], db[m] = sum_n dy[n,m])
    pub fn backward_weight(x: &[f64], dy: &[f64], n: usize, k: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
        let mut dw = vec![0.0; m * k];
        let mut db = vec![0.0; m];
        for j in 0..m {
            for l in 0..k {
                dw[j * k + l] = (0..n).map(|i| dy[i * m + j] * x[i * k + l]).sum();
            }
            db[j] = (0..n).map(|i| dy[i * m + j]).sum();
        }
        (dw, db)
    }
}

struct LinearCase {
    /// Input shape: [N, K] or [N, K, 1, 1].
    x: Vec<usize>,
    m: usize,
    bias: bool,
}

impl LinearCase {
    fn nkm(&self) -> (usize, usize, usize) {
        (self.x[0], numel(&self.x[1..]), self.m)
    }
}

impl OpCase for LinearCase {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn shape(&self) -> String {
        let (_, _, m) = self.nkm();
        format!("x{:?} m{m}{}", self.x, if self.bias { "" } else { " no bias" })
    }
    fn inputs(&self) -> Vec<Vec<usize>> {
        let (_, k, m) = self.nkm();
        let mut v = vec![self.x.clone(), vec![m, k]];
        if self.bias {
            v.push(vec![m]);
        }
        v
    }
    fn output(&self) -> Vec<usize> {
        vec![self.x[0], self.m]
    }
    fn tolerance(&self) -> (f64, f64) {
        // f32 sums over K (forward), M (input gradient) or N (weight gradient): widen past 64 terms.
        let (n, k, m) = self.nkm();
        let t = 1e-4 * (n.max(k).max(m) as f64 / 64.0).max(1.0);
        (t, t)
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let (n, k, m) = self.nkm();
        reference::forward(&x[0], &x[1], x.get(2).map(|b| &b[..]), n, k, m)
    }
    fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
        let (n, k, m) = self.nkm();
        let (dw, db) = reference::backward_weight(&x[0], dy, n, k, m);
        let mut g = vec![reference::backward_input(dy, &x[1], n, k, m), dw];
        if self.bias {
            g.push(db);
        }
        g
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        forward(step, &x[0], &x[1], x.get(2), y)?;
        Ok(vec![])
    }
    fn backward(&self, step: &mut Step, x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, wrt: usize, dx: &Tensor) -> Result<()> {
        match wrt {
            0 => backward_input(step, dy, &x[1], dx),
            1 => backward_weight(step, &x[0], dy, dx, None),
            _ => {
                // The bias gradient comes with a weight gradient; this one is scratch.
                let dw = Tensor::empty(step.gpu(), &x[1].shape);
                backward_weight(step, &x[0], dy, &dw, Some(dx))
            }
        }
    }
    fn flops(&self, pass: Pass) -> f64 {
        let (n, k, m) = self.nkm();
        let mm = 2.0 * (n * k * m) as f64;
        match pass {
            Pass::BackwardInput => mm,
            _ if self.bias => mm + (n * m) as f64,
            _ => mm,
        }
    }
    fn bytes(&self, pass: Pass) -> f64 {
        let (n, k, m) = self.nkm();
        let b = if self.bias { m } else { 0 };
        4.0 * match pass {
            Pass::Forward => n * k + m * k + b + n * m,
            Pass::BackwardInput => n * m + m * k + n * k,
            Pass::BackwardWeight => n * k + n * m + m * k + b,
        } as f64
    }
}

fn case(x: &[usize], m: usize, bias: bool) -> Box<dyn OpCase> {
    Box::new(LinearCase { x: x.to_vec(), m, bias })
}

pub fn test_cases() -> Vec<Box<dyn OpCase>> {
    vec![
        case(&[1, 7], 10, true),
        case(&[5, 17], 3, true),
        case(&[3, 64], 10, true),
        case(&[2, 5, 1, 1], 4, true),
        case(&[1, 1], 1, true),
        case(&[5, 17], 3, false),
        case(&[6, 9], 13, false),
    ]
}

pub fn bench_cases() -> Vec<Box<dyn OpCase>> {
    vec![case(&[64, 64], 10, true), case(&[64, 256], 10, true), case(&[64, 512], 512, true)]
}
