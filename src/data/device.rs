//! A dataset resident on the GPU as bytes, and batch assembly as a kernel: gather by sample
//! index, scale to 0..1, normalise per channel, augment. Shader: `shaders/batch.wgsl`.
//!
//! Images are packed 4 bytes per u32 word, each image padded to whole words, in chunk buffers
//! that each fit the adapter's storage-binding limit (CIFAR-10's 150 MB exceed the 128 MiB of
//! some adapters); `assemble` records one dispatch per chunk.

use super::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Kernel, Step};
use crate::kernel;
use crate::tensor::{upload_u32, Tensor};
use std::sync::Arc;

const ASSEMBLE: Kernel = kernel!("batch.wgsl", "assemble", [1: Read, 2: Read, 3: Read, 4: Read, 5: ReadWrite, 6: ReadWrite]);
const CHOICES: Kernel = kernel!("batch.wgsl", "augment_choices", [7: ReadWrite]);

/// The label [`assemble`] writes for a sample index that is not below the dataset size (its
/// pixels are written as 0).
pub const NO_LABEL: u32 = u32::MAX;

/// Training-time augmentation; `Augment::default()` is none (evaluation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random crop of the image zero-padded by this many pixels on each side (0 = off). The
    /// padding is applied before normalisation, as torchvision's pad + crop then normalise, so
    /// a padded pixel becomes (0 - mean) / std.
    pub crop_padding: u32,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
    /// Side of the cutout square (0 = off), centre uniform over the image, clipped at the
    /// borders; masked pixels are 0 after normalisation, as in the DARTS code.
    pub cutout: u32,
}

/// The random choices for one batch position, identical on the GPU and in [`reference`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AugmentChoice {
    pub flip: bool,
    /// Top-left corner of the crop in the padded image, 0..=2*crop_padding.
    pub crop_x: u32,
    pub crop_y: u32,
    /// Cutout centre, 0..w and 0..h.
    pub cutout_x: u32,
    pub cutout_y: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    c: u32,
    h: u32,
    w: u32,
    n: u32,
    chunk: u32,
    per_chunk: u32,
    stride: u32,
    pad: u32,
    flip: u32,
    cutout: u32,
    seed: u32,
    batch: u32,
    _pad: [u32; 3],
}

/// A dataset on the GPU: images as bytes in chunk buffers, labels as u32, and the per-channel
/// mean and std used by [`assemble`].
pub struct DeviceData {
    chunks: Vec<Buffer>,
    labels: Buffer,
    norm: Buffer,
    per_chunk: usize,
    stride_words: usize,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    classes: usize,
}

impl DeviceData {
    /// Uploads `ds`, normalising later with `mean` and `std` (one per channel, on the 0..1
    /// scale, e.g. from [`Dataset::channel_stats`]). Chunks are as large as the adapter's
    /// storage-binding and buffer limits allow.
    pub fn upload(gpu: &Arc<Gpu>, ds: &Dataset, mean: &[f32], std: &[f32]) -> Result<DeviceData> {
        Self::upload_with_chunk_limit(gpu, ds, mean, std, u64::MAX)
    }

    /// [`DeviceData::upload`] with chunks of at most `max_chunk_bytes` (further capped by the
    /// adapter's limits); tests force many small chunks with it.
    pub fn upload_with_chunk_limit(gpu: &Arc<Gpu>, ds: &Dataset, mean: &[f32], std: &[f32], max_chunk_bytes: u64) -> Result<DeviceData> {
        ds.validate(std::path::Path::new("<dataset>"))?;
        if ds.n == 0 || ds.image_len() == 0 {
            return Err(Error::Invalid(format!("cannot upload an empty dataset ({} images of {} bytes)", ds.n, ds.image_len())));
        }
        if mean.len() != ds.c || std.len() != ds.c {
            return Err(Error::Invalid(format!("{} means and {} stds for a dataset of {} channels", mean.len(), std.len(), ds.c)));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Invalid(format!("normalisation std {s} is not a positive finite number")));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Invalid(format!("normalisation mean {mean:?} is not finite")));
        }
        if ds.n as u64 >= u32::MAX as u64 {
            return Err(Error::Invalid(format!("{} images: sample indices are u32", ds.n)));
        }
        // Capped at 4 GiB too, so word offsets inside a chunk fit the shader's u32.
        let limit = max_chunk_bytes
            .min(gpu.limits.max_storage_buffer_binding_size)
            .min(gpu.limits.max_buffer_size)
            .min(u32::MAX as u64)
            / 4
            * 4;
        let stride_words = ds.image_len().div_ceil(4);
        let image_bytes = 4 * stride_words as u64;
        let per_chunk = (limit / image_bytes) as usize;
        if per_chunk == 0 {
            return Err(Error::Invalid(format!(
                "one image takes {image_bytes} bytes, more than a storage buffer binding may hold ({limit} bytes)"
            )));
        }
        let label_bytes = 4 * ds.n as u64;
        if label_bytes > gpu.limits.max_storage_buffer_binding_size {
            return Err(Error::Invalid(format!(
                "{} labels take {label_bytes} bytes, more than the adapter's storage binding limit",
                ds.n
            )));
        }
        let mut chunks = Vec::new();
        let len = ds.image_len();
        for first in (0..ds.n).step_by(per_chunk) {
            let count = per_chunk.min(ds.n - first);
            let mut bytes = vec![0u8; count * 4 * stride_words];
            for i in 0..count {
                let dst = i * 4 * stride_words;
                bytes[dst..dst + len].copy_from_slice(ds.image(first + i));
            }
            let buf = gpu.alloc(bytes.len() as u64);
            gpu.write_outside_step(&buf, 0, &bytes)?;
            chunks.push(buf);
        }
        let labels: Vec<u32> = ds.labels.iter().map(|&l| l as u32).collect();
        let norm: Vec<f32> = mean.iter().chain(std).copied().collect();
        Ok(DeviceData {
            chunks,
            labels: upload_u32(gpu, &labels)?,
            norm: upload_u32(gpu, bytemuck::cast_slice(&norm))?,
            per_chunk,
            stride_words,
            n: ds.n,
            c: ds.c,
            h: ds.h,
            w: ds.w,
            classes: ds.classes,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }
    /// [C, H, W] of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.c, self.h, self.w]
    }
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// Number of chunk buffers the images occupy.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
    pub fn images_per_chunk(&self) -> usize {
        self.per_chunk
    }
    /// All labels as u32, indexed by sample.
    pub fn labels(&self) -> &Buffer {
        &self.labels
    }
}

fn params(aug: &Augment, seed: u32, batch: usize, c: usize, h: usize, w: usize) -> Params {
    Params {
        total: (batch * c * h * w) as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        pad: aug.crop_padding,
        flip: aug.flip as u32,
        cutout: aug.cutout,
        seed,
        batch: batch as u32,
        ..Params::default()
    }
}

fn check_augment(aug: &Augment) -> Result<()> {
    // 2*pad+1 and the signed cutout arithmetic in the shader must not overflow.
    if aug.crop_padding > 1 << 16 || aug.cutout > 1 << 16 {
        return Err(Error::Invalid(format!("augmentation {aug:?}: crop padding and cutout must be at most 65536")));
    }
    Ok(())
}

/// Records the assembly of a batch: for each position b < `batch`, image `indices[b]` is
/// cropped, flipped, normalised and cut out into `x[b]` ([batch, C, H, W] f32) and its label
/// into `labels[b]` (u32). Random choices depend only on (`seed`, b), so vary `seed` per step.
/// An index not below the dataset size gives zero pixels and the label [`NO_LABEL`].
#[allow(clippy::too_many_arguments)]
pub fn assemble(step: &mut Step, data: &DeviceData, indices: &Buffer, batch: usize, aug: &Augment, seed: u32, x: &Tensor, labels: &Buffer) -> Result<()> {
    let [c, h, w] = data.image_shape();
    if batch == 0 {
        return Err(Error::Invalid("assemble: batch must be at least 1".into()));
    }
    if x.shape != [batch, c, h, w] {
        return Err(Error::Shape { op: "assemble", message: format!("x is {:?}, expected {:?}", x.shape, [batch, c, h, w]) });
    }
    for (what, buf) in [("indices", indices), ("labels", labels)] {
        if buf.size() < 4 * batch as u64 {
            return Err(Error::Shape { op: "assemble", message: format!("{what} buffer holds {} bytes, a batch of {batch} needs {}", buf.size(), 4 * batch) });
        }
    }
    if (batch * c * h * w) as u64 > u32::MAX as u64 {
        return Err(Error::Invalid(format!("assemble: batch of {batch} images of {c}x{h}x{w} exceeds 2^32 elements")));
    }
    check_augment(aug)?;
    let wg = step.gpu().wg1d();
    let mut p = params(aug, seed, batch, c, h, w);
    p.n = data.n as u32;
    p.per_chunk = data.per_chunk as u32;
    p.stride = data.stride_words as u32;
    let groups = step.gpu().grid(p.total, wg);
    for (i, chunk) in data.chunks.iter().enumerate() {
        p.chunk = i as u32;
        step.dispatch(&ASSEMBLE, &[("WG", wg as f64)], &p, &[indices, chunk, &data.labels, &data.norm, &x.buf, labels], groups)?;
    }
    Ok(())
}

/// Records the kernel that writes the random choices [`assemble`] makes for each of `batch`
/// positions of an `h` x `w` image into `out` as 5 u32 per position (flip, crop_x, crop_y,
/// cutout_x, cutout_y); tests compare it with [`reference::choice`].
pub fn augment_choices(step: &mut Step, aug: &Augment, seed: u32, batch: usize, h: usize, w: usize, out: &Buffer) -> Result<()> {
    check_augment(aug)?;
    if out.size() < 20 * batch as u64 {
        return Err(Error::Shape { op: "augment_choices", message: format!("out holds {} bytes, {batch} positions need {}", out.size(), 20 * batch) });
    }
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("augment_choices: image {h}x{w} is empty")));
    }
    let wg = step.gpu().wg1d();
    let p = params(aug, seed, batch, 1, h, w);
    step.dispatch(&CHOICES, &[("WG", wg as f64)], &p, &[out], step.gpu().grid(batch as u32, wg))
}

/// CPU twin of the kernel, for tests.
pub mod reference {
    use super::{Augment, AugmentChoice, NO_LABEL};
    use crate::data::Dataset;

    /// PCG hash, as in the shader.
    pub fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
        (word >> 22) ^ word
    }

    pub fn rand(seed: u32, pos: u32, purpose: u32) -> u32 {
        pcg(pcg(pcg(seed).wrapping_add(pos)).wrapping_add(purpose))
    }

    pub fn choice(aug: &Augment, seed: u32, pos: u32, h: u32, w: u32) -> AugmentChoice {
        let mut ch = AugmentChoice::default();
        if aug.flip {
            ch.flip = rand(seed, pos, 0) & 1 == 1;
        }
        if aug.crop_padding != 0 {
            ch.crop_x = rand(seed, pos, 1) % (2 * aug.crop_padding + 1);
            ch.crop_y = rand(seed, pos, 2) % (2 * aug.crop_padding + 1);
        }
        if aug.cutout != 0 {
            ch.cutout_x = rand(seed, pos, 3) % w;
            ch.cutout_y = rand(seed, pos, 4) % h;
        }
        ch
    }

    /// One augmented, normalised image: pad with zeros, crop, flip, scale and normalise,
    /// cut out (the torchvision + DARTS order), written out in plain loops.
    #[allow(clippy::too_many_arguments)]
    pub fn augment(img: &[u8], c: usize, h: usize, w: usize, mean: &[f32], std: &[f32], aug: &Augment, ch: &AugmentChoice) -> Vec<f32> {
        let pad = aug.crop_padding as usize;
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut padded = vec![0u8; c * ph * pw];
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    padded[(k * ph + y + pad) * pw + x + pad] = img[(k * h + y) * w + x];
                }
            }
        }
        let mut out = vec![0f32; c * h * w];
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let cx = if ch.flip { w - 1 - x } else { x };
                    let v = padded[(k * ph + y + ch.crop_y as usize) * pw + cx + ch.crop_x as usize] as f32 / 255.0;
                    out[(k * h + y) * w + x] = (v - mean[k]) / std[k];
                }
            }
        }
        if aug.cutout != 0 {
            let half = (aug.cutout / 2) as i64;
            let (y0, x0) = (ch.cutout_y as i64 - half, ch.cutout_x as i64 - half);
            let (y1, x1) = (y0 + aug.cutout as i64, x0 + aug.cutout as i64);
            for k in 0..c {
                for y in y0.max(0)..y1.min(h as i64) {
                    for x in x0.max(0)..x1.min(w as i64) {
                        out[(k * h + y as usize) * w + x as usize] = 0.0;
                    }
                }
            }
        }
        out
    }

    /// The whole batch: (x as [B, C, H, W], labels).
    pub fn assemble(ds: &Dataset, mean: &[f32], std: &[f32], indices: &[u32], aug: &Augment, seed: u32) -> (Vec<f32>, Vec<u32>) {
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        for (b, &i) in indices.iter().enumerate() {
            if i as usize >= ds.n {
                x.extend(std::iter::repeat_n(0.0, ds.image_len()));
                labels.push(NO_LABEL);
                continue;
            }
            let ch = choice(aug, seed, b as u32, ds.h as u32, ds.w as u32);
            x.extend(augment(ds.image(i as usize), ds.c, ds.h, ds.w, mean, std, aug, &ch));
            labels.push(ds.labels[i as usize] as u32);
        }
        (x, labels)
    }
}
