//! Trainable parameters and batch-norm statistics, addressed by stable names
//! ("cells.3.node2.from0.sep_conv_3x3.dw1"), so a candidate's weights are the supernet's own
//! tensors and a checkpoint is a plain name -> tensor map.

use crate::error::Result;
use crate::gpu::{Gpu, Step};
use crate::gpu::Buffer;
use crate::ops::arena::{Arena, Slot};
use crate::ops::optim_multi::{self, BlockBufs, Plan, Segment};
use crate::ops::{elementwise, optim};
use crate::tensor::{numel, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// How a parameter starts. Values come from a generator seeded by (seed, name), so creation
/// order (lazy, path by path) does not change them.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for conv and linear layers.
    FanIn(usize),
    Const(f32),
}

pub struct Param {
    pub value: Tensor,
    pub grad: Tensor,
    /// SGD momentum buffer: Some once the parameter has been updated (or loaded with one); it
    /// lives in the arena from the start, zero until then.
    pub momentum: Option<Tensor>,
    slot: Slot,
    arena_momentum: Tensor,
}

/// Distinct touched sets whose uploaded chunk tables are kept: a stand-alone network (or a
/// FairNAS round) repeats its set every step and then uploads nothing; SPOS rarely repeats a
/// path, and older entries are dropped.
const PLAN_CACHE: usize = 8;

/// A touched set's chunk table and the device buffer it was uploaded into.
type CachedPlan = Arc<(Plan, Buffer)>;

pub struct ParamStore {
    gpu: Arc<Gpu>,
    seed: u64,
    params: BTreeMap<String, Param>,
    /// Parameters whose `grad` holds a gradient written since the last update.
    touched: BTreeSet<String>,
    arena: Arena,
    plans: VecDeque<(Vec<String>, CachedPlan)>,
    /// Adam's second moments, by parameter, for those `adam_update` has stepped (its first
    /// moments use the momentum slot).
    second: BTreeMap<String, Tensor>,
}

/// The `n` starting values of parameter `name` under `seed`.
pub fn initial_values(seed: u64, name: &str, n: usize, init: Init) -> Vec<f32> {
    match init {
        Init::Const(v) => vec![v; n],
        Init::FanIn(fan_in) => {
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(seed, name));
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        }
    }
}

pub fn name_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

impl ParamStore {
    pub fn new(gpu: &Arc<Gpu>, seed: u64) -> ParamStore {
        ParamStore::with_block_bytes(gpu, seed, None)
    }

    /// A store whose arena blocks hold `block_bytes` (tests use small ones to get many).
    pub fn with_block_bytes(gpu: &Arc<Gpu>, seed: u64, block_bytes: Option<u64>) -> ParamStore {
        let arena = Arena::new(gpu, block_bytes);
        ParamStore { gpu: gpu.clone(), seed, params: BTreeMap::new(), touched: BTreeSet::new(), arena, plans: VecDeque::new(), second: BTreeMap::new() }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.params.keys()
    }

    /// Arena blocks holding the parameters (each costs the multi-tensor update a dispatch or two).
    pub fn arena_blocks(&self) -> usize {
        self.arena.blocks().len()
    }

    /// The parameter's value, created (in order within `step`) on first use.
    pub fn value(&mut self, step: &mut Step, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        if let Some(p) = self.params.get(name) {
            if p.value.shape != shape {
                return Err(crate::Error::Shape {
                    op: "parameter",
                    message: format!("'{name}' exists with shape {:?}, asked for {shape:?}", p.value.shape),
                });
            }
            return Ok(p.value.clone());
        }
        let data = initial_values(self.seed, name, numel(shape), init);
        self.insert(step, name, shape, &data)
    }

    /// Create or overwrite a parameter with given values (checkpoint load, tests). Overwriting
    /// keeps its arena slot when the shape is the same and resets its momentum to zero.
    pub fn insert(&mut self, step: &mut Step, name: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(crate::Error::Shape { op: "parameter", message: format!("'{name}': {} values for shape {shape:?}", data.len()) });
        }
        let reuse = self.params.get(name).filter(|p| p.value.shape == shape).map(|p| p.slot);
        let fresh = reuse.is_none();
        if fresh && self.params.contains_key(name) {
            // The name moves to a new slot: cached tables still point at the old one.
            self.plans.clear();
        }
        let slot = match reuse {
            Some(s) => s,
            None => self.arena.alloc(step, data.len())?,
        };
        let (value, grad, momentum) = self.arena.tensors(&slot, shape)?;
        step.upload(&value.buf, 0, bytemuck::cast_slice(data))?;
        if !fresh {
            elementwise::fill(step, &momentum, 0.0)?;
        }
        self.params.insert(name.to_string(), Param { value: value.clone(), grad, momentum: None, slot, arena_momentum: momentum });
        Ok(value)
    }

    /// Where the gradient of `name` goes: the parameter's own grad tensor the first time in an
    /// accumulation round (overwritten), else a scratch tensor the caller must accumulate.
    pub(crate) fn grad_target(&mut self, name: &str) -> (Tensor, bool) {
        let p = &self.params[name];
        if self.touched.insert(name.to_string()) {
            (p.grad.clone(), true)
        } else {
            (Tensor::empty(&self.gpu, &p.grad.shape), false)
        }
    }

    /// Names with a gradient since the last update (what one path used).
    pub fn touched(&self) -> Vec<String> {
        self.touched.iter().cloned().collect()
    }

    /// Clip the touched gradients to `max_norm` (if any) and apply SGD to the touched
    /// parameters only — the rest of the supernet, its momentum included, is left alone. One
    /// multi-tensor update over the arena (`ops::optim_multi`): a few dispatches per arena
    /// block, the global norm summed in name order as the per-tensor path does.
    pub fn sgd_update(&mut self, step: &mut Step, cfg: &optim::Sgd, max_norm: Option<f32>) -> Result<()> {
        let names: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
        if names.is_empty() {
            return Ok(());
        }
        let plan = self.plan_for(step, names)?;
        let blocks: Vec<BlockBufs> = self.arena.blocks().iter().map(|b| BlockBufs { value: &b.value, grad: &b.grad, momentum: &b.momentum }).collect();
        optim_multi::sgd_multi(step, &blocks, &plan.0, &plan.1, cfg, max_norm, None)?;
        let names = &self.plans.back().expect("plan_for keeps the plan it returns").0;
        for name in names {
            let p = self.params.get_mut(name).expect("touched names are parameters");
            p.momentum.get_or_insert_with(|| p.arena_momentum.clone());
        }
        Ok(())
    }

    /// The uploaded chunk table of a touched set, from the cache or built and uploaded in
    /// `step`; it ends up as the cache's newest entry.
    fn plan_for(&mut self, step: &mut Step, names: Vec<String>) -> Result<CachedPlan> {
        if let Some(i) = self.plans.iter().position(|(n, _)| *n == names) {
            let hit = self.plans.remove(i).expect("position is in range");
            let plan = hit.1.clone();
            self.plans.push_back(hit);
            return Ok(plan);
        }
        let segments: Vec<Segment> = names
            .iter()
            .map(|n| {
                let s = self.params[n].slot;
                Segment { block: s.block, offset: s.offset, len: s.len }
            })
            .collect();
        let elems: Vec<u64> = self.arena.blocks().iter().map(|b| b.elems()).collect();
        let plan = Plan::new(&self.gpu, &segments, &elems)?;
        // Powers of two keep the pool's set of table sizes small while paths vary.
        let table = self.gpu.alloc(plan.table_bytes().next_power_of_two());
        step.upload(&table, 0, plan.bytes())?;
        let entry = Arc::new((plan, table));
        if self.plans.len() == PLAN_CACHE {
            self.plans.pop_front();
        }
        self.plans.push_back((names, entry.clone()));
        Ok(entry)
    }

    /// The simple reference path of `sgd_update`: a norm dispatch and a clip dispatch per
    /// tensor, then one SGD dispatch per tensor. Same result (tests compare them).
    pub fn sgd_update_per_tensor(&mut self, step: &mut Step, cfg: &optim::Sgd, max_norm: Option<f32>) -> Result<()> {
        let names: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
        if let Some(max_norm) = max_norm {
            let grads: Vec<&Tensor> = names.iter().map(|n| &self.params[n].grad).collect();
            let norm_sq = Tensor::empty(&self.gpu, &[1]);
            optim::grad_norm_sq(step, &grads, &norm_sq)?;
            optim::clip_grads(step, &grads, &norm_sq, max_norm)?;
        }
        for name in &names {
            let p = self.params.get_mut(name).expect("touched names are parameters");
            let m = p.momentum.get_or_insert_with(|| p.arena_momentum.clone());
            optim::sgd_step(step, &p.value, &p.grad, m, cfg)?;
        }
        Ok(())
    }

    /// Adam on the touched parameters (DARTS's architecture weights, few and small, so one
    /// dispatch each): the first moment in the momentum slot, the second alongside; `t` is the
    /// 1-based count of Adam steps taken on them.
    pub fn adam_update(&mut self, step: &mut Step, cfg: &optim::Adam, t: u32) -> Result<()> {
        for name in std::mem::take(&mut self.touched) {
            let p = self.params.get_mut(&name).expect("touched names are parameters");
            let m = p.momentum.get_or_insert_with(|| p.arena_momentum.clone()).clone();
            let v = match self.second.get(&name) {
                Some(v) => v.clone(),
                None => {
                    let v = Tensor::empty(&self.gpu, &p.value.shape);
                    elementwise::fill(step, &v, 0.0)?;
                    self.second.insert(name.clone(), v.clone());
                    v
                }
            };
            optim::adam_step(step, &p.value, &p.grad, &m, &v, cfg, t)?;
        }
        Ok(())
    }

    /// Forget gradients without applying them (evaluation never calls backward, but a failed
    /// step may leave some).
    pub fn clear_touched(&mut self) {
        self.touched.clear();
    }

    /// Every tensor worth saving: values and momentum buffers.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (n, p) in &self.params {
            out.push((n.clone(), &p.value));
            if let Some(m) = &p.momentum {
                out.push((format!("{n}#momentum"), m));
            }
            if let Some(v) = self.second.get(n) {
                out.push((format!("{n}#adam_v"), v));
            }
        }
        out
    }

    /// Restore from a name -> (shape, values) list written by `named_tensors`.
    pub fn load(&mut self, step: &mut Step, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
        for (name, shape, data) in tensors.iter().filter(|(n, _, _)| !n.contains('#')) {
            self.insert(step, name, shape, data)?;
        }
        for (name, shape, data) in tensors {
            if let Some(base) = name.strip_suffix("#momentum") {
                let p = self.params.get_mut(base).ok_or_else(|| crate::Error::Invalid(format!("momentum for unknown parameter '{base}'")))?;
                if p.value.shape != *shape || data.len() != numel(shape) {
                    return Err(crate::Error::Shape { op: "checkpoint", message: format!("momentum of '{base}' is {shape:?}, the parameter {:?}", p.value.shape) });
                }
                step.upload(&p.arena_momentum.buf, 0, bytemuck::cast_slice(data))?;
                p.momentum = Some(p.arena_momentum.clone());
            }
            if let Some(base) = name.strip_suffix("#adam_v") {
                let p = self.params.get(base).ok_or_else(|| crate::Error::Invalid(format!("Adam second moment for unknown parameter '{base}'")))?;
                if p.value.shape != *shape || data.len() != numel(shape) {
                    return Err(crate::Error::Shape { op: "checkpoint", message: format!("Adam second moment of '{base}' is {shape:?}, the parameter {:?}", p.value.shape) });
                }
                let v = Tensor::empty(&self.gpu, shape);
                step.upload(&v.buf, 0, bytemuck::cast_slice(data))?;
                self.second.insert(base.to_string(), v);
            }
        }
        Ok(())
    }

    /// Total number of scalars in the named parameters.
    pub fn count(&self, names: &[String]) -> u64 {
        names.iter().filter_map(|n| self.params.get(n)).map(|p| p.value.numel() as u64).sum()
    }
}

/// Batch-norm running statistics by layer name. The supernet keeps one set while training;
/// each candidate evaluation recalibrates a fresh set.
#[derive(Default)]
pub struct BnStats {
    pub map: BTreeMap<String, (Tensor, Tensor)>,
    /// Momentum for running-statistic updates; recalibration sets 1/(k+1) for its k-th batch
    /// so the result is the plain average over the batches.
    pub momentum: f32,
}

impl BnStats {
    pub fn new() -> BnStats {
        BnStats { map: BTreeMap::new(), momentum: 0.1 }
    }

    /// (mean, var) of layer `name` with `c` channels, created as (0, 1) on first use.
    pub fn get(&mut self, step: &mut Step, gpu: &Gpu, name: &str, c: usize) -> Result<(Tensor, Tensor)> {
        if let Some(s) = self.map.get(name) {
            return Ok(s.clone());
        }
        let (m, v) = (Tensor::empty(gpu, &[c]), Tensor::empty(gpu, &[c]));
        elementwise::fill(step, &m, 0.0)?;
        elementwise::fill(step, &v, 1.0)?;
        self.map.insert(name.to_string(), (m.clone(), v.clone()));
        Ok((m, v))
    }
}

impl BnStats {
    /// "bn:<layer>.mean" / "bn:<layer>.var" for checkpoints.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (n, (m, v)) in &self.map {
            out.push((format!("bn:{n}.mean"), m));
            out.push((format!("bn:{n}.var"), v));
        }
        out
    }

    /// Restore what `named_tensors` wrote; other names are ignored.
    pub fn load(&mut self, step: &mut Step, gpu: &Gpu, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
        let find = |name: &str| tensors.iter().find(|(n, _, _)| n == name);
        for (name, shape, data) in tensors {
            let Some(layer) = name.strip_prefix("bn:").and_then(|n| n.strip_suffix(".mean")) else { continue };
            let (_, vshape, vdata) = find(&format!("bn:{layer}.var"))
                .ok_or_else(|| crate::Error::Invalid(format!("checkpoint has the mean but not the variance of BN layer '{layer}'")))?;
            let (m, v) = (Tensor::empty(gpu, shape), Tensor::empty(gpu, vshape));
            step.upload(&m.buf, 0, bytemuck::cast_slice(data))?;
            step.upload(&v.buf, 0, bytemuck::cast_slice(vdata))?;
            self.map.insert(layer.to_string(), (m, v));
        }
        Ok(())
    }
}
