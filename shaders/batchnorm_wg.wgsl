// Batch-norm reductions in workgroup memory: the `workgroup` autotune variant of the per-channel
// sums (src/ops/batchnorm_wg.rs). The default `units` kernels in batchnorm.wgsl give each
// invocation a long serial chunk, which suits lavapipe (few threads, costly barriers) but leaves
// a GPU's lanes idle; here one workgroup of WG invocations (a power of two, picked by the host
// from the adapter's limits) covers one slab of one channel, and the lanes' sums meet in a
// fixed-order pairwise tree in workgroup memory. No subgroup operations: they need a device
// feature cellnas does not request, and the subgroup size is the adapter's to choose.
//
// Slab j of channel c is the values k in [j * slab, min((j + 1) * slab, m)) of the channel in
// (n, h*w) order; lane l visits k = j * slab + l, + WG, ... so neighbouring lanes read
// neighbouring addresses. Partial (c, j) goes to part[c * parts + j] (pc = parts, pj = 1), the
// layout the stage-2 kernels of batchnorm.wgsl (mean_final, var_final, backward_final) read; the
// host picks the slab so that a DARTS-sized channel is one slab and stage 2 adds one value.
// Every order here depends only on the shape and WG, so results are bitwise reproducible.

// Same layout as Params in batchnorm.wgsl (the stage-2 kernels read this struct).
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    // slabs per channel
    parts: u32,
    // WG split into whole images and a remainder, to step (n, s) without a division
    dn: u32,
    ds: u32,
    affine: u32,
    eps: f32,
    momentum: f32,
    total: u32,
    units: u32,
    lvec: u32,
    pc: u32,
    pj: u32,
    // values per slab, a multiple of WG
    slab: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<storage, read> mean: array<f32>;

var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<f32, WG>;

struct Cursor {
    n: u32,
    s: u32,
}

fn cursor_at(k: u32) -> Cursor {
    return Cursor(k / p.hw, k % p.hw);
}

fn cursor_index(cur: Cursor, c: u32) -> u32 {
    return (cur.n * p.c + c) * p.hw + cur.s;
}

// Advance by WG values; ds < hw, so one carry suffices.
fn cursor_next(cur: Cursor) -> Cursor {
    var r = Cursor(cur.n + p.dn, cur.s + p.ds);
    if (r.s >= p.hw) {
        r.s -= p.hw;
        r.n += 1u;
    }
    return r;
}

// The workgroup's (channel, slab), or the sentinel p.c when the host's folding of the grid into
// x and y made more workgroups than slabs. Uniform per workgroup, so returning on it keeps the
// barriers in uniform control flow.
fn slab_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.c * p.parts) {
        return vec2<u32>(p.c, 0u);
    }
    return vec2<u32>(g / p.parts, g % p.parts);
}

fn slab_end(j: u32) -> u32 {
    return min((j + 1u) * p.slab, p.m);
}

// Pairwise tree over red[0..WG]: lane l adds lane l + width, halving width, so the order of
// additions is fixed by WG alone.
fn tree(l: u32) -> f32 {
    var width = WG / 2u;
    while (width > 0u) {
        workgroupBarrier();
        if (l < width) {
            red[l] = red[l] + red[l + width];
        }
        width = width / 2u;
    }
    workgroupBarrier();
    return red[0];
}

fn tree2(l: u32) -> vec2<f32> {
    var width = WG / 2u;
    while (width > 0u) {
        workgroupBarrier();
        if (l < width) {
            red[l] = red[l] + red[l + width];
            red2[l] = red2[l] + red2[l + width];
        }
        width = width / 2u;
    }
    workgroupBarrier();
    return vec2<f32>(red[0], red2[0]);
}

// This lane's share of slab j of channel c: the sum of (x - center), or of its squares.
fn slab_sum(c: u32, j: u32, l: u32, center: f32, square: bool) -> f32 {
    let end = slab_end(j);
    var k = j * p.slab + l;
    var cur = cursor_at(k);
    var acc = 0.0;
    while (k < end) {
        let d = x[cursor_index(cur, c)] - center;
        if (square) {
            acc += d * d;
        } else {
            acc += d;
        }
        cur = cursor_next(cur);
        k += WG;
    }
    return acc;
}

// Sum of (x - shift), shift = the channel's first value, as sum_partial and sum_units (keeps the
// summands small when the channel has a large common offset; mean_final adds it back).
@compute @workgroup_size(WG)
fn sum_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let cj = slab_of(wid, nwg);
    if (cj.x >= p.c) { return; }
    let c = cj.x;
    let l = lid.x;
    red[l] = slab_sum(c, cj.y, l, x[c * p.hw], false);
    let t = tree(l);
    if (l == 0u) {
        part[c * p.parts + cj.y] = t;
    }
}

// Sum of squared deviations from the finished mean (the two-pass variance).
@compute @workgroup_size(WG)
fn sq_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let cj = slab_of(wid, nwg);
    if (cj.x >= p.c) { return; }
    let c = cj.x;
    let l = lid.x;
    red[l] = slab_sum(c, cj.y, l, mean[c], true);
    let t = tree(l);
    if (l == 0u) {
        part[c * p.parts + cj.y] = t;
    }
}

// part[g] = sum dy, part[C * parts + g] = sum dy * (x - mean), as backward_partial.
@compute @workgroup_size(WG)
fn backward_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let cj = slab_of(wid, nwg);
    if (cj.x >= p.c) { return; }
    let c = cj.x;
    let l = lid.x;
    let mu = mean[c];
    let end = slab_end(cj.y);
    var k = cj.y * p.slab + l;
    var cur = cursor_at(k);
    var sdy = 0.0;
    var sdx = 0.0;
    while (k < end) {
        let i = cursor_index(cur, c);
        let d = dy[i];
        sdy += d;
        sdx += d * (x[i] - mu);
        cur = cursor_next(cur);
        k += WG;
    }
    red[l] = sdy;
    red2[l] = sdx;
    let t = tree2(l);
    if (l == 0u) {
        let g = c * p.parts + cj.y;
        part[g] = t.x;
        part[p.c * p.parts + g] = t.y;
    }
}
