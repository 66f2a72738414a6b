//! The `workgroup` variant of the batch-norm reductions (autotune choice points
//! `batch_norm.forward <HxW>` / `batch_norm.backward <HxW>`): one workgroup per (channel, slab)
//! with a fixed-order tree in workgroup memory, for GPUs, where the default `units` kernels
//! leave most lanes idle. Shader: `shaders/batchnorm_wg.wgsl`. Stage 2 is the default path's
//! own per-channel kernels, so only the reduction order differs between the variants.
//!
//! The launchers in `batchnorm.rs` ask [`crate::autotune::batch_norm_workgroup`]; nothing here
//! is used without a cache entry (or a test) choosing it.

use super::batchnorm::{Geometry, BACKWARD_FINAL, MEAN_FINAL, VAR_FINAL};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Kernel, Step};
use crate::kernel;
use crate::tensor::Tensor;

const SUM_WG: Kernel = kernel!("batchnorm_wg.wgsl", "sum_wg", [1: Read, 3: ReadWrite]);
const SQ_WG: Kernel = kernel!("batchnorm_wg.wgsl", "sq_wg", [1: Read, 6: Read, 3: ReadWrite]);
const BACKWARD_WG: Kernel = kernel!("batchnorm_wg.wgsl", "backward_wg", [1: Read, 2: Read, 6: Read, 3: ReadWrite]);

/// Values each lane sums serially before the tree, at most: with 256 lanes a channel of up to
/// 65536 values (every DARTS layer at batch 64) is one slab, so stage 2 adds a single value;
/// longer channels get more slabs rather than longer serial runs.
const PER_LANE: usize = 256;

/// Workgroup size of the reductions on `gpu`: a power of two (the tree halves it), within the
/// 1-D size the adapter allows and with room for the backward's two f32 arrays in the
/// adapter's workgroup memory.
pub fn workgroup_size(gpu: &Gpu) -> u32 {
    let mut wg = 1u32 << (31 - gpu.wg1d().leading_zeros());
    while wg > 1 && 8 * wg > gpu.limits.max_compute_workgroup_storage_size {
        wg /= 2;
    }
    wg
}

/// Slabs per channel and values per slab (a multiple of the workgroup size) for `m` values
/// per channel with workgroups of `wg`.
pub fn slabs(m: usize, wg: u32) -> (usize, usize) {
    let wg = wg as usize;
    let slabs = m.div_ceil(wg * PER_LANE).max(1);
    let slab = m.div_ceil(slabs).next_multiple_of(wg);
    (m.div_ceil(slab), slab)
}

/// The geometry of the workgroup kernels: stage-2 partials laid out per channel, and the
/// cursor stepping WG values at a time.
fn plan(gpu: &Gpu, g: &Geometry) -> Result<(Geometry, u32)> {
    let wg = workgroup_size(gpu);
    let p = &g.params;
    let (parts, slab) = slabs(p.m as usize, wg);
    let groups = g.c * parts;
    if groups > u32::MAX as usize || slab > u32::MAX as usize / 2 {
        return Err(Error::Invalid(format!("batch_norm: {groups} workgroups of {wg} do not fit 32-bit indexing")));
    }
    let mut w = g.clone();
    w.params.parts = parts as u32;
    w.params.pc = parts as u32;
    w.params.pj = 1;
    w.params.dn = wg / p.hw;
    w.params.ds = wg % p.hw;
    w.params.slab = slab as u32;
    Ok((w, wg))
}

fn reduce(step: &mut Step, w: &Geometry, wg: u32, k: &Kernel, bufs: &[&Tensor]) -> Result<()> {
    let groups = step.gpu().grid(w.c as u32 * w.params.parts, 1);
    let bufs: Vec<_> = bufs.iter().map(|t| &t.buf).collect();
    step.dispatch(k, &[("WG", wg as f64)], &w.params, &bufs, groups)
}

/// Training statistics: save_mean, save_inv_std, the running statistics and the normalisation
/// coefficients, as the default path's reductions and finals leave them.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_stats(
    step: &mut Step,
    g: &Geometry,
    x: &Tensor,
    save_mean: &Tensor,
    save_inv_std: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    coef: &Tensor,
) -> Result<()> {
    let (w, wg) = plan(step.gpu(), g)?;
    let part = Tensor::empty(step.gpu(), &[g.c * w.params.parts as usize]);
    reduce(step, &w, wg, &SUM_WG, &[x, &part])?;
    w.dispatch_per_channel(step, &MEAN_FINAL, &[x, &part, save_mean])?;
    reduce(step, &w, wg, &SQ_WG, &[x, save_mean, &part])?;
    w.dispatch_per_channel(step, &VAR_FINAL, &[&part, save_mean, save_inv_std, running_mean, running_var, coef])
}

/// Backward sums into the coefficient buffer, as backward_units / backward_partial and
/// backward_final leave it.
pub(super) fn backward_stats(step: &mut Step, g: &Geometry, x: &Tensor, dy: &Tensor, save_mean: &Tensor, save_inv_std: &Tensor, coef: &Tensor) -> Result<()> {
    let (w, wg) = plan(step.gpu(), g)?;
    let part = Tensor::empty(step.gpu(), &[2 * g.c * w.params.parts as usize]);
    reduce(step, &w, wg, &BACKWARD_WG, &[x, dy, save_mean, &part])?;
    w.dispatch_per_channel(step, &BACKWARD_FINAL, &[&part, save_mean, save_inv_std, coef])
}
