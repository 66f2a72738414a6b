//! The network a graph recorded, op by op, for export (ONNX): the same calls that build the
//! network on the GPU describe it here, so an exported model cannot drift from the one cellnas
//! trains. Values are numbered as the graph numbers them; parameters are named as in the weights.

use super::graph::{Graph, Var};
use crate::error::Result;
use crate::ops::conv2d::Conv2d;
use crate::ops::crop::Crop;
use crate::ops::pool::Pool2d;

/// One recorded op. `x`, `y`, ... are value numbers; parameter names are the weights' names.
#[derive(Clone, Debug, PartialEq)]
pub enum TracedOp {
    /// y = conv(x) with weight `w` [cout, cin / groups, k, k], no bias; `relu`: conv(relu(x)).
    Conv { x: usize, y: usize, w: String, p: Conv2d, relu: bool },
    /// Batch norm with the running statistics "bn:<name>.mean" / ".var"; `affine`: scale
    /// "<name>.weight" and shift "<name>.bias".
    Bn { x: usize, y: usize, name: String, affine: bool, eps: f32 },
    Relu { x: usize, y: usize },
    Pool { x: usize, y: usize, p: Pool2d },
    /// [N, C, H, W] -> [N, C].
    Gap { x: usize, y: usize },
    /// y = x W^T + b with "<name>.weight" [out, k] and "<name>.bias" [out].
    Linear { x: usize, y: usize, name: String },
    Add { a: usize, b: usize, y: usize },
    /// Along channels.
    Concat { xs: Vec<usize>, y: usize },
    Crop { x: usize, y: usize, c: Crop },
    /// A value of zeros (its shape is the value's).
    Zeros { y: usize },
}

/// A recorded network: its ops in order, every value's shape, the input and the output.
#[derive(Clone, Debug)]
pub struct Trace {
    pub ops: Vec<TracedOp>,
    pub shapes: Vec<Vec<usize>>,
    pub input: usize,
    pub output: usize,
}

/// The network `net` builds on an input of `shape` [N, C, H, W], recorded on a counting graph
/// (nothing is allocated or launched).
pub fn trace(shape: [usize; 4], net: impl FnOnce(&mut Graph<'static>, Var) -> Result<Var>) -> Result<Trace> {
    let mut g = Graph::count();
    g.start_trace();
    let x = g.input_shape(&shape);
    let y = net(&mut g, x)?;
    let (ops, shapes) = g.take_trace();
    Ok(Trace { ops, shapes, input: x.index(), output: y.index() })
}
