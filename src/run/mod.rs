//! The run folder and everything cellnas writes to disk. Every write either lands whole or not
//! at all, so a run killed at any point resumes from what it last completed.

mod atomic;
mod jsonl;
mod tensors;

pub use atomic::{write_atomic, write_json_atomic, PendingWrite};
pub use jsonl::{append_jsonl, read_jsonl};
pub use tensors::{download_named, load_tensors, save_tensors, NamedTensor};
