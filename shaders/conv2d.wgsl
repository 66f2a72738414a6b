// 2-D convolution, NCHW, f32, no bias. Weight [Cout, Cin/groups, KH, KW]; symmetric zero padding.
// Host: src/ops/conv2d.rs, which also fixes how work items map to invocations (p.total, tiles).
//
// The fast kernels give each invocation a register tile: up to CT channels x 4 pixels of one
// row, so every input load feeds CT multiply-adds and every weight load feeds 4. The *_simple
// kernels compute one element each and are kept as the readable statement of the math.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, kh: u32,
    kw: u32, stride: u32, pad: u32, dil: u32,
    cin_g: u32, cout_g: u32, ctiles: u32, xtiles: u32,
    total: u32, chunk: u32, chunks: u32, len: u32,
    nw: u32, _p0: u32, _p1: u32, _p2: u32,
}

// Channels in a register tile (1..4); the host sets it from the group's channel count.
override CT: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
// forward: a = x, b = w, out = y.  backward_input: a = dy, b = w, out = dx.
// weight_partial: a = x, b = dy, out = partial sums.  weight_sum: a = partial sums, out = dw.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// A ReLU in front of the convolution, fused (the graph then never stores relu(x)):
// RELU = 1 reads x through max(x, 0) (forward, weight_partial: `a` is x there, never dy);
// MASK = 1 makes backward_input write dx only where the pre-ReLU input xm is > 0, the ReLU's
// own backward. Override constants, so the unfused pipelines compile without either.
override RELU: u32 = 0u;
override MASK: u32 = 0u;
// Bound in every backward_input dispatch (some read-only buffer when MASK = 0, never read).
@group(0) @binding(4) var<storage, read> xm: array<f32>;

fn act(v: f32) -> f32 {
    if (RELU == 1u) { return max(v, 0.0); }
    return v;
}

// dx value v at index i of dx, which is also x's index of the same element.
fn masked(i: u32, v: f32) -> f32 {
    if (MASK == 1u) { return select(0.0, v, xm[i] > 0.0); }
    return v;
}

// a[row + i] for 0 <= i < len, else 0 (zero padding). The index is clamped so that the load
// itself never leaves the row, whichever way select evaluates.
fn load_a(row: u32, i: i32, len: u32) -> f32 {
    let inside = i >= 0 && i < i32(len);
    return select(0.0, act(a[row + u32(clamp(i, 0, i32(len) - 1))]), inside);
}

fn store_row(at: u32, x0: u32, len: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (x0 + j < len) { out[at + j] = v[j]; }
    }
}

// out[row + ix0 + s*j] = v[j] for the pixels of a backward_input tile inside the row.
fn store_strided(row: u32, ix0: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        let ix = ix0 + p.stride * j;
        if (ix < p.w) { out[row + ix] = masked(row + ix, v[j]); }
    }
}

// One output per invocation: y[n, co, oy, ox].
@compute @workgroup_size(WG)
fn forward_simple(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ox = i % p.wo;
    let oy = (i / p.wo) % p.ho;
    let co = (i / (p.wo * p.ho)) % p.cout;
    let n = i / (p.wo * p.ho * p.cout);
    let g = co / p.cout_g;
    var sum = 0.0;
    for (var cl = 0u; cl < p.cin_g; cl++) {
        let ci = g * p.cin_g + cl;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = i32(ox * p.stride + kx * p.dil) - i32(p.pad);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                sum += act(a[((n * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)]) * b[((co * p.cin_g + cl) * p.kh + ky) * p.kw + kx];
            }
        }
    }
    out[i] = sum;
}

// Tile: CT output channels of one group x 4 neighbouring output pixels of one row.
// Item order (fastest first): pixel tile, row, channel tile, image - so neighbouring
// invocations read the same weights.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let ox0 = (t % p.xtiles) * 4u;
    let oy = (t / p.xtiles) % p.ho;
    let rest = t / (p.xtiles * p.ho);
    let tiles = (p.cout / p.cout_g) * p.ctiles;
    let ct = rest % tiles;
    let n = rest / tiles;
    let g = ct / p.ctiles;
    let gend = (g + 1u) * p.cout_g;
    let co0 = g * p.cout_g + (ct % p.ctiles) * CT;
    // Tile channels past the group's end re-read the last channel's weights; never stored.
    let wsz = p.cin_g * p.kh * p.kw;
    let w0 = co0 * wsz;
    let w1 = min(co0 + 1u, gend - 1u) * wsz;
    let w2 = min(co0 + 2u, gend - 1u) * wsz;
    let w3 = min(co0 + 3u, gend - 1u) * wsz;
    let s = i32(p.stride);
    let ix0 = i32(ox0) * s - i32(p.pad);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var cl = 0u; cl < p.cin_g; cl++) {
        let plane = (n * p.cin + g * p.cin_g + cl) * p.h;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let row = (plane + u32(iy)) * p.w;
            let wk = (cl * p.kh + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx * p.dil);
                let xv = vec4<f32>(load_a(row, ix, p.w), load_a(row, ix + s, p.w), load_a(row, ix + 2 * s, p.w), load_a(row, ix + 3 * s, p.w));
                let k = wk + kx;
                a0 += xv * b[w0 + k];
                if (CT > 1u) { a1 += xv * b[w1 + k]; }
                if (CT > 2u) { a2 += xv * b[w2 + k]; }
                if (CT > 3u) { a3 += xv * b[w3 + k]; }
            }
        }
    }
    let plane_out = p.ho * p.wo;
    let y0 = ((n * p.cout + co0) * p.ho + oy) * p.wo + ox0;
    store_row(y0, ox0, p.wo, a0);
    if (CT > 1u && co0 + 1u < gend) { store_row(y0 + plane_out, ox0, p.wo, a1); }
    if (CT > 2u && co0 + 2u < gend) { store_row(y0 + 2u * plane_out, ox0, p.wo, a2); }
    if (CT > 3u && co0 + 3u < gend) { store_row(y0 + 3u * plane_out, ox0, p.wo, a3); }
}

// Gradient of the input as a gather, one dx[n, ci, iy, ix] per invocation: every output
// position whose window covers (iy, ix) contributes dy * w. No atomics.
@compute @workgroup_size(WG)
fn backward_input_simple(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / (p.w * p.h)) % p.cin;
    let n = i / (p.w * p.h * p.cin);
    let g = ci / p.cin_g;
    let cl = ci % p.cin_g;
    let s = i32(p.stride);
    var sum = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        // Output row oy reads input row oy*s - pad + ky*dil; invert it.
        let ty = i32(iy + p.pad) - i32(ky * p.dil);
        if (ty < 0 || ty % s != 0 || ty / s >= i32(p.ho)) { continue; }
        let oy = u32(ty / s);
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pad) - i32(kx * p.dil);
            if (tx < 0 || tx % s != 0 || tx / s >= i32(p.wo)) { continue; }
            let ox = u32(tx / s);
            for (var co = g * p.cout_g; co < (g + 1u) * p.cout_g; co++) {
                sum += a[((n * p.cout + co) * p.ho + oy) * p.wo + ox] * b[((co * p.cin_g + cl) * p.kh + ky) * p.kw + kx];
            }
        }
    }
    out[i] = masked(i, sum);
}

// Tile: CT input channels of one group x 4 input pixels ix = r + s*(4*tt + j), j = 0..3, of one
// row. Pixels a stride apart map to neighbouring output columns through the same kernel tap,
// so the whole tile shares every divisibility test and reads 4 neighbouring dy values.
// Item order (fastest first): pixel tile (residue r, then tt), row, channel tile, image.
@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let xt = t % p.xtiles;
    let iy = (t / p.xtiles) % p.h;
    let rest = t / (p.xtiles * p.h);
    let tiles = (p.cin / p.cin_g) * p.ctiles;
    let ct = rest % tiles;
    let n = rest / tiles;
    let g = ct / p.ctiles;
    let cl0 = (ct % p.ctiles) * CT;
    let ksz = p.kh * p.kw;
    // Tile channels past the group's end re-read the last channel's weights; never stored.
    let w0 = cl0 * ksz;
    let w1 = min(cl0 + 1u, p.cin_g - 1u) * ksz;
    let w2 = min(cl0 + 2u, p.cin_g - 1u) * ksz;
    let w3 = min(cl0 + 3u, p.cin_g - 1u) * ksz;
    let s = i32(p.stride);
    let ix0 = xt % p.stride + p.stride * 4u * (xt / p.stride);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = i32(iy + p.pad) - i32(ky * p.dil);
        if (ty < 0 || ty % s != 0 || ty / s >= i32(p.ho)) { continue; }
        let oy = u32(ty / s);
        for (var kx = 0u; kx < p.kw; kx++) {
            // tx may be negative for the first pixels of the tile; later ones may still land.
            let tx = i32(ix0 + p.pad) - i32(kx * p.dil);
            if (tx % s != 0) { continue; }
            let ox0 = tx / s;
            let k = ky * p.kw + kx;
            for (var co = g * p.cout_g; co < (g + 1u) * p.cout_g; co++) {
                let row = ((n * p.cout + co) * p.ho + oy) * p.wo;
                let dv = vec4<f32>(load_a(row, ox0, p.wo), load_a(row, ox0 + 1, p.wo), load_a(row, ox0 + 2, p.wo), load_a(row, ox0 + 3, p.wo));
                let wc = co * p.cin_g * ksz + k;
                a0 += dv * b[wc + w0];
                if (CT > 1u) { a1 += dv * b[wc + w1]; }
                if (CT > 2u) { a2 += dv * b[wc + w2]; }
                if (CT > 3u) { a3 += dv * b[wc + w3]; }
            }
        }
    }
    let plane = p.h * p.w;
    let x0 = ((n * p.cin + g * p.cin_g + cl0) * p.h + iy) * p.w;
    store_strided(x0, ix0, a0);
    if (CT > 1u && cl0 + 1u < p.cin_g) { store_strided(x0 + plane, ix0, a1); }
    if (CT > 2u && cl0 + 2u < p.cin_g) { store_strided(x0 + 2u * plane, ix0, a2); }
    if (CT > 3u && cl0 + 3u < p.cin_g) { store_strided(x0 + 3u * plane, ix0, a3); }
}

// Gradient of the weight, stage 1: partial sums over chunk c of the N*Ho output rows, in
// order, into out[c * nw + wi]. Tile: CT output channels of one group at one (cl, ky, kx),
// sharing every x load. The valid output columns of a tap are one range, found once, so the
// inner loop has no bounds tests. Item order: tap fastest, then cl, channel tile, chunk.
@compute @workgroup_size(WG)
fn weight_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = flat_id(wid, nwg, lid);
    if (t >= p.total) { return; }
    let ksz = p.kh * p.kw;
    let tiles = (p.cout / p.cout_g) * p.ctiles * p.cin_g * ksz;
    let c = t / tiles;
    let k = t % ksz;
    let kx = k % p.kw;
    let ky = k / p.kw;
    let cl = (t / ksz) % p.cin_g;
    let ct = (t % tiles) / (ksz * p.cin_g);
    let g = ct / p.ctiles;
    let gend = (g + 1u) * p.cout_g;
    let co0 = g * p.cout_g + (ct % p.ctiles) * CT;
    let ci = g * p.cin_g + cl;
    // Tile channels past the group's end re-read the last channel's dy; never stored.
    let plane = p.ho * p.wo;
    let d1 = (min(co0 + 1u, gend - 1u) - co0) * plane;
    let d2 = (min(co0 + 2u, gend - 1u) - co0) * plane;
    let d3 = (min(co0 + 3u, gend - 1u) - co0) * plane;
    // Columns ox with 0 <= ox*s - o < W, where o = pad - kx*dil.
    let s = i32(p.stride);
    let o = i32(p.pad) - i32(kx * p.dil);
    let lo = select(0, (o + s - 1) / s, o > 0);
    let e = i32(p.w) - 1 + o;
    let hi = select(0, min(i32(p.wo), e / s + 1), e >= 0);
    let ix_lo = u32(lo * s - o);
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    let r1 = min((c + 1u) * p.chunk, p.len);
    for (var row = c * p.chunk; row < r1; row++) {
        let n = row / p.ho;
        let oy = row % p.ho;
        let iy = i32(oy * p.stride + ky * p.dil) - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        let dr = ((n * p.cout + co0) * p.ho + oy) * p.wo;
        var xi = ((n * p.cin + ci) * p.h + u32(iy)) * p.w + ix_lo;
        for (var ox = u32(lo); ox < u32(hi); ox++) {
            let xv = act(a[xi]);
            a0 += b[dr + ox] * xv;
            if (CT > 1u) { a1 += b[dr + d1 + ox] * xv; }
            if (CT > 2u) { a2 += b[dr + d2 + ox] * xv; }
            if (CT > 3u) { a3 += b[dr + d3 + ox] * xv; }
            xi += p.stride;
        }
    }
    let wsz = p.cin_g * ksz;
    let at = c * p.nw + co0 * wsz + cl * ksz + k;
    out[at] = a0;
    if (CT > 1u && co0 + 1u < gend) { out[at + wsz] = a1; }
    if (CT > 2u && co0 + 2u < gend) { out[at + 2u * wsz] = a2; }
    if (CT > 3u && co0 + 3u < gend) { out[at + 3u * wsz] = a3; }
}

// Stage 2: dw[wi] = sum of the chunks' partial sums, in chunk order.
@compute @workgroup_size(WG)
fn weight_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let wi = flat_id(wid, nwg, lid);
    if (wi >= p.nw) { return; }
    var sum = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        sum += a[c * p.nw + wi];
    }
    out[wi] = sum;
}
