//! JSON Lines logs (metrics, search history): one record per line, appended as the run goes.
//!
//! Each line is a JSON object carrying a checksum as its last field:
//!
//! ```text
//! {"epoch":0,"loss":0.5,"crc32":"1a2b3c4d"}
//! ```
//!
//! The checksum is the CRC-32 (IEEE) of the record as it would be written without that field,
//! i.e. the line's bytes up to `,"crc32"` followed by `}` (`{}` for an empty record). It is
//! computed and checked on those bytes, never on a re-serialization, so a reader needs no
//! canonical JSON: `jq` reads the lines as they are, and cellnas checks them with a byte slice.
//! The record is parsed from the same bytes, so a reader never sees the `crc32` field; record
//! types must not have one of their own.
//!
//! On reading:
//! - a line whose checksum does not match (a flipped bit, a hand edit) is an error naming the
//!   file and line;
//! - lines without a checksum are accepted with one warning per file as long as no checksummed
//!   line came before them: that is a log written by an older cellnas, possibly resumed by this
//!   one. A line without a checksum after one with a checksum was not written by cellnas and is
//!   an error. (So only damage to the checksum field of the very first line can pass, with the
//!   older-cellnas warning.)
//! - a kill can cut only the line being appended, so a last line without its newline that does
//!   not check out is dropped with a warning (and cut off by the next append); any other bad
//!   line is real corruption and an error.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// `"crc32":"` + 8 hex digits + `"}`: how every checksummed line ends.
const KEY: &[u8] = b"\"crc32\":\"";
const TAIL_LEN: usize = KEY.len() + 8 + 2;

/// `record` as one checksummed line, newline included (see the module docs). `path` only names
/// the file in the error for a record that is not a JSON object.
pub fn jsonl_line<T: Serialize + ?Sized>(path: &Path, record: &T) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(record)
        .map_err(|e| Error::Invalid(format!("{}: cannot serialize record to JSON: {e}", path.display())))?;
    if json.first() != Some(&b'{') || json.last() != Some(&b'}') {
        return Err(Error::Invalid(format!("{}: a JSON Lines record must be a JSON object", path.display())));
    }
    let crc = crc32fast::hash(&json);
    let mut line = json;
    line.pop();
    if line.len() > 1 {
        line.push(b',');
    }
    line.extend_from_slice(KEY);
    line.extend_from_slice(format!("{crc:08x}\"}}\n").as_bytes());
    Ok(line)
}

/// Append `record` as one line to `path` (created if absent), then flush and fsync so it
/// survives a crash once this returns. A partial last line left by a killed writer is cut off
/// first; otherwise the new record would be glued onto it and both lost.
pub fn append_jsonl<T: Serialize + ?Sized>(path: &Path, record: &T) -> Result<()> {
    let line = jsonl_line(path, record)?;
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

/// Read every record of `path`. A missing file is no records yet. The second value holds
/// warnings for the caller to show: an incomplete last line that was dropped, lines written
/// without checksums. Blank lines are skipped. Any other line that is not a valid `T`, or whose
/// checksum does not match, is an error naming the file and line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Vec<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io(path, e)),
    };
    let parsed = parse_jsonl(path, &bytes)?;
    Ok((parsed.records, parsed.warnings))
}

/// What `parse_jsonl` found in a file's bytes.
pub(crate) struct Parsed<T> {
    pub records: Vec<T>,
    pub warnings: Vec<String>,
    /// Where a dropped incomplete last line starts: the length to cut the file to.
    pub dropped_from: Option<usize>,
    /// The last line is a valid record that lacks its newline (an edited file).
    pub unterminated: bool,
}

/// The records in `bytes`, the contents of `path` (see `read_jsonl`).
pub(crate) fn parse_jsonl<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<Parsed<T>> {
    let mut out = Parsed { records: Vec::new(), warnings: Vec::new(), dropped_from: None, unterminated: false };
    let mut unchecked: Vec<usize> = Vec::new();
    let mut checked = false;
    let (mut start, mut number) = (0, 0);
    while start < bytes.len() {
        number += 1;
        let (end, terminated) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(n) => (start + n, true),
            None => (bytes.len(), false),
        };
        let line = &bytes[start..end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            let parsed = verify(line).and_then(|(payload, has_crc)| {
                if !has_crc && checked {
                    return Err("no checksum, but earlier lines have one: the line was changed or added after cellnas wrote the file".into());
                }
                let record = serde_json::from_slice::<T>(&payload).map_err(|e| e.to_string())?;
                Ok((record, has_crc))
            });
            match parsed {
                Ok((record, has_crc)) => {
                    out.records.push(record);
                    checked |= has_crc;
                    if !has_crc {
                        unchecked.push(number);
                    }
                    out.unterminated = !terminated;
                }
                // Only an unterminated last line can be the victim of a kill mid-write.
                Err(_) if !terminated => {
                    out.dropped_from = Some(start);
                    out.warnings.push(format!(
                        "{}, line {number}: dropped an incomplete last line ({} bytes), likely cut by a killed run",
                        path.display(),
                        line.len()
                    ));
                }
                Err(message) => return Err(Error::Jsonl { path: path.to_path_buf(), line: number, message }),
            }
        }
        start = end + 1;
    }
    if let (Some(first), Some(last)) = (unchecked.first(), unchecked.last()) {
        let which = if first == last { format!("line {first}") } else { format!("lines {first}-{last}") };
        out.warnings.push(format!(
            "{}: {which} written by an older cellnas without checksums; those lines are not verified",
            path.display()
        ));
    }
    Ok(out)
}

/// The record's JSON bytes of a line and whether it carried a checksum, or why the line is bad.
fn verify(line: &[u8]) -> std::result::Result<(Cow<'_, [u8]>, bool), String> {
    // The key's bytes cannot occur inside a JSON string (its quotes would be escaped), so a line
    // that has them has a checksum field, and it must be the well-formed last one.
    if !line.windows(KEY.len()).any(|w| w == KEY) {
        return Ok((Cow::Borrowed(line), false));
    }
    let malformed = || "its \"crc32\" field is damaged (expected it last, as 8 hex digits): the line was changed after cellnas wrote it".to_string();
    let n = line.len();
    if n < TAIL_LEN + 1 || &line[n - TAIL_LEN..n - TAIL_LEN + KEY.len()] != KEY || &line[n - 2..] != b"\"}" {
        return Err(malformed());
    }
    let hex = &line[n - 10..n - 2];
    let stored = std::str::from_utf8(hex)
        .ok()
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(malformed)?;
    let head = &line[..n - TAIL_LEN];
    let mut payload = match head {
        [b'{'] => b"{".to_vec(),
        [rest @ .., b','] => rest.to_vec(),
        _ => return Err(malformed()),
    };
    payload.push(b'}');
    let computed = crc32fast::hash(&payload);
    if computed != stored {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the line was changed after cellnas wrote it"
        ));
    }
    Ok((Cow::Owned(payload), true))
}
