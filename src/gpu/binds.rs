//! Bind groups cached across steps. In steady state the pool hands a step the same buffers in
//! the same order every time, and the step's parameter uniform is the same buffer, so every
//! dispatch finds the bind group it used last step instead of asking the driver for a new one.

use super::pipeline::{Pipeline, PARAMS_BYTES};
use super::pool::Window;
use super::Gpu;
use std::collections::HashMap;

/// Entries kept before old ones are evicted: well above one supernet step's dispatches, so
/// alternating paths do not evict each other, yet bounded for runs whose shapes keep changing.
pub const BIND_GROUPS_CACHED_MAX: usize = 16384;
/// On eviction, entries used within this many submits survive.
const KEEP_SUBMITS: u64 = 8;

/// What makes two bind groups interchangeable: the pipeline (its layout), the parameter
/// uniform, and each bound storage buffer window with its binding number. Holding the handles keeps
/// them alive, so a key cannot be confused with a later object at a reused address.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub pipeline: wgpu::ComputePipeline,
    pub params: wgpu::Buffer,
    /// A view's window (buffer, offset, size) so two views of one arena are different keys.
    pub buffers: Vec<(u32, Window)>,
}

#[derive(Default)]
pub(crate) struct BindCache {
    map: HashMap<Key, (wgpu::BindGroup, u64)>,
}

impl BindCache {
    /// The bind group for `key`, created on a miss; `serial` is the submit it is used in.
    pub fn get(&mut self, gpu: &Gpu, pipeline: &Pipeline, label: &str, key: Key, serial: u64) -> wgpu::BindGroup {
        if let Some((bg, used)) = self.map.get_mut(&key) {
            *used = serial;
            return bg.clone();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &key.params, offset: 0, size: wgpu::BufferSize::new(PARAMS_BYTES) }),
        }];
        for (n, b) in &key.buffers {
            entries.push(wgpu::BindGroupEntry { binding: *n, resource: b.resource() });
        }
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout: &pipeline.layout, entries: &entries });
        super::counters::Counts::add(&gpu.counts.bind_groups, 1);
        self.map.insert(key, (bg.clone(), serial));
        bg
    }

    /// Evict when over the limit: first what no recent submit used, then all but this submit's.
    pub fn trim(&mut self, serial: u64) {
        if self.map.len() > BIND_GROUPS_CACHED_MAX {
            self.map.retain(|_, (_, used)| *used + KEEP_SUBMITS > serial);
        }
        if self.map.len() > BIND_GROUPS_CACHED_MAX {
            self.map.retain(|_, (_, used)| *used == serial);
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}
