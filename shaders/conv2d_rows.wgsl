// conv2d fast paths that keep input row segments in registers: depthwise (groups = Cin = Cout)
// and dense (groups = 1), square KxK kernel, dilation D, stride S (1 or 2); host:
// src/ops/conv2d.rs. K, D and S are override constants so that the loops over a row's taps
// have constant trip counts and unroll, and the input segments below live in registers. On
// lavapipe a load costs far more than a multiply-add, so each loaded input value is reused for
// every output and tap of the row that reads it.

struct Params {
    c: u32, ih: u32, iw: u32, oh: u32,
    ow: u32, pad: u32, xtiles: u32, tiles: u32,
    // depthwise: row pairs; weight_rows: images n.
    pairs: u32, cin: u32, cout: u32, ctiles: u32,
    // dense: weight strides; weight_rows: weights per partial sum (so), images per chunk (si).
    so: u32, si: u32, cin_g: u32, cout_g: u32,
}

override K: u32 = 3u;
override D: u32 = 1u;
override S: u32 = 1u;
// depthwise_t only: the residue (RY, RX) of the input pixels (iy, ix) mod S it writes, and the
// forward padding; constants so that which taps land is known when the shader is compiled.
override RX: u32 = 0u;
override RY: u32 = 0u;
override PAD: u32 = 0u;
// 1: correlate with the kernel flipped (backward_input as a forward pass).
override FLIP: u32 = 0u;
// Output rows of a depthwise tile (1..RMAX).
override R: u32 = 2u;
const RMAX: u32 = 4u;
// Output channels in a dense tile (1..8).
override CT: u32 = 8u;

// Room for an input row segment of 7*S + 1 + (K-1)*D values and for K accumulators; the host
// checks that they fit.
const SEG: u32 = 24u;
const KMAX: u32 = 13u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// depthwise, dense: the weights [C, Cin/groups, K, K]; weight_rows: dy.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// A ReLU in front of the convolution, fused: RELU = 1 reads x through max(x, 0) (forward and
// weight gradient; never set where x is dy: flipped backward_input, depthwise_t). MASK = 1
// stores out only where the pre-ReLU input xm is > 0 (backward_input: out = dx, laid out like
// the input); MASK = 2 is the same with the mask read as vec4s where out rows are whole vec4s
// (depthwise, dense: a quarter of the mask loads, and lavapipe pays per load). xm / xm4 are
// bound in every depthwise, dense and depthwise_t dispatch (some read-only buffer when
// MASK = 0, never read).
override RELU: u32 = 0u;
override MASK: u32 = 0u;
@group(0) @binding(6) var<storage, read> xm: array<f32>;
@group(0) @binding(7) var<storage, read> xm4: array<vec4<f32>>;

fn act(v: f32) -> f32 {
    if (RELU == 1u) { return max(v, 0.0); }
    return v;
}

fn masked(i: u32, v: f32) -> f32 {
    if (MASK == 1u) { return select(0.0, v, xm[i] > 0.0); }
    return v;
}

// v masked by the vec4 of xm at i (a multiple of 4).
fn masked4(i: u32, v: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, xm4[i / 4u] > vec4<f32>(0.0));
}

// x[row + i] for 0 <= i < iw, else 0 (zero padding); the index is clamped so the load itself
// stays inside the row whichever way select evaluates.
fn load_x(row: u32, i: i32) -> f32 {
    return select(0.0, act(x[row + u32(clamp(i, 0, i32(p.iw) - 1))]), i >= 0 && i < i32(p.iw));
}

// out plane (n, c) = correlation of x plane (n, c) with the KxK kernel of c, dilation D,
// stride S, padding pad. Tile: 8 neighbouring outputs in each of R rows D apart (oy0,
// oy0 + D, ...), so that input row oy0*S - pad + kr*D is kernel row kr - r*S of row r: each
// input row segment (7*S + 1 + (K-1)*D values) is loaded once for up to 8*R*K multiply-adds,
// and the plane's K*K weights once for all R rows.
// Row groups: blocks of R*D rows hold D groups. Item order (fastest first): 8-column tile, row
// group, plane. Rows past the end are computed and not stored.
@compute @workgroup_size(WG)
fn depthwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let ox0 = (t % p.xtiles) * 8u;
    let pair = (t / p.xtiles) % p.pairs;
    let plane = t / (p.xtiles * p.pairs);
    let oy0 = (pair / D) * R * D + pair % D;
    if (oy0 >= p.oh) { return; }
    let wbase = (plane % p.c) * K * K;
    let ix0 = i32(ox0 * S) - i32(p.pad);
    var wk: array<f32, KMAX * KMAX>;
    for (var i = 0u; i < K * K; i++) { wk[i] = w[wbase + i]; }
    var acc: array<vec4<f32>, 2u * RMAX>;
    for (var r = 0u; r < 2u * R; r++) { acc[r] = vec4<f32>(0.0); }
    for (var kr = 0u; kr < K + (R - 1u) * S; kr++) {
        let iy = i32(oy0 * S + kr * D) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.ih)) { continue; }
        let row = (plane * p.ih + u32(iy)) * p.iw;
        var seg: array<f32, SEG>;
        for (var i = 0u; i < 7u * S + 1u + (K - 1u) * D; i++) {
            seg[i] = load_x(row, ix0 + i32(i));
        }
        for (var r = 0u; r < R; r++) {
            if (kr < r * S || kr >= K + r * S) { continue; }
            var a0 = acc[2u * r];
            var a1 = acc[2u * r + 1u];
            for (var kx = 0u; kx < K; kx++) {
                let wv = wk[tap(kr - r * S, kx)];
                let s = kx * D;
                a0 += vec4<f32>(seg[s], seg[s + S], seg[s + 2u * S], seg[s + 3u * S]) * wv;
                a1 += vec4<f32>(seg[s + 4u * S], seg[s + 5u * S], seg[s + 6u * S], seg[s + 7u * S]) * wv;
            }
            acc[2u * r] = a0;
            acc[2u * r + 1u] = a1;
        }
    }
    for (var r = 0u; r < R; r++) {
        if (oy0 + r * D < p.oh) { store8(plane, oy0 + r * D, ox0, acc[2u * r], acc[2u * r + 1u]); }
    }
}

// Index of weight (ky, kx) in a channel's kernel, turned by 180 degrees when FLIP = 1.
fn tap(ky: u32, kx: u32) -> u32 {
    let i = ky * K + kx;
    return select(i, K * K - 1u - i, FLIP == 1u);
}

fn store8(plane: u32, oy: u32, ox0: u32, u0: vec4<f32>, u1: vec4<f32>) {
    let at = (plane * p.oh + oy) * p.ow + ox0;
    var v0 = u0;
    var v1 = u1;
    if (MASK == 2u) {
        // ow % 4 == 0 and ox0 % 8 == 0: each half is all inside the row or all past it.
        v0 = masked4(at, v0);
        if (ox0 + 4u < p.ow) { v1 = masked4(at + 4u, v1); }
    }
    for (var j = 0u; j < 4u; j++) {
        if (ox0 + j < p.ow) { out[at + j] = masked(at + j, v0[j]); }
        if (ox0 + 4u + j < p.ow) { out[at + 4u + j] = masked(at + 4u + j, v1[j]); }
    }
}

// Weight gradient, stage 1, for any groups: for chunk b of si images, output channels o0..
// o0+CT-1 of a group, input channel cl of the group and kernel row ky, out[b][o, cl, ky, kx] =
// sum over the chunk's planes of dy[n, o] * the x it multiplied, in image, row, column order.
// (Several images per chunk keep invocations busy and the partial sums few on small planes.)
// Each step loads 8 dy values per channel and the input segment they meet (8 + (K-1)*D values)
// once for all K taps and CT channels. Stage 2 (weight_sum in conv2d.wgsl) adds the images in
// order. Item order (fastest first): ky, cl, channel tile, group, image. Tile channels past
// the group's end re-read the last one's dy and are never stored. weight_rows4 is the same
// with vec4 loads where rows are whole vec4s; the two share everything but the loads.
struct WItem {
    ky: u32,
    g: u32,
    b: u32,
    cl: u32,
    o0: u32,
    gend: u32,
    d: vec4<u32>,
}

var<private> acc0: array<f32, KMAX>;
var<private> acc1: array<f32, KMAX>;
var<private> acc2: array<f32, KMAX>;
var<private> acc3: array<f32, KMAX>;

fn witem(t: u32) -> WItem {
    let ky = t % K;
    let cl = (t / K) % p.cin_g;
    let r = t / (K * p.cin_g);
    let ct = r % p.ctiles;
    let gb = r / p.ctiles;
    let g = gb % p.c;
    let gend = (g + 1u) * p.cout_g;
    let o0 = g * p.cout_g + ct * CT;
    let dplane = p.oh * p.ow;
    let d = vec4<u32>(0u, min(o0 + 1u, gend - 1u) - o0, min(o0 + 2u, gend - 1u) - o0, min(o0 + 3u, gend - 1u) - o0) * dplane;
    for (var kx = 0u; kx < K; kx++) {
        acc0[kx] = 0.0;
        acc1[kx] = 0.0;
        acc2[kx] = 0.0;
        acc3[kx] = 0.0;
    }
    return WItem(ky, g, gb / p.c, cl, o0, gend, d);
}

// All K taps of one step: 8 dy per channel (e0..e3) against the input segment.
fn wstep(seg: array<f32, SEG>, e0: mat2x4<f32>, e1: mat2x4<f32>, e2: mat2x4<f32>, e3: mat2x4<f32>) {
    for (var kx = 0u; kx < K; kx++) {
        let s = kx * D;
        let v0 = vec4<f32>(seg[s], seg[s + S], seg[s + 2u * S], seg[s + 3u * S]);
        let v1 = vec4<f32>(seg[s + 4u * S], seg[s + 5u * S], seg[s + 6u * S], seg[s + 7u * S]);
        acc0[kx] += dot(e0[0], v0) + dot(e0[1], v1);
        if (CT > 1u) { acc1[kx] += dot(e1[0], v0) + dot(e1[1], v1); }
        if (CT > 2u) { acc2[kx] += dot(e2[0], v0) + dot(e2[1], v1); }
        if (CT > 3u) { acc3[kx] += dot(e3[0], v0) + dot(e3[1], v1); }
    }
}

fn wstore(it: WItem) {
    let wsz = p.cin_g * K * K;
    let at = it.b * p.so + it.o0 * wsz + (it.cl * K + it.ky) * K;
    for (var kx = 0u; kx < K; kx++) {
        { out[at + 0u * wsz + kx] = acc0[kx]; }
        if (CT > 1u && it.o0 + 1u < it.gend) { out[at + 1u * wsz + kx] = acc1[kx]; }
        if (CT > 2u && it.o0 + 2u < it.gend) { out[at + 2u * wsz + kx] = acc2[kx]; }
        if (CT > 3u && it.o0 + 3u < it.gend) { out[at + 3u * wsz + kx] = acc3[kx]; }
    }
}

@compute @workgroup_size(WG)
fn weight_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let it = witem(t);
    var e0: mat2x4<f32>;
    var e1: mat2x4<f32>;
    var e2: mat2x4<f32>;
    var e3: mat2x4<f32>;
    let n1 = min((it.b + 1u) * p.si, p.pairs);
    for (var n = it.b * p.si; n < n1; n++) {
        let xplane = n * p.cin + it.g * p.cin_g + it.cl;
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = i32(oy * S + it.ky * D) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.ih)) { continue; }
            let row = (xplane * p.ih + u32(iy)) * p.iw;
            let drow = ((n * p.cout + it.o0) * p.oh + oy) * p.ow;
            for (var ox0 = 0u; ox0 < p.ow; ox0 += 8u) {
                // dy past the row's end is zero: it must not add to the sums.
                e0 = mat2x4<f32>(load8(drow + it.d.x, ox0, 0u), load8(drow + it.d.x, ox0, 4u));
                if (CT > 1u) { e1 = mat2x4<f32>(load8(drow + it.d.y, ox0, 0u), load8(drow + it.d.y, ox0, 4u)); }
                if (CT > 2u) { e2 = mat2x4<f32>(load8(drow + it.d.z, ox0, 0u), load8(drow + it.d.z, ox0, 4u)); }
                if (CT > 3u) { e3 = mat2x4<f32>(load8(drow + it.d.w, ox0, 0u), load8(drow + it.d.w, ox0, 4u)); }
                let ix0 = i32(ox0 * S) - i32(p.pad);
                var seg: array<f32, SEG>;
                for (var i = 0u; i < 7u * S + 1u + (K - 1u) * D; i++) {
                    seg[i] = load_x(row, ix0 + i32(i));
                }
                wstep(seg, e0, e1, e2, e3);
            }
        }
    }
    wstore(it);
}

// weight_rows4's views of x and dy.
@group(0) @binding(4) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dy4: array<vec4<f32>>;

// (4 - pad % 4) % 4: the input segment starts this far into its first aligned vec4.
override OFF: u32 = 0u;

// dy[row + o .. row + o + 3], zero past the row's end (ow % 4 == 0, row % 4 == 0: a vec4 is all
// inside or all outside).
fn dyv(row: u32, o: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), dy4[(row + min(o, p.ow - 4u)) / 4u], o < p.ow);
}

// weight_rows where iw and ow are multiples of 4: each vec4 of x or dy is one load instead of
// four (lavapipe pays per access, not per byte).
@compute @workgroup_size(WG)
fn weight_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let it = witem(t);
    var e0: mat2x4<f32>;
    var e1: mat2x4<f32>;
    var e2: mat2x4<f32>;
    var e3: mat2x4<f32>;
    let len = 7u * S + 1u + (K - 1u) * D;
    let nv = (OFF + len + 3u) / 4u;
    let iw = i32(p.iw);
    let n1 = min((it.b + 1u) * p.si, p.pairs);
    for (var n = it.b * p.si; n < n1; n++) {
        let xplane = n * p.cin + it.g * p.cin_g + it.cl;
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = i32(oy * S + it.ky * D) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.ih)) { continue; }
            let row = (xplane * p.ih + u32(iy)) * p.iw;
            let drow = ((n * p.cout + it.o0) * p.oh + oy) * p.ow;
            for (var ox0 = 0u; ox0 < p.ow; ox0 += 8u) {
                e0 = mat2x4<f32>(dyv(drow + it.d.x, ox0), dyv(drow + it.d.x, ox0 + 4u));
                if (CT > 1u) { e1 = mat2x4<f32>(dyv(drow + it.d.y, ox0), dyv(drow + it.d.y, ox0 + 4u)); }
                if (CT > 2u) { e2 = mat2x4<f32>(dyv(drow + it.d.z, ox0), dyv(drow + it.d.z, ox0 + 4u)); }
                if (CT > 3u) { e3 = mat2x4<f32>(dyv(drow + it.d.w, ox0), dyv(drow + it.d.w, ox0 + 4u)); }
                // Aligned start: ox0 * S is a multiple of 8 and ix0 = ox0 * S - pad.
                let a = i32(ox0 * S) - i32(p.pad) - i32(OFF);
                var sv: array<vec4<f32>, 7>;
                for (var j = 0u; j < nv; j++) {
                    let xi = a + 4 * i32(j);
                    var v = x4[(row + u32(clamp(xi, 0, iw - 4))) / 4u];
                    if (RELU == 1u) { v = max(v, vec4<f32>(0.0)); }
                    sv[j] = select(vec4<f32>(0.0), v, xi >= 0 && xi < iw);
                }
                var seg: array<f32, SEG>;
                for (var i = 0u; i < len; i++) {
                    seg[i] = sv[(i + OFF) / 4u][(i + OFF) % 4u];
                }
                wstep(seg, e0, e1, e2, e3);
            }
        }
    }
    wstore(it);
}

// dy[row + ox0 + j + i] for i < 4, zero past the row's end.
fn load8(row: u32, ox0: u32, j: u32) -> vec4<f32> {
    let o = ox0 + j;
    return vec4<f32>(load_dy(row, o), load_dy(row, o + 1u), load_dy(row, o + 2u), load_dy(row, o + 3u));
}

// dy[row + i] for i < ow, else 0; the index is clamped so the load stays inside the row.
fn load_dy(row: u32, i: u32) -> f32 {
    return select(0.0, w[row + min(i, p.ow - 1u)], i < p.ow);
}

// Dense (groups = 1): out[n, o] = sum over input channels i of x[n, i] correlated with kernel
// (o, i), whose weights start at o * so + i * si: forward so = Cin*K*K, si = K*K; backward_input
// (FLIP = 1, on dy) so = K*K, si = Cout*K*K. Tile: CT output channels x 8 outputs of one row;
// each input segment loaded feeds 8*K*CT multiply-adds. Channels past the end re-read the last
// one's weights and are never stored. Item order: 8-column tile, row, channel tile, image.
@compute @workgroup_size(WG)
fn dense(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let ox0 = (t % p.xtiles) * 8u;
    let oy = (t / p.xtiles) % p.oh;
    let rest = t / (p.xtiles * p.oh);
    let o0 = (rest % p.ctiles) * CT;
    let n = rest / p.ctiles;
    let w0 = o0 * p.so;
    let w1 = min(o0 + 1u, p.cout - 1u) * p.so;
    let w2 = min(o0 + 2u, p.cout - 1u) * p.so;
    let w3 = min(o0 + 3u, p.cout - 1u) * p.so;
    let w4 = min(o0 + 4u, p.cout - 1u) * p.so;
    let w5 = min(o0 + 5u, p.cout - 1u) * p.so;
    let w6 = min(o0 + 6u, p.cout - 1u) * p.so;
    let w7 = min(o0 + 7u, p.cout - 1u) * p.so;
    let ix0 = i32(ox0 * S) - i32(p.pad);
    var a0 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var b7 = vec4<f32>(0.0);
    for (var i = 0u; i < p.cin; i++) {
        let wi = i * p.si;
        for (var ky = 0u; ky < K; ky++) {
            let iy = i32(oy * S + ky * D) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.ih)) { continue; }
            let row = ((n * p.cin + i) * p.ih + u32(iy)) * p.iw;
            var seg: array<f32, SEG>;
            for (var j = 0u; j < 7u * S + 1u + (K - 1u) * D; j++) {
                seg[j] = load_x(row, ix0 + i32(j));
            }
            for (var kx = 0u; kx < K; kx++) {
                let k = wi + tap(ky, kx);
                let s = kx * D;
                let v0 = vec4<f32>(seg[s], seg[s + S], seg[s + 2u * S], seg[s + 3u * S]);
                let v1 = vec4<f32>(seg[s + 4u * S], seg[s + 5u * S], seg[s + 6u * S], seg[s + 7u * S]);
                { let v = w[w0 + k]; a0 += v0 * v; b0 += v1 * v; }
                if (CT > 1u) { let v = w[w1 + k]; a1 += v0 * v; b1 += v1 * v; }
                if (CT > 2u) { let v = w[w2 + k]; a2 += v0 * v; b2 += v1 * v; }
                if (CT > 3u) { let v = w[w3 + k]; a3 += v0 * v; b3 += v1 * v; }
                if (CT > 4u) { let v = w[w4 + k]; a4 += v0 * v; b4 += v1 * v; }
                if (CT > 5u) { let v = w[w5 + k]; a5 += v0 * v; b5 += v1 * v; }
                if (CT > 6u) { let v = w[w6 + k]; a6 += v0 * v; b6 += v1 * v; }
                if (CT > 7u) { let v = w[w7 + k]; a7 += v0 * v; b7 += v1 * v; }
            }
        }
    }
    store8(p.cout * n + o0, oy, ox0, a0, b0);
    if (CT > 1u && o0 + 1u < p.cout) { store8(p.cout * n + o0 + 1u, oy, ox0, a1, b1); }
    if (CT > 2u && o0 + 2u < p.cout) { store8(p.cout * n + o0 + 2u, oy, ox0, a2, b2); }
    if (CT > 3u && o0 + 3u < p.cout) { store8(p.cout * n + o0 + 3u, oy, ox0, a3, b3); }
    if (CT > 4u && o0 + 4u < p.cout) { store8(p.cout * n + o0 + 4u, oy, ox0, a4, b4); }
    if (CT > 5u && o0 + 5u < p.cout) { store8(p.cout * n + o0 + 5u, oy, ox0, a5, b5); }
    if (CT > 6u && o0 + 6u < p.cout) { store8(p.cout * n + o0 + 6u, oy, ox0, a6, b6); }
    if (CT > 7u && o0 + 7u < p.cout) { store8(p.cout * n + o0 + 7u, oy, ox0, a7, b7); }
}

// dx of a depthwise convolution with stride S > 1, as a gather: dx[iy, ix] = sum of
// dy[oy, ox] * w[ky, kx] over iy + PAD = oy*S + ky*D, ix + PAD = ox*S + kx*D. The host
// dispatches once per residue (RY, RX) of (iy, ix) mod S, so which taps land is fixed at
// compile time, and the 8 pixels ix = RX + S*(xq + j) of a tile read dy columns
// ox = xq + j + (RX + PAD - kx*D)/S: one dy row segment (columns xq - LO .. xq + 7 + HI) is
// loaded once for all the row's taps. Here x = dy planes [ih, iw], out = dx planes [oh, ow];
// pairs = rows of this residue. Item order: 8-pixel tile, row, plane.
@compute @workgroup_size(WG)
fn depthwise_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.tiles) { return; }
    let xq = (t % p.xtiles) * 8u;
    let q = (t / p.xtiles) % p.pairs;
    let plane = t / (p.xtiles * p.pairs);
    let wbase = (plane % p.c) * K * K;
    let lo = ((K - 1u) * D + S - 1u) / S;
    let hi = (RX + PAD) / S;
    let ox0 = i32(xq) - i32(lo);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var ky = 0u; ky < K; ky++) {
        let ty = i32(RY + PAD) - i32(ky * D);
        if (ty % i32(S) != 0) { continue; }
        let oy = i32(q) + ty / i32(S);
        if (oy < 0 || oy >= i32(p.ih)) { continue; }
        let row = (plane * p.ih + u32(oy)) * p.iw;
        var seg: array<f32, SEG>;
        for (var i = 0u; i < 8u + lo + hi; i++) {
            seg[i] = load_x(row, ox0 + i32(i));
        }
        for (var kx = 0u; kx < K; kx++) {
            let tx = i32(RX + PAD) - i32(kx * D);
            if (tx % i32(S) != 0) { continue; }
            let s = u32(tx / i32(S) + i32(lo));
            let wv = w[wbase + ky * K + kx];
            a0 += vec4<f32>(seg[s], seg[s + 1u], seg[s + 2u], seg[s + 3u]) * wv;
            a1 += vec4<f32>(seg[s + 4u], seg[s + 5u], seg[s + 6u], seg[s + 7u]) * wv;
        }
    }
    let at = (plane * p.oh + RY + S * q) * p.ow;
    for (var j = 0u; j < 4u; j++) {
        let ix = RX + S * (xq + j);
        if (ix < p.ow) { out[at + ix] = masked(at + ix, a0[j]); }
        if (ix + 4u * S < p.ow) { out[at + ix + 4u * S] = masked(at + ix + 4u * S, a1[j]); }
    }
}
