//! Drawings of architectures (`cellnas draw`, and the cells in `cellnas report`): per space a
//! diagram laid out like the published figures, as SVG written here and as DOT text.
//!
//! - DARTS: one drawing per cell (normal, reduce), as in the DARTS paper: the inputs c_{k-2}
//!   and c_{k-1} on the left, intermediate nodes in columns by depth, each edge labelled with
//!   its op, the concatenated nodes joined to the output c_{k} on the right.
//! - NB201: the cell's 4-node DAG, node 0 the input and node 3 the output, 6 labelled edges
//!   (`none` edges dashed: they connect nothing).
//! - macro: the layer chain left to right, each layer's op in its box, skip connections as
//!   arcs above it, and the two reductions as dashed lines.

mod diagram;

pub use diagram::{esc, Diagram, Kind, Link, Mark, Node, Route};

use crate::error::{Error, Result};
use crate::space::{Arch, Cell, MacroArch, Nb201Cell, Nb201Op};
use std::path::{Path, PathBuf};

/// The drawings of an architecture: two for DARTS (normal, reduce), one for the other spaces.
pub fn diagrams(arch: &Arch) -> Vec<Diagram> {
    match arch {
        Arch::Darts(g) => g.cells().iter().map(|(name, cell)| darts_cell(name, cell)).collect(),
        Arch::Nb201(c) => vec![nb201_cell(c)],
        Arch::Macro(a) => vec![macro_chain(a)],
    }
}

/// Writes `<name>.svg` and `<name>.dot` per drawing into `dir` (created if needed), atomically;
/// returns the paths written.
pub fn write(arch: &Arch, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for d in diagrams(arch) {
        for (ext, text) in [("svg", d.svg(&d.name)), ("dot", d.dot())] {
            let path = dir.join(format!("{}.{ext}", d.name));
            crate::run::write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Rows `0..k` of a column centred on the middle of a diagram `tallest` rows high.
fn centred_rows(k: usize, tallest: usize) -> impl Iterator<Item = f64> {
    let top = (tallest as f64 - k as f64) / 2.0;
    (0..k).map(move |j| top + j as f64)
}

fn darts_cell(name: &str, cell: &Cell) -> Diagram {
    let n = cell.nodes.len();
    // Column of a node: its depth (longest path from the inputs), so every edge points right.
    let mut depth = vec![0usize; n + 2];
    for (i, pair) in cell.nodes.iter().enumerate() {
        depth[i + 2] = 1 + pair.iter().map(|e| depth.get(e.input).copied().unwrap_or(0)).max().unwrap_or(0);
    }
    let out_col = depth.iter().max().copied().unwrap_or(0) + 1;
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); out_col];
    for (node, &d) in depth.iter().enumerate() {
        columns[d].push(node);
    }
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(1);
    let mut row = vec![0.0; n + 2];
    for col in &columns {
        for (&node, r) in col.iter().zip(centred_rows(col.len(), tallest)) {
            row[node] = r;
        }
    }
    let mut nodes = Vec::with_capacity(n + 3);
    for (k, sub) in ["k-2", "k-1"].iter().enumerate() {
        nodes.push(Node { sub: Some(sub.to_string()), ..Node::new(format!("c_{{{sub}}}"), "c", Kind::Input, 0.0, row[k]) });
    }
    for i in 0..n {
        nodes.push(Node::new(i.to_string(), i.to_string(), Kind::Inner, depth[i + 2] as f64, row[i + 2]));
    }
    nodes.push(Node { sub: Some("k".into()), ..Node::new("c_{k}", "c", Kind::Output, out_col as f64, (tallest as f64 - 1.0) / 2.0) });
    let mut links: Vec<Link> = cell.edges().map(|(to, e)| Link { from: e.input, to, op: Some(e.op.name().to_string()), route: Route::Flow, faint: false }).collect();
    links.extend(cell.concat.iter().map(|&c| Link { from: c, to: n + 2, op: None, route: Route::Flow, faint: false }));
    let title = format!("{name} cell");
    Diagram { space: "darts", name: name.to_string(), title, nodes, links, marks: vec![], col_w: 190.0, row_h: 62.0 }
}

fn nb201_cell(c: &Nb201Cell) -> Diagram {
    // The chain 0 -> 1 -> 2 -> 3 on one line, 0 -> 2 arched above it, 1 -> 3 and 0 -> 3
    // nested below: no two edges cross.
    let rows = [0.0; 4];
    let nodes = (0..4)
        .map(|i| {
            let kind = match i {
                0 => Kind::Input,
                3 => Kind::Output,
                _ => Kind::Inner,
            };
            Node::new(i.to_string(), i.to_string(), kind, i as f64, rows[i])
        })
        .collect();
    let links = c
        .edges()
        .map(|(to, from, op)| {
            let route = match to - from {
                1 => Route::Flow,
                _ if from == 0 && to == 2 => Route::Above,
                _ => Route::Below,
            };
            Link { from, to, op: Some(op.name().to_string()), route, faint: op == Nb201Op::None }
        })
        .collect();
    Diagram { space: "nb201", name: "cell".into(), title: "NB201 cell".into(), nodes, links, marks: vec![], col_w: 170.0, row_h: 60.0 }
}

fn macro_chain(a: &MacroArch) -> Diagram {
    let l = a.len();
    let mut nodes = vec![Node::new("input", "input", Kind::Input, 0.0, 0.0)];
    for (i, layer) in a.layers().iter().enumerate() {
        nodes.push(Node { caption: Some(format!("layer {i}")), ..Node::new(format!("layer {i}"), layer.op.name(), Kind::Inner, (i + 1) as f64, 0.0) });
    }
    nodes.push(Node::new("output", "output", Kind::Output, (l + 1) as f64, 0.0));
    let mut links: Vec<Link> = (0..=l).map(|i| Link { from: i, to: i + 1, op: None, route: Route::Flow, faint: false }).collect();
    for (i, layer) in a.layers().iter().enumerate() {
        links.extend(layer.skips.iter().map(|&s| Link { from: s + 1, to: i + 1, op: None, route: Route::Above, faint: false }));
    }
    // The network reduces before layers L/3 and 2L/3 (nn::macro_net), which needs L >= 3.
    let marks = if l >= 3 { [l / 3, 2 * l / 3].iter().map(|&r| Mark { col: r as f64 + 0.5, text: "reduce".into() }).collect() } else { vec![] };
    Diagram { space: "macro", name: "network".into(), title: format!("macro network, {l} layers"), nodes, links, marks, col_w: 118.0, row_h: 60.0 }
}
