//! `cellnas draw`: the SVG of every space parses as XML and shows every node and every op, the
//! DOT text has one edge per connection, random architectures of every space draw, and bad
//! input is a one-line error.

use cellnas::space::{Arch, MacroSpace, Nb201Space, SearchSpace, Space, Spec};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";
const NB201: &str = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|";
const MACRO: &str = "conv_3x3|sep_conv_5x5+0|max_pool_3x3+0,1|conv_5x5|avg_pool_3x3+1,3|sep_conv_3x3+0,2,4";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-draw-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// What one drawing must show: node ids, and per (from, to, is a skip arc) the op (None: a
/// plain connection). A macro layer may skip from the layer just before it, beside the chain.
struct Expected {
    nodes: Vec<String>,
    edges: BTreeMap<(String, String, bool), Option<String>>,
}

fn expected(arch: &Arch) -> Vec<(String, Expected)> {
    let s = |x: &str| x.to_string();
    match arch {
        Arch::Darts(g) => g
            .cells()
            .iter()
            .map(|(name, cell)| {
                let id = |i: usize| match i {
                    0 => s("c_{k-2}"),
                    1 => s("c_{k-1}"),
                    i => (i - 2).to_string(),
                };
                let mut nodes: Vec<String> = (0..cell.nodes.len() + 2).map(id).collect();
                nodes.push(s("c_{k}"));
                let mut edges: BTreeMap<_, _> = cell.edges().map(|(to, e)| ((id(e.input), id(to), false), Some(s(e.op.name())))).collect();
                edges.extend(cell.concat.iter().map(|&c| ((id(c), s("c_{k}"), false), None)));
                (s(name), Expected { nodes, edges })
            })
            .collect(),
        Arch::Nb201(c) => {
            let edges = c.edges().map(|(to, from, op)| ((from.to_string(), to.to_string(), false), Some(s(op.name())))).collect();
            vec![(s("cell"), Expected { nodes: (0..4).map(|i| i.to_string()).collect(), edges })]
        }
        Arch::Macro(a) => {
            let id = |i: usize| if i == 0 { s("input") } else if i > a.len() { s("output") } else { format!("layer {}", i - 1) };
            let mut edges: BTreeMap<_, _> = (0..=a.len()).map(|i| ((id(i), id(i + 1), false), None)).collect();
            for (i, l) in a.layers().iter().enumerate() {
                edges.extend(l.skips.iter().map(|&k| ((id(k + 1), id(i + 1), true), None)));
            }
            vec![(s("network"), Expected { nodes: (0..a.len() + 2).map(id).collect(), edges })]
        }
    }
}

/// The drawing's SVG and DOT show exactly the expected nodes and edges.
fn check(svg: &str, dot: &str, want: &Expected, what: &str) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{what}: SVG is not XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{what}");
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"), "{what}");
    let mut nodes: Vec<String> = doc.descendants().filter_map(|n| n.attribute("data-node")).map(str::to_string).collect();
    nodes.sort();
    let mut want_nodes = want.nodes.clone();
    want_nodes.sort();
    assert_eq!(nodes, want_nodes, "{what}: nodes");
    let mut edges = BTreeMap::new();
    for p in doc.descendants().filter(|n| n.has_tag_name("path") && n.attribute("class").is_some_and(|c| c.starts_with("edge"))) {
        let skip = p.attribute("class") == Some("edge skip");
        let key = (p.attribute("data-from").unwrap().to_string(), p.attribute("data-to").unwrap().to_string(), skip);
        assert!(edges.insert(key.clone(), p.attribute("data-op").map(str::to_string)).is_none(), "{what}: edge {key:?} drawn twice");
    }
    assert_eq!(edges, want.edges, "{what}: edges");
    // Every op is written as a visible label, once per edge that has one.
    let mut labels: Vec<String> = doc.descendants().filter(|n| n.has_tag_name("text") && n.attribute("class") == Some("op")).filter_map(|n| n.text()).map(str::to_string).collect();
    let mut ops: Vec<String> = want.edges.values().flatten().cloned().collect();
    labels.sort();
    ops.sort();
    assert_eq!(labels, ops, "{what}: op labels");
    // Nodes are inside the view box.
    let vb: Vec<f64> = root.attribute("viewBox").unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
    for r in doc.descendants().filter(|n| n.has_tag_name("rect")) {
        let (x, y): (f64, f64) = (r.attribute("x").unwrap().parse().unwrap(), r.attribute("y").unwrap().parse().unwrap());
        assert!(x >= vb[0] && y >= vb[1] && x <= vb[0] + vb[2] && y <= vb[1] + vb[3], "{what}: a box at ({x}, {y}) lies outside the view box {vb:?}");
    }
    // DOT: one `->` line per edge, every node declared.
    assert_eq!(dot.lines().filter(|l| l.contains("->")).count(), want.edges.len(), "{what}: DOT edges\n{dot}");
    for n in &want.nodes {
        assert!(dot.contains(&format!("\"{n}\" [label=")), "{what}: DOT lacks node {n}\n{dot}");
    }
    assert!(dot.starts_with("digraph ") && dot.trim_end().ends_with('}'), "{what}: {dot}");
}

#[test]
fn drawings_show_every_node_and_op_of_every_space() {
    let mut archs: Vec<Arch> = [DARTS_V2, NB201, MACRO].iter().map(|t| Spec::from_text(t).unwrap().arch).collect();
    // Random architectures of each space too, deeper and wider than the fixed ones.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let spaces: Vec<Box<dyn Space>> = vec![
        Box::new(SearchSpace::new(cellnas::space::Op::SEARCHABLE.to_vec(), 6).unwrap()),
        Box::new(Nb201Space::new(cellnas::space::Nb201Op::ALL.to_vec()).unwrap()),
        Box::new(MacroSpace::new(cellnas::space::MacroOp::ALL.to_vec(), 12).unwrap()),
    ];
    for space in &spaces {
        for _ in 0..3 {
            archs.push(space.sample(&mut rng));
        }
    }
    for arch in &archs {
        let diagrams = cellnas::draw::diagrams(arch);
        let want = expected(arch);
        assert_eq!(diagrams.len(), want.len());
        for (d, (name, w)) in diagrams.iter().zip(&want) {
            assert_eq!(&d.name, name);
            check(&d.svg(name), &d.dot(), w, &format!("{} {name}", arch.text()));
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn cellnas(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellnas")).args(args).output().unwrap()
}

#[test]
fn draw_command_writes_svg_and_dot_and_refuses_bad_input() {
    let dir = tmp("cli");
    // A spec JSON of a DARTS genotype, NB201 and macro text files.
    let darts = Spec::from_text(DARTS_V2).unwrap();
    let cases = [
        (write(&dir, "v2.json", &darts.to_json_pretty()), vec!["normal", "reduce"]),
        (write(&dir, "nb201.txt", NB201), vec!["cell"]),
        (write(&dir, "macro.txt", MACRO), vec!["network"]),
    ];
    for (k, (spec, names)) in cases.iter().enumerate() {
        let out = dir.join(format!("out{k}"));
        let o = cellnas(&["draw", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let printed = String::from_utf8_lossy(&o.stdout);
        let arch = cellnas::space::Spec::from_text(&std::fs::read_to_string(spec).unwrap()).unwrap().arch;
        for ((name, want), expect_name) in expected(&arch).iter().zip(names) {
            assert_eq!(name, expect_name);
            let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
            let dot = std::fs::read_to_string(out.join(format!("{name}.dot"))).unwrap();
            check(&svg, &dot, want, name);
            assert!(printed.contains(&format!("{name}.svg")) && printed.contains(&format!("{name}.dot")), "{printed}");
        }
    }
    // A search's best.json is a spec too.
    let best = serde_json::json!({ "spec": serde_json::from_str::<serde_json::Value>(&darts.to_json_pretty()).unwrap(), "metrics": {} });
    let best = write(&dir, "best.json", &best.to_string());
    let o = cellnas(&["draw", best.to_str().unwrap(), "--out", dir.join("best").to_str().unwrap()]);
    assert!(o.status.success() && dir.join("best/reduce.svg").is_file(), "{}", String::from_utf8_lossy(&o.stderr));

    let one_line_error = |o: std::process::Output, needles: &[&str]| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line expected:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "error should mention {n}: {err}");
        }
    };
    let bad = write(&dir, "bad.txt", "Genotype(normal=[('sep_conv_9x9', 0)])");
    one_line_error(cellnas(&["draw", bad.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]), &["bad.txt", "sep_conv_9x9"]);
    assert!(!dir.join("x").exists(), "nothing is written for a bad spec");
    one_line_error(cellnas(&["draw", dir.join("missing.json").to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]), &["missing.json"]);
    one_line_error(cellnas(&["draw", bad.to_str().unwrap().replace("bad", "nb201").as_str(), "--out", bad.to_str().unwrap()]), &["--out", "bad.txt", "folder"]);
    let _ = std::fs::remove_dir_all(&dir);
}
