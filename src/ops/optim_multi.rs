//! Multi-tensor SGD: gradient clipping by the global norm, weight decay and the momentum update
//! of a whole set of parameters in an arena (`ops::arena`) in 2 dispatches per arena block plus
//! one (1 per block without clipping), instead of ~3 per tensor. The set is a list of segments
//! (block, offset, length); everything outside it, momentum included, is left alone, which is
//! what SPOS needs (only the sampled path's weights move). Same semantics as
//! `optim::grad_norm_sq` + `optim::clip_grads` + `optim::sgd_step` per tensor, which stay as the
//! simple reference path; the global norm is even bitwise the same (same chunks, same order).
//! Shader: the `*_multi` entry points of `shaders/optim.wgsl`.

use super::optim::Sgd;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const NORM_PARTIAL: Kernel = kernel!("optim.wgsl", "norm_partial_multi", [1: Read, 9: Read, 5: ReadWrite]);
const NORM_FINAL: Kernel = kernel!("optim.wgsl", "norm_final", [6: Read, 7: ReadWrite]);
const SGD: Kernel = kernel!("optim.wgsl", "sgd_multi", [1: Read, 2: ReadWrite, 3: ReadWrite, 8: Read, 9: Read]);

// One Params layout serves every entry point of optim.wgsl.
use super::optim::{Params, PER_INVOCATION};

/// Elements of one parameter's slot in an arena block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub block: usize,
    pub offset: u32,
    pub len: u32,
}

/// The device-side description of one segment list: chunks of WG * 8 elements (one workgroup
/// each), grouped by block. Build it once per distinct list and upload `bytes()` into a buffer
/// of at least `table_bytes()`; it can be reused for every step that updates the same set.
#[derive(Clone, Debug)]
pub struct Plan {
    wg: u32,
    chunks: Vec<[u32; 4]>,
    /// (block, first chunk, chunk count), blocks in ascending order.
    blocks: Vec<(usize, u32, u32)>,
    partials: u32,
}

/// Workgroup size of the reductions: the tree needs a power of two.
fn reduce_wg(gpu: &Gpu) -> u32 {
    let wg = gpu.wg1d();
    1 << (31 - wg.leading_zeros())
}

impl Plan {
    /// `segments` in the order their gradients enter the global norm (the caller's fixed order,
    /// e.g. by parameter name, so the norm does not depend on the arena layout);
    /// `block_elems[b]` is the size of block b. Segments must lie inside their block and not
    /// overlap (an overlap would update elements twice).
    pub fn new(gpu: &Gpu, segments: &[Segment], block_elems: &[u64]) -> Result<Plan> {
        let wg = reduce_wg(gpu);
        let chunk = wg * PER_INVOCATION;
        let bad = |m: String| Err(Error::Invalid(format!("multi-tensor plan: {m}")));
        let mut per_block: Vec<Vec<[u32; 4]>> = vec![Vec::new(); block_elems.len()];
        let mut spans: Vec<Vec<(u32, u32)>> = vec![Vec::new(); block_elems.len()];
        let mut partials: u32 = 0;
        for s in segments {
            let Some(&elems) = block_elems.get(s.block) else {
                return bad(format!("segment {s:?} names block {} of {}", s.block, block_elems.len()));
            };
            if s.offset as u64 + s.len as u64 > elems {
                return bad(format!("segment {s:?} runs past its block of {elems} elements"));
            }
            spans[s.block].push((s.offset, s.len));
            for start in (0..s.len).step_by(chunk as usize) {
                per_block[s.block].push([s.offset + start, chunk.min(s.len - start), partials, 0]);
                partials = partials.checked_add(1).ok_or_else(|| Error::Invalid("multi-tensor plan: too many chunks".into()))?;
            }
        }
        for (b, sp) in spans.iter_mut().enumerate() {
            sp.sort_unstable();
            if let Some(w) = sp.windows(2).find(|w| w[0].0 + w[0].1 > w[1].0 && w[0].1 > 0 && w[1].1 > 0) {
                return bad(format!("segments at {} and {} of block {b} overlap", w[0].0, w[1].0));
            }
        }
        let mut chunks = Vec::with_capacity(partials as usize);
        let mut blocks = Vec::new();
        for (b, list) in per_block.into_iter().enumerate() {
            if !list.is_empty() {
                blocks.push((b, chunks.len() as u32, list.len() as u32));
                chunks.extend(list);
            }
        }
        Ok(Plan { wg, chunks, blocks, partials })
    }

    /// What to upload into the table buffer.
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.chunks)
    }

    /// Size of the table buffer (never 0: wgpu binds no empty buffer).
    pub fn table_bytes(&self) -> u64 {
        (16 * self.chunks.len() as u64).max(16)
    }

    /// Arena blocks the plan touches (each costs its own dispatches).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }
}

/// The three buffers of one arena block.
pub struct BlockBufs<'a> {
    pub value: &'a Buffer,
    pub grad: &'a Buffer,
    pub momentum: &'a Buffer,
}

/// Clip the plan's gradients to a global norm of `max_norm` (if given; PyTorch
/// clip_grad_norm_), then PyTorch SGD (`optim::sgd_step`) on the plan's parameters, in place in
/// the blocks' value and momentum buffers. `table` holds `plan.bytes()`. The clipped gradients
/// are not written back. When `norm_sq` is given it receives the squared global norm.
pub fn sgd_multi(step: &mut Step, blocks: &[BlockBufs], plan: &Plan, table: &Buffer, cfg: &Sgd, max_norm: Option<f32>, norm_sq: Option<&Tensor>) -> Result<()> {
    if cfg.nesterov && cfg.momentum <= 0.0 {
        return Err(Error::Invalid("sgd_multi: nesterov needs a momentum above 0 (as in PyTorch)".into()));
    }
    if let Some(m) = max_norm {
        if !(m > 0.0 && m.is_finite()) {
            return Err(Error::Invalid(format!("sgd_multi: max_norm must be positive and finite, got {m}")));
        }
    }
    if plan.wg != reduce_wg(step.gpu()) {
        return Err(Error::Invalid("sgd_multi: the plan was built for another device".into()));
    }
    if table.size() < plan.table_bytes() {
        return Err(Error::Invalid(format!("sgd_multi: table buffer has {} bytes, the plan needs {}", table.size(), plan.table_bytes())));
    }
    for &(b, _, _) in &plan.blocks {
        let Some(bb) = blocks.get(b) else {
            return Err(Error::Invalid(format!("sgd_multi: the plan uses block {b}, {} given", blocks.len())));
        };
        let size = bb.value.size();
        if bb.grad.size() != size || bb.momentum.size() != size {
            return Err(Error::Invalid(format!("sgd_multi: block {b}'s value, grad and momentum differ in size")));
        }
    }
    if let Some(out) = norm_sq.filter(|t| t.numel() < 1) {
        return Err(Error::Shape { op: "sgd_multi", message: format!("norm_sq is {:?}, needs at least one element", out.shape) });
    }
    let wg = plan.wg;
    let consts = [("WG", wg as f64)];
    let grid = |step: &Step, n: u32| -> Result<[u32; 3]> {
        let threads = n.checked_mul(wg).ok_or_else(|| Error::Invalid("sgd_multi: too many chunks in one block".into()))?;
        Ok(step.gpu().grid(threads, wg))
    };
    let clip = max_norm.is_some() || norm_sq.is_some();
    let scratch;
    let norm = if clip {
        let partials = Tensor::empty(step.gpu(), &[plan.partials.max(1) as usize]);
        for &(b, first, n) in &plan.blocks {
            let params = Params { n, offset: first, ..Default::default() };
            let g = grid(step, n)?;
            step.dispatch(&NORM_PARTIAL, &consts, &params, &[blocks[b].grad, table, &partials.buf], g)?;
        }
        let out = match norm_sq {
            Some(t) => t.clone(),
            None => Tensor::empty(step.gpu(), &[1]),
        };
        let params = Params { n: plan.partials, ..Default::default() };
        step.dispatch(&NORM_FINAL, &consts, &params, &[&partials.buf, &out.buf], [1, 1, 1])?;
        scratch = out;
        &scratch.buf
    } else {
        // Never read without clipping; the binding only has to exist.
        table
    };
    for &(b, first, n) in &plan.blocks {
        let params = Params {
            n,
            offset: first,
            nesterov: cfg.nesterov as u32,
            lr: cfg.lr,
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
            max_norm: max_norm.unwrap_or(0.0),
            ..Default::default()
        };
        let g = grid(step, n)?;
        let bb = &blocks[b];
        step.dispatch(&SGD, &consts, &params, &[bb.grad, bb.value, bb.momentum, norm, table], g)?;
    }
    Ok(())
}

pub mod reference {
    use super::super::optim::{reference as single, Sgd};

    /// Per tensor (param, grad, momentum); `skip[i]` leaves tensor i alone and out of the norm.
    /// Returns (param', momentum') per tensor.
    pub fn sgd_multi(tensors: &[(&[f64], &[f64], &[f64])], skip: &[bool], cfg: &Sgd, max_norm: Option<f64>) -> Vec<(Vec<f64>, Vec<f64>)> {
        let live: Vec<&[f64]> = tensors.iter().zip(skip).filter(|(_, s)| !**s).map(|(t, _)| t.1).collect();
        let coef = max_norm.map_or(1.0, |m| (m / (single::grad_norm_sq(&live).sqrt() + 1e-6)).min(1.0));
        tensors
            .iter()
            .zip(skip)
            .map(|(&(p, g, b), &s)| {
                if s {
                    (p.to_vec(), b.to_vec())
                } else {
                    let g: Vec<f64> = g.iter().map(|x| x * coef).collect();
                    single::sgd(p, &g, b, cfg)
                }
            })
            .collect()
    }
}

/// Tensors of `sizes` placed in an arena of `block_bytes` blocks; the non-skipped ones updated.
struct MultiSgdCase {
    sizes: Vec<usize>,
    skip: Vec<bool>,
    cfg: Sgd,
    max_norm: Option<f32>,
    block_bytes: Option<u64>,
}

impl super::OpCase for MultiSgdCase {
    fn name(&self) -> &'static str {
        "sgd_multi"
    }
    fn shape(&self) -> String {
        let c = &self.cfg;
        let sizes = match self.sizes.as_slice() {
            [n, rest @ ..] if rest.len() > 8 && rest.iter().all(|m| m == n) => format!("{}x{n}", rest.len() + 1),
            s => format!("{s:?}"),
        };
        let skipped: Vec<usize> = (0..self.skip.len()).filter(|&i| self.skip[i]).collect();
        let block = self.block_bytes.map_or("default".to_string(), |b| format!("{b}B"));
        let clip = self.max_norm.map_or("none".to_string(), |m| m.to_string());
        let nesterov = if c.nesterov { " nesterov" } else { "" };
        format!("sizes {sizes} skip {skipped:?} block {block} clip {clip} momentum{} wd{}{nesterov}", c.momentum, c.weight_decay)
    }
    /// param, grad, momentum of each tensor in turn.
    fn inputs(&self) -> Vec<Vec<usize>> {
        self.sizes.iter().flat_map(|&n| [vec![n], vec![n], vec![n]]).collect()
    }
    /// [param', momentum'] of each tensor in turn.
    fn output(&self) -> Vec<usize> {
        vec![2 * self.sizes.iter().sum::<usize>()]
    }
    fn differentiable(&self) -> Vec<bool> {
        vec![false; 3 * self.sizes.len()]
    }
    fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
        let t: Vec<(&[f64], &[f64], &[f64])> = x.chunks(3).map(|c| (c[0].as_slice(), c[1].as_slice(), c[2].as_slice())).collect();
        reference::sgd_multi(&t, &self.skip, &self.cfg, self.max_norm.map(|m| m as f64)).into_iter().flat_map(|(p, b)| [p, b].concat()).collect()
    }
    fn backward_ref(&self, _x: &[Vec<f64>], _dy: &[f64]) -> Vec<Vec<f64>> {
        vec![vec![]; 3 * self.sizes.len()]
    }
    fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
        let gpu = step.gpu().clone();
        let mut arena = super::arena::Arena::new(&gpu, self.block_bytes);
        let mut segments = Vec::new();
        let mut placed = Vec::new();
        for (i, (c, &n)) in x.chunks(3).zip(&self.sizes).enumerate() {
            let slot = arena.alloc(step, n)?;
            let (v, g, m) = arena.tensors(&slot, &[n])?;
            for (src, dst) in c.iter().zip([&v, &g, &m]) {
                step.copy(&src.buf, 0, &dst.buf, 0, 4 * n as u64);
            }
            if !self.skip[i] {
                segments.push(Segment { block: slot.block, offset: slot.offset, len: slot.len });
            }
            placed.push((v, m));
        }
        let elems: Vec<u64> = arena.blocks().iter().map(|b| b.elems()).collect();
        let plan = Plan::new(&gpu, &segments, &elems)?;
        let table = gpu.alloc(plan.table_bytes());
        step.upload(&table, 0, plan.bytes())?;
        let bufs: Vec<BlockBufs> = arena.blocks().iter().map(|b| BlockBufs { value: &b.value, grad: &b.grad, momentum: &b.momentum }).collect();
        sgd_multi(step, &bufs, &plan, &table, &self.cfg, self.max_norm, None)?;
        let mut at = 0;
        for (v, m) in &placed {
            for t in [v, m] {
                let bytes = 4 * t.numel() as u64;
                step.copy(&t.buf, 0, &y.buf, at, bytes);
                at += bytes;
            }
        }
        Ok(vec![])
    }
    fn backward(&self, _: &mut Step, _: &[Tensor], _: &Tensor, _: &[Tensor], _: &Tensor, _: usize, _: &Tensor) -> Result<()> {
        Err(Error::Invalid("optimizer ops have no backward pass".into()))
    }
    fn flops(&self, _pass: super::Pass) -> f64 {
        // Norm (2), clip (1), decay, momentum, lr (a multiply-add each) per updated element.
        let live: usize = self.sizes.iter().zip(&self.skip).filter(|(_, s)| !**s).map(|(n, _)| n).sum();
        9.0 * live as f64
    }
    fn bytes(&self, _pass: super::Pass) -> f64 {
        // Read grad twice, param, buf; write param, buf.
        let live: usize = self.sizes.iter().zip(&self.skip).filter(|(_, s)| !**s).map(|(n, _)| n).sum();
        24.0 * live as f64
    }
}

pub fn test_cases() -> Vec<Box<dyn super::OpCase>> {
    let cfg = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.05, nesterov: false };
    let sizes = vec![1, 7, 1000, 4099, 3, 517];
    let skip = vec![false, true, false, false, true, false];
    let mut cases: Vec<Box<dyn super::OpCase>> = Vec::new();
    // Small blocks spread the tensors over several (4099 gets one of its own); None = default.
    for block_bytes in [Some(8 << 10), None] {
        // 1.0 engages clipping (the norm of ~5600 values in [-1, 1] is ~40), 1e6 does not.
        for max_norm in [None, Some(1.0), Some(1e6)] {
            cases.push(Box::new(MultiSgdCase { sizes: sizes.clone(), skip: skip.clone(), cfg, max_norm, block_bytes }));
        }
    }
    let nesterov = Sgd { nesterov: true, weight_decay: 0.0, ..cfg };
    cases.push(Box::new(MultiSgdCase { sizes: sizes.clone(), skip: vec![false; 6], cfg: nesterov, max_norm: Some(1.0), block_bytes: Some(8 << 10) }));
    let plain = Sgd { momentum: 0.0, weight_decay: 0.0, ..cfg };
    cases.push(Box::new(MultiSgdCase { sizes, skip, cfg: plain, max_norm: None, block_bytes: Some(8 << 10) }));
    cases
}

pub fn bench_cases() -> Vec<Box<dyn super::OpCase>> {
    // The optimizer of a network: 64 tensors of 2^14 parameters, clipped, in one block that
    // they fill exactly (the case builds its arena every run, and zeroing a bigger block's
    // momentum would dominate the time). Compare with grad_norm's 64-tensor case plus sgd.
    let cfg = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 3e-4, nesterov: false };
    vec![Box::new(MultiSgdCase { sizes: vec![1 << 14; 64], skip: vec![false; 64], cfg, max_norm: Some(5.0), block_bytes: Some(4 << 20) })]
}
