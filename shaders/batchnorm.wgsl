// Batch normalisation over NCHW, per channel over the m = N*H*W values of that channel.
//
// Reductions are two-stage and deterministic (no atomics): in stage 1 each of `parts`
// invocations per channel sums a fixed interleaved subset of the channel's values
// (k = j, j + parts, j + 2*parts, ... in the flattened (n, h*w) order) in order; neighbouring
// invocations read neighbouring addresses. In stage 2 one invocation per channel sums its
// partials in order. `parts` depends only on the shape, so results are bitwise reproducible.
//
// Per-channel coefficient buffer of the normalisation (`coef`, 3*C): [scale | shift | mean], with
// y = (x - mean) * scale + shift. Subtracting the mean first keeps precision when |mean| >> std.
// When affine, the host copies gamma and beta into the scale and shift slots before the kernel
// that finalises them.

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    // values per channel: n * hw
    m: u32,
    // partial sums per channel in stage 1
    parts: u32,
    // parts split into whole images and a remainder, to step (n, s) without a division
    dn: u32,
    ds: u32,
    affine: u32,
    eps: f32,
    momentum: f32,
    // n * c * hw
    total: u32,
    // Unit kernels (see below): number of units and vec4s per unit.
    units: u32,
    lvec: u32,
    // Partial j of channel c sits at c * pc + j * pj (stage 1 layouts differ between paths).
    pc: u32,
    pj: u32,
    // values per slab (workgroup kernels, batchnorm_wg.wgsl)
    slab: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Each buffer has one access mode in WGSL, so buffers that are written by one kernel and read by
// another get two bindings.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> part_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read> mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> inv_std_out: array<f32>;
@group(0) @binding(8) var<storage, read> inv_std: array<f32>;
@group(0) @binding(9) var<storage, read_write> run_mean: array<f32>;
@group(0) @binding(10) var<storage, read_write> run_var: array<f32>;
@group(0) @binding(11) var<storage, read_write> coef: array<f32>;
@group(0) @binding(12) var<storage, read> coef_in: array<f32>;
@group(0) @binding(13) var<storage, read_write> out: array<f32>;
@group(0) @binding(14) var<storage, read> run_var_in: array<f32>;
// vec4 views of x, dy and out for the unit kernels.
@group(0) @binding(15) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(16) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> out4: array<vec4<f32>>;

// Stage 1 position: partial j of channel c visits k = j, j + parts, ... < m. The flat index of
// value k is (n * C + c) * hw + s with k = n * hw + s; (n, s) advance by (dn, ds) with a carry.
struct Cursor {
    n: u32,
    s: u32,
}

fn cursor_start(j: u32) -> Cursor {
    return Cursor(j / p.hw, j % p.hw);
}

fn cursor_index(cur: Cursor, c: u32) -> u32 {
    return (cur.n * p.c + c) * p.hw + cur.s;
}

fn cursor_next(cur: Cursor) -> Cursor {
    var r = Cursor(cur.n + p.dn, cur.s + p.ds);
    if (r.s >= p.hw) {
        r.s -= p.hw;
        r.n += 1u;
    }
    return r;
}

// part[c * parts + j] = sum of (x - shift) over partial j of channel c. The shift, a value of
// the channel itself, keeps the summands small when the channel has a large common offset, so
// the mean is accurate to f32 rounding rather than to the rounding of a large running sum.
@compute @workgroup_size(WG)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.c * p.parts) { return; }
    let c = g / p.parts;
    let j = g % p.parts;
    let shift = x[c * p.hw];
    var cur = cursor_start(j);
    var acc = 0.0;
    for (var k = j; k < p.m; k += p.parts) {
        acc += x[cursor_index(cur, c)] - shift;
        cur = cursor_next(cur);
    }
    part[g] = acc;
}

// Second pass of the two-pass variance: sum of squared deviations from the finished mean.
@compute @workgroup_size(WG)
fn sq_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.c * p.parts) { return; }
    let c = g / p.parts;
    let j = g % p.parts;
    let mu = mean[c];
    var cur = cursor_start(j);
    var acc = 0.0;
    for (var k = j; k < p.m; k += p.parts) {
        let d = x[cursor_index(cur, c)] - mu;
        acc += d * d;
        cur = cursor_next(cur);
    }
    part[g] = acc;
}

fn channel_sum(c: u32, base: u32) -> f32 {
    var acc = 0.0;
    for (var j = 0u; j < p.parts; j++) {
        acc += part_in[base + c * p.pc + j * p.pj];
    }
    return acc;
}

@compute @workgroup_size(WG)
fn mean_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    mean_out[c] = x[c * p.hw] + channel_sum(c, 0u) / f32(p.m);
}

// Normalisation uses the biased variance; the running estimate takes the unbiased one (m > 1 is
// checked by the host), following PyTorch.
@compute @workgroup_size(WG)
fn var_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    let ss = channel_sum(c, 0u);
    let mu = mean[c];
    let is = 1.0 / sqrt(ss / f32(p.m) + p.eps);
    inv_std_out[c] = is;
    run_mean[c] = (1.0 - p.momentum) * run_mean[c] + p.momentum * mu;
    run_var[c] = (1.0 - p.momentum) * run_var[c] + p.momentum * (ss / f32(p.m - 1u));
    var g = 1.0;
    var b = 0.0;
    if (p.affine != 0u) {
        g = coef[c];
        b = coef[p.c + c];
    }
    coef[c] = g * is;
    coef[p.c + c] = b;
    coef[2u * p.c + c] = mu;
}

// Evaluation coefficients from the running variance; the host copied running_mean into the
// mean slot.
@compute @workgroup_size(WG)
fn eval_coef(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    let is = 1.0 / sqrt(run_var_in[c] + p.eps);
    var g = 1.0;
    var b = 0.0;
    if (p.affine != 0u) {
        g = coef[c];
        b = coef[p.c + c];
    }
    coef[c] = g * is;
    coef[p.c + c] = b;
}

// Per-element passes: each invocation handles K contiguous elements (on lavapipe the
// per-invocation overhead and the integer divisions that find the channel dominate), finding the
// channel once and then stepping it along, with a reload of the coefficients only when the run
// crosses into the next plane.
override K: u32 = 8u;

// Plane position of flat element i: s within the plane, c the channel.
struct Plane {
    s: u32,
    c: u32,
}

fn plane_of(i: u32) -> Plane {
    let q = i / p.hw;
    return Plane(i - q * p.hw, q % p.c);
}

fn plane_next(pl: Plane) -> Plane {
    var r = Plane(pl.s + 1u, pl.c);
    if (r.s == p.hw) {
        r.s = 0u;
        r.c = select(pl.c + 1u, 0u, pl.c + 1u == p.c);
    }
    return r;
}

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = flat_id(wid, nwg, lid) * K;
    if (i0 >= p.total) { return; }
    var pl = plane_of(i0);
    var c = pl.c;
    var sc = coef_in[c];
    var sh = coef_in[p.c + c];
    var mu = coef_in[2u * p.c + c];
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i >= p.total) { break; }
        if (pl.c != c) {
            c = pl.c;
            sc = coef_in[c];
            sh = coef_in[p.c + c];
            mu = coef_in[2u * p.c + c];
        }
        out[i] = (x[i] - mu) * sc + sh;
        pl = plane_next(pl);
    }
}

// Backward stage 1: part[g] = sum dy and part[C * parts + g] = sum dy * (x - mean) over
// partial g. The inverse std is applied per channel afterwards.
@compute @workgroup_size(WG)
fn backward_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.c * p.parts) { return; }
    let c = g / p.parts;
    let j = g % p.parts;
    let mu = mean[c];
    var cur = cursor_start(j);
    var sdy = 0.0;
    var sdx = 0.0;
    for (var k = j; k < p.m; k += p.parts) {
        let i = cursor_index(cur, c);
        let d = dy[i];
        sdy += d;
        sdx += d * (x[i] - mu);
        cur = cursor_next(cur);
    }
    part[g] = sdy;
    part[p.c * p.parts + g] = sdx;
}

// Per channel, into coef (6*C): [dbeta | dgamma | k | a | b | mean] so that
// dx = k * (dy - a - (x - mean) * b), the training-mode gradient
// gamma * inv_std / m * (m * dy - sum dy - xhat * sum(dy * xhat)).
// When affine, the host copied gamma into the k slot.
@compute @workgroup_size(WG)
fn backward_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_id(wid, nwg, lid);
    if (c >= p.c) { return; }
    let C = p.c;
    let sdy = channel_sum(c, 0u);
    let sdx = channel_sum(c, C * p.parts);
    let is = inv_std[c];
    var g = 1.0;
    if (p.affine != 0u) {
        g = coef[2u * C + c];
    }
    let mf = f32(p.m);
    coef[c] = sdy;
    coef[C + c] = sdx * is;
    coef[2u * C + c] = g * is;
    coef[3u * C + c] = sdy / mf;
    coef[4u * C + c] = sdx * is * is / mf;
    coef[5u * C + c] = mean[c];
}

@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i0 = flat_id(wid, nwg, lid) * K;
    if (i0 >= p.total) { return; }
    let C = p.c;
    var pl = plane_of(i0);
    var c = pl.c;
    var kc = coef_in[2u * C + c];
    var ac = coef_in[3u * C + c];
    var bc = coef_in[4u * C + c];
    var mu = coef_in[5u * C + c];
    for (var k = 0u; k < K; k++) {
        let i = i0 + k;
        if (i >= p.total) { break; }
        if (pl.c != c) {
            c = pl.c;
            kc = coef_in[2u * C + c];
            ac = coef_in[3u * C + c];
            bc = coef_in[4u * C + c];
            mu = coef_in[5u * C + c];
        }
        out[i] = kc * (dy[i] - ac - (x[i] - mu) * bc);
        pl = plane_next(pl);
    }
}

// ---- Unit kernels: the vec4 path. --------------------------------------------------------
//
// A unit is U consecutive planes (same image, channels c0 .. c0+U-1) whose U*hw values are a
// whole number of vec4s starting at a multiple of 4: U = 1 when hw % 4 == 0, 2 when hw % 2 == 0,
// else 4 (the host checks C % U == 0, so a unit never crosses an image). Loads and stores are
// vec4 (on lavapipe an access costs the same for one float or four).
//
// Reductions: one invocation per unit sums each of its planes in order (4 lane accumulators,
// folded as (x + y) + (z + w)) into part[plane], plane = n * C + c; stage 2 then sums a
// channel's N planes in order (pc = 1, pj = C). Both orders depend only on the shape. A plane
// that does not start or end on a vec4 boundary reads the shared vec4 and masks the other
// plane's components out.
override U: u32 = 1u;

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Components of vec4 j (of the unit) that belong to plane k of the unit.
fn in_plane(j: u32, k: u32) -> vec4<bool> {
    let e = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
    return (e >= vec4<u32>(k * p.hw)) & (e < vec4<u32>((k + 1u) * p.hw));
}

fn masked(v: vec4<f32>, j: u32, k: u32) -> vec4<f32> {
    if (U == 1u) {
        return v;
    }
    return select(vec4<f32>(0.0), v, in_plane(j, k));
}

// The vec4s [first, end) of the unit that hold plane k.
fn plane_first(k: u32) -> u32 {
    return (k * p.hw) / 4u;
}
fn plane_end(k: u32) -> u32 {
    return ((k + 1u) * p.hw + 3u) / 4u;
}

@compute @workgroup_size(WG)
fn sum_units(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.units) { return; }
    let c0 = (g * U) % p.c;
    let base = g * p.lvec;
    for (var k = 0u; k < U; k++) {
        let shift = x[(c0 + k) * p.hw];
        var acc = vec4<f32>(0.0);
        for (var j = plane_first(k); j < plane_end(k); j++) {
            acc += masked(x4[base + j] - shift, j, k);
        }
        part[g * U + k] = hsum(acc);
    }
}

@compute @workgroup_size(WG)
fn sq_units(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.units) { return; }
    let c0 = (g * U) % p.c;
    let base = g * p.lvec;
    for (var k = 0u; k < U; k++) {
        let mu = mean[c0 + k];
        var acc = vec4<f32>(0.0);
        for (var j = plane_first(k); j < plane_end(k); j++) {
            let d = masked(x4[base + j] - mu, j, k);
            acc += d * d;
        }
        part[g * U + k] = hsum(acc);
    }
}

// part[plane] = sum dy, part[N * C + plane] = sum dy * (x - mean), as backward_partial.
@compute @workgroup_size(WG)
fn backward_units(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_id(wid, nwg, lid);
    if (g >= p.units) { return; }
    let c0 = (g * U) % p.c;
    let base = g * p.lvec;
    for (var k = 0u; k < U; k++) {
        let mu = mean[c0 + k];
        var sdy = vec4<f32>(0.0);
        var sdx = vec4<f32>(0.0);
        for (var j = plane_first(k); j < plane_end(k); j++) {
            let d = masked(dy4[base + j], j, k);
            sdy += d;
            sdx += d * (x4[base + j] - mu);
        }
        part[g * U + k] = hsum(sdy);
        part[p.c * p.n + g * U + k] = hsum(sdx);
    }
}

// Per-element unit kernels: invocation g takes the KV consecutive vec4s from g * KV (the host
// picks KV dividing lvec, so they lie in one unit); the unit's coefficients are loaded once.
override KV: u32 = 1u;

@group(0) @binding(18) var<storage, read> coef4: array<vec4<f32>>;

// Per plane of the unit, coef_in[off + c0 + k]; one vec4 load when U == 4 (then C % 4 == 0, so
// every slot of the coefficient buffer starts on a vec4).
fn unit_coef(off: u32, c0: u32) -> vec4<f32> {
    if (U == 4u) {
        return coef4[(off + c0) / 4u];
    }
    var v = vec4<f32>(coef_in[off + c0]);
    if (U == 2u) {
        v.y = coef_in[off + c0 + 1u];
    }
    return v;
}

// Plane within the unit of each component of vec4 j of the unit.
fn unit_planes(j: u32) -> vec4<u32> {
    let e = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
    var k = select(vec4<u32>(0u), vec4<u32>(1u), e >= vec4<u32>(p.hw));
    if (U == 4u) {
        k += select(vec4<u32>(0u), vec4<u32>(1u), e >= vec4<u32>(2u * p.hw));
        k += select(vec4<u32>(0u), vec4<u32>(1u), e >= vec4<u32>(3u * p.hw));
    }
    return k;
}

// Per component, the entry of v (one value per plane of the unit) for that component's plane.
fn pick(k: vec4<u32>, v: vec4<f32>) -> vec4<f32> {
    let a = select(vec4<f32>(v.x), vec4<f32>(v.y), k >= vec4<u32>(1u));
    if (U == 2u) {
        return a;
    }
    let b = select(a, vec4<f32>(v.z), k >= vec4<u32>(2u));
    return select(b, vec4<f32>(v.w), k >= vec4<u32>(3u));
}

@compute @workgroup_size(WG)
fn normalize_units(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let v0 = flat_id(wid, nwg, lid) * KV;
    if (v0 >= p.units * p.lvec) { return; }
    let g = v0 / p.lvec;
    let j0 = v0 - g * p.lvec;
    let c0 = (g * U) % p.c;
    let sc = unit_coef(0u, c0);
    let sh = unit_coef(p.c, c0);
    let mu = unit_coef(2u * p.c, c0);
    for (var t = 0u; t < KV; t++) {
        let i = v0 + t;
        if (U == 1u) {
            out4[i] = (x4[i] - mu.x) * sc.x + sh.x;
        } else {
            let k = unit_planes(j0 + t);
            out4[i] = (x4[i] - pick(k, mu)) * pick(k, sc) + pick(k, sh);
        }
    }
}

@compute @workgroup_size(WG)
fn backward_dx_units(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let v0 = flat_id(wid, nwg, lid) * KV;
    if (v0 >= p.units * p.lvec) { return; }
    let C = p.c;
    let g = v0 / p.lvec;
    let j0 = v0 - g * p.lvec;
    let c0 = (g * U) % C;
    let kc = unit_coef(2u * C, c0);
    let ac = unit_coef(3u * C, c0);
    let bc = unit_coef(4u * C, c0);
    let mu = unit_coef(5u * C, c0);
    for (var t = 0u; t < KV; t++) {
        let i = v0 + t;
        if (U == 1u) {
            out4[i] = kc.x * (dy4[i] - ac.x - (x4[i] - mu.x) * bc.x);
        } else {
            let k = unit_planes(j0 + t);
            out4[i] = pick(k, kc) * (dy4[i] - pick(k, ac) - (x4[i] - pick(k, mu)) * pick(k, bc));
        }
    }
}
