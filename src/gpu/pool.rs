//! Storage buffers recycled across steps: a training step allocates the same sizes every time,
//! so after the first step no buffer is created. A [`Buffer`] returns to the pool when its last
//! handle is dropped — possibly while a step that used it is still being recorded. That is safe
//! within one thread, because a step's commands run in the order they were recorded, so a later
//! user of the buffer in the same step runs after the earlier one. Across threads it is not: a
//! step recorded on another thread could be submitted first. Free lists are therefore kept per
//! thread; a buffer only ever goes back to the thread that dropped it.

use super::Gpu;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Free = Arc<Mutex<HashMap<(std::thread::ThreadId, u64), Vec<wgpu::Buffer>>>>;

#[derive(Default)]
pub(crate) struct Pool {
    free: Free,
    /// Uniform buffers for steps' parameter arenas, power-of-two sizes. A step owns one from
    /// record to submit; after the submit it may be rewritten, because queue writes are
    /// ordered after work already submitted.
    uniforms: Mutex<Vec<wgpu::Buffer>>,
}

struct Inner {
    raw: wgpu::Buffer,
    size: u64,
    free: Free,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut f) = self.free.lock() {
            f.entry((std::thread::current().id(), self.size)).or_default().push(self.raw.clone());
        }
    }
}

/// A pooled storage buffer (STORAGE | COPY_SRC | COPY_DST). Cloning shares it.
#[derive(Clone)]
pub struct Buffer(Arc<Inner>);

impl Buffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.0.raw
    }
    /// Size in bytes (a multiple of 4, at least 4).
    pub fn size(&self) -> u64 {
        self.0.size
    }
}

impl Gpu {
    /// A storage buffer of at least `bytes` bytes, reused from the pool when one is free.
    /// Contents are unspecified: kernels overwrite, tests poison.
    pub fn alloc(&self, bytes: u64) -> Buffer {
        let size = bytes.max(4).next_multiple_of(4);
        let reused = self.pool.free.lock().unwrap().get_mut(&(std::thread::current().id(), size)).and_then(|v| v.pop());
        let raw = reused.unwrap_or_else(|| {
            self.counts.buffer(size);
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Buffer(Arc::new(Inner { raw, size, free: self.pool.free.clone() }))
    }

    /// Put this thread's free buffers in a fixed order (by handle). What is free at the start
    /// of a steady-state step is always the same set, but the order it was freed in depends on
    /// the steps before (alternating supernet paths free differently); ordering it makes the
    /// step receive the same buffers in the same order every time, so its cached bind groups
    /// match instead of cycling through permutations.
    pub(crate) fn order_free(&self) {
        let me = std::thread::current().id();
        for ((thread, _), list) in self.pool.free.lock().unwrap().iter_mut() {
            if *thread == me {
                list.sort_unstable();
            }
        }
    }

    /// A uniform buffer of at least `bytes` for a step's parameters (reused across steps).
    /// Steps of one size get the same buffer back each time (first of its size; order kept), so
    /// their cached bind groups, which name it, still match.
    pub(crate) fn take_uniform(&self, bytes: u64) -> wgpu::Buffer {
        let size = bytes.next_power_of_two();
        let mut u = self.pool.uniforms.lock().unwrap();
        match u.iter().position(|b| b.size() == size) {
            Some(i) => u.remove(i),
            None => {
                self.counts.buffer(size);
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params"),
                    size,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }
        }
    }

    /// Hand a step's parameter buffer back once its commands are submitted.
    pub(crate) fn give_uniform(&self, b: wgpu::Buffer) {
        self.pool.uniforms.lock().unwrap().push(b);
    }

    /// Releases every idle pooled buffer back to the driver (cached bind groups and idle
    /// staging too: they hold buffers alive).
    pub fn trim_pool(&self) {
        self.pool.free.lock().unwrap().clear();
        self.binds.lock().unwrap().clear();
        self.trim_staging();
    }
}
