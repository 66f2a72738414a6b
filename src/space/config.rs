//! The space a search runs over, as its config.json records it. A DARTS space keeps the form
//! runs have always had ({"ops", "nodes"}), so existing runs resume; another space carries its
//! name: {"kind": "nb201", "ops": [...]}, {"kind": "macro", "ops": [...], "layers": L}.

use super::arch::Space;
use super::macro_space::{MacroOp, MacroSpace};
use super::nb201::Nb201Space;
use super::search::SearchSpace;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpaceConfig {
    Darts(SearchSpace),
    Nb201(Nb201Space),
    Macro(MacroSpace),
}

/// Names `--space` accepts.
pub const SPACES: [&str; 3] = ["darts", "nb201", "macro"];

impl SpaceConfig {
    /// The space itself, behind the trait strategies and the supernet use.
    pub fn space(&self) -> Arc<dyn Space> {
        match self {
            SpaceConfig::Darts(s) => Arc::new(s.clone()),
            SpaceConfig::Nb201(s) => Arc::new(s.clone()),
            SpaceConfig::Macro(s) => Arc::new(s.clone()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SpaceConfig::Darts(_) => "darts",
            SpaceConfig::Nb201(_) => "nb201",
            SpaceConfig::Macro(_) => "macro",
        }
    }

    /// The DARTS space, for what only DARTS runs have (morphism, rank so far).
    pub fn darts(&self) -> Option<&SearchSpace> {
        match self {
            SpaceConfig::Darts(s) => Some(s),
            SpaceConfig::Nb201(_) | SpaceConfig::Macro(_) => None,
        }
    }

    /// Candidate op names, in the space's order.
    pub fn op_names(&self) -> Vec<&'static str> {
        match self {
            SpaceConfig::Darts(s) => s.ops().iter().map(|o| o.name()).collect(),
            SpaceConfig::Nb201(s) => s.ops().iter().map(|o| o.name()).collect(),
            SpaceConfig::Macro(s) => s.ops().iter().map(|o| o.name()).collect(),
        }
    }

    /// The macro space, whose depth the network must have.
    pub fn macro_space(&self) -> Option<&MacroSpace> {
        match self {
            SpaceConfig::Macro(s) => Some(s),
            _ => None,
        }
    }
}

impl Default for SpaceConfig {
    fn default() -> SpaceConfig {
        SpaceConfig::Darts(SearchSpace::default())
    }
}

impl std::fmt::Display for SpaceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpaceConfig::Darts(s) => write!(f, "DARTS: {s}"),
            SpaceConfig::Nb201(s) => write!(f, "NB201: {s}"),
            SpaceConfig::Macro(s) => write!(f, "macro: {s}"),
        }
    }
}

impl Serialize for SpaceConfig {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            SpaceConfig::Darts(s) => s.serialize(ser),
            SpaceConfig::Nb201(s) => {
                #[derive(Serialize)]
                struct Tagged<'a> {
                    kind: &'static str,
                    ops: &'a [super::nb201::Nb201Op],
                }
                Tagged { kind: "nb201", ops: s.ops() }.serialize(ser)
            }
            SpaceConfig::Macro(s) => {
                #[derive(Serialize)]
                struct Tagged<'a> {
                    kind: &'static str,
                    ops: &'a [MacroOp],
                    layers: usize,
                }
                Tagged { kind: "macro", ops: s.ops(), layers: s.layers() }.serialize(ser)
            }
        }
    }
}

impl<'de> Deserialize<'de> for SpaceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<SpaceConfig, D::Error> {
        use serde::de::Error as _;
        let mut value = serde_json::Value::deserialize(de)?;
        let kind = match value.as_object_mut().and_then(|o| o.remove("kind")) {
            None => return SearchSpace::deserialize(value).map(SpaceConfig::Darts).map_err(D::Error::custom),
            Some(k) => k,
        };
        match kind.as_str() {
            Some("darts") => SearchSpace::deserialize(value).map(SpaceConfig::Darts).map_err(D::Error::custom),
            Some("nb201") => Nb201Space::deserialize(value).map(SpaceConfig::Nb201).map_err(D::Error::custom),
            Some("macro") => MacroSpace::deserialize(value).map(SpaceConfig::Macro).map_err(D::Error::custom),
            _ => Err(D::Error::custom(format!("unknown space kind {kind}; expected one of {}", SPACES.join(", ")))),
        }
    }
}

/// The space `name` with `ops` (its default ops when None), for DARTS `nodes`, and for the
/// macro space `layers`, its depth (the cell spaces take theirs from the network config).
pub fn space_from_name(name: &str, ops: Option<&[String]>, nodes: Option<usize>, layers: Option<usize>) -> Result<SpaceConfig> {
    match name {
        "darts" => {
            let base = SearchSpace::default();
            let ops = match ops {
                Some(names) => names.iter().map(|n| super::Op::from_name(n.trim())).collect::<Result<Vec<_>>>()?,
                None => base.ops().to_vec(),
            };
            Ok(SpaceConfig::Darts(SearchSpace::new(ops, nodes.unwrap_or(base.nodes()))?))
        }
        "nb201" => {
            if nodes.is_some() {
                return Err(Error::Invalid("--nodes: an NB201 cell always has 4 nodes".into()));
            }
            let ops = match ops {
                Some(names) => names.iter().map(|n| super::nb201::Nb201Op::from_name(n.trim())).collect::<Result<Vec<_>>>()?,
                None => Nb201Space::default().ops().to_vec(),
            };
            Ok(SpaceConfig::Nb201(Nb201Space::new(ops)?))
        }
        "macro" => {
            if nodes.is_some() {
                return Err(Error::Invalid("--nodes: a macro network has layers, not cells of nodes (its depth is --layers)".into()));
            }
            let ops = match ops {
                Some(names) => names.iter().map(|n| MacroOp::from_name(n.trim())).collect::<Result<Vec<_>>>()?,
                None => MacroOp::ALL.to_vec(),
            };
            Ok(SpaceConfig::Macro(MacroSpace::new(ops, layers.unwrap_or(MacroSpace::DEFAULT_LAYERS))?))
        }
        _ => Err(Error::Invalid(format!("--space {name}: expected one of {}", SPACES.join(", ")))),
    }
}
