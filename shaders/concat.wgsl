// Channel concatenation and its inverse. In NCHW each input's channels form one contiguous
// block of blk = Ci*H*W values per batch item, so both directions are strided block copies:
// one dispatch per input, one invocation per element of that input.

struct Params {
    total: u32,   // N * blk
    blk: u32,     // Ci * H * W
    stride: u32,  // C_total * H * W: distance between batch items in the concatenated tensor
    offset: u32,  // channel offset * H * W
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn whole_index(i: u32) -> u32 {
    return (i / p.blk) * p.stride + p.offset + i % p.blk;
}

// src = one part, dst = the concatenation.
@compute @workgroup_size(WG)
fn concat_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dst[whole_index(i)] = src[i];
}

// src = the concatenation (its gradient), dst = one part.
@compute @workgroup_size(WG)
fn split_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    dst[i] = src[whole_index(i)];
}
