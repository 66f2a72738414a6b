//! A checkpoint is two files: the weights (`supernet.safetensors`) and a small `state.json` that
//! names the epoch and holds the weights file's length and FNV-1a 64 hash. They are written in
//! that order, each atomically, so `state.json` is the commit record: a state whose weights file
//! does not hash to what it says is caught instead of silently pairing one epoch's state with
//! another epoch's weights.
//!
//! A kill between the two writes leaves new weights beside the previous state. That case is
//! recognised and recovered, not reported as corruption: the weights file's metadata carries
//! its own epoch and state, and the hash of the checkpoint it supersedes (`cellnas.supersedes`);
//! when that hash is the one `state.json` holds, the weights file is the newer complete
//! checkpoint and is returned with its own state. Any other mismatch is an error.

use super::atomic::{write_atomic, write_json_atomic};
use super::tensors::{decode_tensors, encode_tensors, fnv1a64, NamedTensor};
use super::RunDir;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT: &str = "cellnas-checkpoint-1";
const META_EPOCH: &str = "cellnas.epoch";
const META_STATE: &str = "cellnas.state";
const META_SUPERSEDES: &str = "cellnas.supersedes";
const META_RUN_ID: &str = "cellnas.run_id";

/// `state.json`.
#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    epoch: u64,
    weights: String,
    weights_bytes: u64,
    /// Hex, since a u64 does not survive JSON readers that use doubles.
    weights_fnv1a64: String,
    /// The run's id (manifest.rs); absent in checkpoints of an older cellnas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    state: Value,
}

/// Save `tensors` and `state` as the run's checkpoint, replacing the previous one. `state` must
/// be a JSON object with an integer `"epoch"`; it comes back as is from [`load_checkpoint`].
pub fn save_checkpoint(run: &RunDir, tensors: &[NamedTensor], state: &Value) -> Result<()> {
    let state_path = run.state_path();
    let weights_path = run.checkpoint_path();
    let epoch = state.get("epoch").and_then(Value::as_u64).ok_or_else(|| {
        Error::Invalid(format!("checkpoint state needs a non-negative integer \"epoch\" field, got {state}"))
    })?;
    let mut meta = BTreeMap::new();
    meta.insert(META_EPOCH.to_string(), epoch.to_string());
    meta.insert(META_STATE.to_string(), state.to_string());
    if let Some(id) = run.run_id() {
        meta.insert(META_RUN_ID.to_string(), id.to_string());
    }
    if let Some(previous) = read_state(&state_path)? {
        meta.insert(META_SUPERSEDES.to_string(), previous.weights_fnv1a64);
    }
    let bytes =
        encode_tensors(tensors, &meta).map_err(|message| Error::Checkpoint { path: weights_path.clone(), message })?;
    let record = StateFile {
        format: FORMAT.into(),
        epoch,
        weights: file_name(&weights_path),
        weights_bytes: bytes.len() as u64,
        weights_fnv1a64: hex(fnv1a64(&bytes)),
        run_id: run.run_id().map(str::to_string),
        state: state.clone(),
    };
    write_atomic(&weights_path, &bytes)?;
    write_json_atomic(&state_path, &record)
}

/// The run's last complete checkpoint as `(tensors, state)`, or `None` when it has none yet.
/// Errors name the file: a missing or corrupt weights file, an unreadable `state.json`, or a
/// weights file that is not the one `state.json` describes (and not its recoverable successor,
/// see the module docs).
pub fn load_checkpoint(run: &RunDir) -> Result<Option<(Vec<NamedTensor>, Value)>> {
    let state_path = run.state_path();
    let weights_path = run.checkpoint_path();
    let state = read_optional(&state_path)?;
    let Some(bytes) = read_optional(&weights_path)? else {
        return match state.as_deref().map(|b| parse_state(&state_path, b)).transpose()? {
            None => Ok(None),
            Some(s) => Err(Error::Checkpoint {
                path: weights_path,
                message: format!("missing, but {} names a checkpoint of epoch {}", state_path.display(), s.epoch),
            }),
        };
    };
    decode_checkpoint(run, state.as_deref(), &bytes).map(Some)
}

/// [`load_checkpoint`] on the bytes of the run's `state.json` (`None`: no such file) and of
/// its weights file; `run` names the files in errors. Pure, so it can be fuzzed.
pub fn decode_checkpoint(run: &RunDir, state: Option<&[u8]>, bytes: &[u8]) -> Result<(Vec<NamedTensor>, Value)> {
    let state_path = run.state_path();
    let weights_path = run.checkpoint_path();
    let state = state.map(|b| parse_state(&state_path, b)).transpose()?;
    let corrupt = |message| Error::Checkpoint { path: weights_path.clone(), message };
    let (tensors, meta) = decode_tensors(bytes).map_err(corrupt)?;
    let hash = hex(fnv1a64(bytes));
    check_run_id(run, &weights_path, meta.get(META_RUN_ID).map(String::as_str))?;
    if let Some(s) = &state {
        check_run_id(run, &state_path, s.run_id.as_deref())?;
        if s.weights_fnv1a64 == hash && s.weights_bytes == bytes.len() as u64 {
            check_state(&state_path, s, &meta)?;
            return Ok((tensors, s.state.clone()));
        }
    }
    // Not the weights state.json describes: only the successor of that checkpoint (or the very
    // first checkpoint, when there is no state.json yet) written by a run killed before it could
    // commit state.json is accepted, with the state stored inside it.
    let supersedes = meta.get(META_SUPERSEDES);
    let successor = match &state {
        Some(s) => supersedes == Some(&s.weights_fnv1a64),
        None => supersedes.is_none(),
    };
    if let (true, Some(own)) = (successor, meta.get(META_STATE)) {
        let own: Value = serde_json::from_str(own)
            .map_err(|e| corrupt(format!("metadata {META_STATE} is not valid JSON: {e}")))?;
        return Ok((tensors, own));
    }
    let weights_epoch = meta.get(META_EPOCH).map_or("an unknown epoch".to_string(), |e| format!("epoch {e}"));
    Err(corrupt(match &state {
        Some(s) => format!(
            "holds {weights_epoch} (hash {hash}, {} bytes) but {} describes the checkpoint of epoch {} (hash {}, {} \
             bytes): the weights come from another checkpoint; refusing to mix them",
            bytes.len(),
            state_path.display(),
            s.epoch,
            s.weights_fnv1a64,
            s.weights_bytes
        ),
        None => format!(
            "holds {weights_epoch} but {} is missing and the weights are not a first checkpoint cellnas wrote",
            state_path.display()
        ),
    }))
}

/// A checkpoint file must carry the run's id: one from another run (or a state.json copied
/// from one) would otherwise be a consistent pair and load silently.
fn check_run_id(run: &RunDir, path: &Path, found: Option<&str>) -> Result<()> {
    let Some(want) = run.run_id() else { return Ok(()) };
    match found {
        Some(id) if id == want => Ok(()),
        None if run.legacy() => Ok(()),
        found => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "belongs to {} but this run's manifest.json names run {want}: it was copied from another run folder; \
                 refusing to load it",
                found.map_or("no run (written without a run id)".to_string(), |id| format!("run {id}"))
            ),
        }),
    }
}

/// The weights file (hash-verified) stores the state it was saved with; state.json must say the
/// same, so an edited epoch or progress is caught instead of retraining on trained weights.
fn check_state(path: &Path, s: &StateFile, meta: &BTreeMap<String, String>) -> Result<()> {
    let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
    if s.state.get("epoch").and_then(Value::as_u64) != Some(s.epoch) {
        return Err(bad(format!("epoch {} disagrees with its state's epoch {}: the file was edited", s.epoch, s.state["epoch"])));
    }
    if let Some(own) = meta.get(META_STATE) {
        let own: Value = serde_json::from_str(own).map_err(|e| bad(format!("the weights' stored state is not valid JSON: {e}")))?;
        if own != s.state {
            return Err(bad(format!(
                "its state {} differs from the one saved inside the weights file ({own}): state.json was changed after \
                 cellnas wrote it; refusing to resume from it",
                s.state
            )));
        }
    }
    Ok(())
}

/// `state.json`, or `None` when there is none yet.
fn read_state(path: &Path) -> Result<Option<StateFile>> {
    read_optional(path)?.map(|b| parse_state(path, &b)).transpose()
}

/// The file's bytes, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<StateFile> {
    let state: StateFile = serde_json::from_slice(bytes)
        .map_err(|e| Error::Checkpoint { path: path.to_path_buf(), message: format!("not a checkpoint state: {e}") })?;
    if state.format != FORMAT {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("checkpoint format '{}', this cellnas reads '{FORMAT}'", state.format),
        });
    }
    Ok(state)
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
