//! The run folder and everything cellnas writes to disk. A run folder holds:
//!
//! | file | what | written |
//! | --- | --- | --- |
//! | `config.json` | the run's config, as given at creation | once, atomically |
//! | `supernet.safetensors` (search), `checkpoint.safetensors` (train) | the latest checkpoint's weights, momentum, BN statistics | atomically, before `state.json` |
//! | `state.json` | the latest checkpoint's state: epoch, weights hash, caller's state | atomically, last |
//! | `metrics.jsonl` | one record per line (per epoch), each with a CRC-32 (see `jsonl`) | appended, fsynced |
//! | `history.jsonl` | one record per evaluated architecture, each with a CRC-32 | appended, fsynced |
//! | `best.json`, `best.genotype.txt` | the best architecture so far | atomically |
//! | `kernels.json` | the kernel choices the run started with (crate::pipeline::kernels); a resume uses them | once, atomically |
//! | `manifest.json` | the run id and the hash of every finished file above that is read back whole (manifest.rs) | atomically, after each such file |
//! | `lock` | the process writing the run (pid, start time, host, command); see [`lock`] | while a writer runs, removed when it ends |
//!
//! Every write either lands whole or not at all, so a run killed at any point resumes from its
//! last complete checkpoint. One process writes a run at a time: [`RunDir::create`] and
//! [`RunDir::resume`] take the folder's lock and refuse a folder another live process holds.
//! Readers open a run with [`RunDir::verified`], which checks the manifest, so a damaged,
//! edited or foreign file is refused by name instead of being used.
//!
//! Resuming checks that the run is continued with the config it was started with. Fields under
//! a key named `"resume_ignore"` (at any depth) are not compared: put there what may
//! legitimately change between the start and the resume, such as the output path or the adapter
//! name, e.g. `{"train": {..}, "resume_ignore": {"adapter": "llvmpipe"}}`.

mod atomic;
mod checkpoint;
mod jsonl;
pub mod lock;
mod manifest;
mod tensors;

pub use atomic::{write_atomic, write_json_atomic, PendingWrite};
pub use checkpoint::{decode_checkpoint, load_checkpoint, save_checkpoint};
pub use jsonl::{append_jsonl, jsonl_line, read_jsonl};
pub(crate) use jsonl::parse_jsonl;
pub use manifest::{FileEntry, Manifest, MANIFEST, RECORDED};
pub use tensors::{decode_tensors, download_named, encode_tensors, load_tensors, save_tensors, NamedTensor};

use crate::error::{Error, Result};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key whose subtree [`config_diff`] (and so [`RunDir::resume`]) does not compare.
pub const RESUME_IGNORE: &str = "resume_ignore";

/// A run folder (see the module docs for its files).
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
    /// File name of the checkpoint's weights (a search's is its supernet).
    checkpoint: &'static str,
    /// The manifest's run id; None for a folder opened unverified or written by an older
    /// cellnas and only read.
    run_id: Option<String>,
    /// Checkpoints without a run id are accepted (an older cellnas wrote them).
    legacy: bool,
    /// A writer's hold on the folder, released when the last clone is dropped; `None` for a
    /// reader ([`RunDir::open`]).
    lock: Option<Arc<lock::LockGuard>>,
}

impl RunDir {
    /// Start a new run in `dir`: create the folder if needed and write `config.json`. A folder
    /// that already has files is refused, with a message that says whether it is another
    /// cellnas run (to resume, or delete) or something else (never written into). The run
    /// holds the folder's lock until it (and every clone) is dropped.
    pub fn create(dir: &Path, config: &Value) -> Result<RunDir> {
        let mut run = RunDir::open(dir);
        // Checked before locking, so that a foreign folder never gets even a lock file...
        if !run.refuse_unless_empty()? {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            // Make the new folder's own entry durable, as the files inside it will be.
            atomic::sync_dir(atomic::parent_dir(dir))?;
        }
        run.lock = Some(Arc::new(lock::acquire(dir)?));
        // ...and again once locked: another process may have started a run here meanwhile.
        run.refuse_unless_empty()?;
        write_json_atomic(&run.config_path(), config)?;
        let mut manifest = Manifest::new(false);
        manifest.files.insert("config.json".into(), FileEntry::of(&fs::read(run.config_path()).map_err(|e| Error::io(&run.config_path(), e))?));
        manifest.write(dir)?;
        Ok(RunDir { run_id: Some(manifest.run_id), ..run })
    }

    /// Refuses a folder with files (other than a lock) in it; whether the folder exists.
    fn refuse_unless_empty(&self) -> Result<bool> {
        let dir = &self.dir;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if entry.file_name().to_str().is_some_and(lock::is_lock_file) {
                continue;
            }
            let message = if self.config_path().is_file() {
                "already holds a cellnas run (it has config.json); resume it, or delete the folder or \
                 choose another one to start a new run"
            } else {
                "is not empty and is not a cellnas run (no config.json); cellnas will not write into \
                 it: choose an empty or new folder"
            };
            return Err(Error::Config { path: dir.to_path_buf(), message: message.into() });
        }
        Ok(true)
    }

    /// Continue the run in `dir`, which must hold a `config.json` equal to `config` (except
    /// under `"resume_ignore"` keys); otherwise the error lists each differing field as
    /// `path: stored X, given Y`. The run holds the folder's lock (see [`RunDir::create`]), and
    /// once it does, temp files left by a killed writer are removed.
    pub fn resume(dir: &Path, config: &Value) -> Result<RunDir> {
        let mut run = RunDir::open(dir);
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
        // Before the config check, so that a second writer hears that the run is busy, which
        // is the news whatever its flags.
        run.lock = Some(Arc::new(lock::acquire(dir)?));
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
        // Only now: before the lock, those temp files could be a live writer's.
        atomic::remove_stale_temps(dir)?;
        let manifest = match Manifest::read(dir)? {
            Some(m) => {
                m.verify(dir, true)?;
                m
            }
            None => {
                // Written by an older cellnas (or killed between config.json and the manifest).
                let mut m = Manifest::new(true);
                m.files.insert("config.json".into(), FileEntry::of(&fs::read(&path).map_err(|e| Error::io(&path, e))?));
                m.write(dir)?;
                m
            }
        };
        Ok(RunDir { run_id: Some(manifest.run_id), legacy: manifest.adopted, ..run })
    }

    /// A run folder to read, verified: every file its manifest records must be intact and every
    /// finished file recorded (see manifest.rs); checkpoints must carry its run id. A folder
    /// without a manifest (an older cellnas) is read with a warning on stderr.
    pub fn verified(dir: &Path) -> Result<RunDir> {
        let run = RunDir::open(dir);
        if !dir.join("config.json").is_file() {
            return Err(Error::Config { path: dir.to_path_buf(), message: "is not a cellnas run folder (no config.json)".into() });
        }
        match Manifest::read(dir)? {
            Some(m) => {
                m.verify(dir, false)?;
                Ok(RunDir { run_id: Some(m.run_id), legacy: m.adopted, ..run })
            }
            None => {
                eprintln!("warning: {} has no {MANIFEST} (written by an older cellnas): its files are not verified", dir.display());
                Ok(RunDir { legacy: true, ..run })
            }
        }
    }

    /// The run id (None: opened unverified, or an older cellnas's folder being read).
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// Whether checkpoints without a run id are accepted.
    pub(crate) fn legacy(&self) -> bool {
        self.legacy || self.run_id.is_none()
    }

    /// Writes `name` in the run folder atomically and records it in the manifest.
    pub fn write_recorded(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(name), bytes)?;
        self.record(name, bytes)
    }

    /// [`RunDir::write_recorded`] of pretty JSON.
    pub fn write_json_recorded<T: serde::Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(format!("{name}: cannot serialize to JSON: {e}")))?;
        bytes.push(b'\n');
        self.write_recorded(name, &bytes)
    }

    /// Records `name` (already written with these bytes) in the manifest. A run opened without
    /// one (unverified) records nothing.
    pub fn record(&self, name: &str, bytes: &[u8]) -> Result<()> {
        if self.run_id.is_none() {
            return Ok(());
        }
        let mut m = Manifest::read(&self.dir)?.ok_or_else(|| Error::Config {
            path: self.dir.join(MANIFEST),
            message: "missing while the run is being written (deleted by hand?)".into(),
        })?;
        m.files.insert(name.to_string(), FileEntry::of(bytes));
        m.write(&self.dir)
    }

    /// A run folder to read, not to continue (`cellnas eval`, `cellnas test`), whose
    /// `config.json` the caller has read. Nothing is checked, changed or locked: a reader may
    /// look at a run while its writer goes on (every file it reads is replaced atomically).
    pub fn open(dir: &Path) -> RunDir {
        RunDir { dir: dir.to_path_buf(), checkpoint: "supernet.safetensors", run_id: None, legacy: false, lock: None }
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
