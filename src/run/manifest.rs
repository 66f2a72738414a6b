//! `manifest.json`: what makes a run folder one verified whole.
//!
//! It holds the run's id (random, 128 bits, fixed at creation) and the length and FNV-1a hash of
//! each file cellnas finished writing that is read back later as a whole (config, final
//! weights and metrics, best architecture, kernel choices, rank results). Each such file is
//! written atomically and then recorded here, also atomically, so the manifest is the commit
//! record: a file that is recorded and differs was changed after cellnas wrote it (a bit flip,
//! an edit, a copy from elsewhere). The checkpoint pair has its own commit record (`state.json`,
//! see checkpoint.rs) and carries the run id inside both files, so weights or a state copied
//! from another run are refused even when they are a consistent pair. The append-only logs
//! carry a checksum per line (jsonl.rs).
//!
//! A kill between a file's write and its record leaves it unrecorded: readers refuse it (and
//! say how to finish the run), a resumed writer rewrites it. A folder without a manifest was
//! written by an older cellnas: readers warn that it is not verified, and a resume adopts it
//! (writes a manifest whose `adopted` flag also lets its checkpoints without a run id load).

use super::atomic::write_json_atomic;
use super::tensors::fnv1a64;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "cellnas-run-1";

/// Files that, once they exist, must be recorded: a reader meeting one unrecorded refuses it.
/// (Checkpoints, logs and the manifest itself verify themselves; temp files are ignored.)
pub const RECORDED: &[&str] = &[
    "config.json",
    "weights.safetensors",
    "metrics.json",
    "best.json",
    "best.genotype.txt",
    "kernels.json",
    "archs.json",
    "inherited.json",
    "rank.json",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub bytes: u64,
    /// Hex, since a u64 does not survive JSON readers that use doubles.
    pub fnv1a64: String,
}

impl FileEntry {
    pub fn of(bytes: &[u8]) -> FileEntry {
        FileEntry { bytes: bytes.len() as u64, fnv1a64: format!("{:016x}", fnv1a64(bytes)) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub run_id: String,
    pub created_unix: u64,
    /// Written by a resume for a folder an older cellnas made (see the module docs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    pub fn new(adopted: bool) -> Manifest {
        let created_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Manifest { format: FORMAT.into(), run_id: new_run_id(), created_unix, adopted, files: BTreeMap::new() }
    }

    /// The folder's manifest, or None when it has none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Manifest::parse(&path, &bytes).map(Some)
    }

    /// A manifest from its bytes; `path` names it in errors. Pure, so it can be fuzzed.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let bad = |message: String| Error::Config { path: path.to_path_buf(), message };
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a cellnas run manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(bad(format!("manifest format '{}', this cellnas reads '{FORMAT}'", m.format)));
        }
        if m.run_id.len() != 32 || !m.run_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("run_id '{}' is not 32 hex digits", m.run_id)));
        }
        Ok(m)
    }

    /// Compact JSON of the manifest (what `parse` reads back).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json_atomic(&dir.join(MANIFEST), self)
    }

    /// Checks every recorded file against its entry, and that no file of [`RECORDED`] exists
    /// unrecorded. A writer (`resume`) tolerates missing and unrecorded files, which it
    /// rewrites; a reader does not. Errors name the file and what differs.
    pub fn verify(&self, dir: &Path, writer: bool) -> Result<()> {
        let bad = |name: &str, message: String| Error::Config { path: dir.join(name), message };
        for (name, want) in &self.files {
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if writer {
                        continue;
                    }
                    return Err(bad(name, format!("missing, but {MANIFEST} records it ({} bytes): the run folder is incomplete", want.bytes)));
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            let got = FileEntry::of(&bytes);
            if got != *want {
                return Err(bad(
                    name,
                    format!(
                        "changed after cellnas wrote it: {} bytes with hash {}, {MANIFEST} records {} bytes with hash {} \
                         (a damaged disk, an edit or a file copied from another run); restore it or start a new run",
                        got.bytes, got.fnv1a64, want.bytes, want.fnv1a64
                    ),
                ));
            }
        }
        if !writer {
            for name in RECORDED.iter().filter(|n| !self.files.contains_key(**n)) {
                if dir.join(name).exists() {
                    return Err(bad(
                        name,
                        format!(
                            "is not recorded in {MANIFEST}: it was copied in, or the run was killed while writing it \
                             (`--resume` the run to finish it)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// 128 random bits as hex: std's `RandomState` is seeded from the OS, mixed with the time and
/// pid so two runs started at once differ too. Not a secret; it only has to differ between runs.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_u64(salt);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}
