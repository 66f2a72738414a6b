// Optimizer updates (SGD, Adam/AdamW) in place, the global squared gradient norm and gradient
// clipping. Elementwise entry points are 1-D with the grid folded by the host (Gpu::grid), so
// `i >= p.n` guards the tail. Hyperparameters arrive in the uniform every step: the learning
// rate schedule lives on the host.

struct Params {
    n: u32,
    // norm_partial: index of this tensor's first partial sum in the scratch buffer.
    offset: u32,
    // norm_partial: workgroups that cover this tensor (a folded grid has spare ones).
    groups: u32,
    nesterov: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    decoupled: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // Adam: lr / (1 - beta1^t) and sqrt(1 - beta2^t), computed on the host in f64.
    step_size: f32,
    bc2_sqrt: f32,
    max_norm: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
// SGD momentum buffer, or Adam's first moment.
@group(0) @binding(3) var<storage, read_write> moment1: array<f32>;
@group(0) @binding(4) var<storage, read_write> moment2: array<f32>;
// Per-workgroup partial sums of squares: written by norm_partial, read by norm_final.
@group(0) @binding(5) var<storage, read_write> partial_out: array<f32>;
@group(0) @binding(6) var<storage, read> partial_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(8) var<storage, read> norm_sq: array<f32>;

// PyTorch SGD. With momentum 0 the buffer is never read, so an unfilled one does no harm.
@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    sgd_at(i, grad[i]);
}

// PyTorch SGD on element i with gradient gr: weight decay, momentum buffer, nesterov; shared by
// sgd_step and sgd_multi so both update in exactly the same arithmetic.
fn sgd_at(i: u32, gr: f32) {
    let w = param[i];
    let g = gr + p.weight_decay * w;
    var b = g;
    if (p.momentum != 0.0) {
        b = p.momentum * moment1[i] + g;
    }
    moment1[i] = b;
    var update = b;
    if (p.nesterov != 0u) {
        update = g + p.momentum * b;
    }
    param[i] = w - p.lr * update;
}

// PyTorch Adam (L2 penalty added to the gradient) or AdamW (decoupled decay of the weight).
@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    var w = param[i];
    var g = grad[i];
    if (p.decoupled != 0u) {
        w = w * (1.0 - p.lr * p.weight_decay);
    } else {
        g = g + p.weight_decay * w;
    }
    let m = p.beta1 * moment1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * moment2[i] + (1.0 - p.beta2) * g * g;
    moment1[i] = m;
    moment2[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    param[i] = w - p.step_size * m / denom;
}

// Elements each invocation of norm_partial sums before the workgroup reduction.
const PER_INVOCATION: u32 = 8u;
// Upper bound of WG for reductions (Gpu::wg1d never exceeds it).
const MAX_WG: u32 = 256u;

var<workgroup> sums: array<f32, MAX_WG>;

// Pairwise tree over sums[0..WG] in a fixed order; WG is a power of two for these entry points.
fn reduce_workgroup(l: u32) -> f32 {
    var width = WG / 2u;
    while (width > 0u) {
        workgroupBarrier();
        if (l < width) {
            sums[l] = sums[l] + sums[l + width];
        }
        width = width / 2u;
    }
    workgroupBarrier();
    return sums[0];
}

// One partial sum of squares per workgroup over a block of WG * PER_INVOCATION elements;
// invocation l reads l, l + WG, ... so neighbours read neighbouring addresses.
@compute @workgroup_size(WG)
fn norm_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = wid.y * nwg.x + wid.x;
    let l = lid.x;
    let base = block * WG * PER_INVOCATION;
    var s = 0.0;
    for (var k = 0u; k < PER_INVOCATION; k++) {
        let i = base + k * WG + l;
        if (i < p.n) {
            let g = grad[i];
            s = s + g * g;
        }
    }
    sums[l] = s;
    let total = reduce_workgroup(l);
    if (l == 0u && block < p.groups) {
        partial_out[p.offset + block] = total;
    }
}

// One workgroup: invocation l sums partials l, l + WG, ... in order, then the tree.
@compute @workgroup_size(WG)
fn norm_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    let l = lid.x;
    var s = 0.0;
    for (var i = l; i < p.n; i += WG) {
        s = s + partial_in[i];
    }
    sums[l] = s;
    let total = reduce_workgroup(l);
    if (l == 0u) {
        norm_out[0] = total;
    }
}

// clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)), the norm read on the GPU.
@compute @workgroup_size(WG)
fn clip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let coef = min(1.0, p.max_norm / (sqrt(norm_sq[0]) + 1e-6));
    param[i] = param[i] * coef;
}

// Multi-tensor entry points: one dispatch covers every touched parameter of one arena block.
// The host splits each parameter into chunks of WG * PER_INVOCATION elements, counted from the
// parameter's start exactly as norm_partial counts blocks, so the partial sums (and their
// order, by partial index) do not depend on where the arena put the parameter. One workgroup
// per chunk: chunks[p.offset + k] = (first element in the block, length, partial index, 0);
// p.n is the number of chunks of this dispatch.
@group(0) @binding(9) var<storage, read> chunks: array<vec4<u32>>;

fn chunk_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(WG)
fn norm_partial_multi(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = chunk_id(wid, nwg);
    let l = lid.x;
    // A folded grid has spare workgroups; they still join the barriers of the tree.
    var c = vec4<u32>(0u, 0u, 0u, 0u);
    if (k < p.n) {
        c = chunks[p.offset + k];
    }
    var s = 0.0;
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let i = j * WG + l;
        if (i < c.y) {
            let g = grad[c.x + i];
            s = s + g * g;
        }
    }
    sums[l] = s;
    let total = reduce_workgroup(l);
    if (l == 0u && k < p.n) {
        partial_out[c.z] = total;
    }
}

// Clip (when p.max_norm > 0: the clip kernel's coefficient from the global norm), weight
// decay and the SGD momentum update of sgd_step, fused. The clipped gradient is not written
// back: nothing reads it after the update.
@compute @workgroup_size(WG)
fn sgd_multi(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k = chunk_id(wid, nwg);
    if (k >= p.n) { return; }
    let c = chunks[p.offset + k];
    var coef = 1.0;
    if (p.max_norm > 0.0) {
        coef = min(1.0, p.max_norm / (sqrt(norm_sq[0]) + 1e-6));
    }
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let i = j * WG + lid.x;
        if (i >= c.y) { break; }
        let at = c.x + i;
        var gr = grad[at];
        if (p.max_norm > 0.0) {
            gr = gr * coef;
        }
        sgd_at(at, gr);
    }
}
