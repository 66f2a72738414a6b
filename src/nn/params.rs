//! Trainable parameters and batch-norm statistics, addressed by stable names
//! ("cells.3.node2.from0.sep_conv_3x3.dw1"), so a candidate's weights are the supernet's own
//! tensors and a checkpoint is a plain name -> tensor map.

use crate::error::Result;
use crate::gpu::{Gpu, Step};
use crate::ops::{elementwise, optim};
use crate::tensor::{numel, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
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
    /// SGD momentum buffer, created zero on the first update.
    pub momentum: Option<Tensor>,
}

pub struct ParamStore {
    gpu: Arc<Gpu>,
    seed: u64,
    params: BTreeMap<String, Param>,
    /// Parameters whose `grad` holds a gradient written since the last update.
    touched: BTreeSet<String>,
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
        ParamStore { gpu: gpu.clone(), seed, params: BTreeMap::new(), touched: BTreeSet::new() }
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
        let n = numel(shape);
        let data: Vec<f32> = match init {
            Init::Const(v) => vec![v; n],
            Init::FanIn(fan_in) => {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(self.seed, name));
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            }
        };
        self.insert(step, name, shape, &data)
    }

    /// Create or overwrite a parameter with given values (checkpoint load, tests).
    pub fn insert(&mut self, step: &mut Step, name: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let value = Tensor::empty(&self.gpu, shape);
        step.upload(&value.buf, 0, bytemuck::cast_slice(data))?;
        let grad = Tensor::empty(&self.gpu, shape);
        self.params.insert(name.to_string(), Param { value: value.clone(), grad, momentum: None });
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
    /// parameters only — the rest of the supernet, its momentum included, is left alone.
    pub fn sgd_update(&mut self, step: &mut Step, cfg: &optim::Sgd, max_norm: Option<f32>) -> Result<()> {
        let names: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
        if let Some(max_norm) = max_norm {
            let grads: Vec<&Tensor> = names.iter().map(|n| &self.params[n].grad).collect();
            let norm_sq = Tensor::empty(&self.gpu, &[1]);
            optim::grad_norm_sq(step, &grads, &norm_sq)?;
            optim::clip_grads(step, &grads, &norm_sq, max_norm)?;
        }
        for name in &names {
            let gpu = self.gpu.clone();
            let p = self.params.get_mut(name).expect("touched names are parameters");
            if p.momentum.is_none() {
                let m = Tensor::empty(&gpu, &p.value.shape);
                elementwise::fill(step, &m, 0.0)?;
                p.momentum = Some(m);
            }
            optim::sgd_step(step, &p.value, &p.grad, p.momentum.as_ref().unwrap(), cfg)?;
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
                if p.value.shape != *shape {
                    return Err(crate::Error::Shape { op: "checkpoint", message: format!("momentum of '{base}' is {shape:?}, the parameter {:?}", p.value.shape) });
                }
                let m = Tensor::empty(&self.gpu, shape);
                step.upload(&m.buf, 0, bytemuck::cast_slice(data))?;
                p.momentum = Some(m);
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
