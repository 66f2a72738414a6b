//! Kernels and the pipeline cache. A [`Kernel`] names a shader file, an entry point and the
//! access mode of each storage binding; pipelines are compiled once per
//! (shader, entry point, override constants) and reused for the life of the device.
//!
//! Binding convention shared by every shader in `shaders/`:
//! `@group(0) @binding(0) var<uniform> p: Params;` (at most [`PARAMS_BYTES`] bytes, bound with a
//! dynamic offset into the step's parameter arena), then storage buffers at bindings 1..=n.

use super::Gpu;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Size of the uniform window each dispatch sees. Also the dynamic-offset stride.
pub const PARAMS_BYTES: u64 = 256;

/// Prepended to every shader: common helpers, so kernels agree on indexing.
const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// A compute entry point in a shader file, with the access mode of its storage bindings.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Shader file name, for messages and the cache key.
    pub shader: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    /// (binding number, access) of each storage buffer, in the order buffers are passed.
    pub bindings: &'static [(u32, Access)],
}

/// `include_str!` a shader from `shaders/` and describe one of its entry points:
/// `kernel!("file.wgsl", "entry", [1: Read, 2: ReadWrite])` lists each storage binding the
/// entry point uses with its access; buffers are passed to [`super::Step::dispatch`] in that order.
#[macro_export]
macro_rules! kernel {
    ($file:literal, $entry:literal, [$($b:literal : $acc:ident),* $(,)?]) => {
        $crate::gpu::Kernel {
            shader: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
            entry: $entry,
            bindings: &[$(($b, $crate::gpu::Access::$acc)),*],
        }
    };
}

pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

type Key = (&'static str, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct Cache {
    map: Mutex<HashMap<Key, Arc<Pipeline>>>,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
}

impl Cache {
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Gpu {
    /// The compiled pipeline for `kernel` with these override constants, compiling it on first
    /// use. Shader errors come back as [`Error::Gpu`] naming the shader and entry point.
    pub(crate) fn pipeline(&self, k: &Kernel, constants: &[(&'static str, f64)]) -> Result<Arc<Pipeline>> {
        let key: Key = (k.shader, k.entry, constants.iter().map(|(n, v)| (*n, v.to_bits())).collect());
        if let Some(p) = self.pipelines.map.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let context = format!("{}::{}", k.shader, k.entry);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.pipelines.modules.lock().unwrap();
            modules
                .entry(k.shader)
                .or_insert_with(|| {
                    let src = format!("{PRELUDE}\n{}", k.source);
                    self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.shader),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    })
                })
                .clone()
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (binding, acc) in k.bindings.iter() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: *binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *acc == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(k.entry),
            entries: &entries,
        });
        let pl = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(k.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&context),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            // A broken module would fail every entry point: forget it so a fix is picked up.
            self.pipelines.modules.lock().unwrap().remove(k.shader);
            return Err(Error::Gpu { context, message: e.to_string() });
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines.map.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }
}
