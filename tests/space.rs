//! The search space without a GPU: DARTS text and JSON round trips, error messages, and the
//! sampler's and mutator's distributions.

use cellnas::space::{Cell, Edge, Genotype, Op, SearchSpace, Spec};
use cellnas::Error;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// `DARTS_V1` of quark0/darts cnn/genotypes.py (first-order DARTS), as Python prints it.
const DARTS_V1: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";

/// `DARTS_V2` (second-order DARTS, the paper's CIFAR-10 cell), same file.
const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn darts_text_round_trips_byte_for_byte() {
    for text in [DARTS_V1, DARTS_V2] {
        let g = Genotype::from_darts(text).unwrap();
        assert_eq!(g.to_darts(), text);
    }
    // Edge order inside a node is kept: V1's first normal node reads (1, 0).
    let g = Genotype::from_darts(DARTS_V1).unwrap();
    assert_eq!(g.normal.nodes[0], [Edge::new(Op::SepConv3x3, 1), Edge::new(Op::SepConv3x3, 0)]);
    assert_eq!(g.reduce.nodes[3], [Edge::new(Op::SkipConnect, 2), Edge::new(Op::AvgPool3x3, 0)]);
}

#[test]
fn darts_text_loose_forms() {
    let loose = r#"
        Genotype(
          normal = [
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
            ('skip_connect', 0), ('sep_conv_3x3', 1),
            ('skip_connect', 0), ('sep_conv_3x3', 1),
            ('sep_conv_3x3', 0), ('skip_connect', 2),
          ],
          normal_concat = range(2, 6),
          reduce_concat=list(range(2, 6)),
          reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0),
                  ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)],
        )
    "#;
    assert_eq!(Genotype::from_darts(loose).unwrap().to_darts(), DARTS_V1);
}

#[test]
fn text_json_text() {
    let g = Genotype::from_darts(DARTS_V2).unwrap();
    let json = Spec::new(g).to_json_pretty();
    let back = Spec::from_json(&json).unwrap();
    assert_eq!(back.arch.text(), DARTS_V2);
}

#[test]
fn json_text_json() {
    let mut spec = Spec::new(Genotype::from_darts(DARTS_V1).unwrap());
    spec.name = Some("DARTS_V1".into());
    let json = spec.to_json_pretty();
    let text = Spec::from_json(&json).unwrap().arch.text();
    let again = Spec { name: Some("DARTS_V1".into()), ..Spec::new(Genotype::from_darts(&text).unwrap()) };
    assert_eq!(again.to_json_pretty(), json);
    // The JSON carries ops by their DARTS names.
    assert!(json.contains("\"op\": \"sep_conv_3x3\""), "{json}");
    assert!(json.contains("\"version\": 1"), "{json}");
}

#[test]
fn unknown_op_is_named_with_the_allowed_list() {
    let e = message(Op::from_name("sep_conv_7x7").unwrap_err());
    assert!(e.contains("'sep_conv_7x7'"), "{e}");
    for op in Op::ALL {
        assert!(e.contains(op.name()), "{e} does not list {op}");
    }
    // In text: position and field are given.
    let text = DARTS_V1.replacen("('max_pool_3x3', 1)", "('sep_conv_7x7', 1)", 1);
    let e = message(Genotype::from_darts(&text).unwrap_err());
    assert!(e.contains("'sep_conv_7x7'") && e.contains("reduce, edge 1") && e.contains("column"), "{e}");
    assert!(e.contains("dil_conv_5x5"), "{e}");
    // In JSON too.
    let json = Spec::new(Genotype::from_darts(DARTS_V1).unwrap()).to_json_pretty().replacen("avg_pool_3x3", "sep_conv_7x7", 1);
    let e = message(Spec::from_json(&json).unwrap_err());
    assert!(e.contains("'sep_conv_7x7'") && e.contains("skip_connect") && e.contains("line"), "{e}");
}

#[test]
fn op_names_round_trip() {
    for op in Op::ALL {
        assert_eq!(Op::from_name(op.name()).unwrap(), op);
        assert_eq!(Op::ALL[op.index()], op);
    }
    assert_eq!(Op::SEARCHABLE.len(), 7);
    assert!(!Op::SEARCHABLE.contains(&Op::None));
}

#[test]
fn bad_input_index_is_named() {
    // Node 3 (the second intermediate node) may read 0..=2; give it 3.
    let text = DARTS_V1.replacen("('skip_connect', 0)", "('skip_connect', 3)", 1);
    let e = message(Genotype::from_darts(&text).unwrap_err());
    assert!(e.contains("normal cell") && e.contains("node 3") && e.contains("input 3") && e.contains("0..=2"), "{e}");
}

#[test]
fn other_genotype_errors() {
    let none = DARTS_V1.replacen("('skip_connect', 2)", "('none', 2)", 1);
    let e = message(Genotype::from_darts(&none).unwrap_err());
    assert!(e.contains("'none'") && e.contains("DARTS derivation excludes"), "{e}");

    let same = DARTS_V1.replacen("('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 1), ('sep_conv_3x3', 1)", 1);
    let e = message(Genotype::from_darts(&same).unwrap_err());
    assert!(e.contains("distinct") && e.contains("node 2"), "{e}");

    let concat = DARTS_V1.replacen("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 6]", 1);
    let e = message(Genotype::from_darts(&concat).unwrap_err());
    assert!(e.contains("normal_concat") && e.contains("6") && e.contains("2..=5"), "{e}");

    let odd = DARTS_V1.replacen("('sep_conv_3x3', 1), ", "", 1);
    let e = message(Genotype::from_darts(&odd).unwrap_err());
    assert!(e.contains("even number"), "{e}");

    let missing = DARTS_V1.replacen(", reduce_concat=[2, 3, 4, 5]", "", 1);
    let e = message(Genotype::from_darts(&missing).unwrap_err());
    assert!(e.contains("missing field 'reduce_concat'"), "{e}");

    let syntax = DARTS_V1.replacen("('skip_connect', 0), ('sep_conv_3x3', 1)", "('skip_connect', 0) ('sep_conv_3x3', 1)", 1);
    let e = message(Genotype::from_darts(&syntax).unwrap_err());
    assert!(e.contains("line 1, column") && e.contains("normal, edge 2") && e.contains("expected ',' or ']'"), "{e}");

    let e = message(Genotype::from_darts("Genotype(normal=[], colour=[])").unwrap_err());
    assert!(e.contains("unknown field 'colour'"), "{e}");
}

#[test]
fn spec_version_and_fields_are_checked() {
    let json = Spec::new(Genotype::from_darts(DARTS_V2).unwrap()).to_json_pretty();
    let newer = json.replacen("\"version\": 1", "\"version\": 2", 1);
    let e = message(Spec::from_json(&newer).unwrap_err());
    assert!(e.contains("version 2") && e.contains("newer"), "{e}");
    let zero = json.replacen("\"version\": 1", "\"version\": 0", 1);
    assert!(message(Spec::from_json(&zero).unwrap_err()).contains("version 0"));
    let none = json.replacen("\"version\": 1,", "", 1);
    assert!(message(Spec::from_json(&none).unwrap_err()).contains("no \"version\""));
    let extra = json.replacen("\"version\": 1,", "\"version\": 1, \"learning_rate\": 0.1,", 1);
    let e = message(Spec::from_json(&extra).unwrap_err());
    assert!(e.contains("unknown field `learning_rate`"), "{e}");
    let nested = json.replacen("\"input\": 0", "\"input\": 0, \"weight\": 1", 1);
    assert!(message(Spec::from_json(&nested).unwrap_err()).contains("unknown field `weight`"));
    // The genotype inside is validated.
    let bad = json.replacen("\"input\": 2", "\"input\": 9", 1);
    assert!(message(Spec::from_json(&bad).unwrap_err()).contains("input 9"));
}

fn ops_except(skip: &[Op]) -> Vec<Op> {
    Op::SEARCHABLE.into_iter().filter(|op| !skip.contains(op)).collect()
}

#[test]
fn search_space_construction() {
    let d = SearchSpace::default();
    assert_eq!(d.ops(), &Op::SEARCHABLE[..]);
    assert_eq!(d.nodes(), 4);
    assert_eq!(d.size(), 180.0 * 7f64.powi(8));
    assert!((d.log10_size() - d.size().log10()).abs() < 1e-9);
    assert!(SearchSpace::new(vec![], 4).is_err());
    assert!(SearchSpace::new(vec![Op::SkipConnect], 0).is_err());
    assert!(message(SearchSpace::new(vec![Op::SkipConnect, Op::SkipConnect], 4).unwrap_err()).contains("twice"));
    assert!(message(SearchSpace::new(vec![Op::None, Op::SkipConnect], 4).unwrap_err()).contains("'none'"));
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<SearchSpace>(&json).unwrap(), d);
    assert!(serde_json::from_str::<SearchSpace>(r#"{"ops": [], "nodes": 4}"#).is_err());
}

#[test]
fn samples_are_valid_and_in_the_space() {
    let space = SearchSpace::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..10_000 {
        let g = space.sample(&mut rng);
        g.validate().unwrap();
        space.contains(&g).unwrap();
        assert_eq!(g.normal.concat, vec![2, 3, 4, 5]);
        assert_eq!(Genotype::from_darts(&g.to_darts()).unwrap(), g);
    }
}

/// Pearson chi-square of observed counts against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

#[test]
fn sampling_is_uniform() {
    let space = SearchSpace::default();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let draws = 20_000;
    let mut ops = HashMap::new();
    // inputs[node slot][edge][input]
    let mut inputs = vec![vec![vec![0u64; 6]; 2]; 4];
    for _ in 0..draws {
        let g = space.sample(&mut rng);
        for cell in [&g.normal, &g.reduce] {
            for (i, pair) in cell.nodes.iter().enumerate() {
                for (e, edge) in pair.iter().enumerate() {
                    *ops.entry(edge.op).or_insert(0u64) += 1;
                    inputs[i][e][edge.input] += 1;
                }
            }
        }
    }
    let op_counts: Vec<u64> = Op::SEARCHABLE.iter().map(|op| ops[op]).collect();
    let expected = (draws * 16) as f64 / 7.0;
    for (op, &c) in Op::SEARCHABLE.iter().zip(&op_counts) {
        assert!((c as f64 - expected).abs() < 0.02 * expected, "{op}: {c} vs {expected}");
    }
    // 6 degrees of freedom: P(chi2 > 30) < 1e-4.
    assert!(chi_square(&op_counts) < 30.0, "ops {op_counts:?}");
    for (i, per_edge) in inputs.iter().enumerate() {
        let node = i + 2;
        for counts in per_edge {
            let counts = &counts[..node];
            let expected = (draws * 2) as f64 / node as f64;
            for &c in counts {
                assert!((c as f64 - expected).abs() < 0.04 * expected, "node {node}: {counts:?}");
            }
            // node-1 degrees of freedom, at most 4: P(chi2 > 25) < 1e-4.
            assert!(chi_square(counts) < 25.0, "node {node}: {counts:?}");
        }
    }
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let space = SearchSpace::default();
    let a: Vec<Genotype> = (0..5).scan(ChaCha8Rng::seed_from_u64(7), |r, _| Some(space.sample(r))).collect();
    let b: Vec<Genotype> = (0..5).scan(ChaCha8Rng::seed_from_u64(7), |r, _| Some(space.sample(r))).collect();
    let c: Vec<Genotype> = (0..5).scan(ChaCha8Rng::seed_from_u64(8), |r, _| Some(space.sample(r))).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut r1 = ChaCha8Rng::seed_from_u64(9);
    let mut r2 = ChaCha8Rng::seed_from_u64(9);
    assert_eq!(space.mutate(&a[0], &mut r1), space.mutate(&a[0], &mut r2));
}

#[test]
fn mutation_yields_a_valid_different_genotype() {
    let space = SearchSpace::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut g = space.sample(&mut rng);
    let (mut op_changes, mut input_changes) = (0, 0);
    for _ in 0..10_000 {
        let m = space.mutate(&g, &mut rng);
        space.contains(&m).unwrap();
        assert_ne!(m.key(), g.key(), "mutation of {} changed nothing", g.to_darts());
        // Exactly one edge differs, in exactly one of op or input.
        let diffs: Vec<(Edge, Edge)> = g
            .cells()
            .iter()
            .zip(m.cells())
            .flat_map(|((_, a), (_, b))| a.edges().zip(b.edges()).map(|((_, x), (_, y))| (x, y)).collect::<Vec<_>>())
            .filter(|(x, y)| x != y)
            .collect();
        assert_eq!(diffs.len(), 1, "{} -> {}", g.to_darts(), m.to_darts());
        let (x, y) = diffs[0];
        if x.op != y.op {
            op_changes += 1;
            assert_eq!(x.input, y.input);
        } else {
            input_changes += 1;
        }
        g = m;
    }
    assert!(op_changes > 4000 && input_changes > 4000, "{op_changes} op vs {input_changes} input changes");
    // From the DARTS reference genotype too (edge order (1, 0) and all).
    let v2 = Genotype::from_darts(DARTS_V2).unwrap();
    for _ in 0..100 {
        assert_ne!(space.mutate(&v2, &mut rng).key(), v2.key());
    }
}

#[test]
fn mutation_changes_what_it_can() {
    // One op and one node: nothing can change, so the genotype comes back as is.
    let tiny = SearchSpace::new(vec![Op::SkipConnect], 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let g = tiny.sample(&mut rng);
    assert_eq!(tiny.mutate(&g, &mut rng), g);
    // One op, two nodes: only the inputs of node 3 can move.
    let inputs_only = SearchSpace::new(vec![Op::SkipConnect], 2).unwrap();
    let g = inputs_only.sample(&mut rng);
    for _ in 0..100 {
        let m = inputs_only.mutate(&g, &mut rng);
        assert_ne!(m, g);
        assert_eq!(m.normal.nodes[0], g.normal.nodes[0]);
        assert_eq!(m.reduce.nodes[0], g.reduce.nodes[0]);
    }
    // Two ops, one node: only ops can change.
    let ops_only = SearchSpace::new(vec![Op::SkipConnect, Op::MaxPool3x3], 1).unwrap();
    let g = ops_only.sample(&mut rng);
    for _ in 0..100 {
        let m = ops_only.mutate(&g, &mut rng);
        assert_ne!(m, g);
        ops_only.contains(&m).unwrap();
    }
}

#[test]
fn restricted_op_sets_are_respected() {
    let no_5x5 = SearchSpace::new(ops_except(&[Op::SepConv5x5, Op::DilConv5x5]), 4).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut g = no_5x5.sample(&mut rng);
    for _ in 0..2000 {
        let s = no_5x5.sample(&mut rng);
        g = no_5x5.mutate(&g, &mut rng);
        for x in [&s, &g] {
            for (_, cell) in x.cells() {
                assert!(cell.edges().all(|(_, e)| no_5x5.ops().contains(&e.op)), "{}", x.to_darts());
            }
        }
    }
    // DARTS V2 uses dil_conv_3x3, which a pools-and-skip space lacks.
    let small = SearchSpace::new(vec![Op::MaxPool3x3, Op::AvgPool3x3, Op::SkipConnect], 4).unwrap();
    let e = message(small.contains(&Genotype::from_darts(DARTS_V2).unwrap()).unwrap_err());
    assert!(e.contains("'sep_conv_3x3'") && e.contains("not in this search space"), "{e}");
    let three = SearchSpace::new(Op::SEARCHABLE.to_vec(), 3).unwrap();
    assert!(message(three.contains(&Genotype::from_darts(DARTS_V2).unwrap()).unwrap_err()).contains("4 intermediate nodes"));
}

#[test]
fn key_ignores_edge_order_within_a_node() {
    let v1 = Genotype::from_darts(DARTS_V1).unwrap();
    let mut swapped = v1.clone();
    swapped.normal.nodes[0].swap(0, 1);
    assert_ne!(swapped, v1);
    assert_eq!(swapped.key(), v1.key());
    let other = Genotype { normal: v1.reduce.clone(), reduce: v1.normal.clone() };
    assert_ne!(other.key(), v1.key());
    let _: &Cell = &v1.normal;
}

/// The example and the text form in docs/spec.md are DARTS V2 and stay parseable.
#[test]
fn docs_spec_example_is_darts_v2() {
    let doc = include_str!("../docs/spec.md");
    let block = |fence: &str| {
        let start = doc.find(fence).unwrap_or_else(|| panic!("no {fence} block")) + fence.len();
        doc[start..start + doc[start..].find("```").unwrap()].to_string()
    };
    let spec = Spec::from_json(&block("```json\n")).unwrap();
    assert_eq!(spec.name.as_deref(), Some("DARTS_V2"));
    assert_eq!(spec.arch.text(), DARTS_V2);
    assert_eq!(block("```text\n").trim(), DARTS_V2);
}

#[test]
fn hostile_concats_are_refused_without_allocating() {
    let with = |concat: &str| DARTS_V1.replace("normal_concat=[2, 3, 4, 5]", &format!("normal_concat={concat}"));
    for (concat, needle) in [
        ("range(2, 3000000000)", "more than 1024"),
        ("range(2, 99999999999999999999999)", "too large"),
        (&format!("{}range(2, 6){}", "list(".repeat(100_000), ")".repeat(100_000)), "nested"),
        (&format!("[{}]", vec!["2"; 5000].join(", ")), "more than 1024"),
    ] {
        let err = Genotype::from_darts(&with(concat)).unwrap_err().to_string();
        assert!(err.contains(needle), "{}: {err}", &concat[..concat.len().min(40)]);
    }
    // The ordinary forms still parse.
    assert!(Genotype::from_darts(&with("list(range(2, 6))")).is_ok());
    assert!(Genotype::from_darts(&with("range(2, 6)")).is_ok());
}

#[test]
fn an_nb201_spec_round_trips_and_is_checked() {
    let arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|";
    let spec = Spec::from_text(arch).unwrap();
    assert_eq!(spec.arch.text(), arch);
    let json = spec.to_json_pretty();
    assert!(json.contains("\"space\": \"nb201\"") && !json.contains("genotype"), "{json}");
    assert_eq!(Spec::from_json(&json).unwrap(), spec);
    // An NB201 search's best.json (arch beside its metrics) is the same spec.
    let best = format!("{{\"space\": \"nb201\", \"arch\": \"{arch}\", \"metrics\": {{\"val_accuracy\": 0.5}}}}");
    assert_eq!(Spec::from_text(&best).unwrap(), spec);
    // DARTS-only features say so.
    let e = message(spec.darts("autotune").map(|_| ()).unwrap_err());
    assert!(e.contains("autotune is built for DARTS cells only") && e.contains("nb201"), "{e}");
    // Mixed or broken forms are refused, naming the problem.
    let darts = Spec::new(Genotype::from_darts(DARTS_V2).unwrap()).to_json_pretty();
    let mixed = darts.replacen("\"version\": 1,", "\"version\": 1, \"arch\": \"|skip_connect~0|+|\",", 1);
    assert!(message(Spec::from_json(&mixed).unwrap_err()).contains("no \"arch\""));
    let unknown = json.replacen("nb201", "nb301", 1);
    assert!(message(Spec::from_json(&unknown).unwrap_err()).contains("unknown space \"nb301\""));
    let broken = json.replacen("nor_conv_3x3~0", "nor_conv_9x9~0", 1);
    assert!(message(Spec::from_json(&broken).unwrap_err()).contains("nor_conv_9x9"));
}
