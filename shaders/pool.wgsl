// 2-D max and average pooling over NCHW, forward and backward, plus global average pooling.
//
// max_backward_arg takes its indices from a 3-D grid (x: column, y: row, z: channel plane) in
// 8x8 tiles; the other kernels are 1-D over the elements they write. Divisions by the stride
// (to find the outputs covering an input) are by the override constant S, which the compiler
// turns into a shift or multiply.
// Backward passes are gathers over the outputs whose window covers an input element, summed in
// row-major order: no atomics, bitwise reproducible. Windows are never empty: the host
// requires padding < kernel.

override S: u32 = 1u;

struct Params {
    planes: u32,  // channel planes (N*C) this dispatch covers
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    pad: u32,
    plane0: u32,  // first channel plane of this dispatch (the host splits huge z ranges)
}

@group(0) @binding(0) var<uniform> p: Params;

// Forward: b1 = x, b2 = y (and b4 = argmax). Backward: b3 = dy, b5 = argmax, b2 = dx.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
// Index within its plane (iy * w + ix) of the input each max-pool output took.
@group(0) @binding(4) var<storage, read_write> arg_out: array<u32>;
@group(0) @binding(5) var<storage, read> arg_in: array<u32>;

// Clipped window of output (oy, ox): input rows [r.x, r.y), columns [r.z, r.w).
fn window(oy: u32, ox: u32) -> vec4<u32> {
    let y0 = i32(oy * S) - i32(p.pad);
    let x0 = i32(ox * S) - i32(p.pad);
    let y1 = min(y0 + i32(p.k), i32(p.h));
    let x1 = min(x0 + i32(p.k), i32(p.w));
    return vec4<u32>(u32(max(y0, 0)), u32(y1), u32(max(x0, 0)), u32(x1));
}

// First of the outputs along one axis whose window covers input i, and one past the last.
fn covering_axis(i: u32, n_out: u32) -> vec2<u32> {
    // Output o covers i when o*S <= i + pad < o*S + k.
    let t = i + p.pad + 1u;
    var lo = 0u;
    if (t > p.k) { lo = (t - p.k + S - 1u) / S; }
    let hi = min((i + p.pad) / S + 1u, n_out);
    return vec2<u32>(lo, max(hi, lo));
}

struct Best {
    v: f32,
    at: u32,
}

// Padding is -inf, so only real elements compete; strict > keeps the first maximum in
// row-major order, the rule the backward pass relies on.
fn window_max(plane: u32, oy: u32, ox: u32) -> Best {
    let r = window(oy, ox);
    var b = Best(x[plane + r.x * p.w + r.z], r.x * p.w + r.z);
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            let v = x[plane + iy * p.w + ix];
            if (v > b.v) { b = Best(v, iy * p.w + ix); }
        }
    }
    return b;
}

// The forwards and avg_backward stay 1-D over the elements they write (grid folded by the
// host, flat_id): tiling small planes (4x4 and 7x7 outputs of stride 2) into 8x8 workgroups
// idled most lanes and measured slower than the flat index's divisions.
fn flat_out(i: u32) -> vec3<u32> {
    let ox = i % p.ow;
    let t = i / p.ow;
    return vec3<u32>(ox, t % p.oh, t / p.oh);
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.planes * p.oh * p.ow) { return; }
    let o = flat_out(i);
    out[i] = window_max(o.z * p.h * p.w, o.y, o.x).v;
}

// Same as max_forward, also saving the argmax for max_backward_arg.
@compute @workgroup_size(WG)
fn max_forward_arg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.planes * p.oh * p.ow) { return; }
    let o = flat_out(i);
    let b = window_max(o.z * p.h * p.w, o.y, o.x);
    out[i] = b.v;
    arg_out[i] = b.at;
}

// count_include_pad = false: divide by the number of real elements in the window.
@compute @workgroup_size(WG)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.planes * p.oh * p.ow) { return; }
    let o = flat_out(i);
    let plane = o.z * p.h * p.w;
    let r = window(o.y, o.x);
    var sum = 0.0;
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            sum += x[plane + iy * p.w + ix];
        }
    }
    out[i] = sum / f32((r.y - r.x) * (r.w - r.z));
}

// dx gathers dy over the (at most k*k) outputs covering this input whose saved argmax is it.
@compute @workgroup_size(8, 8, 1)
fn max_backward_arg(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.w || gid.y >= p.h) { return; }
    let nc = p.plane0 + gid.z;
    let oplane = nc * p.oh * p.ow;
    let me = gid.y * p.w + gid.x;
    let cy = covering_axis(gid.y, p.oh);
    let cx = covering_axis(gid.x, p.ow);
    var g = 0.0;
    for (var oy = cy.x; oy < cy.y; oy++) {
        for (var ox = cx.x; ox < cx.y; ox++) {
            let o = oplane + oy * p.ow + ox;
            if (arg_in[o] == me) { g += dy[o]; }
        }
    }
    out[nc * p.h * p.w + me] = g;
}

@compute @workgroup_size(WG)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.planes * p.h * p.w) { return; }
    let ix = i % p.w;
    let t = i / p.w;
    let iy = t % p.h;
    let oplane = (t / p.h) * p.oh * p.ow;
    let cy = covering_axis(iy, p.oh);
    let cx = covering_axis(ix, p.ow);
    var g = 0.0;
    for (var oy = cy.x; oy < cy.y; oy++) {
        for (var ox = cx.x; ox < cx.y; ox++) {
            let r = window(oy, ox);
            g += dy[oplane + oy * p.ow + ox] / f32((r.y - r.x) * (r.w - r.z));
        }
    }
    out[i] = g;
}

// Global average: one invocation per (n, c) plane sums its h*w values in order. Planes are at
// most a few thousand elements in this network, so one pass keeps the order fixed and cheap.
// Here x runs over planes (1-D workgroups), y and z are 1.
@compute @workgroup_size(WG)
fn global_avg_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = p.plane0 + gid.x;
    if (gid.x >= p.planes) { return; }
    let hw = p.h * p.w;
    let base = i * hw;
    var sum = 0.0;
    for (var j = 0u; j < hw; j++) {
        sum += x[base + j];
    }
    out[i] = sum / f32(hw);
}

// dx = dy / (h*w), one invocation per input element.
@compute @workgroup_size(WG)
fn global_avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    let hw = p.h * p.w;
    if (i >= p.planes * hw) { return; }
    out[i] = dy[i / hw] / f32(hw);
}
