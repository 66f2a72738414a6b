//! Networks built from the kernels: a tape (`graph`), named parameters (`params`), and each
//! space's network in supernet and stand-alone form: DARTS cells (`darts`), NAS-Bench-201
//! (`nb201`), the ENAS macro chain (`macro_net`).

pub mod darts;
pub mod graph;
pub mod macro_net;
pub mod mixed;
pub mod nb201;
pub mod params;
pub mod trace;

pub use graph::{Graph, Mode, Var};
pub use macro_net::MacroNet;
pub use nb201::Nb201Net;
pub use params::{BnStats, Init, ParamStore};

use crate::error::{Error, Result};
use crate::space::Arch;
use darts::{NetConfig, NetKind};

/// Logits of `x` through the network `arch` defines (its space's builder); the network
/// family of `cfg` must be the architecture's.
pub fn forward(g: &mut Graph, cfg: &NetConfig, arch: &Arch, x: Var) -> Result<Var> {
    match (arch, cfg.kind) {
        (Arch::Darts(genotype), NetKind::Darts) => darts::forward(g, cfg, genotype, x),
        (Arch::Nb201(cell), NetKind::Nb201) => nb201::forward(g, &cfg.nb201(), cell, x),
        (Arch::Macro(arch), NetKind::Macro) => macro_net::forward(g, &cfg.macro_net(), arch, x),
        (arch, kind) => Err(Error::Invalid(format!("a {} architecture does not build a {kind:?} network", arch.space()))),
    }
}

/// A graph that only counts, with `arch`'s network recorded on `n` images of [C, H, W].
fn counted(cfg: &NetConfig, arch: &Arch, n: usize, h: usize, w: usize) -> Result<Graph<'static>> {
    Graph::record([n, cfg.in_channels, h, w], |g, x| forward(g, cfg, arch, x))
}

/// Parameters and forward FLOPs per image of the network `arch` defines.
pub fn size(cfg: &NetConfig, arch: &Arch, h: usize, w: usize) -> Result<(u64, u64)> {
    let g = counted(cfg, arch, 1, h, w)?;
    Ok((g.params_used(), g.flops as u64))
}

/// Every tensor a checkpoint of the network `arch` defines holds, by name, with its size.
pub fn expected_tensors(cfg: &NetConfig, arch: &Arch, h: usize, w: usize) -> Result<std::collections::BTreeMap<String, usize>> {
    Ok(counted(cfg, arch, 1, h, w)?.tensors_used())
}

/// A clear error when a batch of `batch` images of the network `arch` defines does not fit
/// the adapter (or, on a CPU adapter, the host's memory).
pub fn check_batch_fits(gpu: &crate::gpu::Gpu, cfg: &NetConfig, arch: &Arch, batch: usize, h: usize, w: usize) -> Result<()> {
    let g = counted(cfg, arch, 1, h, w)?;
    darts::check_counted_batch_fits(gpu, &g, batch)
}
