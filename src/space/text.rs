//! Reading architecture files (spec JSON, DARTS text, a search's best.json) as text, bounded:
//! an architecture is a few kilobytes, so anything past `MAX_SPEC_BYTES` is the wrong file (or
//! /dev/zero) and is refused before it can fill memory. A UTF-8 byte-order mark, which some
//! Windows editors add, is skipped; other bytes that are not UTF-8 are an error naming the
//! offset, so a binary file passed by mistake does not surface as a puzzling parse error.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Far more than any real cell needs (1024 nodes of DARTS text is about 40 KiB).
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text of the architecture file `path` (see the module docs).
pub fn read_spec_text(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // The size on disk refuses a big regular file without reading it; devices and pipes report
    // 0, so the read below is bounded as well.
    if let Ok(meta) = file.metadata() {
        if meta.is_file() && meta.len() > MAX_SPEC_BYTES {
            return Err(too_big(path, meta.len()));
        }
    }
    spec_text_from(file, path)
}

/// The same from any reader (stdin for `cellnas genotype -`); `name` is what errors call it.
pub fn spec_text_from(reader: impl Read, name: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    reader.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(name, e))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(Error::Spec(format!(
            "{}: more than the {MAX_SPEC_BYTES} bytes an architecture file may have; is this the right file?",
            name.display()
        )));
    }
    let body = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let skipped = bytes.len() - body.len();
    match std::str::from_utf8(body) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let at = skipped + e.valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            Err(Error::Spec(format!(
                "{}: not UTF-8 text: byte 0x{:02x} at offset {at} (line {line}); save it as UTF-8",
                name.display(),
                bytes[at]
            )))
        }
    }
}

fn too_big(path: &Path, len: u64) -> Error {
    Error::Spec(format!(
        "{}: {len} bytes, more than the {MAX_SPEC_BYTES} bytes an architecture file may have; is this the right file?",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<String> {
        spec_text_from(bytes, Path::new("cell.txt"))
    }

    #[test]
    fn a_bom_is_skipped_and_bad_bytes_are_located() {
        assert_eq!(read(b"\xEF\xBB\xBF{\"a\": 1}").unwrap(), "{\"a\": 1}");
        let e = read(b"{\n  \"name\": \"caf\xE9\"}").unwrap_err().to_string();
        assert!(e.contains("cell.txt: not UTF-8 text: byte 0xe9 at offset 16 (line 2)"), "{e}");
        let e = read(b"\xEF\xBB\xBF\xFF").unwrap_err().to_string();
        assert!(e.contains("byte 0xff at offset 3"), "{e}");
    }

    #[test]
    fn more_than_the_limit_is_refused_without_reading_it_all() {
        let e = read(&vec![b' '; MAX_SPEC_BYTES as usize + 1]).unwrap_err().to_string();
        assert!(e.contains("cell.txt: more than the 1048576 bytes"), "{e}");
        assert!(read(&vec![b' '; MAX_SPEC_BYTES as usize]).is_ok());
        // An endless stream stops at the limit.
        let e = spec_text_from(std::io::repeat(0), Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("/dev/zero: more than the"), "{e}");
    }
}
