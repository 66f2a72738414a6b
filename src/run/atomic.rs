//! Crash-safe file replacement. A reader (or a resumed run) must see either the old file or the
//! new one, never a half-written mix, whenever the process is killed or the machine loses power.
//! So the bytes go to a temp file in the same directory (a rename is only atomic within one
//! filesystem), the temp file is fsynced (so the rename cannot reach disk before the data), it is
//! renamed over the target, and the directory is fsynced (so the rename itself is durable).

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replace `path` with `bytes` atomically and durably (see the module docs). On error the old
/// content of `path`, if any, is intact and the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    PendingWrite::stage(path, bytes)?.commit()
}

/// [`write_atomic`] of pretty-printed JSON with a trailing newline (these files are small and
/// meant to be read by people too).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Invalid(format!("{}: cannot serialize to JSON: {e}", path.display())))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The first half of [`write_atomic`]: the new bytes are on disk in a temp file, the target is
/// untouched. [`PendingWrite::commit`] is the second half. Dropping it uncommitted removes the
/// temp file; a process killed in between leaves the temp file behind and the target intact
/// (a resumed [`RunDir`](super::RunDir) sweeps such leftovers).
#[derive(Debug)]
pub struct PendingWrite {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingWrite {
    /// Write `bytes` to a new temp file beside `path` (`.NAME.tmp-PID-N`) and fsync it.
    pub fn stage(path: &Path, bytes: &[u8]) -> Result<PendingWrite> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
        // The pid keeps two processes apart, the counter two threads of one process.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
        let temp = parent_dir(path).join(temp_name);
        // From here on, Drop removes the temp file whatever goes wrong.
        let pending = PendingWrite { temp, target: path.to_path_buf(), committed: false };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&pending.temp)
            .map_err(|e| Error::io(&pending.temp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&pending.temp, e))?;
        file.sync_all().map_err(|e| Error::io(&pending.temp, e))?;
        Ok(pending)
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Rename the temp file over the target and fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.committed = true;
        sync_dir(parent_dir(&self.target))
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// `path`'s directory; a bare file name lives in the current directory.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Make the directory's entries (a rename, a new file) durable. Only Unix can open a directory
/// for fsync; elsewhere the rename is still atomic, just not guaranteed durable at return.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether a file name is one of [`PendingWrite`]'s temp files, and the pid that made it.
pub(crate) fn temp_file_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Remove temp files that killed processes left in `dir` (not this process's: another thread
/// may be mid-write). Returns how many were removed. The lock's own temp files are left to
/// the lock (super::lock): a process being refused the lock may be writing one right now.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| !super::lock::is_lock_file(n)).and_then(temp_file_pid) else { continue };
        if pid != std::process::id() && entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
