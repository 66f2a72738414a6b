//! The NAS-Bench-201 space and network: arch strings both ways (every cell), their error
//! messages, sampling, mutation and enumeration; the network's parameter count by hand and
//! against NB201's published range, and on the GPU: forward in both modes on small images,
//! `none` nodes giving exact zeros, and a supernet step training only its path.

mod common;
use cellnas::gpu::test_gpu;
use common::graph::random_images;
use cellnas::nn::nb201::{self, Nb201Net};
use cellnas::nn::{BnStats, Mode, ParamStore};
use cellnas::ops::optim::Sgd;
use cellnas::space::{Nb201Cell, Nb201Op, Nb201Space};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// The brief's example; NB201's ResNet cell (its scripts query it by this string); the
/// benchmark's largest cell (every edge a 3x3 conv); the smallest (every edge cut).
const EXAMPLE: &str = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|";
const RESNET: &str = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|";
const LARGEST: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
const EMPTY: &str = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|";

fn cell(s: &str) -> Nb201Cell {
    Nb201Cell::parse(s).unwrap()
}

fn err(s: &str) -> String {
    match Nb201Cell::parse(s) {
        Ok(c) => panic!("{s:?} parsed as {c}"),
        Err(e @ cellnas::Error::Spec(_)) => e.to_string(),
        Err(e) => panic!("{s:?}: expected a Spec error, got {e:?}"),
    }
}

#[test]
fn arch_strings_round_trip_over_the_whole_space() {
    let all = Nb201Space::default().all();
    assert_eq!(all.len(), 15625);
    for c in &all {
        let s = c.to_arch_string();
        let back = Nb201Cell::parse(&s).unwrap();
        assert_eq!(&back, c);
        assert_eq!(back.to_arch_string(), s);
        assert_eq!(c.key(), s);
    }
}

#[test]
fn published_arch_strings_parse() {
    use Nb201Op::*;
    for s in [EXAMPLE, RESNET, LARGEST, EMPTY] {
        assert_eq!(cell(s).to_arch_string(), s);
    }
    let r = cell(RESNET);
    assert_eq!(r.ops, [NorConv3x3, None, NorConv3x3, SkipConnect, None, SkipConnect]);
    assert_eq!((r.op(2, 1), r.op(3, 0), r.op(1, 1)), (Some(NorConv3x3), Some(SkipConnect), Option::None));
    assert_eq!(cell(&format!("  {EXAMPLE}\n")), cell(EXAMPLE), "surrounding whitespace (a file's newline) is ignored");
}

#[test]
fn bad_arch_strings_name_the_token() {
    let cases = [
        // unknown op, and a DARTS name that NB201 does not have
        ("|nor_conv_5x5~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"nor_conv_5x5\""),
        ("|nor_conv_3x3~0|+|sep_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "unknown NB201 op \"sep_conv_3x3\""),
        // missing and extra edges
        ("|nor_conv_3x3~0|+|skip_connect~0|+|skip_connect~0|none~1|nor_conv_3x3~2|", "missing the edge from node 1"),
        ("|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"none~1\": extra edge"),
        // wrong node count
        ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|", "2 node(s)"),
        (&format!("{EXAMPLE}+|none~0|none~1|none~2|none~3|"), "4 node(s)"),
        // wrong, repeated and unordered inputs; inputs that are not numbers
        ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~2|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"nor_conv_3x3~2\": input 2 is out of range"),
        ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~0|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"nor_conv_3x3~0\": repeats input 0"),
        ("|nor_conv_3x3~0|+|skip_connect~1|nor_conv_3x3~0|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"skip_connect~1\": expected input 0"),
        ("|nor_conv_3x3~x|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "input \"x\" is not a node number"),
        ("|nor_conv_3x3~00|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "input \"00\""),
        ("|nor_conv_3x3~-1|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "input \"-1\""),
        // malformed separators
        ("nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "node 1: \"nor_conv_3x3~0|\" must start and end with '|'"),
        ("|nor_conv_3x3~0|+|skip_connect~0||nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "empty edge"),
        ("|nor_conv_3x3:0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"nor_conv_3x3:0\": expected op~input"),
        ("|nor_conv_3x3~0~1|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "\"nor_conv_3x3~0~1\": expected op~input"),
        ("||+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "node 1: \"||\" is missing the edge from node 0"),
    ];
    for (s, want) in cases {
        let e = err(s);
        assert!(e.contains(want), "{s:?}: error should contain {want:?}, got: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    // An unknown op's message lists what is allowed.
    let e = err(cases[0].0);
    for op in Nb201Op::ALL {
        assert!(e.contains(op.name()), "{e}");
    }
}

#[test]
fn hostile_arch_strings_fail_cleanly() {
    let long = "|none~0|".repeat(10_000);
    let nested = "+".repeat(5000);
    let huge = format!("|none~{}|+|none~0|none~1|+|none~0|none~1|none~2|", "9".repeat(40));
    let hostile = [
        "", " ", "\n", "|", "||", "+", "++", "|+|+|", "~", "|~|+|~|~|+|~|~|~|", "|none~|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|~0|+|none~0|none~1|+|none~0|none~1|none~2|", "\0", "|none\n~0|+|x|+|y|", "|é~0|+|ü~0|☃~1|+|a~0|b~1|c~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+", "+|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~+0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~٣|+|none~0|none~1|+|none~0|none~1|none~2|",
        &long, &nested, &huge, "|nor_conv_3x3~18446744073709551616|+|a|+|b|",
    ];
    for s in hostile {
        let e = err(s);
        assert!(!e.contains('\n') && e.len() < 400, "{:?}: {e}", s.chars().take(30).collect::<String>());
    }
    // A multi-byte character at the cut of a quoted token must not split.
    let e = err(&format!("|{}~0|+|none~0|none~1|+|none~0|none~1|none~2|", "☃".repeat(60)));
    assert!(e.contains("☃\"..."), "{e}");
}

#[test]
fn serde_carries_the_arch_string() {
    let c = cell(EXAMPLE);
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, format!("\"{EXAMPLE}\""));
    assert_eq!(serde_json::from_str::<Nb201Cell>(&json).unwrap(), c);
    let e = serde_json::from_str::<Nb201Cell>("\"|none~0|+|none~0|\"").unwrap_err().to_string();
    assert!(e.contains("2 node(s)"), "{e}");
    assert_eq!(serde_json::to_string(&Nb201Op::NorConv1x1).unwrap(), "\"nor_conv_1x1\"");
    let space: Nb201Space = serde_json::from_str(r#"{"ops": ["skip_connect", "nor_conv_3x3"]}"#).unwrap();
    assert_eq!(space.ops(), [Nb201Op::SkipConnect, Nb201Op::NorConv3x3]);
    assert!(serde_json::from_str::<Nb201Space>(r#"{"ops": []}"#).is_err());
}

#[test]
fn space_rejects_empty_and_repeated_ops() {
    assert!(Nb201Space::new(vec![]).unwrap_err().to_string().contains("no ops"));
    let e = Nb201Space::new(vec![Nb201Op::None, Nb201Op::AvgPool3x3, Nb201Op::None]).unwrap_err().to_string();
    assert!(e.contains("'none' twice"), "{e}");
    let e = Nb201Space::new(vec![Nb201Op::SkipConnect]).unwrap().contains(&cell(RESNET)).unwrap_err().to_string();
    assert!(e.contains("edge 0 -> 1: op 'nor_conv_3x3'"), "{e}");
}

#[test]
fn enumeration_is_complete_unique_and_in_the_space() {
    for ops in [Nb201Op::ALL.to_vec(), vec![Nb201Op::AvgPool3x3, Nb201Op::None, Nb201Op::NorConv1x1], vec![Nb201Op::SkipConnect]] {
        let space = Nb201Space::new(ops.clone()).unwrap();
        let all = space.all();
        assert_eq!(all.len(), ops.len().pow(6));
        assert_eq!(space.size(), all.len());
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "{space}: repeats");
        assert!(all.iter().all(|c| space.contains(c).is_ok()));
        // Fixed order: the first cell is every edge the first op, the last the last op.
        assert_eq!(all[0].ops, [ops[0]; 6]);
        assert_eq!(all[all.len() - 1].ops, [ops[ops.len() - 1]; 6]);
    }
    assert_eq!(Nb201Space::default().all()[1].to_arch_string(), "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|");
}

#[test]
fn sample_and_mutate_stay_in_the_space() {
    let space = Nb201Space::new(vec![Nb201Op::None, Nb201Op::NorConv3x3, Nb201Op::AvgPool3x3]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut seen = HashSet::new();
    let mut counts = [[0usize; 5]; 6];
    for _ in 0..3000 {
        let c = space.sample(&mut rng);
        space.contains(&c).unwrap();
        for (e, op) in c.ops.iter().enumerate() {
            counts[e][op.index()] += 1;
        }
        let m = space.mutate(&c, &mut rng);
        space.contains(&m).unwrap();
        assert_eq!(c.ops.iter().zip(&m.ops).filter(|(a, b)| a != b).count(), 1, "{c} -> {m}");
        seen.insert(c);
    }
    // 729 cells, 3000 draws: a uniform sampler leaves almost none unseen; each op ~1000 per edge.
    assert!(seen.len() > 700, "{} distinct", seen.len());
    for row in counts {
        for op in space.ops() {
            assert!((850..1150).contains(&row[op.index()]), "{counts:?}");
        }
    }
    // A one-op space has nothing to change.
    let one = Nb201Space::new(vec![Nb201Op::SkipConnect]).unwrap();
    let c = one.sample(&mut rng);
    assert_eq!(one.mutate(&c, &mut rng), c);
}

#[test]
fn encode_is_one_hot_per_edge() {
    let c = cell(EXAMPLE);
    let v = c.encode();
    assert_eq!(v.len(), 30);
    for (e, op) in c.ops.iter().enumerate() {
        let row = &v[e * 5..e * 5 + 5];
        assert_eq!(row.iter().sum::<f32>(), 1.0);
        assert_eq!(row[op.index()], 1.0);
    }
    let space = Nb201Space::new(vec![Nb201Op::SkipConnect, Nb201Op::NorConv3x3, Nb201Op::None]).unwrap();
    let v = space.encode(&c).unwrap();
    assert_eq!(v, [0., 1., 0., 1., 0., 0., 0., 1., 0., 1., 0., 0., 0., 0., 1., 0., 1., 0.]);
    assert!(space.encode(&cell(RESNET)).is_ok());
    assert!(Nb201Space::new(vec![Nb201Op::None]).unwrap().encode(&c).is_err());
}

fn net(in_channels: usize, channels: usize, n: usize, supernet: bool) -> Nb201Net {
    Nb201Net { in_channels, classes: 10, channels, cells_per_stage: n, supernet }
}

/// Stand-alone parameters by hand. A cell at D channels: nor_conv_kxk is a k*k*D*D conv and a
/// 2D affine BN, the other ops have none. A reduction block D -> 2D: conv_a 9*D*2D, conv_b
/// 9*2D*2D, a BN of 2*2D after each, shortcut 1x1 D*2D: 56D^2 + 8D. Stem 9*in*C + 2C; final BN
/// 2*4C; classifier 4C*classes + classes.
fn hand_count(cfg: &Nb201Net, c: &Nb201Cell) -> u64 {
    let (ci, cc, k, n) = (cfg.in_channels as u64, cfg.channels as u64, cfg.classes as u64, cfg.cells_per_stage as u64);
    let per_cell = |d: u64| -> u64 {
        c.ops
            .iter()
            .map(|op| match op {
                Nb201Op::NorConv1x1 => d * d + 2 * d,
                Nb201Op::NorConv3x3 => 9 * d * d + 2 * d,
                _ => 0,
            })
            .sum()
    };
    let reduction = |d: u64| 56 * d * d + 8 * d;
    let stem = 9 * ci * cc + 2 * cc;
    stem + n * (per_cell(cc) + per_cell(2 * cc) + per_cell(4 * cc)) + reduction(cc) + reduction(2 * cc) + 2 * 4 * cc + 4 * cc * k + k
}

#[test]
fn standalone_parameter_count_matches_a_hand_count() {
    let mixed = cell("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|");
    for (cfg, c) in [(net(3, 4, 1, false), &mixed), (net(1, 6, 2, false), &mixed), (net(3, 4, 1, false), &cell(EMPTY))] {
        let (params, flops) = nb201::size(&cfg, c, 8, 8).unwrap();
        assert_eq!(params, hand_count(&cfg, c), "{cfg:?} {c}");
        assert!(flops > 0);
    }
    // C = 4, N = 1, RGB, the mixed cell (two 3x3 convs and a 1x1: 19D^2 + 6D per cell): stem
    // 116, cells 328 + 1264 + 4960, reductions 928 + 3648, final BN 32, classifier 170.
    assert_eq!(nb201::size(&net(3, 4, 1, false), &mixed, 8, 8).unwrap().0, 11_446);
    // NB201's CIFAR-10 networks (C = 16, N = 5) span 0.073306 to 1.531546 M parameters: the
    // all-none and all-3x3 cells. Supernet BNs have no affine, so its path counts less.
    // Their FLOPs, 7.78305 to 220.11969 M, are multiply-adds plus the classifier's 10 bias adds;
    // ours count 2 per multiply-add.
    let cifar = net(3, 16, 5, false);
    assert_eq!(nb201::size(&cifar, &cell(EMPTY), 32, 32).unwrap(), (73_306, 2 * (7_783_050 - 10)));
    assert_eq!(nb201::size(&cifar, &cell(LARGEST), 32, 32).unwrap(), (1_531_546, 2 * (220_119_690 - 10)));
    assert!(nb201::size(&Nb201Net { supernet: true, ..cifar }, &cell(LARGEST), 32, 32).unwrap().0 < 1_531_546);
}

#[test]
fn parameter_names_depend_on_stage_cell_edge_and_op() {
    let cfg = net(1, 4, 2, true);
    let a = nb201::expected_tensors(&cfg, &cell(EXAMPLE), 8, 8).unwrap();
    // The same cell with edge 2 -> 3 changed from nor_conv_3x3 to nor_conv_1x1.
    let b = nb201::expected_tensors(&cfg, &cell("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"), 8, 8).unwrap();
    let only = |x: &std::collections::BTreeMap<String, usize>, y: &std::collections::BTreeMap<String, usize>| -> Vec<String> { x.keys().filter(|k| !y.contains_key(*k)).cloned().collect() };
    let (in_a, in_b) = (only(&a, &b), only(&b, &a));
    // 3 stages x 2 cells, each a conv weight and the BN's two statistics (no affine in a supernet).
    assert_eq!(in_a.len(), 18, "{in_a:?}");
    assert!(in_a.iter().all(|n| n.contains(".node3.from2.nor_conv_3x3.")), "{in_a:?}");
    assert!(in_b.iter().all(|n| n.contains(".node3.from2.nor_conv_1x1.")), "{in_b:?}");
    assert!(a.contains_key("stage2.cell1.node1.from0.nor_conv_3x3.conv"), "{:?}", a.keys());
    assert!(a.contains_key("bn:reduce2.conv_a.bn.var") && a.contains_key("reduce1.shortcut.conv") && a.contains_key("classifier.bias"));
    // Shared tensors have the same sizes in both networks.
    assert!(a.iter().filter(|(k, _)| b.contains_key(*k)).all(|(k, v)| b[k] == *v));
}

#[test]
fn bad_configs_and_image_sizes_are_refused_clearly() {
    let c = cell(EXAMPLE);
    for (h, w) in [(10, 10), (7, 8), (8, 6), (0, 8), (2, 2)] {
        let e = nb201::size(&net(1, 4, 1, false), &c, h, w).unwrap_err().to_string();
        assert!(e.contains(&format!("{h}x{w}")) && e.contains("multiples of 4"), "{e}");
    }
    for (cfg, want) in [
        (Nb201Net { classes: 1, ..net(1, 4, 1, false) }, "2 classes"),
        (net(1, 0, 1, false), "channels and cells per stage must be at least 1"),
        (net(1, 4, 0, false), "channels and cells per stage must be at least 1"),
        (net(1, 5000, 1, false), "channels must be at most 4096"),
        (net(1, 4, usize::MAX, false), "cells per stage must be at most"),
    ] {
        let e = nb201::size(&cfg, &c, 8, 8).unwrap_err().to_string();
        assert!(e.contains(want), "{cfg:?}: {e}");
    }
    // 4x4 is the smallest image: the last stage runs on 1x1.
    assert!(nb201::size(&net(1, 4, 1, false), &c, 4, 12).is_ok());
}

/// Logits of one batch (and, in training mode, the cross-entropy loss) through `cfg` / `c`.
fn run(store: &mut ParamStore, bn: &mut BnStats, cfg: &Nb201Net, c: &Nb201Cell, mode: Mode, x: &[f32], shape: [usize; 4]) -> (Vec<f32>, Option<f32>) {
    common::graph::logits_and_loss(store, bn, cfg.classes, mode, x, shape, |g, x| nb201::forward(g, cfg, c, x))
}

#[test]
fn forward_runs_in_train_and_eval_mode() {
    let gpu = test_gpu();
    // Every op on some edge; odd channel counts and non-square stages.
    let c = cell("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|");
    for (shape, supernet) in [([2, 3, 8, 8], false), ([3, 1, 12, 12], true), ([2, 3, 8, 12], true)] {
        let cfg = Nb201Net { in_channels: shape[1], classes: 5, channels: 3, cells_per_stage: 1, supernet };
        let x = random_images(2, shape.iter().product());
        let mut store = ParamStore::new(&gpu, 1);
        let mut bn = BnStats::new();
        for mode in [Mode::Train, Mode::Eval] {
            let (logits, loss) = run(&mut store, &mut bn, &cfg, &c, mode, &x, shape);
            assert_eq!(logits.len(), shape[0] * 5);
            assert!(logits.iter().all(|v| v.is_finite()) && logits.iter().any(|v| *v != 0.0), "{shape:?} {mode:?}: {logits:?}");
            assert!(loss.is_none_or(|l| l.is_finite() && l > 0.0), "{loss:?}");
            store.clear_touched();
        }
    }
}

#[test]
fn all_none_cells_leave_only_the_classifier_bias() {
    let gpu = test_gpu();
    for supernet in [false, true] {
        let cfg = net(3, 4, 1, supernet);
        let (mut store, mut bn) = (ParamStore::new(&gpu, 3), BnStats::new());
        let x = random_images(3, 2 * 3 * 8 * 8);
        for mode in [Mode::Train, Mode::Eval] {
            // Every cell outputs zeros, so each block after it does (ReLU-conv-BN of zeros with
            // beta 0, a pool and a conv of zeros): the pooled features are 0, the logits the bias.
            let (logits, _) = run(&mut store, &mut bn, &cfg, &cell(EMPTY), mode, &x, [2, 3, 8, 8]);
            let bias = store.get("classifier.bias").unwrap().value.to_vec(&gpu).unwrap();
            assert!(bias.iter().any(|b| *b != 0.0));
            assert_eq!(logits, [bias.clone(), bias].concat(), "supernet {supernet} {mode:?}");
            store.clear_touched();
        }
    }
}

#[test]
fn a_node_with_only_none_inputs_adds_exact_zeros() {
    let gpu = test_gpu();
    // Node 1 is all `none`, so zeros; the ops reading it (1x1 conv into node 2, pool into node 3)
    // run on zeros and give zeros, so both cells compute node 2 = node 0 and node 3 = node 0 +
    // conv3x3(node 2), bit for bit, with the same tensors (names depend on edge and op only).
    let with_zero_node = cell("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|");
    let plain = cell("|none~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|");
    let cfg = net(1, 4, 1, false);
    let x = random_images(4, 2 * 12 * 12);
    let (mut store, mut bn) = (ParamStore::new(&gpu, 5), BnStats::new());
    for mode in [Mode::Train, Mode::Eval] {
        let (a, _) = run(&mut store, &mut bn, &cfg, &with_zero_node, mode, &x, [2, 1, 12, 12]);
        let (b, _) = run(&mut store, &mut bn, &cfg, &plain, mode, &x, [2, 1, 12, 12]);
        assert_eq!(a, b, "{mode:?}");
        store.clear_touched();
    }
}

#[test]
fn a_supernet_step_trains_only_its_path() {
    let gpu = test_gpu();
    let cfg = net(1, 4, 1, true);
    let space = Nb201Space::default();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (mut store, mut bn) = (ParamStore::new(&gpu, 7), BnStats::new());
    let x = random_images(5, 8 * 8 * 8);
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    // Build the supernet's tensors for a few paths, then poison every gradient: a path's step
    // must write exactly the gradients of the path's parameters, and finite ones.
    let paths: Vec<Nb201Cell> = (0..4).map(|_| space.sample(&mut rng)).chain([cell(LARGEST)]).collect();
    for p in &paths {
        run(&mut store, &mut bn, &cfg, p, Mode::Eval, &x, [8, 1, 8, 8]);
    }
    let mut losses = vec![];
    for round in 0..6 {
        let p = &paths[round % paths.len()];
        for n in store.names().cloned().collect::<Vec<_>>() {
            store.get(&n).unwrap().grad.poison(&gpu).unwrap();
        }
        let (_, loss) = run(&mut store, &mut bn, &cfg, p, Mode::Train, &x, [8, 1, 8, 8]);
        let want: Vec<String> = nb201::expected_tensors(&cfg, p, 8, 8).unwrap().into_keys().filter(|k| !k.starts_with("bn:")).collect();
        let touched = store.touched();
        // An op cut off from the output by `none` edges gets no gradient (the stem too, behind
        // a cell of all `none`); every path trains the reductions (7 tensors each) and the head
        // (4), and the largest path has nothing cut off.
        assert!(touched.iter().all(|n| want.contains(n)), "{p}: {touched:?} not all in {want:?}");
        assert!(touched.len() >= 18, "{p}: {touched:?}");
        if *p == cell(LARGEST) {
            assert_eq!(touched, want);
        }
        for n in &touched {
            assert!(store.get(n).unwrap().grad.to_vec(&gpu).unwrap().iter().all(|g| g.is_finite()), "{p}: {n}");
        }
        let mut step = gpu.step();
        store.sgd_update(&mut step, &sgd, Some(5.0)).unwrap();
        step.submit().unwrap();
        losses.push((round, loss.unwrap()));
    }
    // The largest path, trained on one batch, fits it.
    let p = cell(LARGEST);
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..12 {
        let (_, loss) = run(&mut store, &mut bn, &cfg, &p, Mode::Train, &x, [8, 1, 8, 8]);
        let mut step = gpu.step();
        store.sgd_update(&mut step, &sgd, Some(5.0)).unwrap();
        step.submit().unwrap();
        first.get_or_insert(loss.unwrap());
        last = loss.unwrap();
    }
    assert!(last < 0.7 * first.unwrap(), "loss {first:?} -> {last} (rounds {losses:?})");
}
