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

// ---- Flat path: fewer, fatter invocations and vec4 stores, for outputs whose length is a
// multiple of 4 (the host checks; p.planes is then all planes and plane0 is 0). Invocation g
// writes the KV vec4s of the output from g * KV, walking (column, row, plane) along without
// division after the first element. The 8x8-tile kernels above are the fallback.
override KV: u32 = 2u;

@group(0) @binding(3) var<storage, read_write> dst4: array<vec4<f32>>;

struct Pos {
    x: u32,
    y: u32,
    plane: u32,
}

fn pos_of(i: u32, cols: u32, rows: u32) -> Pos {
    let t = i / cols;
    let plane = t / rows;
    return Pos(i - t * cols, t - plane * rows, plane);
}

fn pos_next(q: Pos, cols: u32, rows: u32) -> Pos {
    var r = Pos(q.x + 1u, q.y, q.plane);
    let wrap = r.x == cols;
    r.x = select(r.x, 0u, wrap);
    r.y = select(r.y, r.y + 1u, wrap);
    let wrap_plane = r.y == rows;
    r.y = select(r.y, 0u, wrap_plane);
    r.plane = select(r.plane, r.plane + 1u, wrap_plane);
    return r;
}

@compute @workgroup_size(WG)
fn crop_forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let v0 = flat_id(wid, nwg, lid) * KV;
    let n4 = p.planes * p.oh * p.ow / 4u;
    if (v0 >= n4) { return; }
    var q = pos_of(4u * v0, p.ow, p.oh);
    for (var t = 0u; t < KV; t++) {
        if (v0 + t >= n4) { break; }
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            v[k] = src[(q.plane * p.h + q.y + p.top) * p.w + q.x + p.left];
            q = pos_next(q, p.ow, p.oh);
        }
        dst4[v0 + t] = v;
    }
}

@compute @workgroup_size(WG)
fn crop_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let v0 = flat_id(wid, nwg, lid) * KV;
    let n4 = p.planes * p.h * p.w / 4u;
    if (v0 >= n4) { return; }
    var q = pos_of(4u * v0, p.w, p.h);
    for (var t = 0u; t < KV; t++) {
        if (v0 + t >= n4) { break; }
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            // Outside the window: read element 0 (always there) and drop it, without a branch.
            let inside = q.y >= p.top && q.y < p.top + p.oh && q.x >= p.left && q.x < p.left + p.ow;
            let at = select(0u, (q.plane * p.oh + q.y - p.top) * p.ow + q.x - p.left, inside);
            v[k] = select(0.0, src[at], inside);
            q = pos_next(q, p.w, p.h);
        }
        dst4[v0 + t] = v;
    }
}
