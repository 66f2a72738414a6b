//! The ENAS macro search space (Pham et al. 2018, "whole network" space), without any GPU: a
//! chain of L layers where layer i applies one op to layer i-1's output and adds the outputs of
//! a chosen set of earlier layers 0..i-1 (skip connections); layer 0 reads the stem and has no
//! skip choices. |ops|^L * 2^(L(L-1)/2) architectures. docs/ARCHITECTURE.md says how the
//! network combines skips and where it reduces (src/nn/macro_net.rs builds it).
//!
//! Text form, one token per layer joined by `|`: the op, then `+` and the skip sources in
//! increasing order, comma-separated, e.g. `conv_3x3|sep_conv_5x5+0|max_pool_3x3+0,1`. It is
//! read strictly (no spaces, no repeats, sorted sources), so every accepted text is the one
//! `to_text` writes and text equality is architecture equality (the history's key).

use super::nb201::{parse_index, quote, spec_message};
use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One candidate op of a macro layer. Names as ENAS's macro space and DARTS spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
// Through strings so JSON carries the name and an unknown name gets `from_name`'s message.
#[serde(try_from = "String", into = "&'static str")]
pub enum MacroOp {
    Conv3x3,
    Conv5x5,
    SepConv3x3,
    SepConv5x5,
    MaxPool3x3,
    AvgPool3x3,
}

impl MacroOp {
    pub const ALL: [MacroOp; 6] = [MacroOp::Conv3x3, MacroOp::Conv5x5, MacroOp::SepConv3x3, MacroOp::SepConv5x5, MacroOp::MaxPool3x3, MacroOp::AvgPool3x3];

    pub fn name(self) -> &'static str {
        match self {
            MacroOp::Conv3x3 => "conv_3x3",
            MacroOp::Conv5x5 => "conv_5x5",
            MacroOp::SepConv3x3 => "sep_conv_3x3",
            MacroOp::SepConv5x5 => "sep_conv_5x5",
            MacroOp::MaxPool3x3 => "max_pool_3x3",
            MacroOp::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    /// Exact and case-sensitive, so each op has one spelling and text stays canonical.
    pub fn from_name(name: &str) -> Result<MacroOp> {
        MacroOp::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| Error::Spec(format!("unknown macro op {}; expected one of {}", quote(name), list(&MacroOp::ALL))))
    }

    /// Position in `MacroOp::ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

fn list(ops: &[MacroOp]) -> String {
    ops.iter().map(|op| op.name()).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for MacroOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for MacroOp {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<MacroOp, String> {
        MacroOp::from_name(&s).map_err(spec_message)
    }
}

impl From<MacroOp> for &'static str {
    fn from(op: MacroOp) -> &'static str {
        op.name()
    }
}

/// Most layers of a macro architecture: ENAS searches 12 and trains 24; the bound keeps the
/// skip list (L(L-1)/2 bits) and the text (tens of kilobytes at most) small.
pub const MACRO_MAX_LAYERS: usize = 256;

/// Longer than any text of `MACRO_MAX_LAYERS` layers (about 140 KB); refused before splitting.
const MAX_TEXT_BYTES: usize = 256 << 10;

/// One layer: its op, applied to the previous layer's output, and the earlier layers whose
/// outputs are added to it, strictly increasing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MacroLayer {
    pub op: MacroOp,
    pub skips: Vec<usize>,
}

/// A macro architecture. The field is private so every value went through `new` or `parse`:
/// 1..=`MACRO_MAX_LAYERS` layers, layer i's skips strictly increasing and all below i.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacroArch {
    layers: Vec<MacroLayer>,
}

impl MacroArch {
    pub fn new(layers: Vec<MacroLayer>) -> Result<MacroArch> {
        check_len(layers.len())?;
        for (i, l) in layers.iter().enumerate() {
            let mut prev = None;
            for &s in &l.skips {
                skip_ok(i, s, prev).map_err(|m| Error::Spec(format!("macro arch layer {i}: {m}")))?;
                prev = Some(s);
            }
        }
        Ok(MacroArch { layers })
    }

    pub fn layers(&self) -> &[MacroLayer] {
        &self.layers
    }

    /// Replaces layer `layer`'s op (any op keeps the invariants); no layer there, no change.
    pub(super) fn set_op(&mut self, layer: usize, op: MacroOp) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.op = op;
        }
    }

    /// Depth L.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Always false (an architecture has a layer); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Reads the text form (module docs). Errors are one line naming the layer and token.
    pub fn parse(text: &str) -> Result<MacroArch> {
        let bad = |m: String| Error::Spec(format!("macro text: {m}"));
        let s = text.trim();
        if s.len() > MAX_TEXT_BYTES {
            return Err(bad(format!("{} bytes, more than {MAX_TEXT_BYTES}; starts {}", s.len(), quote(s))));
        }
        if s.is_empty() {
            return Err(bad("empty; expected layers joined by '|', e.g. conv_3x3|sep_conv_5x5+0|max_pool_3x3+0,1".into()));
        }
        let n = s.split('|').count();
        check_len(n).map_err(|e| bad(spec_message(e)))?;
        let mut layers = Vec::with_capacity(n);
        for (i, token) in s.split('|').enumerate() {
            let at = format!("layer {i} {}", quote(token));
            if token.is_empty() {
                return Err(bad(format!("layer {i} is empty (two '|' in a row, or one at an end)")));
            }
            let (name, sources) = match token.split_once('+') {
                None => (token, None),
                Some((name, rest)) => (name, Some(rest)),
            };
            let op = MacroOp::from_name(name).map_err(|e| bad(format!("{at}: {}", spec_message(e))))?;
            let mut skips = Vec::new();
            if let Some(sources) = sources {
                if sources.is_empty() {
                    return Err(bad(format!("{at}: '+' without skips; a layer without skips is its op alone")));
                }
                for t in sources.split(',') {
                    let Some(s) = parse_index(t) else {
                        return Err(bad(format!("{at}: skip {} is not a layer number", quote(t))));
                    };
                    skip_ok(i, s, skips.last().copied()).map_err(|m| bad(format!("{at}: {m}")))?;
                    skips.push(s);
                }
            }
            layers.push(MacroLayer { op, skips });
        }
        Ok(MacroArch { layers })
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                s.push('|');
            }
            s.push_str(l.op.name());
            for (k, src) in l.skips.iter().enumerate() {
                s.push(if k == 0 { '+' } else { ',' });
                s.push_str(&src.to_string());
            }
        }
        s
    }

    /// The canonical key: the text, which is canonical.
    pub fn key(&self) -> String {
        self.to_text()
    }

    /// Per layer a one-hot op over `MacroOp::ALL`, then every skip bit, layer by layer (layer
    /// i's bits for sources 0..i): 6L + L(L-1)/2 values.
    pub fn encode(&self) -> Vec<f32> {
        encode(self, &MacroOp::ALL).expect("every op is in ALL")
    }
}

fn check_len(n: usize) -> Result<()> {
    if (1..=MACRO_MAX_LAYERS).contains(&n) {
        Ok(())
    } else {
        Err(Error::Spec(format!("a macro architecture has 1 to {MACRO_MAX_LAYERS} layers, got {n}")))
    }
}

/// Whether `s` may follow `prev` in layer i's skip list.
fn skip_ok(i: usize, s: usize, prev: Option<usize>) -> std::result::Result<(), String> {
    let reads = if i == 0 { "layer 0 reads the stem and has no earlier layers".to_string() } else { format!("layer {i} may skip from layers 0..={}", i - 1) };
    if s == i {
        return Err(format!("skip {s} points to the layer itself; {reads}"));
    }
    if s > i {
        return Err(format!("skip {s} points forward; {reads}"));
    }
    match prev {
        Some(p) if p == s => Err(format!("skip {s} is listed twice")),
        Some(p) if p > s => Err(format!("skip {s} after {p}; list skips in increasing order")),
        _ => Ok(()),
    }
}

fn encode(arch: &MacroArch, ops: &[MacroOp]) -> Option<Vec<f32>> {
    let l = arch.len();
    let mut v = vec![0.0; l * ops.len() + l * (l - 1) / 2];
    let mut bit = l * ops.len();
    for (i, layer) in arch.layers.iter().enumerate() {
        v[i * ops.len() + ops.iter().position(|o| *o == layer.op)?] = 1.0;
        for &s in &layer.skips {
            v[bit + s] = 1.0;
        }
        bit += i;
    }
    Some(v)
}

impl fmt::Display for MacroArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl TryFrom<String> for MacroArch {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<MacroArch, String> {
        MacroArch::parse(&s).map_err(spec_message)
    }
}

impl From<MacroArch> for String {
    fn from(a: MacroArch) -> String {
        a.to_text()
    }
}

/// The ops a layer may take and the depth. Private fields, so every value went through `new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMacroSpace")]
pub struct MacroSpace {
    ops: Vec<MacroOp>,
    layers: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMacroSpace {
    ops: Vec<MacroOp>,
    layers: usize,
}

impl TryFrom<RawMacroSpace> for MacroSpace {
    type Error = Error;
    fn try_from(raw: RawMacroSpace) -> Result<MacroSpace> {
        MacroSpace::new(raw.ops, raw.layers)
    }
}

impl Default for MacroSpace {
    fn default() -> MacroSpace {
        MacroSpace { ops: MacroOp::ALL.to_vec(), layers: MacroSpace::DEFAULT_LAYERS }
    }
}

impl MacroSpace {
    /// The depth `search --space macro` uses without `--layers`: ENAS's search depth, and at
    /// the default 8 channels a search of about the DARTS default's time on two CPU cores
    /// (docs/RESULTS.md).
    pub const DEFAULT_LAYERS: usize = 12;

    /// Rejects an empty op list, repeats (a repeated op would be drawn twice as often) and a
    /// depth outside 1..=`MACRO_MAX_LAYERS`.
    pub fn new(ops: Vec<MacroOp>, layers: usize) -> Result<MacroSpace> {
        if ops.is_empty() {
            return Err(Error::Spec(format!("macro space has no ops; choose some of {}", list(&MacroOp::ALL))));
        }
        if let Some((k, op)) = ops.iter().enumerate().find(|(k, op)| ops[..*k].contains(op)) {
            return Err(Error::Spec(format!("macro space lists op '{op}' twice (at {k})")));
        }
        check_len(layers)?;
        Ok(MacroSpace { ops, layers })
    }

    pub fn ops(&self) -> &[MacroOp] {
        &self.ops
    }

    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Ok when the depth is the space's and every op one of `ops()`; else what is not.
    pub fn contains(&self, arch: &MacroArch) -> Result<()> {
        if arch.len() != self.layers {
            return Err(Error::Spec(format!("macro architecture has {} layers, this space {}", arch.len(), self.layers)));
        }
        match arch.layers.iter().enumerate().find(|(_, l)| !self.ops.contains(&l.op)) {
            None => Ok(()),
            Some((i, l)) => Err(Error::Spec(format!("macro layer {i}: op '{}' is not in this space (ops: {})", l.op, list(&self.ops)))),
        }
    }

    /// Each op uniform, each skip present with probability 1/2, all independent: the uniform
    /// distribution over the space, the one random search and SPOS assume. (Deep layers then
    /// average i/2 skips; ENAS's controller learns its own skip density instead.)
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> MacroArch {
        let layers = (0..self.layers)
            .map(|i| MacroLayer { op: self.ops[rng.random_range(0..self.ops.len())], skips: (0..i).filter(|_| rng.random_bool(0.5)).collect() })
            .collect();
        MacroArch { layers }
    }

    /// One choice, uniform over the L op slots (when another op exists) and the L(L-1)/2 skip
    /// bits, changed: an op to another of `ops()`, uniform, or a skip added or removed. Only a
    /// space with one op and one layer has nothing to change; the arch then comes back as it is.
    pub fn mutate<R: Rng + ?Sized>(&self, arch: &MacroArch, rng: &mut R) -> MacroArch {
        let mut out = arch.clone();
        let l = arch.len();
        let op_slots = if self.ops.len() > 1 { l } else { 0 };
        let total = op_slots + l * (l - 1) / 2;
        if total == 0 {
            return out;
        }
        let mut k = rng.random_range(0..total);
        if k < op_slots {
            let choices: Vec<MacroOp> = self.ops.iter().copied().filter(|&op| op != arch.layers[k].op).collect();
            out.layers[k].op = choices[rng.random_range(0..choices.len())];
            return out;
        }
        k -= op_slots;
        // Bits run layer by layer: layer i holds i of them.
        let mut i = 1;
        while k >= i {
            k -= i;
            i += 1;
        }
        let skips = &mut out.layers[i].skips;
        match skips.binary_search(&k) {
            Ok(at) => {
                skips.remove(at);
            }
            Err(at) => skips.insert(at, k),
        }
        out
    }

    /// |ops|^L * 2^(L(L-1)/2); infinite past f64's range (about L = 40 with 6 ops).
    pub fn size(&self) -> f64 {
        let l = self.layers as f64;
        (self.ops.len() as f64).powf(l) * 2f64.powf(l * (l - 1.0) / 2.0)
    }

    /// `MacroArch::encode` over `ops()`; an error for an architecture outside the space.
    pub fn encode(&self, arch: &MacroArch) -> Result<Vec<f32>> {
        self.contains(arch)?;
        Ok(encode(arch, &self.ops).expect("contains checked every op"))
    }
}

/// e.g. "6 ops (conv_3x3, ...), 6 layers, 7.2e8 architectures".
impl fmt::Display for MacroSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ops ({}), {} layers, {:.3e} architectures", self.ops.len(), list(&self.ops), self.layers, self.size())
    }
}
