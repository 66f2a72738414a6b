// Prepended to every cellnas shader (see src/gpu/pipeline.rs).

// Workgroup size of 1-D kernels; the host picks it from the adapter's limits.
override WG: u32 = 64u;

// Flat invocation index for 1-D grids that the host folded into x and y to stay under the
// per-dimension workgroup-count limit (Gpu::grid).
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}
