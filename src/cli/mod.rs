//! Subcommands beyond `devices` and `bench`: search, eval, train, test, genotype.

pub mod jobs;
pub mod table;

use anyhow::{Context, Result};
use cellnas::space::{Genotype, Spec};
use std::path::Path;

/// A spec file: the JSON spec (docs/spec.md) or DARTS genotype text.
pub fn read_spec(path: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read spec file {}", path.display()))?;
    parse_spec(&text, path)
}

/// `text` as a JSON spec when it starts with `{`, else as DARTS genotype text.
pub fn parse_spec(text: &str, path: &Path) -> Result<Spec> {
    let spec = if text.trim_start().starts_with('{') {
        Spec::from_json(text)
    } else {
        Genotype::from_darts(text.trim()).map(Spec::new)
    };
    spec.with_context(|| format!("{} is not a valid spec (JSON, docs/spec.md) or DARTS genotype text", path.display()))
}
