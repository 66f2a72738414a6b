//! A tape over the kernels. Network code calls `g.conv(..)`, `g.bn(..)`, ... once; in training
//! mode each call records a node, and `backward()` walks the nodes in reverse, launching the
//! backward kernels and summing the gradients of values used more than once. Everything goes
//! into one `Step`, so a whole training step is one submit.
//!
//! A graph without a step (`Graph::count`) runs the same network code on shapes alone and
//! counts parameters and FLOPs: that is how a candidate's stand-alone size is reported.

use super::params::{BnStats, Init, ParamStore};
use super::trace::TracedOp;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Step};
use crate::ops::batchnorm::{self, BatchNorm};
use crate::ops::conv2d::{self, Conv2d};
use crate::ops::crop::{self, Crop};
use crate::ops::pool::{self, Pool2d};
use crate::ops::{concat, elementwise, linear, loss, mix};
use crate::tensor::{numel, Tensor};
use std::collections::BTreeSet;

mod backward;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

impl Var {
    /// The value's number in its graph (as a trace names it).
    pub fn index(self) -> usize {
        self.0
    }
}

/// What batch norm does and whether a tape is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated, tape recorded for backward.
    Train,
    /// Batch statistics and running-statistic updates, no tape (BN recalibration).
    Recalibrate,
    /// Running statistics, no tape.
    Eval,
}

enum Node {
    /// `relu`: y = conv(relu(x)) with the ReLU fused into the conv kernels (see `relu_conv`).
    Conv { x: Var, y: Var, w: String, p: Conv2d, relu: bool },
    Bn { x: Var, y: Var, affine: Option<(String, String)>, mean: Tensor, inv_std: Tensor },
    Relu { x: Var, y: Var },
    /// `argmax`: the max-pool forward's saved window maxima (None for average pooling).
    Pool { x: Var, y: Var, p: Pool2d, argmax: Option<Tensor> },
    Gap { x: Var, y: Var },
    Linear { x: Var, y: Var, w: String, b: String },
    Add { a: Var, b: Var, y: Var },
    Concat { xs: Vec<Var>, y: Var },
    Crop { x: Var, y: Var, c: Crop },
    /// w = softmax of each row of parameter `alpha` (architecture weights).
    Softmax { alpha: String, w: Var },
    /// y = sum_k w[index_k] * x_k (a mixed op's output).
    Mix { xs: Vec<(Var, usize)>, w: Var, y: Var },
}

struct Val {
    shape: Vec<usize>,
    t: Option<Tensor>,
}

pub struct Graph<'a> {
    step: Option<Step>,
    store: Option<&'a mut ParamStore>,
    bn_stats: Option<&'a mut BnStats>,
    mode: Mode,
    vals: Vec<Val>,
    tape: Vec<Node>,
    grads: Vec<Option<Tensor>>,
    /// Forward FLOPs (2 per multiply-add) of everything recorded.
    pub flops: f64,
    /// Parameter names used, with their sizes (for counting).
    used: BTreeSet<(String, usize)>,
    /// Shape and initialisation of every parameter used.
    inits: std::collections::BTreeMap<String, (Vec<usize>, Init)>,
    /// BN layers met (name, channels): with `used`, the tensors a checkpoint of the network holds.
    bn_layers: BTreeSet<(String, usize)>,
    /// Values that came from outside (data): no gradient is computed for them.
    inputs: BTreeSet<usize>,
    /// Counting graphs only: every convolution (input, weight shape, settings, ReLU fused on
    /// its input) and pooling recorded, for `cellnas autotune` to time the kernels a network runs.
    pub convs: Vec<(Vec<usize>, Vec<usize>, Conv2d, bool)>,
    pub pools: Vec<(Vec<usize>, Pool2d)>,
    pub relus: Vec<Vec<usize>>,
    /// Batch norms (input shape, affine).
    pub bns: Vec<(Vec<usize>, bool)>,
    /// `relu_conv` as one fused node (true) or a ReLU node and a conv node (the reference).
    fuse: bool,
    /// Parameters that get no gradient (see `freeze`).
    frozen: Option<Box<dyn Fn(&str) -> bool + 'a>>,
    /// Every op recorded, for export (see `nn::trace`); None unless asked for.
    trace: Option<Vec<TracedOp>>,
}

/// Whether graphs fuse ReLU -> conv by default: yes unless `CELLNAS_NO_FUSE` is set (to
/// something other than empty or 0), which keeps the unfused reference path to compare with.
pub fn fuse_default() -> bool {
    std::env::var_os("CELLNAS_NO_FUSE").is_none_or(|v| v.is_empty() || v == "0")
}

impl<'a> Graph<'a> {
    pub fn new(step: Step, store: &'a mut ParamStore, bn_stats: &'a mut BnStats, mode: Mode) -> Graph<'a> {
        Graph { step: Some(step), store: Some(store), bn_stats: Some(bn_stats), mode, vals: vec![], tape: vec![], grads: vec![], flops: 0.0, used: BTreeSet::new(), inits: Default::default(), bn_layers: BTreeSet::new(), inputs: BTreeSet::new(), convs: vec![], pools: vec![], relus: vec![], bns: vec![], fuse: fuse_default(), frozen: None, trace: None }
    }

    /// Shapes only: nothing is allocated or launched; parameters and FLOPs are counted.
    /// A counting graph with the network `net` builds recorded on `shape` [N, C, H, W].
    pub fn record(shape: [usize; 4], net: impl FnOnce(&mut Graph<'static>, Var) -> Result<Var>) -> Result<Graph<'static>> {
        let mut g = Graph::count();
        let x = g.input_shape(&shape);
        net(&mut g, x)?;
        Ok(g)
    }

    pub fn count() -> Graph<'static> {
        Graph { step: None, store: None, bn_stats: None, mode: Mode::Eval, vals: vec![], tape: vec![], grads: vec![], flops: 0.0, used: BTreeSet::new(), inits: Default::default(), bn_layers: BTreeSet::new(), inputs: BTreeSet::new(), convs: vec![], pools: vec![], relus: vec![], bns: vec![], fuse: fuse_default(), frozen: None, trace: None }
    }

    /// Parameters for which `frozen(name)` holds get no gradient, and values computed only from
    /// them and from data take none either: gradient-based search trains the weights with the
    /// architecture fixed and then the architecture with the weights fixed, and neither step
    /// should pay for (or update) the other's gradients. Set before recording.
    pub fn freeze(&mut self, frozen: impl Fn(&str) -> bool + 'a) {
        self.frozen = Some(Box::new(frozen));
    }

    fn is_frozen(&self, name: &str) -> bool {
        self.frozen.as_ref().is_some_and(|f| f(name))
    }

    /// Record every op from now on (`nn::trace`).
    pub fn start_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// The ops recorded since `start_trace`, and every value's shape.
    pub fn take_trace(&mut self) -> (Vec<TracedOp>, Vec<Vec<usize>>) {
        (self.trace.take().unwrap_or_default(), self.vals.iter().map(|v| v.shape.clone()).collect())
    }

    fn note(&mut self, op: impl FnOnce() -> TracedOp) {
        if let Some(t) = self.trace.as_mut() {
            t.push(op());
        }
    }

    /// Fuse ReLU -> conv (`relu_conv`) or not; the default is [`fuse_default`].
    pub fn set_fuse(&mut self, on: bool) {
        self.fuse = on;
    }

    pub fn fuses(&self) -> bool {
        self.fuse
    }

    pub fn step(&mut self) -> Option<&mut Step> {
        self.step.as_mut()
    }

    /// Hand back the step (to submit it).
    pub fn finish(self) -> Option<Step> {
        self.step
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        &self.vals[v.0].shape
    }

    pub fn tensor(&self, v: Var) -> Option<&Tensor> {
        self.vals[v.0].t.as_ref()
    }

    /// Shape of the largest value recorded (activations; their gradients have the same shapes).
    pub fn largest_value(&self) -> Option<&[usize]> {
        self.vals.iter().map(|v| v.shape.as_slice()).max_by_key(|s| numel(s))
    }

    /// Every tensor a checkpoint of the recorded network holds (momentum aside), by name, with
    /// its number of scalars: parameters, and each BN layer's "bn:<layer>.mean" / ".var".
    pub fn tensors_used(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out: std::collections::BTreeMap<String, usize> = self.used.iter().cloned().collect();
        for (name, c) in &self.bn_layers {
            out.insert(format!("bn:{name}.mean"), *c);
            out.insert(format!("bn:{name}.var"), *c);
        }
        out
    }

    /// Shape and initialisation of every parameter the recorded network uses.
    pub fn param_inits(&self) -> &std::collections::BTreeMap<String, (Vec<usize>, Init)> {
        &self.inits
    }

    /// Scalars in all values (activations) the recorded network computes.
    pub fn value_scalars(&self) -> u64 {
        self.vals.iter().map(|v| numel(&v.shape) as u64).sum()
    }

    /// Number of parameters (scalars) the recorded network uses.
    pub fn params_used(&self) -> u64 {
        self.used.iter().map(|(_, n)| *n as u64).sum()
    }

    pub fn input(&mut self, t: Tensor) -> Var {
        let v = self.push(t.shape.clone(), Some(t));
        self.inputs.insert(v.0);
        v
    }

    /// An input described by shape only (for counting graphs).
    pub fn input_shape(&mut self, shape: &[usize]) -> Var {
        let t = self.step.as_ref().map(|s| Tensor::empty(s.gpu(), shape));
        let v = self.push(shape.to_vec(), t);
        self.inputs.insert(v.0);
        v
    }

    /// A constant zero value (an NB201 node whose every input edge is `none`). Like data it
    /// takes no gradient: nothing upstream depends on it.
    pub fn zeros(&mut self, shape: &[usize]) -> Result<Var> {
        let v = self.out(shape.to_vec());
        self.note(|| TracedOp::Zeros { y: v.0 });
        if let Some(step) = self.step.as_mut() {
            // Pooled buffers hold whatever their last user left.
            elementwise::fill(step, self.vals[v.0].t.as_ref().unwrap(), 0.0)?;
        }
        self.inputs.insert(v.0);
        Ok(v)
    }

    fn push(&mut self, shape: Vec<usize>, t: Option<Tensor>) -> Var {
        self.vals.push(Val { shape, t });
        self.grads.push(None);
        Var(self.vals.len() - 1)
    }

    fn out(&mut self, shape: Vec<usize>) -> Var {
        let t = self.step.as_ref().map(|s| Tensor::empty(s.gpu(), &shape));
        self.push(shape, t)
    }

    fn t(&self, v: Var) -> Tensor {
        self.vals[v.0].t.clone().expect("executing graphs hold tensors")
    }

    fn training(&self) -> bool {
        self.mode == Mode::Train && self.step.is_some()
    }

    /// Look up (or create) a parameter; counts it.
    fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Option<Tensor>> {
        self.used.insert((name.to_string(), numel(shape)));
        self.inits.insert(name.to_string(), (shape.to_vec(), init));
        match (&mut self.store, &mut self.step) {
            (Some(store), Some(step)) => Ok(Some(store.value(step, name, shape, init)?)),
            _ => Ok(None),
        }
    }

    pub fn conv(&mut self, x: Var, name: &str, cout: usize, k: usize, p: Conv2d) -> Result<Var> {
        self.conv_node(x, name, cout, k, p, false, None)
    }

    /// x scaled per channel by a learned weight that starts at zero (a depthwise 1x1
    /// convolution), so a branch behind it starts switched off (ReZero, Bachlechner et al. 2020).
    pub fn gate(&mut self, x: Var, name: &str) -> Result<Var> {
        let c = self.shape(x)[1];
        self.conv_node(x, name, c, 1, Conv2d { stride: 1, padding: 0, dilation: 1, groups: c }, false, Some(Init::Const(0.0)))
    }

    /// conv(relu(x)). Fused (the default): one node whose kernels read max(x, 0) and whose
    /// input gradient is masked by x > 0, so relu(x) is never stored. Unfused: `relu`, then
    /// `conv`; the same values (the fused kernels only move where the ReLU is applied).
    pub fn relu_conv(&mut self, x: Var, name: &str, cout: usize, k: usize, p: Conv2d) -> Result<Var> {
        if !self.fuse {
            let r = self.relu(x)?;
            return self.conv(r, name, cout, k, p);
        }
        self.conv_node(x, name, cout, k, p, true, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_node(&mut self, x: Var, name: &str, cout: usize, k: usize, p: Conv2d, relu: bool, init: Option<Init>) -> Result<Var> {
        let cin = self.shape(x)[1];
        if !cin.is_multiple_of(p.groups) {
            return Err(Error::Shape { op: "conv", message: format!("{name}: {cin} channels, {} groups", p.groups) });
        }
        let ws = [cout, cin / p.groups, k, k];
        let ys = conv2d::out_shape(self.shape(x), &ws, &p)?;
        self.flops += 2.0 * (numel(&ys) / ys[0]) as f64 * (ws[1] * k * k) as f64;
        if self.step.is_none() {
            self.convs.push((self.shape(x).to_vec(), ws.to_vec(), p, relu));
        }
        let w = self.param(name, &ws, init.unwrap_or(Init::FanIn(ws[1] * k * k)))?;
        let y = self.out(ys);
        self.note(|| TracedOp::Conv { x: x.0, y: y.0, w: name.to_string(), p, relu });
        if let (Some(w), Some(step)) = (w, self.step.as_mut()) {
            let (xt, yt) = (self.vals[x.0].t.clone().unwrap(), self.vals[y.0].t.clone().unwrap());
            conv2d::forward_with(step, &xt, &w, &p, relu, &yt)?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Conv { x, y, w: name.to_string(), p, relu });
            }
        }
        Ok(y)
    }

    /// Batch norm over channels; `affine` adds a learned scale and shift (stand-alone nets).
    pub fn bn(&mut self, x: Var, name: &str, affine: bool) -> Result<Var> {
        let c = self.shape(x)[1];
        self.bn_layers.insert((name.to_string(), c));
        let names = affine.then(|| (format!("{name}.weight"), format!("{name}.bias")));
        let (gamma, beta) = match &names {
            Some((gw, gb)) => (self.param(gw, &[c], Init::Const(1.0))?, self.param(gb, &[c], Init::Const(0.0))?),
            None => (None, None),
        };
        let y = self.out(self.shape(x).to_vec());
        self.note(|| TracedOp::Bn { x: x.0, y: y.0, name: name.to_string(), affine, eps: BatchNorm::default().eps });
        let Some(step) = self.step.as_mut() else {
            self.bns.push((self.shape(x).to_vec(), affine));
            return Ok(y);
        };
        let stats = self.bn_stats.as_mut().expect("executing graphs have BN statistics");
        let gpu = step.gpu().clone();
        let (rm, rv) = stats.get(step, &gpu, name, c)?;
        let bn = BatchNorm { momentum: stats.momentum, ..BatchNorm::default() };
        let (xt, yt) = (self.vals[x.0].t.clone().unwrap(), self.vals[y.0].t.clone().unwrap());
        if self.mode == Mode::Eval {
            batchnorm::forward_eval(step, &xt, gamma.as_ref(), beta.as_ref(), &rm, &rv, &bn, &yt)?;
        } else {
            let (mean, inv_std) = (Tensor::empty(step.gpu(), &[c]), Tensor::empty(step.gpu(), &[c]));
            batchnorm::forward_train(step, &xt, gamma.as_ref(), beta.as_ref(), &rm, &rv, &bn, &yt, &mean, &inv_std)?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Bn { x, y, affine: names, mean, inv_std });
            }
        }
        Ok(y)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        if self.step.is_none() {
            self.relus.push(self.shape(x).to_vec());
        }
        let y = self.out(self.shape(x).to_vec());
        self.note(|| TracedOp::Relu { x: x.0, y: y.0 });
        if let Some(step) = self.step.as_mut() {
            elementwise::relu(step, self.vals[x.0].t.as_ref().unwrap(), self.vals[y.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Relu { x, y });
            }
        }
        Ok(y)
    }

    pub fn pool(&mut self, x: Var, p: Pool2d) -> Result<Var> {
        let ys = pool::out_shape(self.shape(x), &p)?;
        if self.step.is_none() {
            self.pools.push((self.shape(x).to_vec(), p));
        }
        let y = self.out(ys);
        self.note(|| TracedOp::Pool { x: x.0, y: y.0, p });
        if let Some(step) = self.step.as_mut() {
            let (xt, yt) = (self.vals[x.0].t.as_ref().unwrap(), self.vals[y.0].t.as_ref().unwrap());
            let train = self.mode == Mode::Train;
            // Training max pools save where each maximum was, so backward need not search again.
            let argmax = if train && p.kind == pool::PoolKind::Max {
                let a = Tensor::empty(step.gpu(), &yt.shape);
                pool::forward_with_argmax(step, xt, &p, yt, &a)?;
                Some(a)
            } else {
                pool::forward(step, xt, &p, yt)?;
                None
            };
            if train {
                self.tape.push(Node::Pool { x, y, p, argmax });
            }
        }
        Ok(y)
    }

    pub fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        let s = self.shape(x);
        let y = self.out(vec![s[0], s[1]]);
        self.note(|| TracedOp::Gap { x: x.0, y: y.0 });
        if let Some(step) = self.step.as_mut() {
            pool::global_avg_pool(step, self.vals[x.0].t.as_ref().unwrap(), self.vals[y.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Gap { x, y });
            }
        }
        Ok(y)
    }

    pub fn linear(&mut self, x: Var, name: &str, out: usize) -> Result<Var> {
        let s = self.shape(x).to_vec();
        let k = numel(&s) / s[0];
        self.flops += 2.0 * (k * out) as f64;
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        let w = self.param(&wn, &[out, k], Init::FanIn(k))?;
        let b = self.param(&bn, &[out], Init::FanIn(k))?;
        let y = self.out(vec![s[0], out]);
        self.note(|| TracedOp::Linear { x: x.0, y: y.0, name: name.to_string() });
        if let (Some(w), Some(b), Some(step)) = (w, b, self.step.as_mut()) {
            linear::forward(step, self.vals[x.0].t.as_ref().unwrap(), &w, Some(&b), self.vals[y.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Linear { x, y, w: wn, b: bn });
            }
        }
        Ok(y)
    }

    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        if self.shape(a) != self.shape(b) {
            return Err(Error::Shape { op: "add", message: format!("{:?} + {:?}", self.shape(a), self.shape(b)) });
        }
        let y = self.out(self.shape(a).to_vec());
        self.note(|| TracedOp::Add { a: a.0, b: b.0, y: y.0 });
        if let Some(step) = self.step.as_mut() {
            let v = |i: Var| self.vals[i.0].t.as_ref().unwrap();
            elementwise::add(step, v(a), v(b), v(y))?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Add { a, b, y });
            }
        }
        Ok(y)
    }

    pub fn concat(&mut self, xs: &[Var]) -> Result<Var> {
        let mut s = self.shape(xs[0]).to_vec();
        s[1] = xs.iter().map(|&v| self.shape(v)[1]).sum();
        let y = self.out(s);
        self.note(|| TracedOp::Concat { xs: xs.iter().map(|v| v.0).collect(), y: y.0 });
        if let Some(step) = self.step.as_mut() {
            let parts: Vec<&Tensor> = xs.iter().map(|v| self.vals[v.0].t.as_ref().unwrap()).collect();
            concat::concat_channels(step, &parts, self.vals[y.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Concat { xs: xs.to_vec(), y });
            }
        }
        Ok(y)
    }

    pub fn crop(&mut self, x: Var, c: Crop) -> Result<Var> {
        let s = self.shape(x);
        let y = self.out(vec![s[0], s[1], c.oh, c.ow]);
        self.note(|| TracedOp::Crop { x: x.0, y: y.0, c });
        if let Some(step) = self.step.as_mut() {
            crop::forward(step, self.vals[x.0].t.as_ref().unwrap(), &c, self.vals[y.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train {
                self.tape.push(Node::Crop { x, y, c });
            }
        }
        Ok(y)
    }

    /// Softmax over each row of parameter `name` [rows, cols]: architecture weights, one row
    /// per edge, one column per op.
    pub fn softmax_param(&mut self, name: &str, rows: usize, cols: usize, init: Init) -> Result<Var> {
        let alpha = self.param(name, &[rows, cols], init)?;
        let w = self.out(vec![rows, cols]);
        if let (Some(alpha), Some(step)) = (alpha, self.step.as_mut()) {
            mix::softmax_rows(step, &alpha, self.vals[w.0].t.as_ref().unwrap())?;
            if self.mode == Mode::Train && !self.is_frozen(name) {
                self.tape.push(Node::Softmax { alpha: name.to_string(), w });
            } else {
                // A constant as far as backward goes: the terms mixed with it skip its gradient.
                self.inputs.insert(w.0);
            }
        }
        Ok(w)
    }

    /// sum_k w[index_k] * x_k, w flat (row-major [edges, ops]): a mixed op's output.
    pub fn mix(&mut self, xs: &[(Var, usize)], w: Var) -> Result<Var> {
        let Some(&(first, _)) = xs.first() else {
            return Err(Error::Invalid("mix of no terms".into()));
        };
        let shape = self.shape(first).to_vec();
        let weights = numel(self.shape(w));
        if let Some(&(x, i)) = xs.iter().find(|&&(x, i)| self.shape(x) != shape || i >= weights) {
            return Err(Error::Shape { op: "mix", message: format!("term {:?} with weight {i} of {weights}, first term {shape:?}", self.shape(x)) });
        }
        self.flops += 2.0 * (numel(&shape) / shape[0] * xs.len()) as f64;
        let y = self.out(shape);
        if let Some(step) = self.step.as_mut() {
            let (wt, yt) = (self.vals[w.0].t.as_ref().unwrap(), self.vals[y.0].t.as_ref().unwrap());
            for (j, &(x, i)) in xs.iter().enumerate() {
                mix::weighted_add(step, self.vals[x.0].t.as_ref().unwrap(), wt, i, yt, j > 0)?;
            }
            if self.mode == Mode::Train {
                self.tape.push(Node::Mix { xs: xs.to_vec(), w, y });
            }
        }
        Ok(y)
    }

    /// Mean softmax cross-entropy; returns (loss [1], correct count [1] u32). In training mode
    /// the logits' gradient seeds `backward`.
    pub fn cross_entropy(&mut self, logits: Var, labels: &Buffer) -> Result<(Tensor, Buffer)> {
        let step = self.step.as_mut().ok_or_else(|| Error::Invalid("cross_entropy on a counting graph".into()))?;
        let lt = self.vals[logits.0].t.clone().unwrap();
        let loss_t = Tensor::empty(step.gpu(), &[1]);
        let dlogits = Tensor::empty(step.gpu(), &lt.shape);
        let correct = step.gpu().alloc(4);
        loss::softmax_cross_entropy(step, &lt, labels, &loss_t, &dlogits)?;
        loss::count_correct(step, &lt, labels, &correct)?;
        if self.mode == Mode::Train {
            self.grads[logits.0] = Some(dlogits);
        }
        Ok((loss_t, correct))
    }
}
