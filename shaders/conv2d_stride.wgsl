// 1x1 convolutions with stride S > 1 and no padding (FactorizedReduce): a 1x1 conv only reads
// the pixels (S*oy, S*ox), so forward and the weight gradient run the pointwise GEMM on a
// gathered copy of those pixels, and the input gradient runs it into such a copy, then
// scatters it back with zeros in between. Host: src/ops/conv2d.rs.

struct Params {
    total: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    quads: u32,
    _p0: u32,
    _p1: u32,
}

override S: u32 = 2u;
// A ReLU in front of the convolution, fused: RELU = 1 gathers max(x, 0), so the GEMMs after it
// see relu(x); MASK = 1 scatters dx only where the pre-ReLU input xm is > 0 (zeros elsewhere,
// as everywhere off the stride grid). xm / xm4 are bound in every scatter / spread dispatch
// (some read-only buffer when MASK = 0, never read).
override RELU: u32 = 0u;
override MASK: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> xm: array<f32>;
@group(0) @binding(6) var<storage, read> xm4: array<vec4<f32>>;

// dx value v at index i of dx (x's index of the same element).
fn masked(i: u32, v: f32) -> f32 {
    if (MASK == 1u) { return select(0.0, v, xm[i] > 0.0); }
    return v;
}

// Indices in x [planes, h, w] of elements e .. e+3 of the gathered [planes, ho, wo], those
// past the end clamped to x's last. One set of divisions, then steps: integer division is
// slow in SIMD lanes on a CPU.
fn gather_at(e: u32) -> vec4<u32> {
    let hw = p.ho * p.wo;
    var plane = e / hw;
    let r = e - plane * hw;
    var oy = r / p.wo;
    var ox = r - oy * p.wo;
    let xlast = p.total / hw * p.h * p.w - 1u;
    var at: vec4<u32>;
    for (var c = 0u; c < 4u; c++) {
        at[c] = min((plane * p.h + oy * S) * p.w + ox * S, xlast);
        ox += 1u;
        let wrap = ox == p.wo;
        ox = select(ox, 0u, wrap);
        oy = select(oy, oy + 1u, wrap);
        let next = oy == p.ho;
        oy = select(oy, 0u, next);
        plane = select(plane, plane + 1u, next);
    }
    return at;
}

// Four consecutive elements of the gathered tensor from element e (p.total elements).
fn gathered(e: u32) -> vec4<f32> {
    let at = gather_at(e);
    let v = vec4<f32>(src[at.x], src[at.y], src[at.z], src[at.w]);
    if (RELU == 1u) { return max(v, vec4<f32>(0.0)); }
    return v;
}

// dst[e] = x[plane, S*oy, S*ox], 4 consecutive e per invocation.
@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = 4u * flat_id(wid, nwg, lid);
    if (e >= p.total) { return; }
    let v = gathered(e);
    dst[e] = v.x;
    if (e + 1u < p.total) { dst[e + 1u] = v.y; }
    if (e + 2u < p.total) { dst[e + 2u] = v.z; }
    if (e + 3u < p.total) { dst[e + 3u] = v.w; }
}

// The same with one vec4 store instead of four (p.total % 4 == 0).
@compute @workgroup_size(WG)
fn gather4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (4u * i >= p.total) { return; }
    dst4[i] = gathered(4u * i);
}

// Value of dx at column ix = ix0 + c of a row S*oy, whose gathered row starts at sb. Where 4 is
// a multiple of S the hit columns are the same in every lane (c % S == 0), so the others fold
// to a constant zero without a load.
fn pick(sb: u32, ix0: u32, c: u32) -> f32 {
    if (4u % S == 0u && c % S != 0u) { return 0.0; }
    let ix = min(ix0 + c, p.w - 1u);
    return select(0.0, src[sb + ix / S], ix % S == 0u);
}

// Scatter geometry of invocation i: (index of dx[plane, S*oy, 4*q] in dx, rows to write, the 4 values).
struct Block {
    at: u32,
    rows: u32,
    ix0: u32,
    v: vec4<f32>,
}

fn block(i: u32) -> Block {
    let q = i % p.quads;
    let t = i / p.quads;
    let oy = t % p.ho;
    let plane = t / p.ho;
    let iy0 = oy * S;
    let sb = (plane * p.ho + oy) * p.wo;
    let ix0 = 4u * q;
    let v = vec4<f32>(pick(sb, ix0, 0u), pick(sb, ix0, 1u), pick(sb, ix0, 2u), pick(sb, ix0, 3u));
    return Block((plane * p.h + iy0) * p.w + ix0, min(S, p.h - iy0), ix0, v);
}

// dx from the gathered gradient src [planes, ho, wo]: per invocation 4 columns of the S rows
// S*oy .. S*oy + S - 1 (rows past h skipped), zeros off the stride grid; every element of dx
// is written. p.total = planes * ho * quads, quads = ceil(w / 4).
@compute @workgroup_size(WG)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let b = block(i);
    let n = min(4u, p.w - b.ix0);
    for (var c = 0u; c < n; c++) {
        dst[b.at + c] = masked(b.at + c, b.v[c]);
        for (var r = 1u; r < b.rows; r++) { dst[b.at + r * p.w + c] = 0.0; }
    }
}

// The same with vec4 stores where rows are whole vec4s (w % 4 == 0).
@compute @workgroup_size(WG)
fn scatter4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let b = block(i);
    let w4 = p.w / 4u;
    var v = b.v;
    if (MASK == 1u) { v = select(vec4<f32>(0.0), v, xm4[b.at / 4u] > vec4<f32>(0.0)); }
    dst4[b.at / 4u] = v;
    for (var r = 1u; r < b.rows; r++) { dst4[b.at / 4u + r * w4] = vec4<f32>(0.0); }
}

// Where rows are not whole vec4s, scatter stores a float at a time; instead dx is zeroed with
// vec4 stores (zero4) and only the stride-grid pixels written after (spread): about half the
// memory accesses.
@group(0) @binding(4) var<storage, read> src4: array<vec4<f32>>;

// p.total vec4s of zeros, 4 per invocation (fewer invocations), lanes on neighbouring vec4s.
@compute @workgroup_size(WG)
fn zero4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = (wid.y * nwg.x + wid.x) * 4u * WG + lid.x;
    for (var k = 0u; k < 4u; k++) {
        let i = base + k * WG;
        if (i < p.total) { dst4[i] = vec4<f32>(0.0); }
    }
}

fn spread_store(e: u32, v: vec4<f32>) {
    let at = gather_at(e);
    dst[at.x] = masked(at.x, v.x);
    if (e + 1u < p.total) { dst[at.y] = masked(at.y, v.y); }
    if (e + 2u < p.total) { dst[at.z] = masked(at.z, v.z); }
    if (e + 3u < p.total) { dst[at.w] = masked(at.w, v.w); }
}

// dx[plane, S*oy, S*ox] = src[e], 4 consecutive e per invocation (p.total = src elements).
@compute @workgroup_size(WG)
fn spread(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = 4u * flat_id(wid, nwg, lid);
    if (e >= p.total) { return; }
    let last = p.total - 1u;
    spread_store(e, vec4<f32>(src[e], src[min(e + 1u, last)], src[min(e + 2u, last)], src[min(e + 3u, last)]));
}

// The same with one vec4 load (p.total % 4 == 0).
@compute @workgroup_size(WG)
fn spread4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (4u * i >= p.total) { return; }
    spread_store(4u * i, src4[i]);
}
