// Fully connected layer. Forward and both backward passes are the same contraction with
// different strides, so one kernel serves all three:
//   out[i, j] = sum_l a[i*a_row + l*a_step] * b[j*b_col + l*b_step]  (+ bias[j])
// forward:         i = n, j = m, l = k   (a = x, b = w)
// backward_input:  i = n, j = k, l = m   (a = dy, b = w)
// backward_weight: i = m, j = k, l = n   (a = dy, b = x)
// Every output is summed by one invocation in increasing l, so results are deterministic.

struct Params {
    rows: u32,
    cols: u32,
    len: u32,
    tiles_c: u32,
    a_row: u32,
    a_step: u32,
    b_col: u32,
    b_step: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Without a bias the host binds `b` here too; has_bias = 0 keeps it unread.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn put(r: u32, c0: u32, v: vec4<f32>) {
    if (r >= p.rows) { return; }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.cols) {
            out[r * p.cols + c0 + j] = v[j];
        }
    }
}

// Each invocation owns a 4x4 tile of `out` with its 16 sums in registers: every loaded a and b
// value is used four times, which is what makes a CPU-hosted adapter (lavapipe) fast.
@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    let tiles_r = (p.rows + 3u) / 4u;
    if (t >= tiles_r * p.tiles_c) { return; }
    let r0 = (t / p.tiles_c) * 4u;
    let c0 = (t % p.tiles_c) * 4u;
    // Tail tiles read clamped (valid) rows and columns; put() drops their extra results.
    let lr = p.rows - 1u;
    let lc = p.cols - 1u;
    let ra = vec4<u32>(min(r0, lr), min(r0 + 1u, lr), min(r0 + 2u, lr), min(r0 + 3u, lr)) * p.a_row;
    let cb = vec4<u32>(min(c0, lc), min(c0 + 1u, lc), min(c0 + 2u, lc), min(c0 + 3u, lc)) * p.b_col;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var l = 0u; l < p.len; l++) {
        let ao = l * p.a_step;
        let bo = l * p.b_step;
        let bv = vec4<f32>(b[cb.x + bo], b[cb.y + bo], b[cb.z + bo], b[cb.w + bo]);
        acc0 += a[ra.x + ao] * bv;
        acc1 += a[ra.y + ao] * bv;
        acc2 += a[ra.z + ao] * bv;
        acc3 += a[ra.w + ao] * bv;
    }
    if (p.has_bias != 0u) {
        let bb = vec4<f32>(bias[min(c0, lc)], bias[min(c0 + 1u, lc)], bias[min(c0 + 2u, lc)], bias[min(c0 + 3u, lc)]);
        acc0 += bb;
        acc1 += bb;
        acc2 += bb;
        acc3 += bb;
    }
    put(r0, c0, acc0);
    put(r0 + 1u, c0, acc1);
    put(r0 + 2u, c0, acc2);
    put(r0 + 3u, c0, acc3);
}

// out[j] = sum_l a[j*a_row + l*a_step] in increasing l: the bias gradient, db[m] = sum_n dy[n, m].
@compute @workgroup_size(WG)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat_id(wid, nwg, lid);
    if (j >= p.cols) { return; }
    var s = 0.0;
    for (var l = 0u; l < p.len; l++) {
        s += a[j * p.a_row + l * p.a_step];
    }
    out[j] = s;
}
