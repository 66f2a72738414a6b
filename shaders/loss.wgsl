// Softmax cross-entropy (fused with its gradient) and the correct-prediction count.
//
// Both reduce over the batch inside ONE workgroup: invocation t handles rows t, t + WG, ... in
// order, then invocation 0 adds the WG partial results in order. The summation order depends
// only on WG, so a run on the same adapter is bitwise reproducible. The per-row work is tiny
// (a few classes), so one workgroup is enough for training and evaluation batches.
//
// Labels are u32. A label >= C is a host bug (labels are validated on load); the kernels never
// index with it: the row's loss is NaN (so the batch loss is NaN and the run fails visibly),
// its dlogits row is 0, and it never counts as correct.

struct Params {
    n: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<u32>;
@group(0) @binding(6) var<storage, read> scalar: array<f32>;

// Sized for the largest WG the host uses (Gpu::wg1d caps it at 256): 1 KiB, far below the
// workgroup memory every adapter has.
const MAX_WG: u32 = 256u;
var<workgroup> loss_part: array<f32, MAX_WG>;
var<workgroup> hit_part: array<u32, MAX_WG>;

// A quiet NaN built at run time (WGSL rejects NaN constants); `x` only makes it non-constant.
fn nan_from(x: u32) -> f32 {
    return bitcast<f32>(0x7fc00000u | (x & 0x3fffffu));
}

// loss[0] = mean_n(logsumexp(z_n) - z_n[label_n]); dlogits = (softmax(z) - onehot(label)) / N.
@compute @workgroup_size(WG)
fn softmax_cross_entropy(@builtin(local_invocation_index) t: u32) {
    let inv_n = 1.0 / f32(p.n);
    var sum = 0.0;
    for (var r = t; r < p.n; r += WG) {
        let base = r * p.c;
        var mx = logits[base];
        for (var j = 1u; j < p.c; j++) {
            mx = max(mx, logits[base + j]);
        }
        // Subtracting the row max keeps exp() <= 1: no overflow for large logits.
        var s = 0.0;
        for (var j = 0u; j < p.c; j++) {
            s += exp(logits[base + j] - mx);
        }
        let label = labels[r];
        if (label < p.c) {
            // log(s) - (z_label - mx) rather than (mx + log(s)) - z_label: no cancellation when
            // the label is the (confident) argmax.
            sum += log(s) - (logits[base + label] - mx);
            for (var j = 0u; j < p.c; j++) {
                let hot = select(0.0, 1.0, j == label);
                dlogits[base + j] = (exp(logits[base + j] - mx) / s - hot) * inv_n;
            }
        } else {
            sum += nan_from(label);
            for (var j = 0u; j < p.c; j++) {
                dlogits[base + j] = 0.0;
            }
        }
    }
    loss_part[t] = sum;
    workgroupBarrier();
    if (t == 0u) {
        var total = 0.0;
        for (var i = 0u; i < WG; i++) {
            total += loss_part[i];
        }
        loss[0] = total / f32(p.n);
    }
}

// correct[0] = number of rows whose first maximal logit is at the label.
@compute @workgroup_size(WG)
fn count_correct(@builtin(local_invocation_index) t: u32) {
    var hits = 0u;
    for (var r = t; r < p.n; r += WG) {
        let base = r * p.c;
        var best = logits[base];
        var arg = 0u;
        for (var j = 1u; j < p.c; j++) {
            let v = logits[base + j];
            // Strictly greater: ties keep the first index, like torch.argmax.
            if (v > best) {
                best = v;
                arg = j;
            }
        }
        hits += select(0u, 1u, arg == labels[r]);
    }
    hit_part[t] = hits;
    workgroupBarrier();
    if (t == 0u) {
        var total = 0u;
        for (var i = 0u; i < WG; i++) {
            total += hit_part[i];
        }
        correct[0] = total;
    }
}

// dlogits = logits * scalar[0]: scales by a loss gradient that lives on the GPU (the op test
// checks d(dy * loss)/dlogits = dy * dlogits with a random dy).
@compute @workgroup_size(WG)
fn scale_by_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    dlogits[i] = logits[i] * scalar[0];
}
