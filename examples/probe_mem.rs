// Probe: what makes memory-bound kernels slow on this adapter? Not part of the product.
use std::time::Instant;
fn main() {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&inst, None)).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    })).unwrap();
    let n: u32 = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(64 * 16 * 28 * 28);
    let a = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: n as u64 * 4, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let b = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: n as u64 * 4, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let variants: Vec<(&str, String, u32, bool)> = vec![
        ("scalar K1 checked", "@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(1) var<storage, read_write> o: array<f32>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = max(a[i], 0.0); } }".into(), n, false),
        ("scalar K1 unchecked", "@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(1) var<storage, read_write> o: array<f32>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = max(a[i], 0.0); } }".into(), n, true),
        ("scalar K8 checked", "@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(1) var<storage, read_write> o: array<f32>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { for (var k=0u;k<8u;k++){ let i = g.x*8u+k; if (i < arrayLength(&o)) { o[i] = max(a[i], 0.0); } } }".into(), n/8, false),
        ("scalar K8 strided checked", "@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(1) var<storage, read_write> o: array<f32>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) { let s = nw.x*256u; for (var k=0u;k<8u;k++){ let i = g.x+k*s; if (i < arrayLength(&o)) { o[i] = max(a[i], 0.0); } } }".into(), n/8, false),
        ("scalar K8 unchecked", "@group(0) @binding(0) var<storage, read> a: array<f32>; @group(0) @binding(1) var<storage, read_write> o: array<f32>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { for (var k=0u;k<8u;k++){ let i = g.x*8u+k; if (i < arrayLength(&o)) { o[i] = max(a[i], 0.0); } } }".into(), n/8, true),
        ("vec4 K1 checked", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = max(a[i], vec4(0.0)); } }".into(), n/4, false),
        ("vec4 K1 unchecked", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = max(a[i], vec4(0.0)); } }".into(), n/4, true),
        ("vec4 K2 strided unchecked", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) { let s = nw.x*256u; for (var k=0u;k<2u;k++){ let i = g.x+k*s; if (i < arrayLength(&o)) { o[i] = max(a[i], vec4(0.0)); } } }".into(), n/8, true),
        ("vec4 K1 wg64 unchecked", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = max(a[i], vec4(0.0)); } }".into(), n/4 * 4, true),
        ("vec4 K4 contig unchecked", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { for (var k=0u;k<4u;k++){ let i = g.x*4u+k; if (i < arrayLength(&o)) { o[i] = max(a[i], vec4(0.0)); } } }".into(), n/16, true),
        ("mat4 K1 unchecked", "@group(0) @binding(0) var<storage, read> a: array<mat4x4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<mat4x4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { let m = a[i]; o[i] = mat4x4<f32>(max(m[0], vec4(0.0)),max(m[1], vec4(0.0)),max(m[2], vec4(0.0)),max(m[3], vec4(0.0))); } }".into(), n/16, true),
        ("fill vec4 K1", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i < arrayLength(&o)) { o[i] = vec4(1.0); } if (i == 0xffffffffu) { o[0] = a[0]; } }".into(), n/4, true),
        ("empty", "@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>; @group(0) @binding(1) var<storage, read_write> o: array<vec4<f32>>;
         @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x; if (i == 0xffffffffu) { o[i] = a[i]; } }".into(), n/4, true),
    ];
    for (name, src, threads, unchecked) in variants {
        let desc = wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) };
        let m = if unchecked { unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) } } else { device.create_shader_module(desc) };
        let wg = if name.contains("wg64") { 64 } else { 256 };
        let threads = if name.contains("wg64") { threads / 4 } else { threads };
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &m, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &p.get_bind_group_layout(0), entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: a.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: b.as_entire_binding() }] });
        let mut times = vec![];
        for rep in 0..4 {
            let reps = 20;
            let mut enc = device.create_command_encoder(&Default::default());
            { let mut pass = enc.begin_compute_pass(&Default::default());
              pass.set_pipeline(&p); pass.set_bind_group(0, &bg, &[]);
              for _ in 0..reps { pass.dispatch_workgroups(threads.div_ceil(wg), 1, 1); } }
            let t = Instant::now();
            queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            if rep > 0 { times.push(t.elapsed().as_secs_f64() * 1000.0 / reps as f64); }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let ms = times[1];
        println!("{name:<28} {ms:7.3} ms  {:6.2} GB/s", n as f64 * 8.0 / ms / 1e6);
    }
}
