//! cellnas: neural architecture search whose training and evaluation math runs in WGSL compute
//! shaders through wgpu, on any adapter.

pub mod autotune;
pub mod bench;
pub mod data;
pub mod draw;
pub mod error;
pub mod export;
pub mod gpu;
pub mod host_memory;
pub mod morph;
pub mod nn;
pub mod ops;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod search;
pub mod space;
pub mod stats;
pub mod supernet;
pub mod tensor;
pub mod train;
pub mod tune;

pub use error::{Error, Result};
pub use gpu::Gpu;
pub use tensor::Tensor;
