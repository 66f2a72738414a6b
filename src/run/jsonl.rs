//! JSON Lines logs (metrics, search history): one record per line, appended as the run goes.
//! A kill can cut only the line being appended, so on reading a bad last line without its
//! newline is dropped with a warning, while a bad line anywhere else is real corruption and an
//! error.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Append `record` as one line to `path` (created if absent), then flush and fsync so it
/// survives a crash once this returns. A partial last line left by a killed writer is cut off
/// first; otherwise the new record would be glued onto it and both lost.
pub fn append_jsonl<T: Serialize + ?Sized>(path: &Path, record: &T) -> Result<()> {
    let mut line = serde_json::to_vec(record)
        .map_err(|e| Error::Invalid(format!("{}: cannot serialize record to JSON: {e}", path.display())))?;
    line.push(b'\n');
    let io = |e| Error::io(path, e);
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1)).map_err(io)?;
        file.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            let mut all = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.read_to_end(&mut all).map_err(io)?;
            let keep = all.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64).map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
    }
    // One write of the whole line, so a kill leaves a prefix of it and nothing interleaved.
    file.write_all(&line).map_err(io)?;
    file.flush().map_err(io)?;
    file.sync_data().map_err(io)
}

/// Read every record of `path`. A missing file is no records yet. The second value is a warning
/// when the last line was incomplete (no newline, not valid) and dropped. Blank lines are
/// skipped. Any other line that is not a valid `T` is an error naming the file and line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Option<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io(path, e)),
    };
    let ends_cleanly = bytes.last().is_none_or(|&b| b == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // split leaves one empty piece after a final newline; it is not a line.
    let n = if ends_cleanly { lines.len().saturating_sub(1) } else { lines.len() };
    let mut records = Vec::with_capacity(n);
    let mut warning = None;
    for (i, line) in lines[..n].iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == n && !ends_cleanly => {
                warning = Some(format!(
                    "{}: dropped an incomplete last line ({} bytes, line {}), likely cut by a killed run",
                    path.display(),
                    line.len(),
                    i + 1
                ));
            }
            Err(e) => return Err(Error::Jsonl { path: path.to_path_buf(), line: i + 1, message: e.to_string() }),
        }
    }
    Ok((records, warning))
}
