//! Subcommands beyond `devices` and the kernel `bench`: search, eval, train, test, genotype,
//! rank, autotune, bench --net.

pub mod autotune;
pub mod bench;
pub mod jobs;
pub mod rank;

pub use bench::bench_net;
pub mod table;

use anyhow::{Context, Result};
use cellnas::space::{Genotype, Spec};
use std::path::Path;

/// A spec file: the JSON spec (docs/spec.md) or DARTS genotype text.
pub fn read_spec(path: &Path) -> Result<Spec> {
    // The error names the file and the problem (missing, too big, not UTF-8).
    let text = cellnas::space::read_spec_text(path)?;
    parse_spec(&text, path)
}

/// `text` as a JSON spec when it starts with `{` (a search's `best.json` included), else as
/// DARTS genotype text.
pub fn parse_spec(text: &str, path: &Path) -> Result<Spec> {
    let spec = if text.trim_start().starts_with('{') {
        match best_json_spec(text) {
            Some(inner) => Spec::from_json(&inner),
            None => Spec::from_json(text),
        }
    } else {
        Genotype::from_darts(text.trim()).map(Spec::new)
    };
    spec.with_context(|| format!("{} is not a valid spec (JSON, docs/spec.md) or DARTS genotype text", path.display()))
}

/// The spec inside a search's `best.json` (`{"spec": {...}, "metrics": {...}}`), so the file
/// the search hands the user can be passed on as it is. A spec itself has "version" at the top.
fn best_json_spec(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let fields = value.as_object()?;
    if fields.contains_key("version") {
        return None;
    }
    fields.get("spec").filter(|s| s.is_object()).map(|s| s.to_string())
}

/// clap value parser for float flags: NaN and infinities are refused at parse time, so the
/// error names the flag (a NaN learning rate would otherwise fail later as "diverged", and a
/// NaN clip would silently turn clipping off).
pub fn finite_f32(s: &str) -> std::result::Result<f32, String> {
    let v: f32 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("expected a finite number, got {s}"))
    }
}
