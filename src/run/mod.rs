//! The run folder and everything cellnas writes to disk. A run folder holds:
//!
//! | file | what | written |
//! | --- | --- | --- |
//! | `config.json` | the run's config, as given at creation | once, atomically |
//! | `supernet.safetensors` (search), `checkpoint.safetensors` (train) | the latest checkpoint's weights, momentum, BN statistics | atomically, before `state.json` |
//! | `state.json` | the latest checkpoint's state: epoch, weights hash, caller's state | atomically, last |
//! | `metrics.jsonl` | one record per line (per step or epoch) | appended, fsynced |
//! | `history.jsonl` | one record per evaluated architecture | appended, fsynced |
//! | `best.json`, `best.genotype.txt` | the best architecture so far | atomically |
//! | `kernels.json` | the kernel choices the run started with (crate::pipeline::kernels); a resume uses them | once, atomically |
//!
//! Every write either lands whole or not at all, so a run killed at any point resumes from its
//! last complete checkpoint.
//!
//! Resuming checks that the run is continued with the config it was started with. Fields under
//! a key named `"resume_ignore"` (at any depth) are not compared: put there what may
//! legitimately change between the start and the resume, such as the output path or the adapter
//! name, e.g. `{"train": {..}, "resume_ignore": {"adapter": "llvmpipe"}}`.

mod atomic;
mod checkpoint;
mod jsonl;
mod tensors;

pub use atomic::{write_atomic, write_json_atomic, PendingWrite};
pub use checkpoint::{decode_checkpoint, load_checkpoint, save_checkpoint};
pub use jsonl::{append_jsonl, read_jsonl};
pub use tensors::{decode_tensors, download_named, encode_tensors, load_tensors, save_tensors, NamedTensor};

use crate::error::{Error, Result};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// The key whose subtree [`config_diff`] (and so [`RunDir::resume`]) does not compare.
pub const RESUME_IGNORE: &str = "resume_ignore";

/// A run folder (see the module docs for its files).
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
    /// File name of the checkpoint's weights (a search's is its supernet).
    checkpoint: &'static str,
}

impl RunDir {
    /// Start a new run in `dir`: create the folder if needed and write `config.json`. A folder
    /// that already has files is refused, with a message that says whether it is another
    /// cellnas run (to resume, or delete) or something else (never written into).
    pub fn create(dir: &Path, config: &Value) -> Result<RunDir> {
        let run = RunDir::open(dir);
        let refuse = |message: String| Error::Config { path: dir.to_path_buf(), message };
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(refuse(if run.config_path().is_file() {
                        "already holds a cellnas run (it has config.json); resume it, or delete the folder or \
                         choose another one to start a new run"
                            .into()
                    } else {
                        "is not empty and is not a cellnas run (no config.json); cellnas will not write into \
                         it: choose an empty or new folder"
                            .into()
                    }));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                // Make the new folder's own entry durable, as the files inside it will be.
                atomic::sync_dir(atomic::parent_dir(dir))?;
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        write_json_atomic(&run.config_path(), config)?;
        Ok(run)
    }

    /// Continue the run in `dir`, which must hold a `config.json` equal to `config` (except
    /// under `"resume_ignore"` keys); otherwise the error lists each differing field as
    /// `path: stored X, given Y`. Temp files left by a killed writer are removed.
    pub fn resume(dir: &Path, config: &Value) -> Result<RunDir> {
        let run = RunDir::open(dir);
        if !dir.is_dir() {
            return Err(Error::Config {
                path: dir.to_path_buf(),
                message: "no such run folder; start a new run there instead of resuming".into(),
            });
        }
        let path = run.config_path();
        let stored: Value = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config { path: path.clone(), message: format!("not valid JSON: {e}") })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Config {
                    path: dir.to_path_buf(),
                    message: "is not a cellnas run (no config.json), so there is nothing to resume".into(),
                })
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let diff = config_diff(&stored, config);
        if !diff.is_empty() {
            return Err(Error::Config {
                path,
                message: format!(
                    "the run was started with a different config, so it cannot be resumed with this one \
                     (start a new run to use it). Differing fields:\n  {}",
                    diff.join("\n  ")
                ),
            });
        }
        atomic::remove_stale_temps(dir)?;
        Ok(run)
    }

    /// A run folder to read, not to continue (`cellnas eval`, `cellnas test`), whose
    /// `config.json` the caller has read. Nothing is checked or changed: `resume`'s cleanup of
    /// temp files would delete those of the run's own process if it is still writing.
    pub fn open(dir: &Path) -> RunDir {
        RunDir { dir: dir.to_path_buf(), checkpoint: "supernet.safetensors" }
    }

    /// Name the checkpoint's weights file (default `supernet.safetensors`).
    pub fn with_checkpoint_file(mut self, name: &'static str) -> RunDir {
        self.checkpoint = name;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(self.checkpoint)
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn history_path(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }
    pub fn best_json_path(&self) -> PathBuf {
        self.dir.join("best.json")
    }
    /// The best genotype in DARTS text form.
    pub fn best_genotype_path(&self) -> PathBuf {
        self.dir.join("best.genotype.txt")
    }
}

/// Every field where `given` differs from `stored`, as `path: stored X, given Y` (`a.b[2]`
/// paths, compact JSON values, `(absent)` for a missing field), skipping any subtree under a
/// [`RESUME_IGNORE`] key. Numbers compare by value, so `10` equals `10.0`.
pub fn config_diff(stored: &Value, given: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(&mut out, "", Some(stored), Some(given));
    out
}

fn diff_into(out: &mut Vec<String>, path: &str, stored: Option<&Value>, given: Option<&Value>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (stored, given) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys.into_iter().filter(|k| *k != RESUME_IGNORE) {
                diff_into(out, &join(key), a.get(key), b.get(key));
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_into(out, &format!("{path}[{i}]"), a.get(i), b.get(i));
            }
        }
        // A float on either side compares as f64; two integers compare exactly.
        (Some(Value::Number(a)), Some(Value::Number(b))) if (a.is_f64() || b.is_f64()) && a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), |v| v.to_string());
            let path = if path.is_empty() { "(top level)" } else { path };
            out.push(format!("{path}: stored {}, given {}", show(a), show(b)));
        }
    }
}
