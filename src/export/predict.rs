//! Logits of a trained network on a set of images: the evaluation path (images as bytes on the
//! device, the batch kernel normalises, the network's forward in evaluation mode), bounded
//! submits as in `train::evaluate`. Probabilities are the softmax of those logits, taken on the
//! device by the row-softmax kernel (ops::mix) in the same submits.

use super::model::TrainedNet;
use crate::data::{Dataset, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;
use crate::train::{forward_batch, Model, BATCHES_PER_SUBMIT};
use std::sync::Arc;

/// Logits [images.n, classes] (row-major) of `model` on `images` ([n, C, H, W] bytes, which
/// must be the model's input shape), forwarded `batch` images at a time.
pub fn logits(gpu: &Arc<Gpu>, model: &TrainedNet, images: &Dataset, batch: usize) -> Result<Vec<f32>> {
    Ok(logits_and_probabilities(gpu, model, images, batch)?.0)
}

/// [`logits`] and the softmax of each row, both [images.n, classes].
pub fn logits_and_probabilities(gpu: &Arc<Gpu>, model: &TrainedNet, images: &Dataset, batch: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let i = &model.input;
    if [images.c, images.h, images.w] != [i.channels, i.height, i.width] {
        return Err(Error::Shape {
            op: "predict",
            message: format!("images are {}x{}x{} (C x H x W), the network expects {}x{}x{}", images.c, images.h, images.w, i.channels, i.height, i.width),
        });
    }
    let batch = batch.clamp(1, images.n.max(1));
    crate::nn::check_batch_fits(gpu, &model.net, &model.spec.arch, batch, i.height, i.width)?;
    let data = DeviceData::upload(gpu, images, &i.mean, &i.std)?;
    let mut net = Model::new(gpu, model.net.clone(), 0)?;
    net.restore(&model.tensors)?;
    let classes = model.net.classes;
    let all: Vec<u32> = (0..images.n as u32).collect();
    let mut out = Vec::with_capacity(images.n * classes);
    let mut probs = Vec::with_capacity(images.n * classes);
    for group in all.chunks(batch.saturating_mul(BATCHES_PER_SUBMIT)) {
        let mut step = gpu.step();
        let mut reads = Vec::new();
        for chunk in group.chunks(batch) {
            let (g, y, _) = forward_batch(step, &mut net.store, &mut net.bn, &net.net, &model.spec.arch, &data, chunk)?;
            let lt = g.tensor(y).expect("an executing graph holds its values").clone();
            step = g.finish().expect("an executing graph has a step");
            let pt = Tensor::empty(gpu, &lt.shape);
            crate::ops::mix::softmax_rows(&mut step, &lt, &pt)?;
            reads.push((step.read(&lt.buf, 0, 4 * lt.numel() as u64), step.read(&pt.buf, 0, 4 * pt.numel() as u64)));
        }
        let done = step.submit()?;
        for (hl, hp) in reads {
            out.extend(done.f32s(hl));
            probs.extend(done.f32s(hp));
        }
    }
    Ok((out, probs))
}

/// The first index of the largest value (what `count_correct` calls the prediction).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best
}
