//! A GPU buffer with an f32 NCHW shape, plus upload/download helpers for tests and checkpoints.

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Step};
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

    /// A tensor holding `data`, written before the next submitted step. Refused while this
    /// thread records a step (see [`Tensor::write`]); [`Tensor::from_slice_in`] is the form
    /// for use inside one.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        check_len("upload", shape, data.len())?;
        let t = Tensor::empty(gpu, shape);
        t.write(gpu, data)?;
        Ok(t)
    }

    /// A tensor holding `data` from this point of `step` on.
    pub fn from_slice_in(step: &mut Step, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        check_len("upload", shape, data.len())?;
        let t = Tensor::empty(step.gpu(), shape);
        step.upload(&t.buf, 0, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// Overwrite the contents before the next submitted step. Refused while this thread
    /// records a step, whose earlier commands the write would overtake: inside a step, write
    /// with [`Tensor::write_in`].
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        check_len("write", &self.shape, data.len())?;
        gpu.write_outside_step(&self.buf, 0, bytemuck::cast_slice(data))
    }

    /// Overwrite the contents at this point of `step`.
    pub fn write_in(&self, step: &mut Step, data: &[f32]) -> Result<()> {
        check_len("write", &self.shape, data.len())?;
        step.upload(&self.buf, 0, bytemuck::cast_slice(data))
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

fn check_len(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    if len != numel(shape) {
        return Err(Error::Shape { op, message: format!("{len} values for shape {shape:?}") });
    }
    Ok(())
}

/// Upload integers (labels, indices) as a storage buffer, outside any step (as
/// [`Tensor::from_slice`]).
pub fn upload_u32(gpu: &Gpu, data: &[u32]) -> Result<Buffer> {
    let b = gpu.alloc(4 * data.len() as u64);
    gpu.write_outside_step(&b, 0, bytemuck::cast_slice(data))?;
    Ok(b)
}

/// Upload integers at this point of `step`.
pub fn upload_u32_in(step: &mut Step, data: &[u32]) -> Result<Buffer> {
    let b = step.gpu().alloc(4 * data.len() as u64);
    step.upload(&b, 0, bytemuck::cast_slice(data))?;
    Ok(b)
}
