//! A [`Step`] records many dispatches into one command encoder and submits them once. Host
//! readback happens only for buffers the caller asked for with [`Step::read`], after the submit;
//! [`Step::submit_deferred`] lets the host record the next step before they arrive.

use super::binds::Key;
use super::counters::Counts;
use super::pipeline::{Access, Kernel, Pipeline, PARAMS_BYTES};
use super::pool::Window;
use super::staging::{Mapping, PendingOutput};
use super::{Buffer, Gpu};
use crate::error::{Error, Result};
use std::sync::Arc;

enum Command {
    Dispatch { pipeline: Arc<Pipeline>, shader: &'static str, label: &'static str, offset: u32, buffers: Vec<(u32, Window)>, groups: [u32; 3] },
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, dst_offset: u64, bytes: u64 },
    /// From offset `at` of the step's upload buffer, which exists only once the step is submitted.
    Upload { at: u64, dst: wgpu::Buffer, dst_offset: u64, bytes: u64 },
    /// Into offset `at` of the step's readback buffer (likewise taken at submit).
    Read { src: wgpu::Buffer, src_offset: u64, at: u64, bytes: u64 },
}

/// Index of a readback requested with [`Step::read`].
#[derive(Clone, Copy, Debug)]
pub struct ReadHandle(usize);

/// What a submitted step brought back to the host.
pub struct StepOutput {
    pub(crate) reads: Vec<Vec<u8>>,
    /// GPU time of the step's compute passes, when timing was asked for and the adapter has
    /// timestamp queries.
    pub gpu_ms: Option<f64>,
}

impl StepOutput {
    pub fn bytes(&self, h: ReadHandle) -> &[u8] {
        &self.reads[h.0]
    }
    pub fn f32s(&self, h: ReadHandle) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&self.reads[h.0])
    }
    pub fn u32s(&self, h: ReadHandle) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.reads[h.0])
    }
}

pub struct Step {
    gpu: Arc<Gpu>,
    params: Vec<u8>,
    commands: Vec<Command>,
    /// Bytes of every upload, 4-aligned, in recording order.
    uploads: Vec<u8>,
    /// Per read: its offset in the readback buffer and its length.
    reads: Vec<(u64, u64)>,
    read_bytes: u64,
    timed: bool,
    stride: u64,
    /// The recording thread: until this step is submitted or dropped, buffers it frees are
    /// held for it (see `pool.rs`).
    thread: std::thread::ThreadId,
}

impl Drop for Step {
    fn drop(&mut self) {
        self.gpu.end_recording(self.thread);
    }
}

impl Step {
    pub(crate) fn new(gpu: Arc<Gpu>) -> Step {
        let stride = PARAMS_BYTES.max(gpu.limits.min_uniform_buffer_offset_alignment as u64);
        let thread = gpu.begin_recording();
        let timed = gpu.step_timing() && gpu.profile.is_none();
        Step { gpu, params: Vec::new(), commands: Vec::new(), uploads: Vec::new(), reads: Vec::new(), read_bytes: 0, timed, stride, thread }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Ask for the GPU time of this step (timestamp queries where the adapter has them).
    pub fn timed(mut self) -> Self {
        self.timed = true;
        self
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.commands.iter().filter(|c| matches!(c, Command::Dispatch { .. })).count()
    }

    /// Entry points of the dispatches recorded so far, in order (tests use it to see which
    /// kernels a launcher chose).
    pub fn kernels(&self) -> Vec<&'static str> {
        self.commands.iter().filter_map(|c| if let Command::Dispatch { label, .. } = c { Some(*label) } else { None }).collect()
    }

    /// Record one dispatch. `params` is the kernel's uniform struct (binding 0); `buffers` bind
    /// in the order of `kernel.bindings`.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[&Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let bytes = bytemuck::bytes_of(params);
        if bytes.len() as u64 > PARAMS_BYTES {
            return Err(Error::Invalid(format!("{}: params are {} bytes, limit {PARAMS_BYTES}", kernel.entry, bytes.len())));
        }
        if buffers.len() != kernel.bindings.len() {
            return Err(Error::Invalid(format!(
                "{}::{} takes {} buffers, got {}",
                kernel.shader,
                kernel.entry,
                kernel.bindings.len(),
                buffers.len()
            )));
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Invalid(format!("{}: grid {groups:?} exceeds {max} workgroups per dimension", kernel.entry)));
        }
        // wgpu forbids a buffer bound read-only and read-write in one dispatch (views of one
        // parent included), and two written windows that overlap would race; say which.
        for (i, a) in buffers.iter().enumerate() {
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                let (wa, wb) = (kernel.bindings[i].1 == Access::ReadWrite, kernel.bindings[j].1 == Access::ReadWrite);
                let both_written_apart = wa && wb && !a.window().overlaps(&b.window());
                if a.raw() == b.raw() && (wa || wb) && !both_written_apart {
                    return Err(Error::Invalid(format!(
                        "{}::{}: buffer {i} and buffer {j} are the same buffer (or views of one) and one is written (in-place use is not supported)",
                        kernel.shader, kernel.entry
                    )));
                }
            }
        }
        let pipeline = self.gpu.pipeline(kernel, constants)?;
        let offset = self.params.len() as u64;
        self.params.extend_from_slice(bytes);
        self.params.resize((offset + self.stride) as usize, 0);
        if groups.contains(&0) {
            return Ok(());
        }
        self.commands.push(Command::Dispatch {
            pipeline,
            shader: kernel.shader,
            label: kernel.entry,
            offset: offset as u32,
            buffers: kernel.bindings.iter().zip(buffers).map(|((n, _), b)| (*n, b.window())).collect(),
            groups,
        });
        Ok(())
    }

    /// Copy bytes between buffers at this point of the step (offsets relative to each view).
    pub fn copy(&mut self, src: &Buffer, src_offset: u64, dst: &Buffer, dst_offset: u64, bytes: u64) {
        if bytes > 0 {
            let (src_offset, dst_offset) = (src.offset() + src_offset, dst.offset() + dst_offset);
            self.commands.push(Command::Copy { src: src.raw().clone(), src_offset, dst: dst.raw().clone(), dst_offset, bytes });
        }
    }

    /// Write `data` into `buf` at `offset` at this point of the step. Unlike
    /// `queue.write_buffer` (which lands before the whole submission) this is ordered with the
    /// step's dispatches, so it is safe for pooled buffers that earlier commands of the same
    /// step used before they were freed and handed out again. The bytes travel in the step's
    /// one upload buffer (see `staging.rs`), copied into `buf` at this point of the step.
    pub fn upload(&mut self, buf: &Buffer, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let at = self.uploads.len() as u64;
        let len = (data.len() as u64).next_multiple_of(4);
        self.uploads.extend_from_slice(data);
        self.uploads.resize((at + len) as usize, 0);
        self.commands.push(Command::Upload { at, dst: buf.raw().clone(), dst_offset: buf.offset() + offset, bytes: len });
        Ok(())
    }

    /// Bring `bytes` of `buf` from `offset` back to the host. The copy is recorded here, in
    /// order: a pooled buffer freed after this call and reused later in the step cannot
    /// change what is read.
    pub fn read(&mut self, buf: &Buffer, offset: u64, bytes: u64) -> ReadHandle {
        let at = self.read_bytes;
        if bytes > 0 {
            let len = bytes.next_multiple_of(4);
            self.commands.push(Command::Read { src: buf.raw().clone(), src_offset: buf.offset() + offset, at, bytes: len });
            self.read_bytes += len;
        }
        self.reads.push((at, bytes));
        ReadHandle(self.reads.len() - 1)
    }

    /// Submit everything recorded as one command buffer; waits only if something must be read
    /// back (or timed). GPU errors become [`Error::Gpu`].
    pub fn submit(self) -> Result<StepOutput> {
        self.submit_deferred()?.wait()
    }

    /// Submit like [`Step::submit`] but do not wait for the reads: they are collected later
    /// with [`PendingOutput::wait`], so the host can record the next step meanwhile. Errors
    /// found while submitting are returned here, the step's own later ones by `wait`.
    pub fn submit_deferred(mut self) -> Result<PendingOutput> {
        let gpu = self.gpu.clone();
        let dev = &gpu.device;
        let validation = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);

        let params = gpu.take_uniform((self.params.len() as u64).max(PARAMS_BYTES));
        if !self.params.is_empty() {
            gpu.queue.write_buffer(&params, 0, &self.params);
        }
        let upload = (!self.uploads.is_empty()).then(|| {
            let b = gpu.take_upload(self.uploads.len() as u64);
            gpu.queue.write_buffer(&b, 0, &self.uploads);
            b
        });
        let readback = (self.read_bytes > 0).then(|| gpu.take_readback(self.read_bytes));
        let serial = gpu.counts.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Counts::add(&gpu.counts.dispatches, self.dispatches() as u64);
        let timing = (self.timed && gpu.timestamps).then(|| {
            let set = dev.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 });
            Counts::add(&gpu.counts.staging, 2);
            let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        let n_passes = count_passes(&self.commands);
        // Profiling (CELLNAS_PROFILE): every dispatch in its own pass with its own timestamps.
        let profiling = gpu.profile.is_some() && gpu.timestamps && !self.timed;
        let mut prof_sets: Vec<wgpu::QuerySet> = Vec::new();
        let mut prof_labels: Vec<(&'static str, &'static str)> = Vec::new();

        let mut binds = gpu.binds.lock().unwrap();
        let mut bind = |pipeline: &Pipeline, label: &str, buffers: &mut Vec<(u32, Window)>| {
            let key = Key { pipeline: pipeline.pipeline.clone(), params: params.clone(), buffers: std::mem::take(buffers) };
            binds.get(&gpu, pipeline, label, key, serial)
        };
        let mut commands = std::mem::take(&mut self.commands);
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        let mut i = 0;
        let mut pass_index = 0;
        while i < commands.len() {
            match &mut commands[i] {
                Command::Copy { src, src_offset, dst, dst_offset, bytes } => {
                    enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                    i += 1;
                }
                Command::Upload { at, dst, dst_offset, bytes } => {
                    let src = upload.as_ref().expect("a step with uploads has an upload buffer");
                    enc.copy_buffer_to_buffer(src, *at, dst, *dst_offset, *bytes);
                    i += 1;
                }
                Command::Read { src, src_offset, at, bytes } => {
                    let dst = readback.as_ref().expect("a step with reads has a readback buffer");
                    enc.copy_buffer_to_buffer(src, *src_offset, dst, *at, *bytes);
                    i += 1;
                }
                Command::Dispatch { pipeline, shader, label, offset, buffers, groups } if profiling => {
                    let k = prof_labels.len();
                    if k.is_multiple_of(PROFILE_SET) {
                        prof_sets.push(dev.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 * PROFILE_SET as u32 }));
                    }
                    let at = 2 * (k % PROFILE_SET) as u32;
                    let timestamp_writes = Some(wgpu::ComputePassTimestampWrites {
                        query_set: prof_sets.last().unwrap(),
                        beginning_of_pass_write_index: Some(at),
                        end_of_pass_write_index: Some(at + 1),
                    });
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    let bg = bind(pipeline, label, buffers);
                    pass.set_pipeline(&pipeline.pipeline);
                    pass.set_bind_group(0, &bg, &[*offset]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                    prof_labels.push((*shader, *label));
                    i += 1;
                }
                Command::Dispatch { .. } => {
                    // Only the first pass writes the start and only the last the end; a middle
                    // pass gets no timestamp writes at all (wgpu rejects writes naming none).
                    let (first, last) = (pass_index == 0, pass_index + 1 == n_passes);
                    let timestamp_writes = timing.as_ref().filter(|_| first || last).map(|(set, _)| wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: first.then_some(0),
                        end_of_pass_write_index: last.then_some(1),
                    });
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
                    while let Some(Command::Dispatch { pipeline, label, offset, buffers, groups, .. }) = commands.get_mut(i) {
                        let bg = bind(pipeline, label, buffers);
                        pass.set_pipeline(&pipeline.pipeline);
                        pass.set_bind_group(0, &bg, &[*offset]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                    pass_index += 1;
                }
            }
        }
        if let Some((set, resolve)) = &timing {
            if n_passes > 0 {
                enc.resolve_query_set(set, 0..2, resolve, 0);
            }
        }
        binds.trim(serial);
        drop(binds);
        let timing_staging = timing.as_ref().filter(|_| n_passes > 0).map(|(_, resolve)| {
            let st = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(resolve, 0, &st, 0, 16);
            st
        });
        let prof_staging: Vec<(wgpu::Buffer, usize)> = prof_sets
            .iter()
            .enumerate()
            .map(|(j, set)| {
                let n = (prof_labels.len() - j * PROFILE_SET).min(PROFILE_SET);
                let bytes = 16 * n as u64;
                let resolve = dev.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
                enc.resolve_query_set(set, 0..2 * n as u32, &resolve, 0);
                let st = dev.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
                enc.copy_buffer_to_buffer(&resolve, 0, &st, 0, bytes);
                (st, n)
            })
            .collect();
        let index = gpu.queue.submit([enc.finish()]);
        gpu.give_uniform(params);
        if let Some(b) = upload {
            gpu.give_upload(b);
        }
        if !prof_staging.is_empty() {
            for (st, _) in &prof_staging {
                st.slice(..).map_async(wgpu::MapMode::Read, |_| {});
            }
            dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::DeviceLost(e.to_string()))?;
            let period = gpu.queue.get_timestamp_period() as f64;
            let mut prof = gpu.profile.as_ref().unwrap().lock().unwrap();
            for (j, (st, n)) in prof_staging.iter().enumerate() {
                let view = st.get_mapped_range(..).map_err(|e| Error::Gpu { context: "profile".into(), message: e.to_string() })?;
                let t: Vec<u64> = bytemuck::pod_collect_to_vec(&view[..]);
                for k in 0..*n {
                    let e = prof.entry(prof_labels[j * PROFILE_SET + k]).or_insert((0, 0.0));
                    e.0 += 1;
                    e.1 += t[2 * k + 1].saturating_sub(t[2 * k]) as f64 * period / 1e6;
                }
                drop(view);
                st.unmap();
            }
        }

        let oom = pollster::block_on(oom.pop());
        let val = pollster::block_on(validation.pop());
        if let Some(e) = val.or(oom) {
            return Err(Error::Gpu { context: "step".into(), message: e.to_string() });
        }
        gpu.check("step")?;
        // Mapping is requested after the submit: a buffer awaiting a map may not be submitted.
        let readback = readback.map(Mapping::start);
        let timing = timing_staging.map(Mapping::start);
        Ok(PendingOutput { gpu: gpu.clone(), index, reads: std::mem::take(&mut self.reads), readback, timing })
    }
}

/// Dispatches per profiling query set (two timestamps each; wgpu allows 4096 queries a set).
const PROFILE_SET: usize = 2048;

fn count_passes(cmds: &[Command]) -> usize {
    let mut n = 0;
    let mut in_pass = false;
    for c in cmds {
        match c {
            Command::Dispatch { .. } if !in_pass => {
                n += 1;
                in_pass = true;
            }
            Command::Dispatch { .. } => {}
            Command::Copy { .. } | Command::Upload { .. } | Command::Read { .. } => in_pass = false,
        }
    }
    n
}

impl Gpu {
    /// Block until all submitted work has finished (for host timing and tests).
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::DeviceLost(e.to_string()))?;
        self.check("wait")
    }
}
