// Pooling fast paths (host: src/ops/pool.rs; the general kernels are in pool.wgsl). Each
// invocation handles 8 neighbouring columns of R rows of one plane, and loads each row segment
// of its input (x, or dy and the argmax) once for every window that reads it, instead of once
// per window cell. K, S, PAD and R are override constants: the loops unroll, which window
// covers which element is known when the shader is compiled, and the segments stay in
// registers. Same semantics as pool.wgsl: max pads with -inf and the first maximum in
// row-major order wins; avg divides by the real cells of the window; backward passes gather in
// row-major order of the outputs, no atomics.

struct Params {
    planes: u32, h: u32, w: u32, oh: u32,
    ow: u32, xtiles: u32, rtiles: u32, tiles: u32,
}

override K: u32 = 3u;
override S: u32 = 1u;
override PAD: u32 = 1u;
// Rows per invocation (output rows forward, input rows backward; backward: a multiple of S).
override R: u32 = 4u;

// Register room: row segments of 7*S + K values (forward) or of the outputs covering 8 inputs
// (backward), and R rows of 8 accumulators. The host checks that they fit.
const SEG: u32 = 20u;
const RMAX: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
// Forward: x. Backward: dy.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> arg_out: array<u32>;
@group(0) @binding(4) var<storage, read> arg_in: array<u32>;

const NONE: u32 = 0xffffffffu;

// (first column, first row, plane) of tile t. Item order: 8-column tile, row tile, plane.
fn tile(t: u32) -> vec3<u32> {
    return vec3<u32>((t % p.xtiles) * 8u, ((t / p.xtiles) % p.rtiles) * R, t / (p.xtiles * p.rtiles));
}

// Index of (iy, ix) in a plane of rows x cols, clamped inside it so the load is always valid.
fn clamped(iy: i32, ix: i32, rows: u32, cols: u32) -> u32 {
    return u32(clamp(iy, 0, i32(rows) - 1)) * cols + u32(clamp(ix, 0, i32(cols) - 1));
}

fn inside(iy: i32, ix: i32, rows: u32, cols: u32) -> bool {
    return iy >= 0 && iy < i32(rows) && ix >= 0 && ix < i32(cols);
}

// Real cells along one axis of the window of output o, in a dimension of n inputs.
fn span(o: i32, n: u32) -> i32 {
    let a = o * i32(S) - i32(PAD);
    return min(a + i32(K), i32(n)) - max(a, 0);
}

// floor(a / S) for either sign.
fn fdiv(a: i32) -> i32 {
    return select(a / i32(S), (a - i32(S) + 1) / i32(S), a < 0);
}

fn store8(plane: u32, y: u32, x0: u32, rows: u32, cols: u32, v0: vec4<f32>, v1: vec4<f32>) {
    if (y >= rows) { return; }
    let at = (plane * rows + y) * cols + x0;
    for (var j = 0u; j < 4u; j++) {
        if (x0 + j < cols) { out[at + j] = v0[j]; }
        if (x0 + 4u + j < cols) { out[at + 4u + j] = v1[j]; }
    }
}

// count_include_pad = false. Each input row's 8 horizontal window sums are added to the (up
// to R) output rows whose windows contain the row.
@compute @workgroup_size(WG)
fn avg_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let c = tile(t);
    let plane = c.z * p.h * p.w;
    let iy0 = i32(c.y * S) - i32(PAD);
    let ix0 = i32(c.x * S) - i32(PAD);
    var acc: array<vec4<f32>, 8>;
    for (var r = 0u; r < 2u * RMAX; r++) { acc[r] = vec4<f32>(0.0); }
    for (var m = 0u; m < (R - 1u) * S + K; m++) {
        let iy = iy0 + i32(m);
        var seg: array<f32, SEG>;
        for (var i = 0u; i < 7u * S + K; i++) {
            let ix = ix0 + i32(i);
            seg[i] = select(0.0, x[plane + clamped(iy, ix, p.h, p.w)], inside(iy, ix, p.h, p.w));
        }
        var h0 = vec4<f32>(0.0);
        var h1 = vec4<f32>(0.0);
        for (var kx = 0u; kx < K; kx++) {
            h0 += vec4<f32>(seg[kx], seg[kx + S], seg[kx + 2u * S], seg[kx + 3u * S]);
            h1 += vec4<f32>(seg[kx + 4u * S], seg[kx + 5u * S], seg[kx + 6u * S], seg[kx + 7u * S]);
        }
        for (var r = 0u; r < R; r++) {
            if (m >= r * S && m < r * S + K) {
                acc[2u * r] += h0;
                acc[2u * r + 1u] += h1;
            }
        }
    }
    let ox = i32(c.x);
    let cw0 = vec4<f32>(f32(span(ox, p.w)), f32(span(ox + 1, p.w)), f32(span(ox + 2, p.w)), f32(span(ox + 3, p.w)));
    let cw1 = vec4<f32>(f32(span(ox + 4, p.w)), f32(span(ox + 5, p.w)), f32(span(ox + 6, p.w)), f32(span(ox + 7, p.w)));
    for (var r = 0u; r < R; r++) {
        let ch = f32(span(i32(c.y + r), p.h));
        store8(c.z, c.y + r, c.x, p.oh, p.ow, acc[2u * r] / (ch * cw0), acc[2u * r + 1u] / (ch * cw1));
    }
}

// Running maxima (value, index within the plane) of the tile's outputs into best and at.
// Per input row: the first maximum of each of the 8 windows' row pieces (strict >, columns in
// order), then merged into the output rows in row order (strict >): the first maximum in
// row-major order. Padding is -inf and never wins; a window whose real cells are all -inf
// keeps NONE, replaced by its first real cell.
fn max_tile(c: vec3<u32>, best: ptr<function, array<vec4<f32>, 8>>, at: ptr<function, array<vec4<u32>, 8>>) {
    let plane = c.z * p.h * p.w;
    let iy0 = i32(c.y * S) - i32(PAD);
    let ix0 = i32(c.x * S) - i32(PAD);
    let ninf = bitcast<f32>(0xff800000u);
    for (var r = 0u; r < 2u * RMAX; r++) {
        (*best)[r] = vec4<f32>(ninf);
        (*at)[r] = vec4<u32>(NONE);
    }
    for (var m = 0u; m < (R - 1u) * S + K; m++) {
        let iy = iy0 + i32(m);
        var seg: array<f32, SEG>;
        for (var i = 0u; i < 7u * S + K; i++) {
            let ix = ix0 + i32(i);
            seg[i] = select(ninf, x[plane + clamped(iy, ix, p.h, p.w)], inside(iy, ix, p.h, p.w));
        }
        // Index of seg[0]; wrong for padding, which is never taken.
        let i0 = u32(iy * i32(p.w) + ix0);
        var h0 = vec4<f32>(ninf);
        var h1 = vec4<f32>(ninf);
        var a0 = vec4<u32>(NONE);
        var a1 = vec4<u32>(NONE);
        let j0 = vec4<u32>(0u, S, 2u * S, 3u * S);
        let j1 = j0 + 4u * S;
        for (var kx = 0u; kx < K; kx++) {
            let v0 = vec4<f32>(seg[kx], seg[kx + S], seg[kx + 2u * S], seg[kx + 3u * S]);
            let v1 = vec4<f32>(seg[kx + 4u * S], seg[kx + 5u * S], seg[kx + 6u * S], seg[kx + 7u * S]);
            let t0 = v0 > h0;
            let t1 = v1 > h1;
            h0 = select(h0, v0, t0);
            h1 = select(h1, v1, t1);
            a0 = select(a0, j0 + (i0 + kx), t0);
            a1 = select(a1, j1 + (i0 + kx), t1);
        }
        for (var r = 0u; r < R; r++) {
            if (m >= r * S && m < r * S + K) {
                let t0 = h0 > (*best)[2u * r];
                let t1 = h1 > (*best)[2u * r + 1u];
                (*best)[2u * r] = select((*best)[2u * r], h0, t0);
                (*best)[2u * r + 1u] = select((*best)[2u * r + 1u], h1, t1);
                (*at)[2u * r] = select((*at)[2u * r], a0, t0);
                (*at)[2u * r + 1u] = select((*at)[2u * r + 1u], a1, t1);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn max_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let c = tile(t);
    var best: array<vec4<f32>, 8>;
    var at: array<vec4<u32>, 8>;
    max_tile(c, &best, &at);
    for (var r = 0u; r < R; r++) {
        store8(c.z, c.y + r, c.x, p.oh, p.ow, best[2u * r], best[2u * r + 1u]);
    }
}

@compute @workgroup_size(WG)
fn max_rows_arg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let c = tile(t);
    var best: array<vec4<f32>, 8>;
    var at: array<vec4<u32>, 8>;
    max_tile(c, &best, &at);
    for (var r = 0u; r < R; r++) {
        let oy = c.y + r;
        store8(c.z, oy, c.x, p.oh, p.ow, best[2u * r], best[2u * r + 1u]);
        if (oy >= p.oh) { continue; }
        let row = max(i32(oy * S) - i32(PAD), 0) * i32(p.w);
        let o = (c.z * p.oh + oy) * p.ow + c.x;
        for (var j = 0u; j < 8u; j++) {
            let a = select(at[2u * r][j % 4u], at[2u * r + 1u][j % 4u], j >= 4u);
            let first = u32(row + max(i32((c.x + j) * S) - i32(PAD), 0));
            if (c.x + j < p.ow) { arg_out[o + j] = select(a, first, a == NONE); }
        }
    }
}

// First output (along one axis) covering the first of 8 (or R) inputs starting at a multiple
// of S, relative to that input / S: ceil((PAD + 1 - K) / S); and how many outputs cover any of
// n such inputs.
fn first_cover() -> i32 {
    return -fdiv(i32(K) - 1 - i32(PAD));
}
fn covers(n: u32) -> u32 {
    return u32(fdiv(i32(n) - 1 + i32(PAD)) - first_cover() + 1);
}

// Whether output o0 + i (o0 from first_cover) covers input j of a tile.
fn covered(j: u32, i: u32) -> bool {
    let d = i32(j) + i32(PAD) - (first_cover() + i32(i)) * i32(S);
    return d >= 0 && d < i32(K);
}

// The covering output row's segments (scaled dy, argmax), kept where the gathers below can
// index them with constants once everything is unrolled.
var<private> dv: array<f32, SEG>;
var<private> av: array<u32, SEG>;

// Position in dv of the output whose window tap kx is input j of the tile, or -1.
fn src(j: u32, kx: u32) -> i32 {
    let e = i32(j) + i32(PAD) - i32(kx) - first_cover() * i32(S);
    return select(-1, e / i32(S), e >= 0 && e % i32(S) == 0 && e / i32(S) < i32(covers(8u)));
}

// acc + the dv of the outputs covering input j, in column order (taps from the last).
fn gather(acc: f32, j: u32) -> f32 {
    var g = acc;
    for (var k = 0u; k < K; k++) {
        let i = src(j, K - 1u - k);
        if (i >= 0) { g += dv[i]; }
    }
    return g;
}

// Same, counting only the outputs whose argmax is input `me`.
fn gather_max(acc: f32, j: u32, me: u32) -> f32 {
    var g = acc;
    for (var k = 0u; k < K; k++) {
        let i = src(j, K - 1u - k);
        if (i >= 0) { g += select(0.0, dv[i], av[i] == me); }
    }
    return g;
}

// dx = sum of dy / window size over the windows covering each input. Per covering output row:
// its dy segment (scaled by 1 / window size) is loaded once, gathered for the 8 columns, and
// added to the R input rows it covers.
@compute @workgroup_size(WG)
fn avg_back_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let c = tile(t);
    let oplane = c.z * p.oh * p.ow;
    let oy0 = i32(c.y / S) + first_cover();
    let ox0 = i32(c.x / S) + first_cover();
    var acc: array<vec4<f32>, 8>;
    for (var r = 0u; r < 2u * RMAX; r++) { acc[r] = vec4<f32>(0.0); }
    for (var m = 0u; m < covers(R); m++) {
        let oy = oy0 + i32(m);
        let ch = f32(span(oy, p.h));
        for (var i = 0u; i < covers(8u); i++) {
            let ox = ox0 + i32(i);
            let v = x[oplane + clamped(oy, ox, p.oh, p.ow)] / (ch * f32(span(ox, p.w)));
            dv[i] = select(0.0, v, inside(oy, ox, p.oh, p.ow));
        }
        let g0 = vec4<f32>(gather(0.0, 0u), gather(0.0, 1u), gather(0.0, 2u), gather(0.0, 3u));
        let g1 = vec4<f32>(gather(0.0, 4u), gather(0.0, 5u), gather(0.0, 6u), gather(0.0, 7u));
        for (var r = 0u; r < R; r++) {
            if (covered(r, m)) {
                acc[2u * r] += g0;
                acc[2u * r + 1u] += g1;
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        store8(c.z, c.y + r, c.x, p.h, p.w, acc[2u * r], acc[2u * r + 1u]);
    }
}

// dx gathers dy over the covering outputs whose saved argmax is this input, in row-major
// order of the outputs (as pool.wgsl). Each covering output row's dy and argmax segments are
// loaded once.
@compute @workgroup_size(WG)
fn max_back_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let c = tile(t);
    let oplane = c.z * p.oh * p.ow;
    let oy0 = i32(c.y / S) + first_cover();
    let ox0 = i32(c.x / S) + first_cover();
    var acc: array<vec4<f32>, 8>;
    for (var r = 0u; r < 2u * RMAX; r++) { acc[r] = vec4<f32>(0.0); }
    for (var m = 0u; m < covers(R); m++) {
        let oy = oy0 + i32(m);
        for (var i = 0u; i < covers(8u); i++) {
            let ox = ox0 + i32(i);
            let o = oplane + clamped(oy, ox, p.oh, p.ow);
            let ok = inside(oy, ox, p.oh, p.ow);
            dv[i] = select(0.0, x[o], ok);
            av[i] = select(NONE, arg_in[o], ok);
        }
        for (var r = 0u; r < R; r++) {
            if (!covered(r, m)) { continue; }
            let me = (c.y + r) * p.w + c.x;
            let a0 = acc[2u * r];
            let a1 = acc[2u * r + 1u];
            acc[2u * r] = vec4<f32>(gather_max(a0.x, 0u, me), gather_max(a0.y, 1u, me + 1u), gather_max(a0.z, 2u, me + 2u), gather_max(a0.w, 3u, me + 3u));
            acc[2u * r + 1u] = vec4<f32>(gather_max(a1.x, 4u, me + 4u), gather_max(a1.y, 5u, me + 5u), gather_max(a1.z, 6u, me + 6u), gather_max(a1.w, 7u, me + 7u));
        }
    }
    for (var r = 0u; r < R; r++) {
        store8(c.z, c.y + r, c.x, p.h, p.w, acc[2u * r], acc[2u * r + 1u]);
    }
}
