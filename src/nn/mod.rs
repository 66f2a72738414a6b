//! Networks built from the kernels: a tape (`graph`), named parameters (`params`), and the
//! DARTS cells, supernet and stand-alone networks (`darts`).

pub mod darts;
pub mod graph;
pub mod nb201;
pub mod params;

pub use graph::{Graph, Mode, Var};
pub use nb201::Nb201Net;
pub use params::{BnStats, Init, ParamStore};
