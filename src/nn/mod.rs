//! Networks built from the kernels: a tape (`graph`), named parameters (`params`), and the
//! DARTS cells, supernet and stand-alone networks (`darts`).

pub mod darts;
pub mod graph;
pub mod nb201;
pub mod params;

pub use graph::{Graph, Mode, Var};
pub use nb201::Nb201Net;
pub use params::{BnStats, Init, ParamStore};

use crate::error::Result;
use crate::space::Arch;

/// Logits of `x` through the network `arch` defines (its space's builder).
pub fn forward(g: &mut Graph, cfg: &darts::NetConfig, arch: &Arch, x: Var) -> Result<Var> {
    match arch {
        Arch::Darts(genotype) => darts::forward(g, cfg, genotype, x),
    }
}

/// Parameters and forward FLOPs per image of the network `arch` defines.
pub fn size(cfg: &darts::NetConfig, arch: &Arch, h: usize, w: usize) -> Result<(u64, u64)> {
    match arch {
        Arch::Darts(genotype) => darts::size(cfg, genotype, h, w),
    }
}

/// Every tensor a checkpoint of the network `arch` defines holds, by name, with its size.
pub fn expected_tensors(cfg: &darts::NetConfig, arch: &Arch, h: usize, w: usize) -> Result<std::collections::BTreeMap<String, usize>> {
    match arch {
        Arch::Darts(genotype) => darts::expected_tensors(cfg, genotype, h, w),
    }
}

/// A clear error when a batch of `batch` images of the network `arch` defines does not fit
/// the adapter (or, on a CPU adapter, the host's memory).
pub fn check_batch_fits(gpu: &crate::gpu::Gpu, cfg: &darts::NetConfig, arch: &Arch, batch: usize, h: usize, w: usize) -> Result<()> {
    match arch {
        Arch::Darts(genotype) => darts::check_batch_fits(gpu, cfg, genotype, batch, h, w),
    }
}
