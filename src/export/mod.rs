//! Trained networks outside their run folder: `model` (a network with its input normalisation
//! and class names, from a `cellnas train` run or a one-file safetensors model), `predict`
//! (logits on the GPU's evaluation path), `images` (what predict reads), `table` (its CSV and
//! JSON), `onnx` (the network as ONNX, from the ops the network code records) and `proto` (the
//! protobuf encoding ONNX needs).

pub mod images;
pub mod model;
pub mod onnx;
pub mod predict;
mod proto;
pub mod table;

pub use model::{Input, TrainedNet};
