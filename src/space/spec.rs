//! The versioned JSON file that names an architecture (schema in docs/spec.md).
//!
//! The version is read before the rest so that a file from a newer cellnas fails with "unknown
//! version" instead of a confusing "unknown field" from the strict (deny_unknown_fields) parse.

use super::genotype::Genotype;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A saved architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Schema version; this cellnas reads and writes `Spec::VERSION`.
    pub version: u32,
    /// Free-form label, e.g. "DARTS_V2"; omitted from JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub genotype: Genotype,
}

impl Spec {
    pub const VERSION: u32 = 1;

    /// A current-version spec for `genotype`.
    pub fn new(genotype: Genotype) -> Spec {
        Spec { version: Spec::VERSION, name: None, genotype }
    }

    /// Parses and checks a spec: the version must be one this cellnas knows, no unknown fields,
    /// and the genotype must validate.
    pub fn from_json(json: &str) -> Result<Spec> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Spec(format!("spec is not valid JSON: {e}")))?;
        let Some(fields) = value.as_object() else {
            return Err(Error::Spec("spec must be a JSON object with \"version\" and \"genotype\"".into()));
        };
        match fields.get("version") {
            None => return Err(Error::Spec(format!("spec has no \"version\" field; expected \"version\": {}", Spec::VERSION))),
            Some(v) if v.as_u64() == Some(Spec::VERSION as u64) => {}
            Some(v) => {
                return Err(Error::Spec(format!(
                    "spec version {v} is not supported: this cellnas reads version {} only{}",
                    Spec::VERSION,
                    if v.as_u64().is_some_and(|n| n > Spec::VERSION as u64) { " (the file is from a newer cellnas)" } else { "" }
                )))
            }
        }
        // Parsed again from the text (not the Value) so errors carry line and column.
        let spec: Spec = serde_json::from_str(json).map_err(|e| Error::Spec(format!("spec JSON: {e}")))?;
        spec.genotype.validate()?;
        Ok(spec)
    }

    /// Whatever a spec file may hold: a JSON spec when the text starts with `{` (a search's
    /// `best.json` included, whose spec sits under `"spec"`), else DARTS genotype text.
    pub fn from_text(text: &str) -> Result<Spec> {
        if text.trim_start().starts_with('{') {
            match best_json_spec(text) {
                Some(inner) => Spec::from_json(&inner),
                None => Spec::from_json(text),
            }
        } else {
            Genotype::from_darts(text.trim()).map(Spec::new)
        }
    }

    /// Pretty JSON (two-space indent); `from_json` reads it back to an equal spec.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a spec always serializes")
    }
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
