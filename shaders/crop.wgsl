// Spatial crop of NCHW tensors and its backward (the gradient placed back into a zero field).
// FactorizedReduce's second path reads x[:, :, 1:, 1:]; a general window keeps it reusable.
// 3-D grid (x: column, y: row, z: channel plane) in 8x8 tiles: indices without division,
// which lavapipe would scalarise.

struct Params {
    planes: u32,  // channel planes this dispatch covers
    h: u32,       // input (uncropped) height
    w: u32,       // input width
    oh: u32,      // cropped height
    ow: u32,      // cropped width
    top: u32,
    left: u32,
    plane0: u32,  // first plane of this dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// dst [N,C,oh,ow] = src [N,C,h,w] window at (top, left).
@compute @workgroup_size(8, 8, 1)
fn crop_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.ow || gid.y >= p.oh) { return; }
    let plane = p.plane0 + gid.z;
    dst[(plane * p.oh + gid.y) * p.ow + gid.x] = src[(plane * p.h + gid.y + p.top) * p.w + gid.x + p.left];
}

// dst [N,C,h,w] = src [N,C,oh,ow] placed at (top, left), zeros elsewhere. One writer per element.
@compute @workgroup_size(8, 8, 1)
fn crop_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if (x >= p.w || y >= p.h) { return; }
    let plane = p.plane0 + gid.z;
    var v = 0.0;
    if (y >= p.top && y < p.top + p.oh && x >= p.left && x < p.left + p.ow) {
        v = src[(plane * p.oh + y - p.top) * p.ow + x - p.left];
    }
    dst[(plane * p.h + y) * p.w + x] = v;
}
