// Fast paths of conv2d for shapes the DARTS supernet runs most; host: src/ops/conv2d.rs picks
// them from the shape and falls back to shaders/conv2d.wgsl for everything else.
//
// Written for CPU-like adapters too (lavapipe runs a workgroup on one thread, its invocations in
// SIMD lanes): each invocation owns a register tile, anything indexed only by workgroup_id is
// the same in every lane (one load, broadcast), and inner loops have no branches.

struct Params {
    m: u32, k: u32, j: u32, mtiles: u32,
    sam: u32, sak: u32, sbk: u32, sbj: u32,
    a_batch: u32, b_batch: u32, c_batch: u32, kchunks: u32,
    kchunk: u32, _p0: u32, _p1: u32, _p2: u32,
}

// Rows of C per invocation (1..8); the host sets it.
override MT: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The same buffers seen as vec4: lavapipe loads a vec4 per lane about as fast as one float.
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;

// gemm4v's view of the output (rows of whole vec4s).
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

// A ReLU in front of the convolution, fused: RELU = 1 reads B through max(B, 0) (forward and
// backward_weight, where B is x; never set for backward_input, where B is dy). MASK = 1 stores C
// only where the pre-ReLU input xm is > 0 (backward_input: C = dx, laid out like x). The
// bindings are bound in every dispatch (some read-only buffer when MASK = 0, never read).
override RELU: u32 = 0u;
override MASK: u32 = 0u;
@group(0) @binding(7) var<storage, read> xm: array<f32>;
@group(0) @binding(8) var<storage, read> xm4: array<vec4<f32>>;

fn masked(i: u32, v: f32) -> f32 {
    if (MASK == 1u) { return select(0.0, v, xm[i] > 0.0); }
    return v;
}

fn masked4(i: u32, v: vec4<f32>) -> vec4<f32> {
    if (MASK == 1u) { return select(vec4<f32>(0.0), v, xm4[i] > vec4<f32>(0.0)); }
    return v;
}

fn relu_cols(t: mat4x4<f32>) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(max(t[0], z), max(t[1], z), max(t[2], z), max(t[3], z));
}

// A gemm4 tile: 8 rows x 4 columns (c) and, with JV = 2, 4 more columns (d).
struct Tile4 {
    ok: bool,
    at: u32,
    j0: u32,
    m0: u32,
    // Named, not arrays: a dynamically indexed array would live in memory, not registers.
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
    c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
    d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>,
    d4: vec4<f32>, d5: vec4<f32>, d6: vec4<f32>, d7: vec4<f32>,
}

// How gemm4 reads A: 1 = contiguous along k (sak = 1), 2 = contiguous along m (sam = 1).
override AV: u32 = 1u;
// How gemm4 reads B: 0 = scalars at any strides, 1 = vec4 along j (sbj = 1), 2 = vec4 along k
// (sbk = 1).
override BV: u32 = 1u;
// Column groups of 4 in a gemm4 tile: 1, or 2 (with BV = 1 only).
override JV: u32 = 1u;

fn store4(at: u32, j0: u32, v: vec4<f32>) {
    out[at] = masked(at, v.x);
    if (j0 + 1u < p.j) { out[at + 1u] = masked(at + 1u, v.y); }
    if (j0 + 2u < p.j) { out[at + 2u] = masked(at + 2u, v.z); }
    if (j0 + 3u < p.j) { out[at + 3u] = masked(at + 3u, v.w); }
}

// Batched GEMM for 1x1 convolutions: C[bt][m, j] = sum over k of A(m, k) * B(k, j), with
// A(m, k) = a[n * a_batch + m * sam + k * sak] and B(k, j) = b[n * b_batch + k * sbk + j * sbj]
// for batch n = bt / kchunks, k in chunk bt % kchunks. C[bt][m, j] = out[bt * c_batch + m * j_len + j].
// - forward:          A = W [Cout, Cin],  B = X[n] [Cin, HW], C = Y[n].
// - backward_input:   A = W^T,            B = dY[n],          C = dX[n].
// - backward_weight:  A = dY[n] [Cout, HW], B = X[n]^T [HW, Cin], C = a chunk's partial dW.
// Tile: MT rows x 4 columns; rows come from workgroup_id (so A loads are uniform), columns
// from the lane. Rows and columns past the end re-read the last one and are never stored.
@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j0 = (wid.x * WG + lid.x) * 4u;
    if (j0 >= p.j) { return; }
    let bt = wid.y / p.mtiles;
    let m0 = (wid.y % p.mtiles) * MT;
    let n = bt / p.kchunks;
    let k0 = (bt % p.kchunks) * p.kchunk;
    let k1 = min(k0 + p.kchunk, p.k);
    let lastj = p.j - 1u;
    let o1 = (min(j0 + 1u, lastj) - j0) * p.sbj;
    let o2 = (min(j0 + 2u, lastj) - j0) * p.sbj;
    let o3 = (min(j0 + 3u, lastj) - j0) * p.sbj;
    let lastm = p.m - 1u;
    let ar = n * p.a_batch + m0 * p.sam;
    let r1 = (min(m0 + 1u, lastm) - m0) * p.sam;
    let r2 = (min(m0 + 2u, lastm) - m0) * p.sam;
    let r3 = (min(m0 + 3u, lastm) - m0) * p.sam;
    let r4 = (min(m0 + 4u, lastm) - m0) * p.sam;
    let r5 = (min(m0 + 5u, lastm) - m0) * p.sam;
    let r6 = (min(m0 + 6u, lastm) - m0) * p.sam;
    let r7 = (min(m0 + 7u, lastm) - m0) * p.sam;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    var ai = ar + k0 * p.sak;
    var bi = n * p.b_batch + k0 * p.sbk + j0 * p.sbj;
    for (var kk = k0; kk < k1; kk++) {
        var x = vec4<f32>(b[bi], b[bi + o1], b[bi + o2], b[bi + o3]);
        if (RELU == 1u) { x = max(x, vec4<f32>(0.0)); }
        c0 += x * a[ai];
        if (MT > 1u) { c1 += x * a[ai + r1]; }
        if (MT > 2u) { c2 += x * a[ai + r2]; }
        if (MT > 3u) { c3 += x * a[ai + r3]; }
        if (MT > 4u) { c4 += x * a[ai + r4]; }
        if (MT > 5u) { c5 += x * a[ai + r5]; }
        if (MT > 6u) { c6 += x * a[ai + r6]; }
        if (MT > 7u) { c7 += x * a[ai + r7]; }
        ai += p.sak;
        bi += p.sbk;
    }
    let at = bt * p.c_batch + m0 * p.j + j0;
    store4(at, j0, c0);
    if (MT > 1u && m0 + 1u < p.m) { store4(at + p.j, j0, c1); }
    if (MT > 2u && m0 + 2u < p.m) { store4(at + 2u * p.j, j0, c2); }
    if (MT > 3u && m0 + 3u < p.m) { store4(at + 3u * p.j, j0, c3); }
    if (MT > 4u && m0 + 4u < p.m) { store4(at + 4u * p.j, j0, c4); }
    if (MT > 5u && m0 + 5u < p.m) { store4(at + 5u * p.j, j0, c5); }
    if (MT > 6u && m0 + 6u < p.m) { store4(at + 6u * p.j, j0, c6); }
    if (MT > 7u && m0 + 7u < p.m) { store4(at + 7u * p.j, j0, c7); }
}


// Columns of the result are the rows given (a 4x4 transpose in registers).
fn transpose(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y),
        vec4<f32>(a.z, b.z, c.z, d.z), vec4<f32>(a.w, b.w, c.w, d.w));
}

// C row += sum over the 4 k of B(k, columns) * A(row, k), in k order.
fn mad4(c: vec4<f32>, t: mat4x4<f32>, w: vec4<f32>) -> vec4<f32> {
    return c + t[0] * w.x + t[1] * w.y + t[2] * w.z + t[3] * w.w;
}


// gemm taking k four at a time with vector loads (AV, BV say how); the host checks that
// every vec4 it reads starts on a multiple of 4 (k range, strides, batch offsets). Tile: 8 rows
// x 4*JV columns. Rows and columns past the end re-read valid data and are never stored.
// lavapipe runs each load (vec4 or float, uniform or not) at a cost that dwarfs a multiply-add,
// so the tile is sized to maximise multiply-adds per load within the registers.
fn tile4(wid: vec3<u32>, lid: vec3<u32>) -> Tile4 {
    var t: Tile4;
    let j0 = (wid.x * WG + lid.x) * 4u * JV;
    t.ok = j0 < p.j;
    if (!t.ok) { return t; }
    let bt = wid.y / p.mtiles;
    let m0 = (wid.y % p.mtiles) * 8u;
    let n = bt / p.kchunks;
    let k0 = (bt % p.kchunks) * p.kchunk;
    let k1 = min(k0 + p.kchunk, p.k);
    let lastj = p.j - 1u;
    let o1 = (min(j0 + 1u, lastj) - j0) * p.sbj;
    let o2 = (min(j0 + 2u, lastj) - j0) * p.sbj;
    let o3 = (min(j0 + 3u, lastj) - j0) * p.sbj;
    // The second column group (JV = 2, BV = 1) re-reads the first past the end.
    let h = select(0u, 1u, j0 + 4u < p.j);
    let lastm = p.m - 1u;
    let abase = n * p.a_batch;
    // AV = 1: the vec4 index of row r at k; AV = 2: rows m0+4.. read the second vec4 (the
    // first again past the end).
    var a0 = (abase + m0 * p.sam + k0) / 4u;
    let r1 = (min(m0 + 1u, lastm) - m0) * p.sam / 4u;
    let r2 = (min(m0 + 2u, lastm) - m0) * p.sam / 4u;
    let r3 = (min(m0 + 3u, lastm) - m0) * p.sam / 4u;
    let r4 = (min(m0 + 4u, lastm) - m0) * p.sam / 4u;
    let r5 = (min(m0 + 5u, lastm) - m0) * p.sam / 4u;
    let r6 = (min(m0 + 6u, lastm) - m0) * p.sam / 4u;
    let r7 = (min(m0 + 7u, lastm) - m0) * p.sam / 4u;
    var am = (abase + m0 + k0 * p.sak) / 4u;
    let ak = p.sak / 4u;
    let second = select(0u, 1u, m0 + 4u < p.m);
    var bi = n * p.b_batch + k0 * p.sbk + j0 * p.sbj;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    var d3 = vec4<f32>(0.0);
    var d4 = vec4<f32>(0.0);
    var d5 = vec4<f32>(0.0);
    var d6 = vec4<f32>(0.0);
    var d7 = vec4<f32>(0.0);
    for (var kk = k0; kk < k1; kk += 4u) {
        // t[i] = B(kk + i, j0..j0+3), u[i] = B(kk + i, j0+4..j0+7).
        var t: mat4x4<f32>;
        var u: mat4x4<f32>;
        if (BV == 0u) {
            for (var i = 0u; i < 4u; i++) {
                let r = bi + i * p.sbk;
                t[i] = vec4<f32>(b[r], b[r + o1], b[r + o2], b[r + o3]);
            }
            bi += 4u * p.sbk;
        } else if (BV == 1u) {
            let q = bi / 4u;
            let s = p.sbk / 4u;
            t = mat4x4<f32>(b4[q], b4[q + s], b4[q + 2u * s], b4[q + 3u * s]);
            if (JV > 1u) { u = mat4x4<f32>(b4[q + h], b4[q + s + h], b4[q + 2u * s + h], b4[q + 3u * s + h]); }
            bi += 4u * p.sbk;
        } else {
            let q = bi / 4u;
            t = transpose(b4[q], b4[q + o1 / 4u], b4[q + o2 / 4u], b4[q + o3 / 4u]);
            bi += 4u;
        }
        if (RELU == 1u) {
            t = relu_cols(t);
            if (JV > 1u) { u = relu_cols(u); }
        }
        var w: mat4x4<f32>;
        var x: mat4x4<f32>;
        if (AV == 1u) {
            w = mat4x4<f32>(a4[a0], a4[a0 + r1], a4[a0 + r2], a4[a0 + r3]);
            x = mat4x4<f32>(a4[a0 + r4], a4[a0 + r5], a4[a0 + r6], a4[a0 + r7]);
            a0 += 1u;
        } else {
            w = transpose(a4[am], a4[am + ak], a4[am + 2u * ak], a4[am + 3u * ak]);
            x = transpose(a4[am + second], a4[am + ak + second], a4[am + 2u * ak + second], a4[am + 3u * ak + second]);
            am += 4u * ak;
        }
        // w[r], x[r]: A(m0 + r, kk..kk+3), A(m0 + 4 + r, kk..kk+3).
        c0 = mad4(c0, t, w[0]);
        c1 = mad4(c1, t, w[1]);
        c2 = mad4(c2, t, w[2]);
        c3 = mad4(c3, t, w[3]);
        c4 = mad4(c4, t, x[0]);
        c5 = mad4(c5, t, x[1]);
        c6 = mad4(c6, t, x[2]);
        c7 = mad4(c7, t, x[3]);
        if (JV > 1u) {
            d0 = mad4(d0, u, w[0]);
            d1 = mad4(d1, u, w[1]);
            d2 = mad4(d2, u, w[2]);
            d3 = mad4(d3, u, w[3]);
            d4 = mad4(d4, u, x[0]);
            d5 = mad4(d5, u, x[1]);
            d6 = mad4(d6, u, x[2]);
            d7 = mad4(d7, u, x[3]);
        }
    }
    t.at = bt * p.c_batch + m0 * p.j + j0;
    t.j0 = j0;
    t.m0 = m0;
    t.c0 = c0; t.c1 = c1; t.c2 = c2; t.c3 = c3; t.c4 = c4; t.c5 = c5; t.c6 = c6; t.c7 = c7;
    t.d0 = d0; t.d1 = d1; t.d2 = d2; t.d3 = d3; t.d4 = d4; t.d5 = d5; t.d6 = d6; t.d7 = d7;
    return t;
}

@compute @workgroup_size(WG)
fn gemm4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = tile4(wid, lid);
    if (!t.ok) { return; }
    store8(t.at, t.j0, t.c0, t.d0);
    if (t.m0 + 1u < p.m) { store8(t.at + p.j, t.j0, t.c1, t.d1); }
    if (t.m0 + 2u < p.m) { store8(t.at + 2u * p.j, t.j0, t.c2, t.d2); }
    if (t.m0 + 3u < p.m) { store8(t.at + 3u * p.j, t.j0, t.c3, t.d3); }
    if (t.m0 + 4u < p.m) { store8(t.at + 4u * p.j, t.j0, t.c4, t.d4); }
    if (t.m0 + 5u < p.m) { store8(t.at + 5u * p.j, t.j0, t.c5, t.d5); }
    if (t.m0 + 6u < p.m) { store8(t.at + 6u * p.j, t.j0, t.c6, t.d6); }
    if (t.m0 + 7u < p.m) { store8(t.at + 7u * p.j, t.j0, t.c7, t.d7); }
}

// gemm4 for outputs whose rows are whole vec4s (the host checks j and c_batch are multiples
// of 4): one vector store per 4 columns instead of four guarded scalar stores, which for the
// small k of DARTS cells (8-64 channels) cost more than the loads.
@compute @workgroup_size(WG)
fn gemm4v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = tile4(wid, lid);
    if (!t.ok) { return; }
    let q = t.at / 4u;
    let row = p.j / 4u;
    let second = JV > 1u && t.j0 + 4u < p.j;
    put4(q, t.c0, t.d0, second);
    if (t.m0 + 1u < p.m) { put4(q + row, t.c1, t.d1, second); }
    if (t.m0 + 2u < p.m) { put4(q + 2u * row, t.c2, t.d2, second); }
    if (t.m0 + 3u < p.m) { put4(q + 3u * row, t.c3, t.d3, second); }
    if (t.m0 + 4u < p.m) { put4(q + 4u * row, t.c4, t.d4, second); }
    if (t.m0 + 5u < p.m) { put4(q + 5u * row, t.c5, t.d5, second); }
    if (t.m0 + 6u < p.m) { put4(q + 6u * row, t.c6, t.d6, second); }
    if (t.m0 + 7u < p.m) { put4(q + 7u * row, t.c7, t.d7, second); }
}

// A row of a gemm4v tile: 4 columns, and 4 more when the tile is two groups wide.
fn put4(at: u32, c: vec4<f32>, d: vec4<f32>, second: bool) {
    out4[at] = masked4(at, c);
    if (second) { out4[at + 1u] = masked4(at + 1u, d); }
}

// A row of a gemm4 tile: 4 columns, and 4 more when JV = 2.
fn store8(at: u32, j0: u32, c: vec4<f32>, d: vec4<f32>) {
    store4(at, j0, c);
    if (JV > 1u && j0 + 4u < p.j) { store4(at + 4u, j0 + 4u, d); }
}
