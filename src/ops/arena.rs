//! Flat arenas for parameters: values, gradients and momentum buffers of many parameters live
//! in a few large buffers, so one multi-tensor dispatch (`ops::optim_multi`) can update all of
//! them. The supernet creates parameters lazily, path by path, so the arena cannot be sized up
//! front: it is a list of fixed-size blocks, appended as needed. Each block holds three
//! buffers of the same size (value, grad, momentum) and every parameter has the same slot
//! (block, offset) in all three, so one segment list addresses all of them. A parameter's slot
//! starts at a multiple of the adapter's `min_storage_buffer_offset_alignment`, so each one is
//! still an ordinary [`Tensor`] (a buffer view) to every other op. A parameter larger than a
//! block gets a block of its own. Slots are never freed or moved.

use super::elementwise;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Step};
use crate::tensor::{numel, Tensor};
use std::sync::Arc;

/// Block size unless the adapter's binding limits are smaller: big enough that a DARTS
/// supernet fits in one or two blocks, small enough to waste little on a tiny network.
pub const DEFAULT_BLOCK_BYTES: u64 = 16 << 20;

/// Where a parameter lives: block index, first element and length (in f32 elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub block: usize,
    pub offset: u32,
    pub len: u32,
}

/// One block's three buffers (each `elems` f32s).
pub struct ArenaBlock {
    pub value: Buffer,
    pub grad: Buffer,
    pub momentum: Buffer,
    elems: u64,
    used: u64,
}

impl ArenaBlock {
    pub fn elems(&self) -> u64 {
        self.elems
    }
}

pub struct Arena {
    gpu: Arc<Gpu>,
    block_elems: u64,
    align_elems: u64,
    blocks: Vec<ArenaBlock>,
}

impl Arena {
    /// An empty arena whose blocks hold `block_bytes` (default [`DEFAULT_BLOCK_BYTES`]), capped
    /// by the adapter's max storage binding and buffer sizes.
    pub fn new(gpu: &Arc<Gpu>, block_bytes: Option<u64>) -> Arena {
        let l = &gpu.limits;
        let align = (l.min_storage_buffer_offset_alignment as u64).max(16);
        let cap = l.max_storage_buffer_binding_size.min(l.max_buffer_size).min(4 * u32::MAX as u64);
        let bytes = block_bytes.unwrap_or(DEFAULT_BLOCK_BYTES).min(cap).max(align);
        let block_elems = (bytes / align * align / 4).max(1);
        Arena { gpu: gpu.clone(), block_elems, align_elems: align / 4, blocks: Vec::new() }
    }

    pub fn blocks(&self) -> &[ArenaBlock] {
        &self.blocks
    }

    /// Elements between slot starts: the storage offset alignment in f32s.
    pub fn align_elems(&self) -> u64 {
        self.align_elems
    }

    /// A slot of `len` elements, in the first block with room (first fit keeps the layout a
    /// function of the allocation order alone). A new block's momentum is zeroed here, in
    /// `step`, once for all the parameters it will hold.
    pub fn alloc(&mut self, step: &mut Step, len: usize) -> Result<Slot> {
        let len64 = len.max(1) as u64;
        let a = self.align_elems;
        let fits = |b: &ArenaBlock| b.used.next_multiple_of(a) + len64 <= b.elems;
        let block = match self.blocks.iter().position(fits) {
            Some(i) => i,
            None => {
                let elems = self.block_elems.max(len64.next_multiple_of(a));
                let bytes = 4 * elems;
                let l = &self.gpu.limits;
                if bytes > l.max_storage_buffer_binding_size || bytes > l.max_buffer_size || elems > u32::MAX as u64 {
                    return Err(Error::Invalid(format!(
                        "a parameter of {len} elements does not fit in one storage binding of this adapter (max {} bytes)",
                        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
                    )));
                }
                let (value, grad, momentum) = (self.gpu.alloc(bytes), self.gpu.alloc(bytes), self.gpu.alloc(bytes));
                // Pooled buffers come back dirty; momentum must start at zero (PyTorch's
                // first-step buffer equals the gradient, which is what 0 * momentum + g gives).
                elementwise::fill(step, &Tensor { buf: momentum.clone(), shape: vec![elems as usize] }, 0.0)?;
                self.blocks.push(ArenaBlock { value, grad, momentum, elems, used: 0 });
                self.blocks.len() - 1
            }
        };
        let b = &mut self.blocks[block];
        let offset = b.used.next_multiple_of(a);
        b.used = offset + len64;
        Ok(Slot { block, offset: offset as u32, len: len as u32 })
    }

    /// The slot's (value, grad, momentum) as tensors of `shape` (views into the block).
    pub fn tensors(&self, slot: &Slot, shape: &[usize]) -> Result<(Tensor, Tensor, Tensor)> {
        if numel(shape) != slot.len as usize {
            return Err(Error::Shape { op: "arena", message: format!("slot of {} elements viewed as {shape:?}", slot.len) });
        }
        let b = self.blocks.get(slot.block).ok_or_else(|| Error::Invalid(format!("arena has no block {}", slot.block)))?;
        let (at, bytes) = (4 * slot.offset as u64, 4 * (slot.len as u64).max(1));
        let view = |buf: &Buffer| -> Result<Tensor> { Ok(Tensor { buf: self.gpu.view(buf, at, bytes)?, shape: shape.to_vec() }) };
        Ok((view(&b.value)?, view(&b.grad)?, view(&b.momentum)?))
    }
}
