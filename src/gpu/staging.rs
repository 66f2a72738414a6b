//! Staging for a step's uploads and readbacks, reused across steps. A step packs all its
//! uploads into one host arena written with one `queue.write_buffer` into a pooled buffer, and
//! all its reads into one pooled mappable buffer. The upload buffer can be rewritten by the
//! next step as soon as this one is submitted (queue writes are ordered after work already
//! submitted); a readback buffer goes back to the pool only once its mapping has been read
//! and unmapped, so a deferred read never sees a later step's bytes.

use super::counters::Counts;
use super::Gpu;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Staging buffers above this size are not kept: they serve whole-model downloads (checkpoints),
/// rare enough that holding that much host-visible memory idle costs more than recreating it.
const KEEP_MAX_BYTES: u64 = 16 << 20;
/// How long a finished step's readback may take to be mapped (see `PendingOutput::wait`).
const MAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Smallest staging size, so tiny reads of different lengths share one buffer.
const MIN_BYTES: u64 = 256;

#[derive(Default)]
pub(crate) struct StagingPool {
    uploads: Mutex<Vec<wgpu::Buffer>>,
    readbacks: Mutex<Vec<wgpu::Buffer>>,
}

fn take(gpu: &Gpu, list: &Mutex<Vec<wgpu::Buffer>>, bytes: u64, usage: wgpu::BufferUsages, label: &str) -> wgpu::Buffer {
    // Pooled sizes are powers of two so similar steps share buffers; big ones are exact so a
    // near-limit download is not refused for rounding.
    let size = if bytes > KEEP_MAX_BYTES { bytes.next_multiple_of(4) } else { bytes.max(MIN_BYTES).next_power_of_two() };
    let mut l = list.lock().unwrap();
    match l.iter().position(|b| b.size() == size) {
        Some(i) => l.remove(i),
        None => {
            Counts::add(&gpu.counts.staging, 1);
            gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
        }
    }
}

fn give(list: &Mutex<Vec<wgpu::Buffer>>, b: wgpu::Buffer) {
    if b.size() <= KEEP_MAX_BYTES {
        list.lock().unwrap().push(b);
    }
}

impl Gpu {
    pub(crate) fn take_upload(&self, bytes: u64) -> wgpu::Buffer {
        take(self, &self.staging.uploads, bytes, wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, "upload")
    }
    /// Only after the submit that copies from it (see the module comment).
    pub(crate) fn give_upload(&self, b: wgpu::Buffer) {
        give(&self.staging.uploads, b)
    }
    pub(crate) fn take_readback(&self, bytes: u64) -> wgpu::Buffer {
        take(self, &self.staging.readbacks, bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "readback")
    }
    pub(crate) fn trim_staging(&self) {
        self.staging.uploads.lock().unwrap().clear();
        self.staging.readbacks.lock().unwrap().clear();
    }
}

type Slot = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A staging buffer whose mapping was requested; the callback fills `slot`.
pub(crate) struct Mapping {
    buf: wgpu::Buffer,
    slot: Slot,
}

impl Mapping {
    pub fn start(buf: wgpu::Buffer) -> Mapping {
        let slot: Slot = Arc::default();
        let s = slot.clone();
        buf.slice(..).map_async(wgpu::MapMode::Read, move |r| *s.lock().unwrap() = Some(r));
        Mapping { buf, slot }
    }
    fn done(&self) -> bool {
        self.slot.lock().unwrap().is_some()
    }
    /// The mapped bytes; then unmaps (the buffer is reusable after this).
    fn bytes(&self, context: &str) -> Result<Vec<u8>> {
        if let Some(Err(e)) = self.slot.lock().unwrap().take() {
            return Err(Error::Gpu { context: context.into(), message: e.to_string() });
        }
        let view = self.buf.get_mapped_range(..).map_err(|e| Error::Gpu { context: context.into(), message: e.to_string() })?;
        let v = view.to_vec();
        drop(view);
        self.buf.unmap();
        Ok(v)
    }
}

/// A submitted step whose reads have not been collected. [`PendingOutput::wait`] blocks only
/// for this step's submission, not for work submitted after it.
pub struct PendingOutput {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) index: wgpu::SubmissionIndex,
    /// (offset in the readback buffer, bytes) per read.
    pub(crate) reads: Vec<(u64, u64)>,
    pub(crate) readback: Option<Mapping>,
    pub(crate) timing: Option<Mapping>,
}

impl PendingOutput {
    fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.readback.iter().chain(self.timing.iter())
    }

    /// Whether `wait` would return without blocking (polls the device, never waits).
    pub fn is_ready(&self) -> bool {
        if self.mappings().all(Mapping::done) {
            return true;
        }
        let _ = self.gpu.device.poll(wgpu::PollType::Poll);
        self.mappings().all(Mapping::done)
    }

    /// Block until the step has run, then hand its reads (and GPU time, for timed steps) back.
    pub fn wait(self) -> Result<super::StepOutput> {
        let gpu = self.gpu.clone();
        if !self.mappings().all(Mapping::done) {
            let wait = wgpu::PollType::Wait { submission_index: Some(self.index.clone()), timeout: None };
            gpu.device.poll(wait).map_err(|e| Error::DeviceLost(e.to_string()))?;
            // The mapping callbacks of a finished submission fire on the next poll at the latest,
            // but on a device shared by threads another thread's poll may have taken them and not
            // run them yet: poll again until they have, within a bound.
            let t0 = std::time::Instant::now();
            while !self.mappings().all(Mapping::done) {
                if t0.elapsed() > MAP_TIMEOUT {
                    return Err(Error::Gpu { context: "readback".into(), message: format!("the step finished but its readback was not mapped within {} s", MAP_TIMEOUT.as_secs()) });
                }
                gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::DeviceLost(e.to_string()))?;
                if !self.mappings().all(Mapping::done) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        gpu.check("step")?;
        let mut reads = Vec::with_capacity(self.reads.len());
        if let Some(m) = &self.readback {
            let all = m.bytes("readback")?;
            reads.extend(self.reads.iter().map(|&(o, n)| all[o as usize..(o + n) as usize].to_vec()));
            give(&gpu.staging.readbacks, m.buf.clone());
        } else {
            reads.resize(self.reads.len(), Vec::new());
        }
        let gpu_ms = match &self.timing {
            Some(m) => {
                let t: [u64; 2] = bytemuck::pod_read_unaligned(&m.bytes("timestamps")?[..16]);
                let ms = t[1].saturating_sub(t[0]) as f64 * gpu.queue.get_timestamp_period() as f64 / 1e6;
                gpu.record_device_ms(ms);
                Some(ms)
            }
            None => None,
        };
        Ok(super::StepOutput { reads, gpu_ms })
    }
}
