//! The versioned JSON file that names an architecture (schema in docs/spec.md).
//!
//! The version is read before the rest so that a file from a newer cellnas fails with "unknown
//! version" instead of a confusing "unknown field" from the strict (deny_unknown_fields) parse.

use super::arch::Arch;
use super::genotype::Genotype;
use super::macro_space::MacroArch;
use super::nb201::Nb201Cell;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A saved architecture: a DARTS genotype ({"version", "name", "genotype"}, as it always was)
/// or another space's architecture ({"version", "name", "space", "arch"}, the arch in the
/// space's own text form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Schema version; this cellnas reads and writes `Spec::VERSION`.
    pub version: u32,
    /// Free-form label, e.g. "DARTS_V2"; omitted from JSON when absent.
    pub name: Option<String>,
    pub arch: Arch,
}

/// The JSON form, both kinds in one strict struct.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    genotype: Option<Genotype>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
}

impl Serialize for Spec {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let (space, genotype, arch) = match &self.arch {
            Arch::Darts(g) => (None, Some(g.clone()), None),
            other => (Some(other.space().to_string()), None, Some(other.text())),
        };
        RawSpec { version: self.version, name: self.name.clone(), space, genotype, arch }.serialize(ser)
    }
}

impl<'de> Deserialize<'de> for Spec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Spec, D::Error> {
        use serde::de::Error as _;
        let raw = RawSpec::deserialize(de)?;
        let arch = match (raw.space.as_deref(), raw.genotype, raw.arch) {
            (None | Some("darts"), Some(g), None) => Arch::Darts(g),
            (None | Some("darts"), None, _) => return Err(D::Error::custom("a DARTS spec needs \"genotype\" (another space's spec names it in \"space\" and gives \"arch\")")),
            (Some("nb201"), None, Some(text)) => Arch::Nb201(Nb201Cell::parse(&text).map_err(D::Error::custom)?),
            (Some("nb201"), _, _) => return Err(D::Error::custom("an nb201 spec has \"arch\" (the NB201 arch string) and no \"genotype\"")),
            (Some("macro"), None, Some(text)) => Arch::Macro(MacroArch::parse(&text).map_err(D::Error::custom)?),
            (Some("macro"), _, _) => return Err(D::Error::custom("a macro spec has \"arch\" (the macro text, e.g. conv_3x3|sep_conv_5x5+0) and no \"genotype\"")),
            (None | Some("darts"), Some(_), Some(_)) => return Err(D::Error::custom("a DARTS spec has \"genotype\" and no \"arch\"")),
            (Some(other), _, _) => return Err(D::Error::custom(format!("unknown space \"{other}\"; expected darts, nb201 or macro"))),
        };
        Ok(Spec { version: raw.version, name: raw.name, arch })
    }
}

impl Spec {
    pub const VERSION: u32 = 1;

    /// A current-version spec for `arch` (a DARTS genotype converts).
    pub fn new(arch: impl Into<Arch>) -> Spec {
        Spec { version: Spec::VERSION, name: None, arch: arch.into() }
    }

    /// The DARTS genotype, or an error saying that `what` is built for DARTS cells only so far.
    pub fn darts(&self, what: &str) -> Result<&Genotype> {
        self.arch.darts().ok_or_else(|| Error::Spec(format!("{what} is built for DARTS cells only so far; this spec is an {} architecture", self.arch.space())))
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
        if let Arch::Darts(g) = &spec.arch {
            g.validate()?;
        }
        Ok(spec)
    }

    /// Whatever a spec file may hold: a JSON spec when the text starts with `{` (a search's
    /// `best.json` included, whose spec sits under `"spec"`), an NB201 arch string when it
    /// starts with `|`, macro text when it starts with a lowercase letter (as every macro op
    /// name does; DARTS text starts with `Genotype`, so nothing is ambiguous, and a misspelt
    /// first op gets the macro parser's message naming it), else DARTS genotype text.
    pub fn from_text(text: &str) -> Result<Spec> {
        let t = text.trim();
        if t.starts_with('{') {
            match best_json_spec(t) {
                Some(inner) => Spec::from_json(&inner),
                None => Spec::from_json(t),
            }
        } else if t.starts_with('|') {
            Nb201Cell::parse(t).map(|c| Spec::new(Arch::Nb201(c)))
        } else if t.starts_with(|c: char| c.is_ascii_lowercase()) {
            MacroArch::parse(t).map(|a| Spec::new(Arch::Macro(a)))
        } else {
            Genotype::from_darts(t).map(Spec::new)
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
    if let (Some(space), Some(arch)) = (fields.get("space"), fields.get("arch")) {
        // Another space's best.json: the arch beside its metrics.
        return Some(serde_json::json!({ "version": Spec::VERSION, "space": space, "arch": arch }).to_string());
    }
    fields.get("spec").filter(|s| s.is_object()).map(|s| s.to_string())
}
