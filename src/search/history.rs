//! `history.jsonl`, the single record of a search: one JSON object (`HistoryEntry`) per line, one
//! line per evaluated architecture, in evaluation order.
//!
//! Lines are checksummed JSON Lines (`crate::run::jsonl`). Each is written with a single write
//! and then fsynced, so a killed search loses at most the line it was writing, and that line can
//! only be cut short at the end of the file. `History::open` therefore drops an incomplete last
//! line (with a warning) and cuts it off the file, so the next append starts on a clean line; a
//! bad or changed line anywhere else is real corruption and an error.
//!
//! Floats are written with serde_json's shortest round-trip form and read back with its
//! `float_roundtrip` parser, so a replayed accuracy is bit-identical to the observed one (a
//! strategy comparing accuracies must see the same numbers on resume). Non-finite values, which
//! JSON cannot express (a diverged loss is NaN), are written as the strings "NaN", "inf", "-inf".

use crate::error::{Error, Result};
use crate::run::{jsonl_line, parse_jsonl};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One evaluated architecture. Unknown fields are ignored when reading, so a history written by a
/// newer cellnas that records more still resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Position in the search, from 0.
    pub id: usize,
    /// DARTS text (`Genotype::to_darts`).
    pub genotype: String,
    /// `Genotype::key`, what `replay` compares.
    pub key: String,
    /// Inherited-weight validation accuracy, 0..1.
    #[serde(with = "float")]
    pub accuracy: f64,
    #[serde(with = "float")]
    pub loss: f64,
    pub params: u64,
    pub flops: u64,
    /// Inference latency in ms on the run's adapter (see `search::cost`), where the search
    /// measured it (it has a --max-latency-ms); absent otherwise, and in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The adapter that scored it, in a search scoring on several (`--adapters`), which may
    /// round differently; absent when one adapter scored every candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Wall-clock milliseconds the evaluation took.
    #[serde(with = "float")]
    pub eval_ms: f64,
    /// When the entry was recorded, RFC 3339 UTC (`rfc3339`).
    pub time: String,
}

/// An open history file: the entries read so far, and the file to append to.
pub struct History {
    path: PathBuf,
    file: File,
    entries: Vec<HistoryEntry>,
    warnings: Vec<String>,
}

impl History {
    /// Opens `path`, creating an empty history if it does not exist (its directory must). An
    /// incomplete last line is dropped and removed from the file; `warnings()` then says so, as
    /// it does for lines written without checksums. Any other line that is not a valid entry, or
    /// whose checksum does not match, is an error naming the file and line.
    pub fn open(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref().to_path_buf();
        let io = |e| Error::io(&path, e);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let parsed = parse_jsonl::<HistoryEntry>(&path, &bytes).map_err(|e| match e {
            Error::Jsonl { path, line, message } => Error::History { path, line, message },
            e => e,
        })?;
        let mut warnings = parsed.warnings;
        if let Some(start) = parsed.dropped_from {
            file.set_len(start as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
            for w in warnings.iter_mut().filter(|w| w.contains("incomplete last line")) {
                w.push_str("; that evaluation will be redone");
            }
        } else if parsed.unterminated {
            // A complete entry without its newline (an edited file): end the line so the next
            // append does not run into it.
            file.write_all(b"\n").map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(History { path, file, entries: parsed.records, warnings })
    }

    /// Appends one entry as a checksummed line (see `run::jsonl`), then flushes it to disk
    /// (fsync), so that after a kill the file holds every entry appended before it.
    pub fn append(&mut self, entry: &HistoryEntry) -> Result<()> {
        let line = jsonl_line(&self.path, entry)?;
        // One write call: a kill leaves a prefix of this line, never a line torn in the middle.
        self.file.write_all(&line).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.entries.push(entry.clone());
        Ok(())
    }

    /// Every entry, read and appended, in order.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `open` found worth telling (a dropped incomplete last line, lines without
    /// checksums); for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. "2024-05-01T12:34:56.789Z". Times before 1970
/// print as the epoch. Hand-written (days-to-civil-date from Howard Hinnant's chrono
/// algorithms) to avoid a date crate for one timestamp.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// (year, month 1..=12, day 1..=31) of `days` since 1970-01-01, proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift to 0000-03-01 so leap days fall at the end of a year, then split into 400-year eras.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// serde for f64 fields that may be non-finite (see the module docs).
mod float {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *x {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("NaN"),
            x if x > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Number {
            Finite(f64),
            Named(String),
        }
        match Number::deserialize(d)? {
            Number::Finite(x) => Ok(x),
            Number::Named(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => Err(D::Error::custom(format!("expected a number, \"NaN\", \"inf\" or \"-inf\", got \"{s}\""))),
            },
        }
    }
}
