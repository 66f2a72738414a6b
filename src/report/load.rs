//! What a report reads from a run folder. Records are read as JSON values and only the fields
//! a report shows are picked out, so a history from a newer cellnas (more fields, another
//! strategy) still reports, and every figure is exactly the number in the file.

use crate::error::{Error, Result};
use crate::run::{read_jsonl, RunDir};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What kind of job wrote the run folder, from its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    Search,
    Morphism,
    Train,
    Rank,
    /// A run folder this cellnas does not know the config of (a newer job): the report shows
    /// whatever files it recognises.
    Other,
}

impl RunKind {
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Search => "search",
            RunKind::Morphism => "morphism search",
            RunKind::Train => "stand-alone training",
            RunKind::Rank => "rank",
            RunKind::Other => "run",
        }
    }
}

/// One line of metrics.jsonl.
#[derive(Clone, Debug)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: Option<f64>,
    pub images_per_s: Option<f64>,
    pub lr_end: Option<f64>,
}

/// One line of history.jsonl.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: usize,
    pub arch: String,
    pub key: String,
    pub accuracy: f64,
    pub loss: Option<f64>,
    pub params: Option<u64>,
    pub flops: Option<u64>,
    pub latency_ms: Option<f64>,
    /// Seconds from the start of the search to this entry (its time stamp less the first
    /// entry's, plus the first entry's own evaluation or training time).
    pub elapsed: Option<f64>,
}

/// A ranked architecture's stand-alone training (rank's train/NN).
#[derive(Clone, Debug)]
pub struct RankTraining {
    pub id: usize,
    pub epochs: Vec<Epoch>,
    pub metrics: Option<Value>,
}

pub struct RunFiles {
    pub dir: PathBuf,
    pub kind: RunKind,
    pub config: Value,
    pub run_id: Option<String>,
    pub kernels: Option<Value>,
    pub epochs: Vec<Epoch>,
    pub history: Vec<Candidate>,
    pub best: Option<Value>,
    pub metrics: Option<Value>,
    pub rank: Option<Value>,
    pub rank_trainings: Vec<RankTraining>,
    /// What was odd but not fatal (a dropped incomplete line, a file that did not parse).
    pub warnings: Vec<String>,
}

/// A number field that may be written as "NaN" / "inf" (history's non-finite values).
pub fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Config { path: path.to_path_buf(), message: format!("not valid JSON: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn epochs(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<Epoch>> {
    let (records, w) = read_jsonl::<Value>(path)?;
    warnings.extend(w);
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let (Some(loss), Some(accuracy)) = (r.get("loss").and_then(num), r.get("accuracy").and_then(num)) else {
            return Err(Error::Jsonl { path: path.to_path_buf(), line: i + 1, message: "expected an epoch record with \"loss\" and \"accuracy\"".into() });
        };
        out.push(Epoch {
            epoch: r.get("epoch").and_then(Value::as_u64).map_or(i, |e| e as usize),
            loss,
            accuracy,
            seconds: r.get("seconds").and_then(num),
            images_per_s: r.get("images_per_s").and_then(num),
            lr_end: r.get("lr_end").and_then(num),
        });
    }
    Ok(out)
}

/// Seconds since 1970 of an RFC 3339 UTC time as `search::rfc3339` writes it.
pub fn parse_time(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || !s.ends_with('Z') {
        return None;
    }
    let int = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (int(0..4)?, int(5..7)?, int(8..10)?);
    let secs: f64 = s.get(17..s.len() - 1)?.parse().ok()?;
    // Days from civil (Howard Hinnant), the inverse of search::history's civil_from_days.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + (int(11..13)? * 3600 + int(14..16)? * 60) as f64 + secs)
}

fn history(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<Candidate>> {
    let (records, w) = read_jsonl::<Value>(path)?;
    warnings.extend(w);
    let mut out: Vec<Candidate> = Vec::with_capacity(records.len());
    let mut start: Option<f64> = None;
    for (i, r) in records.iter().enumerate() {
        let bad = |what: &str| Error::Jsonl { path: path.to_path_buf(), line: i + 1, message: format!("expected a history entry with {what}") };
        let arch = r.get("genotype").or_else(|| r.get("arch")).and_then(Value::as_str).ok_or_else(|| bad("\"genotype\""))?.to_string();
        let accuracy = r.get("accuracy").and_then(num).ok_or_else(|| bad("\"accuracy\""))?;
        let time = r.get("time").and_then(Value::as_str).and_then(parse_time);
        if start.is_none() {
            // The first entry was recorded after its own evaluation (or a first network's training).
            let own = r.get("eval_ms").and_then(num).map(|ms| ms / 1000.0).or_else(|| r.get("train_seconds").and_then(num)).unwrap_or(0.0);
            start = time.map(|t| t - own);
        }
        let u64_of = |k: &str| r.get(k).and_then(Value::as_u64);
        out.push(Candidate {
            id: r.get("id").and_then(Value::as_u64).map_or(i, |v| v as usize),
            // Without a key (a morphism search), the network's size tells two entries of one cell apart.
            key: r.get("key").and_then(Value::as_str).map_or_else(|| format!("{arch} {}", r.get("net").unwrap_or(&Value::Null)), str::to_string),
            arch,
            accuracy,
            loss: r.get("loss").and_then(num),
            params: u64_of("params"),
            flops: u64_of("flops"),
            latency_ms: r.get("latency_ms").or_else(|| r.get("latency")).and_then(num),
            elapsed: time.zip(start).map(|(t, s)| t - s),
        });
    }
    Ok(out)
}

/// Reads a run folder (verified against its manifest, as every reader does).
pub fn read(dir: &Path) -> Result<RunFiles> {
    if !dir.is_dir() {
        return Err(Error::Config { path: dir.to_path_buf(), message: "no such run folder (expected a folder with the config.json a search, train or rank writes)".into() });
    }
    if !dir.join("config.json").is_file() {
        return Err(Error::Config { path: dir.join("config.json"), message: "missing: the folder is not a cellnas run (expected the config.json a search, train or rank writes)".into() });
    }
    let run = RunDir::verified(dir)?;
    let config = read_json(&dir.join("config.json"))?.unwrap_or(Value::Null);
    if !config.is_object() {
        return Err(Error::Config { path: dir.join("config.json"), message: "not a cellnas run config (expected a JSON object)".into() });
    }
    let kind = if config.get("search_run").is_some() {
        RunKind::Rank
    } else if config.get("method").and_then(Value::as_str) == Some("morphism") {
        RunKind::Morphism
    } else if config.get("budget").is_some() || config.get("strategy").is_some() {
        RunKind::Search
    } else if config.get("spec").is_some() {
        RunKind::Train
    } else {
        RunKind::Other
    };
    let mut warnings = Vec::new();
    let mut rank_trainings = Vec::new();
    if kind == RunKind::Rank {
        let train = dir.join("train");
        if let Ok(entries) = std::fs::read_dir(&train) {
            let mut dirs: Vec<(usize, PathBuf)> = entries.filter_map(|e| e.ok()).filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path()))).collect();
            dirs.sort();
            for (id, d) in dirs {
                rank_trainings.push(RankTraining { id, epochs: epochs(&d.join("metrics.jsonl"), &mut warnings)?, metrics: read_json(&d.join("metrics.json"))? });
            }
        }
    }
    Ok(RunFiles {
        kind,
        run_id: run.run_id().map(str::to_string),
        kernels: read_json(&dir.join("kernels.json"))?,
        epochs: epochs(&dir.join("metrics.jsonl"), &mut warnings)?,
        history: history(&dir.join("history.jsonl"), &mut warnings)?,
        best: read_json(&dir.join("best.json"))?,
        metrics: read_json(&dir.join("metrics.json"))?,
        rank: read_json(&dir.join("rank.json"))?,
        rank_trainings,
        warnings,
        config,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_history_times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_587_925_260);
        let s = crate::search::rfc3339(t);
        assert!((super::parse_time(&s).unwrap() - 1_796_587_925.26).abs() < 1e-5, "{s}");
        assert_eq!(super::parse_time("2024-02-29T00:00:00.000Z"), Some(1_709_164_800.0));
        assert_eq!(super::parse_time("yesterday"), None);
    }
}
