// Spatial crop of NCHW tensors and its backward (the gradient placed back into a zero field).
// FactorizedReduce's second path reads x[:, :, 1:, 1:]; a general window keeps it reusable.

struct Params {
    total: u32,   // elements of the tensor being written
    h: u32,       // input (uncropped) height
    w: u32,       // input width
    oh: u32,      // cropped height
    ow: u32,      // cropped width
    top: u32,
    left: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// dst [N,C,oh,ow] = src [N,C,h,w] window at (top, left).
@compute @workgroup_size(WG)
fn crop_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let x = i % p.ow;
    let y = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);
    dst[i] = src[(plane * p.h + y + p.top) * p.w + x + p.left];
}

// dst [N,C,h,w] = src [N,C,oh,ow] placed at (top, left), zeros elsewhere. One writer per element.
@compute @workgroup_size(WG)
fn crop_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let x = i % p.w;
    let y = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    var v = 0.0;
    if (y >= p.top && y < p.top + p.oh && x >= p.left && x < p.left + p.ow) {
        v = src[(plane * p.oh + y - p.top) * p.ow + x - p.left];
    }
    dst[i] = v;
}
