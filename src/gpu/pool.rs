//! Storage buffers recycled across steps: a training step allocates the same sizes every time,
//! so after the first step no buffer is created. A [`Buffer`] returns to the pool when its last
//! handle is dropped — possibly while a step that used it is still being recorded. That is safe
//! within that step, because its commands run in the order they were recorded, so a later user
//! of the buffer in the same step runs after the earlier one. It is not safe for anything that
//! may run before that step: a step recorded on another thread and submitted first, or a queue
//! write (which lands before the whole next submit). So a buffer freed while its thread records
//! a step is held for that thread alone until the step is submitted or dropped; then, like every
//! buffer freed outside a recording, it joins the free list all threads share. (A thread that
//! exits therefore strands nothing; free lists were once kept per thread for good, and every
//! buffer a finished worker thread had freed stayed out of reach.) A step is recorded on one
//! thread: a buffer freed on a thread other than its recorder's is not held back.

use super::Gpu;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

#[derive(Default)]
pub(crate) struct Lists {
    /// By size: buffers no unsubmitted step uses.
    shared: HashMap<u64, Vec<wgpu::Buffer>>,
    /// By (thread, size): buffers freed while that thread recorded a step.
    held: HashMap<(ThreadId, u64), Vec<wgpu::Buffer>>,
    /// Steps each thread is recording now (absent = none).
    recording: HashMap<ThreadId, usize>,
}

type Free = Arc<Mutex<Lists>>;

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
            let me = std::thread::current().id();
            let list = if f.recording.contains_key(&me) { f.held.entry((me, self.size)).or_default() } else { f.shared.entry(self.size).or_default() };
            list.push(self.raw.clone());
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
        // This thread's held buffers first: freed most recently, by the step being recorded.
        let reused = {
            let mut f = self.pool.free.lock().unwrap();
            let held = f.held.get_mut(&(std::thread::current().id(), size)).and_then(|v| v.pop());
            held.or_else(|| f.shared.get_mut(&size).and_then(|v| v.pop()))
        };
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

    /// A step starts recording on this thread: buffers freed here are held back until it ends.
    /// The shared free buffers are put in a fixed order (by handle): what is free at the start
    /// of a steady-state step is always the same set, but the order it was freed in depends on
    /// the steps before (alternating supernet paths free differently); ordering it makes the
    /// step receive the same buffers in the same order every time, so its cached bind groups
    /// match instead of cycling through permutations.
    pub(crate) fn begin_recording(&self) -> ThreadId {
        let me = std::thread::current().id();
        let mut f = self.pool.free.lock().unwrap();
        *f.recording.entry(me).or_default() += 1;
        for list in f.shared.values_mut() {
            list.sort_unstable();
        }
        me
    }

    /// A step that began on `thread` was submitted (its commands are now ordered before any
    /// later submit or queue write) or dropped unsubmitted. When it was the thread's last, the
    /// buffers the thread held back join the shared lists.
    pub(crate) fn end_recording(&self, thread: ThreadId) {
        let Ok(mut f) = self.pool.free.lock() else { return };
        let Some(n) = f.recording.get_mut(&thread) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        f.recording.remove(&thread);
        let mine: Vec<(ThreadId, u64)> = f.held.keys().filter(|(t, _)| *t == thread).copied().collect();
        for key in mine {
            let list = f.held.remove(&key).unwrap_or_default();
            f.shared.entry(key.1).or_default().extend(list);
        }
    }

    /// Whether this thread is recording a step on this device: a queue write now would land
    /// before that step's commands (see [`Gpu::write_outside_step`]).
    pub fn recording_here(&self) -> bool {
        self.pool.free.lock().unwrap().recording.contains_key(&std::thread::current().id())
    }

    /// Writes `data` into `buf` at `offset` (relative to the view) with a queue write, which
    /// lands before every command of the next submit. Refused while this thread records a step:
    /// the step may have used `buf` (or the pooled buffer behind it, freed and handed out
    /// again) in commands that must run first; [`super::Step::upload`] is the ordered write.
    pub fn write_outside_step(&self, buf: &Buffer, offset: u64, data: &[u8]) -> crate::Result<()> {
        if self.recording_here() {
            return Err(crate::Error::Invalid(
                "a queue write while this thread records a step would land before the step's earlier commands: write through Step::upload (or the tensor helpers taking a step)".into(),
            ));
        }
        if !offset.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            return Err(crate::Error::Invalid(format!("a write of {} bytes at {offset}: offset and length must be multiples of 4", data.len())));
        }
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > buf.size) {
            return Err(crate::Error::Invalid(format!("a write of {} bytes at {offset} does not fit in a buffer of {} bytes", data.len(), buf.size)));
        }
        if !data.is_empty() {
            self.queue.write_buffer(&buf.inner.raw, buf.offset + offset, data);
        }
        Ok(())
    }

    /// Free pooled storage buffers (shared and held back) now.
    pub fn pool_free_buffers(&self) -> usize {
        let f = self.pool.free.lock().unwrap();
        f.shared.values().chain(f.held.values()).map(Vec::len).sum()
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
        // Held buffers stay: a step being recorded may still use them.
        self.pool.free.lock().unwrap().shared.clear();
        self.binds.lock().unwrap().clear();
        self.trim_staging();
    }
}
