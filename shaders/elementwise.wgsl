// Elementwise ops over flat f32 buffers. Every entry point is 1-D; each invocation handles K
// elements (fewer invocations: on lavapipe the per-invocation and per-load overhead, not the
// memory, limits these kernels). The grid covers ceil(n / K) invocations, folded by the host
// (Gpu::grid); every element is guarded by `i < p.n`, so nothing past n is written.

// Invocation g handles elements g*K .. g*K+K-1.
override K: u32 = 8u;

struct Params {
    n: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// relu_forward: b1 = x, b2 = y
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// Second read operand for binary ops (add, relu_backward).
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn first(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return flat_id(wid, nwg, lid) * K;
}

@compute @workgroup_size(WG)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = max(a[i], 0.0); }
    }
}

// dx = dy where x > 0 (a = x, b = dy). The gradient at exactly 0 is taken as 0, like PyTorch.
@compute @workgroup_size(WG)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = select(0.0, b[i], a[i] > 0.0); }
    }
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = a[i] + b[i]; }
    }
}

// out += a: summing the gradients of a value that feeds several consumers.
@compute @workgroup_size(WG)
fn accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = out[i] + a[i]; }
    }
}

// out = value (zero op, gradient reset).
@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = p.value; }
    }
}

// out = a * value (scaling, e.g. gradient clipping).
@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first(wid, nwg, lid);
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = a[i] * p.value; }
    }
}

// ---- vec4 path: the same ops on vec4 views when n % 4 == 0 (the host checks). On lavapipe a
// load or store costs about the same for a vec4 as for a float. Invocation g handles vec4s
// g*KV .. g*KV+KV-1; p.n counts vec4s here.
override KV: u32 = 2u;

@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

fn first4(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return flat_id(wid, nwg, lid) * KV;
}

@compute @workgroup_size(WG)
fn relu_forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = max(a4[i], vec4<f32>(0.0)); }
    }
}

@compute @workgroup_size(WG)
fn relu_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = select(vec4<f32>(0.0), b4[i], a4[i] > vec4<f32>(0.0)); }
    }
}

@compute @workgroup_size(WG)
fn add4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = a4[i] + b4[i]; }
    }
}

@compute @workgroup_size(WG)
fn accumulate4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = out4[i] + a4[i]; }
    }
}

@compute @workgroup_size(WG)
fn fill4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = vec4<f32>(p.value); }
    }
}

@compute @workgroup_size(WG)
fn scale4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = first4(wid, nwg, lid);
    for (var k = 0u; k < KV; k++) {
        let i = i0 + k;
        if (i < p.n) { out4[i] = a4[i] * p.value; }
    }
}
