// Batch assembly: gather images (bytes packed 4 per u32, one chunk buffer per dispatch) by
// sample index, convert to f32 / 255, crop from a zero-padded image, flip, normalise per
// channel, cut out a square. The same order as torchvision's RandomCrop(padding) ->
// RandomHorizontalFlip -> ToTensor -> Normalize followed by the DARTS Cutout.
//
// Randomness is a stateless hash of (seed, batch position, purpose), so every invocation of a
// batch position makes the same choices without shared state, and the CPU reference
// (src/data/device.rs) reproduces them exactly.

struct Params {
    total: u32,        // batch * c * h * w
    c: u32,
    h: u32,
    w: u32,
    n: u32,            // images in the dataset
    chunk: u32,        // the chunk bound at binding 2 in this dispatch
    per_chunk: u32,    // images per chunk
    stride: u32,       // u32 words per image (C*H*W bytes rounded up to 4)
    pad: u32,          // crop padding, 0 = no crop
    flip: u32,         // 1 = random horizontal flip
    cutout: u32,       // cutout side, 0 = off
    seed: u32,
    batch: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read> images: array<u32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
// mean[0..c] then std[0..c]
@group(0) @binding(4) var<storage, read> norm: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_labels: array<u32>;
// augment_choices: 5 words per batch position
@group(0) @binding(7) var<storage, read_write> choices: array<u32>;

const FLIP: u32 = 0u;
const CROP_X: u32 = 1u;
const CROP_Y: u32 = 2u;
const CUT_X: u32 = 3u;
const CUT_Y: u32 = 4u;
// Label of a batch position whose sample index is out of range: no class has it.
const NO_LABEL: u32 = 0xffffffffu;

// PCG hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn rand(pos: u32, purpose: u32) -> u32 {
    return pcg(pcg(pcg(p.seed) + pos) + purpose);
}

struct Choice {
    flip: u32,
    crop_x: u32,   // offset of the crop in the padded image, 0..=2*pad
    crop_y: u32,
    cut_x: u32,    // cutout centre, 0..w
    cut_y: u32,
}

fn choose(pos: u32) -> Choice {
    var ch = Choice(0u, 0u, 0u, 0u, 0u);
    if (p.flip != 0u) {
        ch.flip = rand(pos, FLIP) & 1u;
    }
    if (p.pad != 0u) {
        ch.crop_x = rand(pos, CROP_X) % (2u * p.pad + 1u);
        ch.crop_y = rand(pos, CROP_Y) % (2u * p.pad + 1u);
    }
    if (p.cutout != 0u) {
        ch.cut_x = rand(pos, CUT_X) % p.w;
        ch.cut_y = rand(pos, CUT_Y) % p.h;
    }
    return ch;
}

// One invocation per output element; a dispatch handles the positions whose image lies in its
// chunk (chunk 0 also handles out-of-range indices), so every element is written exactly once
// across the dispatches of one assemble.
@compute @workgroup_size(WG)
fn assemble(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat_id(wid, nwg, lid);
    if (e >= p.total) { return; }
    let plane = p.h * p.w;
    let chw = p.c * plane;
    let b = e / chw;
    let r = e % chw;
    let idx = indices[b];
    if (idx >= p.n) {
        if (p.chunk == 0u) {
            x[e] = 0.0;
            if (r == 0u) { out_labels[b] = NO_LABEL; }
        }
        return;
    }
    if (idx / p.per_chunk != p.chunk) { return; }

    let c = r / plane;
    let y = (r % plane) / p.w;
    let xo = r % p.w;
    let ch = choose(b);
    // Flip after the crop: output column xo shows crop column w-1-xo.
    let xs = select(xo, p.w - 1u - xo, ch.flip == 1u);
    // Coordinates in the padded image; the image itself starts at (pad, pad).
    let py = y + ch.crop_y;
    let px = xs + ch.crop_x;
    var v = 0.0;
    if (py >= p.pad && py < p.pad + p.h && px >= p.pad && px < p.pad + p.w) {
        let k = c * plane + (py - p.pad) * p.w + (px - p.pad);
        let word = images[(idx % p.per_chunk) * p.stride + k / 4u];
        v = f32((word >> (8u * (k % 4u))) & 0xffu) / 255.0;
    }
    var out = (v - norm[c]) / norm[p.c + c];
    if (p.cutout != 0u) {
        // Side `cutout` starting half a side before the centre (the DARTS square for even sides).
        let y0 = i32(ch.cut_y) - i32(p.cutout / 2u);
        let x0 = i32(ch.cut_x) - i32(p.cutout / 2u);
        let yi = i32(y);
        let xi = i32(xo);
        if (yi >= y0 && yi < y0 + i32(p.cutout) && xi >= x0 && xi < x0 + i32(p.cutout)) {
            out = 0.0;
        }
    }
    x[e] = out;
    if (r == 0u) { out_labels[b] = labels[idx]; }
}

// The choices of each batch position, for tests: flip, crop_x, crop_y, cut_x, cut_y.
@compute @workgroup_size(WG)
fn augment_choices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = flat_id(wid, nwg, lid);
    if (b >= p.batch) { return; }
    let ch = choose(b);
    choices[5u * b] = ch.flip;
    choices[5u * b + 1u] = ch.crop_x;
    choices[5u * b + 2u] = ch.crop_y;
    choices[5u * b + 3u] = ch.cut_x;
    choices[5u * b + 4u] = ch.cut_y;
}
