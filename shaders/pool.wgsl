// 2-D max and average pooling over NCHW, forward and backward, plus global average pooling.
// Every entry point is 1-D with one invocation per element it writes (grid folded by the
// host), so `i >= p.total` guards the tail. Backward passes are gathers over the outputs whose
// window covers an input element, summed in a fixed order: no atomics, bitwise reproducible.
// Windows are never empty: the host requires padding < kernel.

struct Params {
    total: u32,   // elements this dispatch writes
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    s: u32,
    pad: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Forward: b1 = x, b2 = y. Backward: b1 = x (max only), b3 = dy, b2 = dx.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;

// Clipped window of output (oy, ox): input rows [r.x, r.y), columns [r.z, r.w).
fn window(oy: u32, ox: u32) -> vec4<u32> {
    let y0 = i32(oy * p.s) - i32(p.pad);
    let x0 = i32(ox * p.s) - i32(p.pad);
    let y1 = min(y0 + i32(p.k), i32(p.h));
    let x1 = min(x0 + i32(p.k), i32(p.w));
    return vec4<u32>(u32(max(y0, 0)), u32(y1), u32(max(x0, 0)), u32(x1));
}

@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = (i / (p.ow * p.oh)) * p.h * p.w;
    let r = window(oy, ox);
    // Padding is -inf, so only real elements compete; strict > keeps the first maximum in
    // row-major order, the rule the backward pass relies on.
    var best = x[plane + r.x * p.w + r.z];
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            let v = x[plane + iy * p.w + ix];
            if (v > best) { best = v; }
        }
    }
    out[i] = best;
}

// count_include_pad = false: divide by the number of real elements in the window.
@compute @workgroup_size(WG)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = (i / (p.ow * p.oh)) * p.h * p.w;
    let r = window(oy, ox);
    var sum = 0.0;
    for (var iy = r.x; iy < r.y; iy++) {
        for (var ix = r.z; ix < r.w; ix++) {
            sum += x[plane + iy * p.w + ix];
        }
    }
    out[i] = sum / f32((r.y - r.x) * (r.w - r.z));
}

// Outputs whose window covers input (iy, ix): rows [c.x, c.y), columns [c.z, c.w).
fn covering(iy: u32, ix: u32) -> vec4<u32> {
    // oy*s - pad <= iy <= oy*s - pad + k - 1, computed in i32 because the low end can be negative.
    let s = i32(p.s);
    let ly = i32(iy) + i32(p.pad) - i32(p.k) + 1;
    let lx = i32(ix) + i32(p.pad) - i32(p.k) + 1;
    let y0 = select(0, (ly + s - 1) / s, ly > 0);
    let x0 = select(0, (lx + s - 1) / s, lx > 0);
    let y1 = min((i32(iy) + i32(p.pad)) / s + 1, i32(p.oh));
    let x1 = min((i32(ix) + i32(p.pad)) / s + 1, i32(p.ow));
    return vec4<u32>(u32(y0), u32(max(y1, y0)), u32(x0), u32(max(x1, x0)));
}

// True when input (iy, ix) holding v is the first maximum of window r in row-major order:
// everything before it is smaller, nothing after it is larger.
fn wins(plane: u32, r: vec4<u32>, iy: u32, ix: u32, v: f32) -> bool {
    for (var wy = r.x; wy < r.y; wy++) {
        for (var wx = r.z; wx < r.w; wx++) {
            let u = x[plane + wy * p.w + wx];
            let before = wy < iy || (wy == iy && wx < ix);
            if ((before && u >= v) || (!before && u > v)) { return false; }
        }
    }
    return true;
}

@compute @workgroup_size(WG)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let nc = i / (p.w * p.h);
    let plane = nc * p.h * p.w;
    let oplane = nc * p.oh * p.ow;
    let v = x[i];
    let c = covering(iy, ix);
    var g = 0.0;
    for (var oy = c.x; oy < c.y; oy++) {
        for (var ox = c.z; ox < c.w; ox++) {
            if (wins(plane, window(oy, ox), iy, ix, v)) {
                g += dy[oplane + oy * p.ow + ox];
            }
        }
    }
    out[i] = g;
}

@compute @workgroup_size(WG)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let oplane = (i / (p.w * p.h)) * p.oh * p.ow;
    let c = covering(iy, ix);
    var g = 0.0;
    for (var oy = c.x; oy < c.y; oy++) {
        for (var ox = c.z; ox < c.w; ox++) {
            let r = window(oy, ox);
            g += dy[oplane + oy * p.ow + ox] / f32((r.y - r.x) * (r.w - r.z));
        }
    }
    out[i] = g;
}

// Global average: one invocation per (n, c) plane sums its h*w values in order. Planes are at
// most a few thousand elements in this network, so one pass keeps the order fixed and cheap.
@compute @workgroup_size(WG)
fn global_avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
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
    if (i >= p.total) { return; }
    let hw = p.h * p.w;
    out[i] = dy[i / hw] / f32(hw);
}
