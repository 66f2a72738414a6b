//! A trained network as an ONNX model (opset 17, IR version 8), built from the ops the network
//! code records on a tracing graph (`nn::trace`): the network ONNX describes is the one cellnas
//! runs, op for op, with the weights by their own names.
//!
//! - Input `image`: float [N, C, H, W], pixels scaled to 0..1 (byte / 255). The normalisation
//!   the network was trained with is the model's first two ops (Sub mean, Div std, per
//!   channel), so a caller feeds plain pixels; mean and std are also in the metadata.
//! - Outputs `logits` [N, classes] and `probabilities` (their Softmax).
//! - Eval mode: BatchNormalization with the running statistics (not folded into the convs, so
//!   the file's tensors are the weights file's); ReLU -> conv fused in cellnas is Relu then
//!   Conv (one Relu per input however many convs read it); pools with count_include_pad=0;
//!   the FactorizedReduce shift is a Slice; an all-`none` NB201 node is ConstantOfShape zeros
//!   with the batch size taken from the input's shape, so N stays free.

use super::model::TrainedNet;
use super::proto::Msg;
use crate::error::{Error, Result};
use crate::nn::trace::{trace, Trace, TracedOp};
use crate::ops::pool::PoolKind;
use std::collections::{BTreeMap, BTreeSet};

pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;
const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// The ONNX file's bytes.
pub fn to_onnx(model: &TrainedNet) -> Result<Vec<u8>> {
    let i = &model.input;
    let t = trace([1, i.channels, i.height, i.width], |g, x| crate::nn::forward(g, &model.net, &model.spec.arch, x))?;
    let mut b = Builder { model, t: &t, nodes: vec![], inits: vec![], init_names: BTreeSet::new(), relus: BTreeMap::new(), defined: BTreeSet::new(), batch: None };
    b.input()?;
    for op in &t.ops {
        b.op(op)?;
    }
    b.need(t.output)?;
    b.node("Softmax", &[b.name(t.output)], &["probabilities".into()], vec![attr_int("axis", 1)]);
    Ok(b.finish())
}

struct Builder<'a> {
    model: &'a TrainedNet,
    t: &'a Trace,
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    init_names: BTreeSet<String>,
    /// Value -> its Relu's output name.
    relus: BTreeMap<usize, String>,
    defined: BTreeSet<usize>,
    /// The input's batch size as a 1-element int64 tensor (made when a zeros value needs it).
    batch: Option<String>,
}

fn attr(name: &str, kind: i64) -> Msg {
    Msg::new().string(1, name).int(20, kind)
}

fn attr_int(name: &str, v: i64) -> Msg {
    attr(name, 2).int(3, v)
}

fn attr_float(name: &str, v: f32) -> Msg {
    attr(name, 1).float(2, v)
}

/// A repeated int64 field, unpacked as proto2's onnx.proto declares it.
fn ints(mut m: Msg, field: u32, vs: &[i64]) -> Msg {
    for &v in vs {
        m = m.int(field, v);
    }
    m
}

fn attr_ints(name: &str, vs: &[i64]) -> Msg {
    ints(attr(name, 7), 8, vs)
}

fn tensor(name: &str, dims: &[usize], kind: i64, raw: &[u8]) -> Msg {
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    ints(Msg::new(), 1, &dims).int(2, kind).string(8, name).bytes(9, raw)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A float tensor's type and shape; None dims are the free batch size "N".
fn value_info(name: &str, dims: &[Option<usize>]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let dim = match d {
            Some(v) => Msg::new().int(1, *v as i64),
            None => Msg::new().string(2, "N"),
        };
        shape = shape.msg(1, &dim);
    }
    let tensor_type = Msg::new().int(1, FLOAT).msg(2, &shape);
    Msg::new().string(1, name).msg(2, &Msg::new().msg(1, &tensor_type))
}

impl Builder<'_> {
    fn name(&self, v: usize) -> String {
        if v == self.t.output { "logits".into() } else { format!("v{v}") }
    }

    fn node(&mut self, op: &str, inputs: &[String], outputs: &[String], attrs: Vec<Msg>) {
        let mut n = Msg::new();
        for i in inputs {
            n = n.string(1, i);
        }
        for o in outputs {
            n = n.string(2, o);
        }
        n = n.string(3, &format!("{op}_{}", self.nodes.len())).string(4, op);
        for a in &attrs {
            n = n.msg(5, a);
        }
        self.nodes.push(n);
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        if self.init_names.insert(name.to_string()) {
            self.inits.push(tensor(name, dims, FLOAT, &f32_bytes(data)));
        }
        name.to_string()
    }

    fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        if self.init_names.insert(name.to_string()) {
            let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.inits.push(tensor(name, &[data.len()], INT64, &raw));
        }
        name.to_string()
    }

    /// A weights tensor by name, as an initializer of the same name.
    fn weight(&mut self, name: &str) -> Result<String> {
        let model = self.model;
        let Some((_, shape, data)) = model.tensors.iter().find(|(n, _, _)| n == name) else {
            return Err(Error::Checkpoint { path: model.weights.clone(), message: format!("lacks tensor '{name}', which the network's ONNX graph needs") });
        };
        Ok(self.init_f32(name, shape, data))
    }

    /// Value `v` as an op input: it must have been computed by a recorded op.
    fn need(&self, v: usize) -> Result<String> {
        if !self.defined.contains(&v) {
            return Err(Error::Invalid(format!(
                "ONNX export: value {v} of shape {:?} has no recorded producer (the network uses a graph op the tracer does not record)",
                self.t.shapes.get(v)
            )));
        }
        Ok(self.name(v))
    }

    fn define(&mut self, v: usize) -> String {
        self.defined.insert(v);
        self.name(v)
    }

    fn input(&mut self) -> Result<()> {
        let model = self.model;
        let i = &model.input;
        let per_channel = [1, i.channels, 1, 1];
        let m = self.init_f32("input.mean", &per_channel, &i.mean);
        let s = self.init_f32("input.std", &per_channel, &i.std);
        self.node("Sub", &["image".into(), m], &["image.centred".into()], vec![]);
        let x = self.define(self.t.input);
        self.node("Div", &["image.centred".into(), s], &[x], vec![]);
        Ok(())
    }

    fn relu_of(&mut self, x: usize) -> Result<String> {
        if let Some(r) = self.relus.get(&x) {
            return Ok(r.clone());
        }
        let xin = self.need(x)?;
        let r = format!("v{x}.relu");
        self.node("Relu", &[xin], std::slice::from_ref(&r), vec![]);
        self.relus.insert(x, r.clone());
        Ok(r)
    }

    fn batch_size(&mut self) -> String {
        if let Some(b) = &self.batch {
            return b.clone();
        }
        let (zero, one) = (self.init_i64("const.0", &[0]), self.init_i64("const.1", &[1]));
        self.node("Shape", &["image".into()], &["image.shape".into()], vec![]);
        self.node("Slice", &["image.shape".into(), zero.clone(), one, zero], &["image.batch".into()], vec![]);
        self.batch = Some("image.batch".into());
        "image.batch".into()
    }

    fn op(&mut self, op: &TracedOp) -> Result<()> {
        match op {
            TracedOp::Conv { x, y, w, p, relu } => {
                let xin = if *relu { self.relu_of(*x)? } else { self.need(*x)? };
                let wt = self.weight(w)?;
                let k = self.model.tensors.iter().find(|(n, _, _)| n == w).map(|(_, s, _)| s[2]).unwrap_or(1) as i64;
                let (s, pad, d) = (p.stride as i64, p.padding as i64, p.dilation as i64);
                let attrs = vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[s, s]), attr_ints("pads", &[pad, pad, pad, pad]), attr_ints("dilations", &[d, d]), attr_int("group", p.groups as i64)];
                let out = self.define(*y);
                self.node("Conv", &[xin, wt], &[out], attrs);
            }
            TracedOp::Bn { x, y, name, affine, eps } => {
                let xin = self.need(*x)?;
                let c = self.t.shapes[*x][1];
                let (scale, shift) = if *affine {
                    (self.weight(&format!("{name}.weight"))?, self.weight(&format!("{name}.bias"))?)
                } else {
                    (self.init_f32(&format!("bn:{name}.scale"), &[c], &vec![1.0; c]), self.init_f32(&format!("bn:{name}.shift"), &[c], &vec![0.0; c]))
                };
                let (mean, var) = (self.weight(&format!("bn:{name}.mean"))?, self.weight(&format!("bn:{name}.var"))?);
                let out = self.define(*y);
                self.node("BatchNormalization", &[xin, scale, shift, mean, var], &[out], vec![attr_float("epsilon", *eps)]);
            }
            TracedOp::Relu { x, y } => {
                let xin = self.need(*x)?;
                let out = self.define(*y);
                self.node("Relu", &[xin], &[out], vec![]);
            }
            TracedOp::Pool { x, y, p } => {
                let xin = self.need(*x)?;
                let (k, s, pad) = (p.kernel as i64, p.stride as i64, p.padding as i64);
                let mut attrs = vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[s, s]), attr_ints("pads", &[pad, pad, pad, pad])];
                let kind = match p.kind {
                    PoolKind::Max => "MaxPool",
                    PoolKind::Avg => {
                        // cellnas averages over the real pixels of each window only.
                        attrs.push(attr_int("count_include_pad", 0));
                        "AveragePool"
                    }
                };
                let out = self.define(*y);
                self.node(kind, &[xin], &[out], attrs);
            }
            TracedOp::Gap { x, y } => {
                let xin = self.need(*x)?;
                let pooled = format!("v{y}.pooled");
                self.node("GlobalAveragePool", &[xin], std::slice::from_ref(&pooled), vec![]);
                let out = self.define(*y);
                self.node("Flatten", &[pooled], &[out], vec![attr_int("axis", 1)]);
            }
            TracedOp::Linear { x, y, name } => {
                let mut xin = self.need(*x)?;
                if self.t.shapes[*x].len() != 2 {
                    let flat = format!("v{x}.flat");
                    self.node("Flatten", &[xin], std::slice::from_ref(&flat), vec![attr_int("axis", 1)]);
                    xin = flat;
                }
                let (w, b) = (self.weight(&format!("{name}.weight"))?, self.weight(&format!("{name}.bias"))?);
                let out = self.define(*y);
                self.node("Gemm", &[xin, w, b], &[out], vec![attr_int("transB", 1)]);
            }
            TracedOp::Add { a, b, y } => {
                let (ai, bi) = (self.need(*a)?, self.need(*b)?);
                let out = self.define(*y);
                self.node("Add", &[ai, bi], &[out], vec![]);
            }
            TracedOp::Concat { xs, y } => {
                let ins = xs.iter().map(|&v| self.need(v)).collect::<Result<Vec<_>>>()?;
                let out = self.define(*y);
                self.node("Concat", &ins, &[out], vec![attr_int("axis", 1)]);
            }
            TracedOp::Crop { x, y, c } => {
                let xin = self.need(*x)?;
                let tag = format!("crop.{}.{}.{}.{}", c.top, c.left, c.oh, c.ow);
                let starts = self.init_i64(&format!("{tag}.starts"), &[c.top as i64, c.left as i64]);
                let ends = self.init_i64(&format!("{tag}.ends"), &[(c.top + c.oh) as i64, (c.left + c.ow) as i64]);
                let axes = self.init_i64("crop.axes", &[2, 3]);
                let out = self.define(*y);
                self.node("Slice", &[xin, starts, ends, axes], &[out], vec![]);
            }
            TracedOp::Zeros { y } => {
                let batch = self.batch_size();
                let rest: Vec<i64> = self.t.shapes[*y][1..].iter().map(|&d| d as i64).collect();
                let tail = self.init_i64(&format!("zeros.{}", rest.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")), &rest);
                let shape = format!("v{y}.shape");
                self.node("Concat", &[batch, tail], std::slice::from_ref(&shape), vec![attr_int("axis", 0)]);
                let out = self.define(*y);
                let zero = tensor("", &[1], FLOAT, &f32_bytes(&[0.0]));
                self.node("ConstantOfShape", &[shape], &[out], vec![attr("value", 4).msg(5, &zero)]);
            }
        }
        Ok(())
    }

    fn finish(self) -> Vec<u8> {
        let m = self.model;
        let i = &m.input;
        let classes = m.net.classes;
        let mut graph = Msg::new();
        for n in &self.nodes {
            graph = graph.msg(1, n);
        }
        graph = graph.string(2, "cellnas");
        for t in &self.inits {
            graph = graph.msg(5, t);
        }
        graph = graph.msg(11, &value_info("image", &[None, Some(i.channels), Some(i.height), Some(i.width)]));
        graph = graph.msg(12, &value_info("logits", &[None, Some(classes)]));
        graph = graph.msg(12, &value_info("probabilities", &[None, Some(classes)]));
        let mut model = Msg::new()
            .int(1, IR_VERSION)
            .string(2, "cellnas")
            .string(3, env!("CARGO_PKG_VERSION"))
            .string(6, &format!("{} network {} trained on {}; input: pixels scaled to 0..1, normalised inside the model", m.spec.arch.space(), m.spec.arch.text(), m.dataset))
            .msg(7, &graph)
            .msg(8, &Msg::new().int(2, OPSET));
        for (k, v) in metadata(m) {
            model = model.msg(14, &Msg::new().string(1, &k).string(2, &v));
        }
        model.finish()
    }
}

/// The model's metadata_props: what the one-file model's metadata says, and how the input is
/// normalised.
fn metadata(m: &TrainedNet) -> BTreeMap<String, String> {
    let mut meta: BTreeMap<String, String> = m.metadata().into_iter().filter(|(k, _)| !k.starts_with("format")).map(|(k, v)| (format!("cellnas.{}", k.trim_start_matches("cellnas.")), v)).collect();
    meta.insert("cellnas.normalisation".into(), "included: input `image` is pixels scaled to 0..1; the model subtracts input.mean and divides by input.std per channel".into());
    meta
}
