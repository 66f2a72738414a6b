//! The eight DARTS candidate ops. The names are the strings of DARTS' `PRIMITIVES`
//! (quark0/darts, cnn/genotypes.py) and `Op::ALL` keeps that list's order, so an index into
//! `ALL` is an index into a DARTS architecture-weight row.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One candidate operation on an edge of a cell. See docs/ops.md for how each is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
// Through strings so JSON carries the DARTS name and an unknown name gets `from_name`'s message.
#[serde(try_from = "String", into = "&'static str")]
pub enum Op {
    None,
    MaxPool3x3,
    AvgPool3x3,
    SkipConnect,
    SepConv3x3,
    SepConv5x5,
    DilConv3x3,
    DilConv5x5,
}

impl Op {
    /// All ops, in DARTS `PRIMITIVES` order.
    pub const ALL: [Op; 8] = [
        Op::None,
        Op::MaxPool3x3,
        Op::AvgPool3x3,
        Op::SkipConnect,
        Op::SepConv3x3,
        Op::SepConv5x5,
        Op::DilConv3x3,
        Op::DilConv5x5,
    ];

    /// The ops a derived architecture may use: all but `none`, which DARTS' derivation never
    /// picks (it only exists so the supernet can learn to drop an edge).
    pub const SEARCHABLE: [Op; 7] = [
        Op::MaxPool3x3,
        Op::AvgPool3x3,
        Op::SkipConnect,
        Op::SepConv3x3,
        Op::SepConv5x5,
        Op::DilConv3x3,
        Op::DilConv5x5,
    ];

    /// The DARTS name, e.g. "sep_conv_3x3".
    pub fn name(self) -> &'static str {
        match self {
            Op::None => "none",
            Op::MaxPool3x3 => "max_pool_3x3",
            Op::AvgPool3x3 => "avg_pool_3x3",
            Op::SkipConnect => "skip_connect",
            Op::SepConv3x3 => "sep_conv_3x3",
            Op::SepConv5x5 => "sep_conv_5x5",
            Op::DilConv3x3 => "dil_conv_3x3",
            Op::DilConv5x5 => "dil_conv_5x5",
        }
    }

    /// Parses a DARTS name exactly (case-sensitive, as the DARTS code compares them). Ops from
    /// other spaces (NASNet's `sep_conv_7x7`, `conv_7x1_1x7`) are errors, not silently mapped.
    pub fn from_name(name: &str) -> Result<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name).ok_or_else(|| {
            Error::Spec(format!("unknown op '{name}': cellnas supports the DARTS ops {}", Op::list(&Op::ALL)))
        })
    }

    /// Position in `Op::ALL` (the DARTS `PRIMITIVES` index).
    pub fn index(self) -> usize {
        Op::ALL.iter().position(|&op| op == self).expect("every op is in ALL")
    }

    /// "a, b, c" of the ops' names, for messages.
    pub(crate) fn list(ops: &[Op]) -> String {
        ops.iter().map(|op| op.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = Error;
    fn from_str(s: &str) -> Result<Op> {
        Op::from_name(s)
    }
}

/// For serde: the bare message, since serde_json adds its own position to it.
impl TryFrom<String> for Op {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Op, String> {
        Op::from_name(&s).map_err(|e| match e {
            Error::Spec(m) => m,
            other => other.to_string(),
        })
    }
}

impl From<Op> for &'static str {
    fn from(op: Op) -> &'static str {
        op.name()
    }
}
