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

/// A pooled storage buffer (STORAGE | COPY_SRC | COPY_DST), or a view of a window of one (a
/// parameter inside an arena block). Cloning shares it; the parent returns to the pool when the
/// last handle, views included, is dropped.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
    offset: u64,
    size: u64,
}

/// What a recorded dispatch keeps of a [`Buffer`]: the raw buffer and the window to bind, but
/// not the pool handle, so a buffer freed during recording can be handed out again (see the
/// module docs for why that is safe). Equal windows bind the same bytes (a bind-group cache
/// can key on them).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub raw: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Window {
    pub fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &self.raw, offset: self.offset, size: wgpu::BufferSize::new(self.size) })
    }

    /// Whether two windows share bytes.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.raw == other.raw && self.offset < other.offset + other.size && other.offset < self.offset + self.size
    }
}

impl Buffer {
    /// The whole underlying wgpu buffer (a view's parent): add [`Buffer::offset`] when
    /// addressing it directly.
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.inner.raw
    }
    /// Size in bytes (a multiple of 4, at least 4); a view's own size.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Byte offset of a view inside its parent (0 for a whole buffer).
    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub(crate) fn window(&self) -> Window {
        Window { raw: self.inner.raw.clone(), offset: self.offset, size: self.size }
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
        Buffer { inner: Arc::new(Inner { raw, size, free: self.pool.free.clone() }), offset: 0, size }
    }

    /// A window of `bytes` bytes at `offset` inside `parent` (relative to the parent's own
    /// window), bindable as a storage buffer: the offset must be a multiple of the adapter's
    /// `min_storage_buffer_offset_alignment` and the size a multiple of 4 within
    /// `max_storage_buffer_binding_size`.
    pub fn view(&self, parent: &Buffer, offset: u64, bytes: u64) -> crate::Result<Buffer> {
        let align = self.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let start = parent.offset + offset;
        let bad = |why: String| Err(crate::Error::Invalid(format!("buffer view of {bytes} bytes at {offset}: {why}")));
        if !start.is_multiple_of(align) {
            return bad(format!("offset {start} is not a multiple of the adapter's storage offset alignment {align}"));
        }
        if bytes == 0 || !bytes.is_multiple_of(4) {
            return bad("the size must be a positive multiple of 4".into());
        }
        if offset.checked_add(bytes).is_none_or(|end| end > parent.size) {
            return bad(format!("it does not fit in the parent's {} bytes", parent.size));
        }
        if bytes > self.limits.max_storage_buffer_binding_size {
            return bad(format!("larger than the adapter's max storage binding of {} bytes", self.limits.max_storage_buffer_binding_size));
        }
        Ok(Buffer { inner: parent.inner.clone(), offset: start, size: bytes })
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

    /// Bytes of storage buffers (and step parameter uniforms) created so far: all of them
    /// stay in the pool until `trim_pool`, so this is the device memory a job holds.
    pub fn pool_bytes(&self) -> u64 {
        self.counters().buffer_bytes
    }

    /// Releases every idle pooled buffer back to the driver (cached bind groups and idle
    /// staging too: they hold buffers alive).
    pub fn trim_pool(&self) {
        self.pool.free.lock().unwrap().clear();
        self.binds.lock().unwrap().clear();
        self.trim_staging();
    }
}
