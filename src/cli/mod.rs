//! Subcommands beyond `devices` and the kernel `bench`: search, eval, train, test, genotype,
//! rank, autotune, bench --net, predict, export.

pub mod autotune;
pub mod bench;
pub mod darts;
pub mod export;
pub mod bench_search;
pub mod jobs;
pub mod morph;
pub mod draw;
pub mod rank;
pub mod report;
pub mod shard;
pub mod tune;
pub mod strategy;

pub use bench::bench_net;
pub mod table;

use anyhow::{Context, Result};
use cellnas::space::Spec;
use std::path::Path;

/// A spec file: the JSON spec (docs/spec.md) or a space's text form.
pub fn read_spec(path: &Path) -> Result<Spec> {
    // The error names the file and the problem (missing, too big, not UTF-8).
    let text = cellnas::space::read_spec_text(path)?;
    parse_spec(&text, path)
}

/// `text` as a JSON spec when it starts with `{` (a search's `best.json` included), else as a
/// space's text form (`Spec::from_text` says which).
pub fn parse_spec(text: &str, path: &Path) -> Result<Spec> {
    Spec::from_text(text)
        .with_context(|| format!("{} is not a valid spec (JSON, docs/spec.md), DARTS genotype text, NB201 arch string or macro text", path.display()))
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
