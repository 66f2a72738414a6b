// Channel concatenation and its inverse. In NCHW each input's channels form one contiguous
// block of blk = Ci*H*W values per batch item, so both directions are strided block copies:
// one dispatch per input, x over the block, y over batch items. The 2-D grid gives both
// indices without dividing (lavapipe scalarises vector integer division).

struct Params {
    n: u32,       // batch items this dispatch covers
    blk: u32,     // Ci * H * W
    stride: u32,  // C_total * H * W: distance between batch items in the concatenated tensor
    offset: u32,  // channel offset * H * W
    n0: u32,      // first batch item of this dispatch
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Each invocation copies PER consecutive values: fewer invocations, less per-invocation
// overhead on lavapipe.
const PER: u32 = 4u;

// src = one part, dst = the concatenation.
@compute @workgroup_size(WG)
fn concat_part(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.y >= p.n) { return; }
    let b = p.n0 + gid.y;
    let s0 = b * p.blk;
    let d0 = b * p.stride + p.offset;
    for (var j = 0u; j < PER; j++) {
        let i = gid.x * PER + j;
        if (i < p.blk) { dst[d0 + i] = src[s0 + i]; }
    }
}

// src = the concatenation (its gradient), dst = one part.
@compute @workgroup_size(WG)
fn split_part(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.y >= p.n) { return; }
    let b = p.n0 + gid.y;
    let d0 = b * p.blk;
    let s0 = b * p.stride + p.offset;
    for (var j = 0u; j < PER; j++) {
        let i = gid.x * PER + j;
        if (i < p.blk) { dst[d0 + i] = src[s0 + i]; }
    }
}

// vec4 path: the same copies on vec4 views when blk, stride and offset are multiples of 4 (the
// host checks); p.blk, p.stride and p.offset then count vec4s. On lavapipe a load or store
// costs about the same for a vec4 as for a float.
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;

const PER4: u32 = 2u;

@compute @workgroup_size(WG)
fn concat_part4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.y >= p.n) { return; }
    let b = p.n0 + gid.y;
    let s0 = b * p.blk;
    let d0 = b * p.stride + p.offset;
    for (var j = 0u; j < PER4; j++) {
        let i = gid.x * PER4 + j;
        if (i < p.blk) { dst4[d0 + i] = src4[s0 + i]; }
    }
}

@compute @workgroup_size(WG)
fn split_part4(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.y >= p.n) { return; }
    let b = p.n0 + gid.y;
    let d0 = b * p.blk;
    let s0 = b * p.stride + p.offset;
    for (var j = 0u; j < PER4; j++) {
        let i = gid.x * PER4 + j;
        if (i < p.blk) { dst4[d0 + i] = src4[s0 + i]; }
    }
}
