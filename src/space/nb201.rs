//! The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), without any GPU: one cell of 4 nodes
//! where node i sums an op applied to every earlier node j, so 6 edges j -> i, each one of 5
//! ops, 5^6 = 15625 cells. Cells read and write NB201's own arch strings, e.g.
//! `|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|`
//! (node 1's edges, then node 2's, then node 3's; `op~j` is the edge from node j), so results
//! can be looked up in the benchmark's tables by the same key.

use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One candidate op of an NB201 edge. Names and order are NB201's `NAS_BENCH_201` list, so an
/// index into `ALL` is an index into its op list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
// Through strings so JSON carries NB201's name and an unknown name gets `from_name`'s message.
#[serde(try_from = "String", into = "&'static str")]
pub enum Nb201Op {
    None,
    SkipConnect,
    NorConv1x1,
    NorConv3x3,
    AvgPool3x3,
}

impl Nb201Op {
    pub const ALL: [Nb201Op; 5] = [Nb201Op::None, Nb201Op::SkipConnect, Nb201Op::NorConv1x1, Nb201Op::NorConv3x3, Nb201Op::AvgPool3x3];

    pub fn name(self) -> &'static str {
        match self {
            Nb201Op::None => "none",
            Nb201Op::SkipConnect => "skip_connect",
            Nb201Op::NorConv1x1 => "nor_conv_1x1",
            Nb201Op::NorConv3x3 => "nor_conv_3x3",
            Nb201Op::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    /// Exact, case-sensitive, as NB201 compares them; DARTS names are errors, not mapped.
    pub fn from_name(name: &str) -> Result<Nb201Op> {
        Nb201Op::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| Error::Spec(format!("unknown NB201 op {}; expected one of {}", quote(name), Nb201Op::list(&Nb201Op::ALL))))
    }

    /// Position in `Nb201Op::ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    fn list(ops: &[Nb201Op]) -> String {
        ops.iter().map(|op| op.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Nb201Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Nb201Op {
    type Err = Error;
    fn from_str(s: &str) -> Result<Nb201Op> {
        Nb201Op::from_name(s)
    }
}

impl TryFrom<String> for Nb201Op {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Nb201Op, String> {
        Nb201Op::from_name(&s).map_err(spec_message)
    }
}

impl From<Nb201Op> for &'static str {
    fn from(op: Nb201Op) -> &'static str {
        op.name()
    }
}

/// serde adds its own position to a message, so it gets the bare text.
pub(super) fn spec_message(e: Error) -> String {
    match e {
        Error::Spec(m) => m,
        other => other.to_string(),
    }
}

/// A piece of user input for a one-line message: escaped (newlines, control characters) and
/// cut by characters, never inside one, so hostile input can neither break lines nor panic.
pub(super) fn quote(s: &str) -> String {
    const MAX: usize = 40;
    let cut: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() { format!("{cut:?}...") } else { format!("{cut:?}") }
}

/// Nodes of a cell: node 0 is the cell input, node 3 its output.
pub const NB201_NODES: usize = 4;

/// An arch string is about 150 bytes; anything far longer is refused before it is split.
const MAX_ARCH_BYTES: usize = 1024;

/// One NB201 cell: the op of each edge, in arch-string order (`Nb201Cell::EDGES`). Every array
/// is a valid cell, so the field is public. Serialized as its arch string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nb201Cell {
    pub ops: [Nb201Op; 6],
}

impl Nb201Cell {
    /// (to, from) of each edge in arch-string order: node 1's, then node 2's, then node 3's.
    pub const EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];

    pub fn new(ops: [Nb201Op; 6]) -> Nb201Cell {
        Nb201Cell { ops }
    }

    /// The op on edge from -> to, or None when that is not an edge (needs from < to <= 3).
    pub fn op(&self, to: usize, from: usize) -> Option<Nb201Op> {
        Nb201Cell::EDGES.iter().position(|&e| e == (to, from)).map(|i| self.ops[i])
    }

    /// (to, from, op) of every edge, in arch-string order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, Nb201Op)> + '_ {
        Nb201Cell::EDGES.iter().zip(self.ops).map(|(&(to, from), op)| (to, from, op))
    }

    /// Parses NB201's arch string. Strict, so that every accepted string is the one
    /// `to_arch_string` writes (surrounding whitespace aside): 3 nodes joined by `+`, node i
    /// written `|op~0|op~1|...|op~(i-1)|` with its edges in input order.
    pub fn parse(text: &str) -> Result<Nb201Cell> {
        let bad = |m: String| Error::Spec(format!("NB201 arch string: {m}"));
        let s = text.trim();
        if s.len() > MAX_ARCH_BYTES {
            return Err(bad(format!("{} bytes, an arch string has about 150; starts {}", s.len(), quote(s))));
        }
        if s.is_empty() {
            return Err(bad("empty; expected e.g. |nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|".into()));
        }
        let nodes: Vec<&str> = s.split('+').collect();
        if nodes.len() != NB201_NODES - 1 {
            return Err(bad(format!("{} has {} node(s) separated by '+', expected {} (nodes 1 to 3 of a 4-node cell)", quote(s), nodes.len(), NB201_NODES - 1)));
        }
        let mut ops = [Nb201Op::None; 6];
        let mut slot = 0;
        for (k, node) in nodes.iter().enumerate() {
            let to = k + 1;
            let Some(inner) = node.strip_prefix('|').and_then(|r| r.strip_suffix('|')) else {
                return Err(bad(format!("node {to}: {} must start and end with '|'", quote(node))));
            };
            let mut edges = 0;
            if !inner.is_empty() {
                for token in inner.split('|') {
                    let at = format!("node {to}, edge {}", quote(token));
                    if token.is_empty() {
                        return Err(bad(format!("node {to}: empty edge between '|' separators in {}", quote(node))));
                    }
                    let Some((name, input)) = token.split_once('~').filter(|(_, i)| !i.contains('~')) else {
                        return Err(bad(format!("{at}: expected op~input, e.g. nor_conv_3x3~0")));
                    };
                    let op = Nb201Op::from_name(name).map_err(|e| bad(format!("{at}: {}", spec_message(e))))?;
                    let input = parse_index(input).ok_or_else(|| bad(format!("{at}: input {} is not a node number", quote(input))))?;
                    if edges == to {
                        return Err(bad(format!("{at}: extra edge; node {to} has exactly {to} (one from each earlier node)")));
                    }
                    if input >= to {
                        return Err(bad(format!("{at}: input {input} is out of range; node {to} reads nodes 0..={}", to - 1)));
                    }
                    if input < edges {
                        return Err(bad(format!("{at}: repeats input {input}; each earlier node feeds node {to} once")));
                    }
                    if input != edges {
                        return Err(bad(format!("{at}: expected input {edges} here; a node lists its edges by input, 0 first")));
                    }
                    ops[slot] = op;
                    slot += 1;
                    edges += 1;
                }
            }
            if edges < to {
                return Err(bad(format!("node {to}: {} is missing the edge from node {edges} (op~{edges}); node {to} has {to} edges", quote(node))));
            }
        }
        Ok(Nb201Cell { ops })
    }

    pub fn to_arch_string(&self) -> String {
        let mut s = String::with_capacity(160);
        for (to, from, op) in self.edges() {
            if from == 0 && to > 1 {
                s.push('+');
            }
            if from == 0 {
                s.push('|');
            }
            s.push_str(op.name());
            s.push('~');
            s.push_str(&from.to_string());
            s.push('|');
        }
        s
    }

    /// Canonical string for deduplication: the arch string. Cells that compute the same
    /// function through different edges (e.g. a `none` cutting a branch off) keep their own
    /// keys, as NB201 lists them separately.
    pub fn key(&self) -> String {
        self.to_arch_string()
    }

    /// One-hot op per edge over `Nb201Op::ALL`: 6 x 5 values, edge-major in `EDGES` order.
    pub fn encode(&self) -> Vec<f32> {
        one_hot(self, &Nb201Op::ALL).expect("every op is in ALL")
    }
}

/// A decimal node number as the arch string writes it: digits only, no sign, no leading zero
/// (which `to_arch_string` would not give back), and no overflow.
pub(super) fn parse_index(s: &str) -> Option<usize> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// 6 x ops.len() values, edge-major; None when an edge's op is not in `ops`.
fn one_hot(cell: &Nb201Cell, ops: &[Nb201Op]) -> Option<Vec<f32>> {
    let mut v = vec![0.0; 6 * ops.len()];
    for (e, op) in cell.ops.iter().enumerate() {
        v[e * ops.len() + ops.iter().position(|o| o == op)?] = 1.0;
    }
    Some(v)
}

impl fmt::Display for Nb201Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_arch_string())
    }
}

impl FromStr for Nb201Cell {
    type Err = Error;
    fn from_str(s: &str) -> Result<Nb201Cell> {
        Nb201Cell::parse(s)
    }
}

impl TryFrom<String> for Nb201Cell {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Nb201Cell, String> {
        Nb201Cell::parse(&s).map_err(spec_message)
    }
}

impl From<Nb201Cell> for String {
    fn from(c: Nb201Cell) -> String {
        c.to_arch_string()
    }
}

/// The ops an edge may take. NB201 itself allows all 5, `none` included (a cell may cut an
/// edge); a smaller list gives a sub-space. Private field, so every value went through `new`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawNb201Space")]
pub struct Nb201Space {
    ops: Vec<Nb201Op>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNb201Space {
    ops: Vec<Nb201Op>,
}

impl TryFrom<RawNb201Space> for Nb201Space {
    type Error = Error;
    fn try_from(raw: RawNb201Space) -> Result<Nb201Space> {
        Nb201Space::new(raw.ops)
    }
}

impl Default for Nb201Space {
    fn default() -> Nb201Space {
        Nb201Space { ops: Nb201Op::ALL.to_vec() }
    }
}

impl Nb201Space {
    /// Rejects an empty list and repeats (a repeated op would be drawn twice as often).
    pub fn new(ops: Vec<Nb201Op>) -> Result<Nb201Space> {
        if ops.is_empty() {
            return Err(Error::Spec(format!("NB201 space has no ops; choose some of {}", Nb201Op::list(&Nb201Op::ALL))));
        }
        if let Some((k, op)) = ops.iter().enumerate().find(|(k, op)| ops[..*k].contains(op)) {
            return Err(Error::Spec(format!("NB201 space lists op '{op}' twice (at {k})")));
        }
        Ok(Nb201Space { ops })
    }

    pub fn ops(&self) -> &[Nb201Op] {
        &self.ops
    }

    /// Ok when every edge's op is one of `ops()`; else the first edge that is not.
    pub fn contains(&self, cell: &Nb201Cell) -> Result<()> {
        match cell.edges().find(|(_, _, op)| !self.ops.contains(op)) {
            None => Ok(()),
            Some((to, from, op)) => Err(Error::Spec(format!("NB201 cell edge {from} -> {to}: op '{op}' is not in this space (ops: {})", Nb201Op::list(&self.ops)))),
        }
    }

    /// Each edge's op uniform over `ops()`, independently: uniform over the space's cells.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Nb201Cell {
        Nb201Cell { ops: std::array::from_fn(|_| self.ops[rng.random_range(0..self.ops.len())]) }
    }

    /// One edge, uniform, given a different op of `ops()`, uniform. Exactly one edge changes
    /// unless no change is possible (a one-op space), when the cell comes back as it was.
    pub fn mutate<R: Rng + ?Sized>(&self, cell: &Nb201Cell, rng: &mut R) -> Nb201Cell {
        let mut out = cell.clone();
        let edges: Vec<usize> = (0..6).filter(|&e| self.ops.iter().any(|&op| op != cell.ops[e])).collect();
        if edges.is_empty() {
            return out;
        }
        let e = edges[rng.random_range(0..edges.len())];
        let choices: Vec<Nb201Op> = self.ops.iter().copied().filter(|&op| op != cell.ops[e]).collect();
        out.ops[e] = choices[rng.random_range(0..choices.len())];
        out
    }

    /// Number of cells: ops^6 (at most 5^6 = 15625, as `new` refuses repeats).
    pub fn size(&self) -> usize {
        self.ops.len().pow(6)
    }

    /// Every cell, in a fixed order: counting in base |ops| with edge 0 (1 <- 0) the most
    /// significant digit and digits in `ops()` order.
    pub fn all(&self) -> Vec<Nb201Cell> {
        let n = self.ops.len();
        (0..self.size())
            .map(|i| Nb201Cell { ops: std::array::from_fn(|e| self.ops[i / n.pow(5 - e as u32) % n]) })
            .collect()
    }

    /// One-hot op per edge over `ops()` (6 x |ops|, edge-major); an error for a cell outside.
    pub fn encode(&self, cell: &Nb201Cell) -> Result<Vec<f32>> {
        self.contains(cell)?;
        Ok(one_hot(cell, &self.ops).expect("contains checked every op"))
    }
}

/// e.g. "5 ops (none, ...), 15625 cells".
impl fmt::Display for Nb201Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ops ({}), {} cells", self.ops.len(), Nb201Op::list(&self.ops), self.size())
    }
}
