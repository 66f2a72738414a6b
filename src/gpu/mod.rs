//! The GPU runtime: adapter choice, device with the limits our kernels need, a pipeline cache,
//! a buffer pool, and [`Step`]: a batch of dispatches recorded into one encoder and submitted once.

mod binds;
mod counters;
mod pipeline;
mod pool;
mod staging;
mod stats;
mod step;

pub use binds::BIND_GROUPS_CACHED_MAX;
pub use counters::Counters;
pub use pipeline::{Access, Kernel};
pub use pool::Buffer;
pub use staging::PendingOutput;
pub use stats::StepStats;
pub use step::{ReadHandle, Step, StepOutput};

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// How to pick an adapter. Empty fields fall back to `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// vulkan, metal, dx12 or gl.
    pub backend: Option<String>,
    /// Case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    /// Where this adapter's measured kernel choices come from (`cellnas autotune`).
    pub kernel_cache: crate::autotune::CacheSource,
}

/// What `cellnas devices` prints for one adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffers_per_stage: u32,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_size_x: u32,
    pub max_workgroups_per_dimension: u32,
    pub max_storage_binding_bytes: u64,
    pub max_buffer_bytes: u64,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamps: bool,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: info.backend.to_string(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffers_per_stage: l.max_storage_buffers_per_shader_stage,
            max_workgroup_storage_bytes: l.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_storage_binding_bytes: l.max_storage_buffer_binding_size,
            max_buffer_bytes: l.max_buffer_size,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            timestamps: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::UnknownBackend(other.to_string())),
    }
}

impl AdapterOptions {
    fn resolved(&self) -> Result<(wgpu::Backends, Option<String>)> {
        let backend = self.backend.clone().or_else(|| std::env::var("WGPU_BACKEND").ok());
        let backends = match backend.as_deref() {
            Some(b) if !b.is_empty() => {
                let mut all = wgpu::Backends::empty();
                for part in b.split(',') {
                    all |= parse_backend(part.trim())?;
                }
                all
            }
            _ => wgpu::Backends::all(),
        };
        let name = self.adapter.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        Ok((backends, name.filter(|n| !n.is_empty())))
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter the chosen backends expose (for `cellnas devices`).
pub fn list_adapters(opts: &AdapterOptions) -> Result<Vec<AdapterSummary>> {
    let (backends, _) = opts.resolved()?;
    let inst = instance(backends);
    let adapters = pollster::block_on(inst.enumerate_adapters(backends));
    Ok(adapters.iter().map(AdapterSummary::of).collect())
}

/// Limits the kernels need, checked against the adapter before a device is requested.
/// Everything else is taken from the adapter itself rather than wgpu's conservative defaults.
const NEED_STORAGE_BUFFERS: u32 = 8;
const NEED_INVOCATIONS: u32 = 64;

/// Errors that happened outside an error scope (e.g. during a submit) land here instead of
/// panicking inside wgpu; the next [`Gpu::check`] turns them into an [`Error`].
#[derive(Default)]
struct ErrorSink {
    errors: Vec<String>,
    lost: Option<String>,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::Adapter,
    pub info: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    pipelines: pipeline::Cache,
    pool: pool::Pool,
    staging: staging::StagingPool,
    binds: Mutex<binds::BindCache>,
    counts: counters::Counts,
    sink: Arc<Mutex<ErrorSink>>,
    /// Kernel variant per choice point (crate::autotune); empty = the documented defaults.
    kernels: std::sync::RwLock<crate::autotune::Choices>,
    /// Why the autotune cache was ignored, if it was (also printed once when the Gpu opened).
    pub autotune_warning: Option<String>,
    /// Per-kernel (count, GPU ms) when CELLNAS_PROFILE is set and timestamps exist.
    pub(crate) profile: Option<Mutex<std::collections::BTreeMap<(&'static str, &'static str), (u64, f64)>>>,
    device_time: Mutex<stats::DeviceTime>,
    time_steps: std::sync::atomic::AtomicBool,
}

impl Gpu {
    /// Opens the adapter chosen by `opts` (or the environment), or fails with a message that
    /// says how to get one.
    pub fn new(opts: &AdapterOptions) -> Result<Arc<Gpu>> {
        let (backends, name) = opts.resolved()?;
        let inst = instance(backends);
        let adapters = pollster::block_on(inst.enumerate_adapters(backends));
        let filter_text = match &name {
            Some(n) => format!(" matching '{n}'"),
            None => String::new(),
        };
        let adapter = match &name {
            Some(n) => {
                let n = n.to_ascii_lowercase();
                adapters.into_iter().find(|a| a.get_info().name.to_ascii_lowercase().contains(&n))
            }
            // Prefer real GPUs over CPU/software adapters, otherwise keep the enumeration order.
            None => {
                let mut v = adapters;
                v.sort_by_key(|a| match a.get_info().device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    wgpu::DeviceType::VirtualGpu => 2,
                    wgpu::DeviceType::Other => 3,
                    wgpu::DeviceType::Cpu => 4,
                });
                v.into_iter().next()
            }
        };
        let adapter = adapter.ok_or(Error::NoAdapter { filter: filter_text })?;
        Self::with_adapter(adapter, &opts.kernel_cache)
    }

    /// A device on every adapter of the chosen backends (`names` None), or one per name in
    /// `names`, each chosen as `--adapter` would (a name given twice opens two devices on one
    /// adapter). For scoring on several adapters at once (`search --adapters`).
    pub fn open_many(opts: &AdapterOptions, names: Option<&[String]>) -> Result<Vec<Arc<Gpu>>> {
        if let Some(names) = names {
            return names.iter().map(|n| Gpu::new(&AdapterOptions { adapter: Some(n.clone()), ..opts.clone() })).collect();
        }
        let (backends, _) = opts.resolved()?;
        let adapters = pollster::block_on(instance(backends).enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(Error::NoAdapter { filter: String::new() });
        }
        adapters.into_iter().map(|a| Self::with_adapter(a, &opts.kernel_cache)).collect()
    }

    fn with_adapter(adapter: wgpu::Adapter, cache: &crate::autotune::CacheSource) -> Result<Arc<Gpu>> {
        let info = AdapterSummary::of(&adapter);
        let have = adapter.limits();
        let too_small = |what, have: u64, need: u64| Error::AdapterTooSmall {
            adapter: info.name.clone(),
            what,
            have,
            need,
        };
        if have.max_storage_buffers_per_shader_stage < NEED_STORAGE_BUFFERS {
            return Err(too_small(
                "storage buffers per shader stage",
                have.max_storage_buffers_per_shader_stage as u64,
                NEED_STORAGE_BUFFERS as u64,
            ));
        }
        if have.max_compute_invocations_per_workgroup < NEED_INVOCATIONS {
            return Err(too_small(
                "compute invocations per workgroup",
                have.max_compute_invocations_per_workgroup as u64,
                NEED_INVOCATIONS as u64,
            ));
        }
        // Ask for everything the adapter offers: buffers of a real batch exceed wgpu's defaults.
        let limits = have.clone();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = wgpu::Features::empty();
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("cellnas"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            s.lock().unwrap().errors.push(e.to_string());
        }));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            s.lock().unwrap().lost = Some(format!("{reason:?}: {msg}"));
        });
        let (kernels, autotune_warning) = crate::autotune::load_choices(cache, &crate::autotune::AdapterKey::of(&info));
        if let Some(w) = &autotune_warning {
            eprintln!("warning: {w}");
        }
        Ok(Arc::new(Gpu {
            kernels: std::sync::RwLock::new(kernels),
            autotune_warning,
            device,
            queue,
            adapter,
            info,
            limits,
            timestamps,
            pipelines: pipeline::Cache::default(),
            pool: pool::Pool::default(),
            staging: Default::default(),
            binds: Default::default(),
            counts: Default::default(),
            sink,
            profile: std::env::var_os("CELLNAS_PROFILE").filter(|v| !v.is_empty() && v != "0").map(|_| Mutex::new(Default::default())),
            device_time: Default::default(),
            time_steps: Default::default(),
        }))
    }

    /// Turns errors reported asynchronously by wgpu into a Rust error.
    pub fn check(&self, context: &str) -> Result<()> {
        let mut sink = self.sink.lock().unwrap();
        if let Some(lost) = sink.lost.take() {
            return Err(Error::DeviceLost(lost));
        }
        if !sink.errors.is_empty() {
            let message = sink.errors.drain(..).collect::<Vec<_>>().join("; ");
            return Err(Error::Gpu { context: context.to_string(), message });
        }
        Ok(())
    }

    /// Workgroup size for one-dimensional kernels: a multiple of the largest subgroup the
    /// adapter reports, capped by its limits.
    pub fn wg1d(&self) -> u32 {
        let cap = self.limits.max_compute_invocations_per_workgroup.min(self.limits.max_compute_workgroup_size_x);
        256.min(cap).max(1)
    }

    /// Workgroup counts for `n` items in groups of `wg`, folded into y when x would exceed the
    /// per-dimension limit. Kernels recover the flat index with `flat_id()` from the prelude.
    pub fn grid(&self, n: u32, wg: u32) -> [u32; 3] {
        let groups = n.div_ceil(wg).max(1);
        let maxd = self.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= maxd {
            [groups, 1, 1]
        } else {
            [maxd, groups.div_ceil(maxd), 1]
        }
    }

    /// Begin recording a step: dispatches go into one encoder and are submitted together.
    pub fn step(self: &Arc<Self>) -> Step {
        Step::new(self.clone())
    }

    /// With CELLNAS_PROFILE=1: GPU time per kernel so far, largest first, as a table.
    pub fn profile_report(&self) -> Option<String> {
        let prof = self.profile.as_ref()?.lock().unwrap();
        if prof.is_empty() {
            return Some("profile: no timestamped dispatches (the adapter has no timestamp queries?)".into());
        }
        let total: f64 = prof.values().map(|v| v.1).sum();
        let mut rows: Vec<_> = prof.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut out = format!("{:<44} {:>9} {:>11} {:>6}\n", "kernel (shader::entry)", "calls", "GPU ms", "%");
        for ((shader, entry), (n, ms)) in rows {
            out += &format!("{:<44} {:>9} {:>11.1} {:>5.1}%\n", format!("{shader}::{entry}"), n, ms, 100.0 * ms / total);
        }
        out += &format!("{:<44} {:>9} {:>11.1}\n", "total", "", total);
        Some(out)
    }

    /// The profile so far (as `profile_report`), then cleared: how `bench --net` reports its
    /// phases apart.
    pub fn take_profile_report(&self) -> Option<String> {
        let report = self.profile_report()?;
        self.profile.as_ref()?.lock().unwrap().clear();
        Some(report)
    }

    /// The variant chosen for the choice point `key` names, if any. `key` is only computed
    /// when there are choices at all, so a Gpu without any costs a lock per kernel choice.
    pub fn kernel_choice(&self, key: impl FnOnce() -> Option<String>) -> Option<String> {
        let k = self.kernels.read().unwrap();
        if k.is_empty() {
            return None;
        }
        k.get(&key()?).cloned()
    }

    /// The kernel choices in use (what a run records in `kernels.json`).
    pub fn kernel_choices(&self) -> crate::autotune::Choices {
        self.kernels.read().unwrap().clone()
    }

    /// Replaces the kernel choices: a resumed run puts back the ones it started with, and
    /// autotune selects each variant it times.
    pub fn set_kernel_choices(&self, choices: crate::autotune::Choices) {
        *self.kernels.write().unwrap() = choices;
    }

    /// Number of pipelines compiled so far (tests use it to prove caching).
    pub fn pipelines_compiled(&self) -> usize {
        self.pipelines.len()
    }

    /// Bind groups held by the cache now (bounded; tests check the bound).
    pub fn bind_groups_cached(&self) -> usize {
        self.binds.lock().unwrap().len()
    }
}

/// Opens the default adapter once per process for tests and benches, with the documented
/// default kernels (no autotune cache). Fails loudly (panics with the full message) when there
/// is none: a GPU test never skips.
pub fn test_gpu() -> Arc<Gpu> {
    use std::sync::OnceLock;
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    // No `silence_mesa` here: tests run on parallel threads, and changing the environment
    // while another thread reads it is undefined behaviour. `.ci/run` sets XDG_RUNTIME_DIR.
    GPU.get_or_init(|| {
        let opts = AdapterOptions { kernel_cache: crate::autotune::CacheSource::Off, ..Default::default() };
        match Gpu::new(&opts) {
            Ok(g) => g,
            Err(e) => panic!("GPU tests need an adapter and found none usable: {e}"),
        }
    })
    .clone()
}

/// Mesa warns on every start without XDG_RUNTIME_DIR; point it at a private temp dir.
///
/// # Safety
/// It sets an environment variable, which is undefined behaviour while any other thread may
/// read or write the environment (glibc's getenv is not synchronised with setenv). Call it
/// first thing in `main`, before a thread exists; never from library code or tests, which run
/// on threads of their own.
pub unsafe fn silence_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("cellnas-xdg");
        if std::fs::create_dir_all(&dir).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            }
            // SAFETY: the caller guarantees no other thread exists (see above).
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
