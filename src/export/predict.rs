//! Logits of a trained network on a set of images: the evaluation path (images as bytes on the
//! device, the batch kernel normalises, the network's forward in evaluation mode), bounded
//! submits as in `train::evaluate`. Probabilities are the softmax of those logits, taken on the
//! host in f64 (a presentation of the network's output, not part of its forward pass).

use super::model::TrainedNet;
use crate::data::{assemble, Augment, Dataset, DeviceData};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{Graph, Mode};
use crate::tensor::Tensor;
use crate::train::{Model, BATCHES_PER_SUBMIT};
use std::sync::Arc;

/// Logits [images.n, classes] (row-major) of `model` on `images` ([n, C, H, W] bytes, which
/// must be the model's input shape), forwarded `batch` images at a time.
pub fn logits(gpu: &Arc<Gpu>, model: &TrainedNet, images: &Dataset, batch: usize) -> Result<Vec<f32>> {
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
    for group in all.chunks(batch.saturating_mul(BATCHES_PER_SUBMIT)) {
        let mut step = gpu.step();
        let mut reads = Vec::new();
        for chunk in group.chunks(batch) {
            let b = chunk.len();
            let idx = gpu.alloc(4 * b as u64);
            step.upload(&idx, 0, bytemuck::cast_slice(chunk))?;
            let x = Tensor::empty(gpu, &[b, i.channels, i.height, i.width]);
            let labels = gpu.alloc(4 * b as u64);
            assemble(&mut step, &data, &idx, b, &Augment::default(), 0, &x, &labels)?;
            let mut g = Graph::new(step, &mut net.store, &mut net.bn, Mode::Eval);
            let xin = g.input(x);
            let y = crate::nn::forward(&mut g, &net.net, &model.spec.arch, xin)?;
            let lt = g.tensor(y).expect("an executing graph holds its values").clone();
            step = g.finish().expect("an executing graph has a step");
            reads.push(step.read(&lt.buf, 0, 4 * lt.numel() as u64));
        }
        let done = step.submit()?;
        for h in reads {
            out.extend(done.f32s(h));
        }
    }
    Ok(out)
}

/// Softmax of each row of `logits` (`classes` wide), in f64 with the row's maximum subtracted.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes.max(1)) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / sum) as f32));
    }
    out
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
