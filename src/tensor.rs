//! A GPU buffer with an f32 NCHW shape, plus upload/download helpers for tests and checkpoints.

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu};
use std::sync::Arc;

#[derive(Clone)]
pub struct Tensor {
    pub buf: Buffer,
    pub shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Uninitialised tensor from the pool.
    pub fn empty(gpu: &Gpu, shape: &[usize]) -> Tensor {
        Tensor { buf: gpu.alloc(4 * numel(shape) as u64), shape: shape.to_vec() }
    }

    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape { op: "upload", message: format!("{} values for shape {shape:?}", data.len()) });
        }
        let t = Tensor::empty(gpu, shape);
        t.write(gpu, data)?;
        Ok(t)
    }

    /// Overwrite the contents (ordered before the next submitted step).
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::Shape { op: "write", message: format!("{} values for shape {:?}", data.len(), self.shape) });
        }
        if !data.is_empty() {
            gpu.queue.write_buffer(self.buf.raw(), self.buf.offset(), bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Fill with NaN so that any element a kernel fails to write shows up in a comparison.
    pub fn poison(&self, gpu: &Gpu) -> Result<()> {
        self.write(gpu, &vec![f32::NAN; self.numel()])
    }

    pub fn to_vec(&self, gpu: &Arc<Gpu>) -> Result<Vec<f32>> {
        let mut step = gpu.step();
        let h = step.read(&self.buf, 0, 4 * self.numel() as u64);
        Ok(step.submit()?.f32s(h))
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// NCHW dimensions; 2-D shapes [N, C] read as [N, C, 1, 1].
    pub fn nchw(&self) -> [usize; 4] {
        nchw(&self.shape)
    }
}

pub fn nchw(shape: &[usize]) -> [usize; 4] {
    match *shape {
        [n, c, h, w] => [n, c, h, w],
        [n, c] => [n, c, 1, 1],
        [n] => [n, 1, 1, 1],
        _ => [numel(shape), 1, 1, 1],
    }
}

/// Upload integers (labels, indices) as a storage buffer.
pub fn upload_u32(gpu: &Gpu, data: &[u32]) -> Buffer {
    let b = gpu.alloc(4 * data.len() as u64);
    if !data.is_empty() {
        gpu.queue.write_buffer(b.raw(), 0, bytemuck::cast_slice(data));
    }
    b
}
