//! Forward-only passes over a whole dataset, in submits of bounded size.

use crate::data::{assemble, Augment, DeviceData};
use crate::error::Result;
use crate::gpu::{PendingOutput, ReadHandle, Step};
use crate::nn::Var;
use crate::nn::darts::NetConfig;
use crate::nn::{BnStats, Graph, Mode, ParamStore};
use crate::space::Arch;
use crate::tensor::Tensor;
use std::collections::VecDeque;

/// Batches recorded into one submit when a whole dataset is forwarded (evaluation, BN
/// recalibration). Desktop drivers reset a GPU whose single submit runs for seconds (the
/// Windows TDR watchdog, Linux hang checks), and a submit holding a whole validation split
/// can; a fixed number of batches keeps every submit about as long as a few training steps,
/// however large the dataset.
pub const BATCHES_PER_SUBMIT: usize = 8;

/// Accuracy and mean loss of `arch` on all of `data` in evaluation mode (running BN
/// statistics from `bn`). Forward only, [`BATCHES_PER_SUBMIT`] batches per submit.
pub fn evaluate(net: &NetConfig, store: &mut ParamStore, bn: &mut BnStats, arch: &Arch, data: &DeviceData, batch: usize) -> Result<(f64, f64)> {
    evaluate_bounded(net, store, bn, arch, data, batch, BATCHES_PER_SUBMIT)
}

/// Records into `step` the assembly of the images `chunk` of `data` (no augmentation) and
/// `arch`'s forward in evaluation mode; returns the graph, its logits and the batch's labels,
/// for the caller to add its head and finish. Evaluation and `predict` share it.
#[allow(clippy::too_many_arguments)]
pub fn forward_batch<'a>(mut step: Step, store: &'a mut ParamStore, bn: &'a mut BnStats, net: &NetConfig, arch: &Arch, data: &DeviceData, chunk: &[u32]) -> Result<(Graph<'a>, Var, crate::gpu::Buffer)> {
    let gpu = store.gpu().clone();
    let [c, h, w] = data.image_shape();
    let b = chunk.len();
    let idx = gpu.alloc(4 * b as u64);
    step.upload(&idx, 0, bytemuck::cast_slice(chunk))?;
    let x = Tensor::empty(&gpu, &[b, c, h, w]);
    let labels = gpu.alloc(4 * b as u64);
    assemble(&mut step, data, &idx, b, &Augment::default(), 0, &x, &labels)?;
    let mut g = Graph::new(step, store, bn, Mode::Eval);
    let xin = g.input(x);
    let logits = crate::nn::forward(&mut g, net, arch, xin)?;
    Ok((g, logits, labels))
}

/// [`evaluate`] with `per_submit` batches per submit. The result does not depend on it: every
/// batch computes the same thing, and the host sums in batch order.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_bounded(net: &NetConfig, store: &mut ParamStore, bn: &mut BnStats, arch: &Arch, data: &DeviceData, batch: usize, per_submit: usize) -> Result<(f64, f64)> {
    let gpu = store.gpu().clone();
    let batch = batch.max(1);
    let all: Vec<u32> = (0..data.n() as u32).collect();
    let (mut loss, mut correct) = (0.0, 0u64);
    let mut collect = |out: PendingOutput, reads: Vec<(usize, ReadHandle, ReadHandle)>| -> Result<()> {
        let out = out.wait()?;
        for (b, l, c) in reads {
            loss += bytemuck::pod_read_unaligned::<f32>(&out.bytes(l)[..4]) as f64 * b as f64;
            correct += bytemuck::pod_read_unaligned::<u32>(&out.bytes(c)[..4]) as u64;
        }
        Ok(())
    };
    // One submit runs while the next is recorded; the one before it is read meanwhile.
    let mut pending = VecDeque::new();
    for group in all.chunks(batch.saturating_mul(per_submit.max(1))) {
        let mut step = gpu.step();
        let mut reads = Vec::new();
        for chunk in group.chunks(batch) {
            let b = chunk.len();
            let (mut g, logits, labels) = forward_batch(step, store, bn, net, arch, data, chunk)?;
            let (loss, correct) = g.cross_entropy(logits, &labels)?;
            step = g.finish().expect("executing graph");
            reads.push((b, step.read(&loss.buf, 0, 4), step.read(&correct, 0, 4)));
        }
        pending.push_back((step.submit_deferred()?, reads));
        if pending.len() > 1 {
            let (out, reads) = pending.pop_front().expect("two pending");
            collect(out, reads)?;
        }
    }
    for (out, reads) in pending {
        collect(out, reads)?;
    }
    Ok((correct as f64 / data.n() as f64, loss / data.n() as f64))
}
