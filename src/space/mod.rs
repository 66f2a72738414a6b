//! The search spaces, without any GPU: DARTS (ops, genotypes, their DARTS text and versioned
//! JSON forms), NAS-Bench-201 cells and the ENAS macro space, each with the sampler/mutator
//! used by random search and regularized evolution. docs/spec.md describes the file format,
//! docs/ops.md the DARTS ops.

mod arch;
mod config;
mod darts;
mod genotype;
mod macro_space;
mod nb201;
mod op;
mod search;
mod spec;
mod text;

pub use arch::{Arch, Space};
pub use config::{space_from_name, SpaceConfig, SPACES};
pub use genotype::{Cell, Edge, Genotype, MAX_NODES};
pub use macro_space::{MacroArch, MacroLayer, MacroOp, MacroSpace, MACRO_MAX_LAYERS};
pub use nb201::{Nb201Cell, Nb201Op, Nb201Space, NB201_NODES};
pub use op::Op;
pub use search::SearchSpace;
pub use spec::Spec;
pub use text::{read_spec_text, spec_text_from, MAX_SPEC_BYTES};
