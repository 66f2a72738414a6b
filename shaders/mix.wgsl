// Mixed ops of gradient-based search (DARTS): architecture weights w = softmax(alpha) per row
// (edge), node outputs as sums of w[k] * op_k(x), and the gradients back to alpha. The weights
// stay on the device: kernels read w[p.index] instead of the host uploading a scale per step.

struct Params {
    n: u32,
    // weighted_add / dot_final: which weight.
    index: u32,
    // weighted_add / dot_final: 1 = add to what `out` holds, 0 = overwrite it.
    accumulate: u32,
    // dot_partial: workgroups that cover n (a folded grid has spare ones).
    groups: u32,
    // softmax: rows (edges) and columns (ops).
    rows: u32,
    cols: u32,
    // axpy: the scale.
    value: f32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(6) var<storage, read> partial_in: array<f32>;

// Elements per invocation of the elementwise entries and of dot_partial.
override K: u32 = 8u;

// out = w[index] * x (+ out): one term of a mixed op, and its input gradient.
@compute @workgroup_size(WG)
fn weighted_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = flat_id(wid, nwg, lid) * K;
    let s = w[p.index];
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) {
            var acc = 0.0;
            if (p.accumulate != 0u) { acc = out[i]; }
            out[i] = acc + s * x[i];
        }
    }
}

// out += value * x (a regulariser's gradient added to alpha's).
@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = flat_id(wid, nwg, lid) * K;
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i < p.n) { out[i] = out[i] + p.value * x[i]; }
    }
}

// Upper bound of WG for the reductions (Gpu::wg1d never exceeds it); WG is a power of two there.
const MAX_WG: u32 = 256u;
var<workgroup> sums: array<f32, MAX_WG>;

fn reduce_workgroup(l: u32) -> f32 {
    var width = WG / 2u;
    while (width > 0u) {
        workgroupBarrier();
        if (l < width) {
            sums[l] = sums[l] + sums[l + width];
        }
        width = width / 2u;
    }
    workgroupBarrier();
    return sums[0];
}

// Gradient of one weight, sum(x * dy), in two fixed-order passes (deterministic): a partial sum
// per block of WG * K elements, invocation l reading l, l + WG, ... within its block.
@compute @workgroup_size(WG)
fn dot_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let base = block * WG * K;
    var s = 0.0;
    for (var k = 0u; k < K; k++) {
        let i = base + k * WG + l;
        if (i < p.n) { s = s + x[i] * dy[i]; }
    }
    sums[l] = s;
    let total = reduce_workgroup(l);
    if (l == 0u && block < p.groups) {
        partial_out[block] = total;
    }
}

// One workgroup: the partials summed in order into out[index] (added or written).
@compute @workgroup_size(WG)
fn dot_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    let l = lid.x;
    var s = 0.0;
    for (var i = l; i < p.n; i += WG) {
        s = s + partial_in[i];
    }
    sums[l] = s;
    let total = reduce_workgroup(l);
    if (l == 0u) {
        var acc = 0.0;
        if (p.accumulate != 0u) { acc = out[p.index]; }
        out[p.index] = acc + total;
    }
}

// out = softmax of each row of x (alpha [rows, cols]); one invocation per row: rows are edges,
// a few dozen, and columns ops, a handful.
@compute @workgroup_size(WG)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    var m = x[base];
    for (var k = 1u; k < p.cols; k++) { m = max(m, x[base + k]); }
    var s = 0.0;
    for (var k = 0u; k < p.cols; k++) { s = s + exp(x[base + k] - m); }
    for (var k = 0u; k < p.cols; k++) { out[base + k] = exp(x[base + k] - m) / s; }
}

// out = w * (dy - sum(w * dy)) per row: the gradient of alpha from that of w = softmax(alpha).
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_id(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    var s = 0.0;
    for (var k = 0u; k < p.cols; k++) { s = s + w[base + k] * dy[base + k]; }
    for (var k = 0u; k < p.cols; k++) { out[base + k] = w[base + k] * (dy[base + k] - s); }
}
