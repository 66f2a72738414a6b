//! The ENAS macro space and network (issue 13): text both ways over many samples, errors that
//! name the token, sampling, mutation and FairNAS paths, specs and space configs; the
//! network's parameter count by hand and its names; on the GPU, forward in both modes and a
//! supernet step that trains only its path; and `cellnas search --space macro` end to end.

mod common;
use cellnas::gpu::test_gpu;
use cellnas::nn::macro_net::{self, MacroNet};
use cellnas::nn::{BnStats, Mode, ParamStore};
use cellnas::ops::optim::Sgd;
use cellnas::space::{space_from_name, Arch, MacroArch, MacroOp, MacroSpace, Space, SpaceConfig, Spec};
use common::graph::random_images;
use common::{fails, history_without_clock, kill_when, lines, ok, read_json, run, strs, tmp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashSet};

/// Every op once, skips of every kind: none, a residual (i-1), long ones across reductions.
const EXAMPLE: &str = "conv_3x3|sep_conv_5x5+0|max_pool_3x3+0,1|conv_5x5|avg_pool_3x3+1,3|sep_conv_3x3+0,2,4";

fn arch(s: &str) -> MacroArch {
    MacroArch::parse(s).unwrap()
}

fn err(s: &str) -> String {
    match MacroArch::parse(s) {
        Ok(a) => panic!("{s:?} parsed as {a}"),
        Err(e @ cellnas::Error::Spec(_)) => e.to_string(),
        Err(e) => panic!("{s:?}: expected a Spec error, got {e:?}"),
    }
}

#[test]
fn text_round_trips_over_many_samples() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for layers in [1, 2, 3, 6, 12, 40] {
        let space = MacroSpace::new(MacroOp::ALL.to_vec(), layers).unwrap();
        for _ in 0..500 {
            let a = space.sample(&mut rng);
            let text = a.to_text();
            assert_eq!(MacroArch::parse(&text).unwrap(), a, "{text}");
            assert_eq!(a.key(), text);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<MacroArch>(&json).unwrap(), a);
        }
    }
    let a = arch(EXAMPLE);
    assert_eq!((a.len(), a.to_text()), (6, EXAMPLE.to_string()));
    assert_eq!(a.layers()[5].skips, [0, 2, 4]);
    assert_eq!(arch(&format!(" {EXAMPLE}\n")), a, "surrounding whitespace (a file's newline) is ignored");
}

#[test]
fn bad_text_names_the_token() {
    let cases = [
        ("conv_3x3|conv_7x7+0", "layer 1 \"conv_7x7+0\": unknown macro op \"conv_7x7\""),
        ("conv_3x3|nor_conv_3x3", "unknown macro op \"nor_conv_3x3\""),
        ("conv_3x3|conv_3x3+0|conv_5x5+3", "layer 2 \"conv_5x5+3\": skip 3 points forward"),
        ("conv_3x3|conv_3x3+0|conv_5x5+2", "layer 2 \"conv_5x5+2\": skip 2 points to the layer itself"),
        ("conv_3x3+0|conv_3x3", "layer 0 \"conv_3x3+0\": skip 0 points to the layer itself; layer 0 reads the stem"),
        ("conv_3x3|conv_3x3|conv_5x5+1,0", "\"conv_5x5+1,0\": skip 0 after 1"),
        ("conv_3x3|conv_3x3|conv_5x5+1,1", "skip 1 is listed twice"),
        ("conv_3x3|conv_3x3+x", "layer 1 \"conv_3x3+x\": skip \"x\" is not a layer number"),
        ("conv_3x3|conv_3x3+00", "skip \"00\" is not a layer number"),
        ("conv_3x3|conv_3x3+-0", "skip \"-0\""),
        ("conv_3x3|conv_3x3+0+0", "skip \"0+0\""),
        ("conv_3x3|conv_3x3+", "layer 1 \"conv_3x3+\": '+' without skips"),
        ("conv_3x3|conv_3x3+0,", "skip \"\" is not a layer number"),
        ("conv_3x3||conv_3x3", "layer 1 is empty"),
        ("conv_3x3|", "layer 1 is empty"),
        ("conv_3x3 |conv_3x3", "unknown macro op \"conv_3x3 \""),
        ("", "empty"),
    ];
    for (s, want) in cases {
        let e = err(s);
        assert!(e.contains(want), "{s:?}: error should contain {want:?}, got: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = err(cases[0].0);
    assert!(MacroOp::ALL.iter().all(|op| e.contains(op.name())), "an unknown op's message lists the ops: {e}");
    // The constructor keeps the same invariants.
    let l = |op, skips: &[usize]| cellnas::space::MacroLayer { op, skips: skips.to_vec() };
    let e = MacroArch::new(vec![l(MacroOp::Conv3x3, &[]), l(MacroOp::Conv3x3, &[1])]).unwrap_err().to_string();
    assert!(e.contains("layer 1: skip 1 points to the layer itself"), "{e}");
    assert!(MacroArch::new(vec![]).is_err());
}

#[test]
fn hostile_text_fails_cleanly() {
    let many = vec!["conv_3x3"; 257].join("|");
    let long = format!("conv_3x3|conv_3x3+{}", "0,".repeat(200_000));
    let huge = format!("conv_3x3|conv_3x3+{}", "9".repeat(40));
    let hostile = ["|", "||", "+", ",", "+0", "\0", "conv_3x3\n|conv_3x3", "é|ü+☃", "conv_3x3|conv_3x3+٣", &many, &long, &huge, "conv_3x3|conv_3x3+18446744073709551616"];
    for s in hostile {
        let e = err(s);
        assert!(!e.contains('\n') && e.len() < 400, "{:?}: {e}", s.chars().take(30).collect::<String>());
    }
    assert!(err(&many).contains("1 to 256 layers, got 257"));
    assert!(err(&format!("{}+0", "☃".repeat(60))).contains("☃\"..."), "a cut never splits a character");
}

/// How many choices differ: ops, plus skips in one and not the other.
fn distance(a: &MacroArch, b: &MacroArch) -> usize {
    a.layers()
        .iter()
        .zip(b.layers())
        .map(|(x, y)| {
            let (sx, sy): (BTreeSet<_>, BTreeSet<_>) = (x.skips.iter().collect(), y.skips.iter().collect());
            usize::from(x.op != y.op) + sx.symmetric_difference(&sy).count()
        })
        .sum()
}

#[test]
fn sample_and_mutate_stay_in_the_space() {
    let space = MacroSpace::new(vec![MacroOp::SepConv3x3, MacroOp::MaxPool3x3, MacroOp::Conv5x5], 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut ops, mut skips) = ([0usize; 6], 0usize);
    let n = 4000;
    for _ in 0..n {
        let a = space.sample(&mut rng);
        space.contains(&a).unwrap();
        a.layers().iter().for_each(|l| ops[l.op.index()] += 1);
        skips += a.layers().iter().map(|l| l.skips.len()).sum::<usize>();
        let m = space.mutate(&a, &mut rng);
        space.contains(&m).unwrap();
        assert_eq!(distance(&a, &m), 1, "{a} -> {m}");
    }
    // 5 layers x 4000 draws over 3 ops; 10 skip bits each present half the time.
    for op in space.ops() {
        assert!((6_300..7_000).contains(&ops[op.index()]), "{ops:?}");
    }
    assert!((19_000..21_000).contains(&skips), "{skips}");
    assert_eq!(space.size(), 3f64.powi(5) * 2f64.powi(10));
    // Nothing to change in a one-op, one-layer space; a one-op deeper space flips skips.
    let one = MacroSpace::new(vec![MacroOp::Conv3x3], 1).unwrap();
    let a = one.sample(&mut rng);
    assert_eq!(one.mutate(&a, &mut rng), a);
    let chain = MacroSpace::new(vec![MacroOp::Conv3x3], 3).unwrap();
    let a = chain.sample(&mut rng);
    assert_eq!(distance(&a, &chain.mutate(&a, &mut rng)), 1);
    // Outside the space: wrong depth, op not allowed; a repeated or empty op list.
    let e = space.contains(&arch(EXAMPLE)).unwrap_err().to_string();
    assert!(e.contains("6 layers, this space 5"), "{e}");
    let e = space.contains(&arch("conv_3x3|conv_5x5|conv_5x5|conv_5x5|conv_5x5")).unwrap_err().to_string();
    assert!(e.contains("layer 0: op 'conv_3x3' is not in this space"), "{e}");
    assert!(MacroSpace::new(vec![MacroOp::Conv3x3, MacroOp::Conv3x3], 3).unwrap_err().to_string().contains("twice"));
    assert!(MacroSpace::new(vec![], 3).is_err() && MacroSpace::new(vec![MacroOp::Conv3x3], 0).is_err());
}

#[test]
fn fair_paths_put_every_op_on_every_layer_once() {
    let space = MacroSpace::new(MacroOp::ALL.to_vec(), 7).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..50 {
        let paths: Vec<MacroArch> = Space::fair_paths(&space, &mut rng).into_iter().map(|p| match p {
            Arch::Macro(a) => a,
            other => panic!("not a macro path: {other:?}"),
        }).collect();
        assert_eq!(paths.len(), 6);
        for layer in 0..7 {
            let ops: BTreeSet<usize> = paths.iter().map(|p| p.layers()[layer].op.index()).collect();
            assert_eq!(ops.len(), 6, "layer {layer}");
        }
    }
}

#[test]
fn encode_specs_and_space_configs() {
    let a = arch(EXAMPLE);
    let v = a.encode();
    assert_eq!(v.len(), 6 * 6 + 15);
    assert_eq!(v.iter().sum::<f32>(), 6.0 + 8.0, "one op per layer and 8 skips");
    assert_eq!(v[36..], [1., 1., 1., 0., 0., 0., 0., 1., 0., 1., 1., 0., 1., 0., 1.]);
    // Spec: the text alone, JSON, and a search's best.json are the same spec.
    let spec = Spec::from_text(EXAMPLE).unwrap();
    assert_eq!(spec.arch, Arch::Macro(a.clone()));
    let json = spec.to_json_pretty();
    assert!(json.contains("\"space\": \"macro\"") && json.contains(EXAMPLE), "{json}");
    assert_eq!(Spec::from_json(&json).unwrap(), spec);
    let best = format!("{{\"space\": \"macro\", \"arch\": \"{EXAMPLE}\", \"metrics\": {{}}}}");
    assert_eq!(Spec::from_text(&best).unwrap(), spec);
    let forward = json.replace("+0,2,4", "+0,2,6");
    let e = Spec::from_json(&forward).unwrap_err().to_string();
    assert!(e.contains("skip 6 points forward"), "{e}");
    assert!(Spec::from_text("conv_3x4|conv_3x3+0").unwrap_err().to_string().contains("\"conv_3x4\""));
    // Space config: tagged JSON both ways, from --space flags, refused flags named.
    let cfg = space_from_name("macro", Some(&["conv_3x3".into(), "avg_pool_3x3".into()]), None, Some(4)).unwrap();
    let j = serde_json::to_value(&cfg).unwrap();
    assert_eq!(j, serde_json::json!({"kind": "macro", "ops": ["conv_3x3", "avg_pool_3x3"], "layers": 4}));
    assert_eq!(serde_json::from_value::<SpaceConfig>(j).unwrap(), cfg);
    assert_eq!(space_from_name("macro", None, None, None).unwrap().macro_space().unwrap().layers(), MacroSpace::DEFAULT_LAYERS);
    assert!(space_from_name("macro", None, Some(4), None).unwrap_err().to_string().contains("--nodes"));
    assert!(space_from_name("macro", Some(&["conv_9x9".into()]), None, None).unwrap_err().to_string().contains("conv_9x9"));
    assert!(serde_json::from_str::<SpaceConfig>(r#"{"kind": "macro", "ops": ["conv_3x3"], "layers": 3, "nodes": 4}"#).is_err());
}

fn net(in_channels: usize, channels: usize, layers: usize, supernet: bool) -> MacroNet {
    MacroNet { in_channels, classes: 10, channels, layers, supernet, supernet_affine: false }
}

/// Stand-alone parameters by hand (see macro_net's docs): conv kxk at D channels k²D² + 2D,
/// sep kxk k²D + D² + 2D, pools none, 2D for the BN after a sum of skips; a reduction D -> 2D two 1x1 D -> D convs and a 2·2D BN;
/// stem 9·in·C + 2C; head BN 2·4C and classifier 4C·classes + classes.
fn hand_count(cfg: &MacroNet, a: &MacroArch) -> u64 {
    let (c, k) = (cfg.channels as u64, cfg.classes as u64);
    let d = |layer: usize| c << cfg.stage(layer);
    let mut total = 9 * cfg.in_channels as u64 * c + 2 * c + 8 * c + 4 * c * k + k;
    let mut reductions = BTreeSet::new();
    for (i, l) in a.layers().iter().enumerate() {
        let dd = d(i);
        total += match l.op {
            MacroOp::Conv3x3 => 9 * dd * dd + 2 * dd,
            MacroOp::Conv5x5 => 25 * dd * dd + 2 * dd,
            MacroOp::SepConv3x3 => 9 * dd + dd * dd + 2 * dd,
            MacroOp::SepConv5x5 => 25 * dd + dd * dd + 2 * dd,
            _ => 0,
        } + if l.skips.is_empty() { 0 } else { 2 * dd };
        for src in l.skips.iter().copied().chain(i.checked_sub(1)) {
            reductions.extend((cfg.stage(src) + 1..=cfg.stage(i)).map(|r| (r, src)));
        }
    }
    total + reductions.iter().map(|&(r, _)| 2 * (c << (r - 1)).pow(2) + 4 * (c << (r - 1))).sum::<u64>()
}

#[test]
fn parameter_count_names_and_bad_configs() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (cfg, h) in [(net(3, 4, 6, false), 8), (net(1, 3, 3, false), 12), (net(1, 2, 9, false), 4)] {
        let space = MacroSpace::new(MacroOp::ALL.to_vec(), cfg.layers).unwrap();
        for a in (0..20).map(|_| space.sample(&mut rng)) {
            let (params, flops) = macro_net::size(&cfg, &a, h, h).unwrap();
            assert_eq!(params, hand_count(&cfg, &a), "{cfg:?} {a}");
            assert!(flops > 0);
        }
    }
    // C = 4 on EXAMPLE (reductions before layers 2 and 4): stem 116; layers 152, 4*(25+4+2) =
    // 124, 0, 25*64+16 = 1616, 0, 16*(9+16+2) = 432; reductions into stage 1 from layers 0 and
    // 1 (48 each), into stage 2 from layers 0, 1, 2 and 3 (160 each); BNs after the sums of
    // layers 1, 2, 4 and 5 (8 + 16 + 32 + 32); head 32 + 170.
    assert_eq!(macro_net::size(&net(3, 4, 6, false), &arch(EXAMPLE), 8, 8).unwrap().0, 3_466);
    // Names depend on (layer, op) and (reduction, source) only: changing layer 3's op changes
    // exactly its own tensors.
    let cfg = net(1, 4, 6, true);
    let x = macro_net::expected_tensors(&cfg, &arch(EXAMPLE), 8, 8).unwrap();
    let y = macro_net::expected_tensors(&cfg, &arch(&EXAMPLE.replace("|conv_5x5|", "|sep_conv_3x3|")), 8, 8).unwrap();
    let only: Vec<&String> = x.keys().filter(|k| !y.contains_key(*k)).collect();
    assert_eq!(only, ["bn:layers.3.conv_5x5.bn.mean", "bn:layers.3.conv_5x5.bn.var", "layers.3.conv_5x5.conv"]);
    assert!(x.contains_key("reduce2.from0.conv1") && x.contains_key("bn:layers.2.max_pool_3x3.bn.var") && x.contains_key("head.bn.weight"), "{:?}", x.keys());
    assert!(x.iter().filter(|(k, _)| y.contains_key(*k)).all(|(k, v)| y[k] == *v));
    // Bad shapes and configs are refused clearly.
    for (h, w) in [(10, 8), (8, 6), (0, 8), (2, 2)] {
        let e = macro_net::size(&net(1, 4, 6, false), &arch(EXAMPLE), h, w).unwrap_err().to_string();
        assert!(e.contains(&format!("{h}x{w}")) && e.contains("multiples of 4"), "{e}");
    }
    let e = macro_net::size(&net(1, 4, 5, false), &arch(EXAMPLE), 8, 8).unwrap_err().to_string();
    assert!(e.contains("5 layers, the architecture 6"), "{e}");
    for (cfg, want) in [(net(1, 4, 2, false), "layers must be 3 to 256"), (net(1, 0, 6, false), "channels must be at least 1"), (net(1, 5000, 6, false), "at most 4096"), (MacroNet { classes: 1, ..net(1, 4, 6, false) }, "2 classes")] {
        let e = macro_net::size(&cfg, &arch(EXAMPLE), 8, 8).unwrap_err().to_string();
        assert!(e.contains(want), "{cfg:?}: {e}");
    }
}

/// Logits of one batch (and, in training mode, the loss) through `cfg` / `a`.
fn forward(store: &mut ParamStore, bn: &mut BnStats, cfg: &MacroNet, a: &MacroArch, mode: Mode, x: &[f32], shape: [usize; 4]) -> (Vec<f32>, Option<f32>) {
    common::graph::logits_and_loss(store, bn, cfg.classes, mode, x, shape, |g, x| macro_net::forward(g, cfg, a, x))
}

#[test]
fn forward_runs_in_train_and_eval_mode() {
    let gpu = test_gpu();
    for (shape, channels, supernet) in [([2, 1, 12, 12], 3, true), ([3, 3, 8, 8], 2, false), ([2, 3, 8, 12], 3, false)] {
        let cfg = MacroNet { in_channels: shape[1], classes: 5, channels, layers: 6, supernet, supernet_affine: false };
        let x = random_images(2, shape.iter().product());
        let (mut store, mut bn) = (ParamStore::new(&gpu, 1), BnStats::new());
        for mode in [Mode::Train, Mode::Eval] {
            let (logits, loss) = forward(&mut store, &mut bn, &cfg, &arch(EXAMPLE), mode, &x, shape);
            assert_eq!(logits.len(), shape[0] * 5);
            assert!(logits.iter().all(|v| v.is_finite()) && logits.iter().any(|v| *v != 0.0), "{shape:?} {mode:?}: {logits:?}");
            assert!(loss.is_none_or(|l| l.is_finite() && l > 0.0), "{loss:?}");
            store.clear_touched();
        }
    }
}

#[test]
fn a_supernet_step_trains_only_its_path() {
    let gpu = test_gpu();
    let cfg = net(1, 4, 5, true);
    let space = MacroSpace::new(MacroOp::ALL.to_vec(), 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (mut store, mut bn) = (ParamStore::new(&gpu, 7), BnStats::new());
    let x = random_images(5, 8 * 8 * 8);
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 3e-4, nesterov: false };
    let paths: Vec<MacroArch> = (0..6).map(|_| space.sample(&mut rng)).collect();
    for p in &paths {
        forward(&mut store, &mut bn, &cfg, p, Mode::Eval, &x, [8, 1, 8, 8]);
    }
    let mut losses = vec![];
    for round in 0..8 {
        let p = &paths[round % paths.len()];
        let names: Vec<String> = store.names().cloned().collect();
        for n in &names {
            store.get(n).unwrap().grad.poison(&gpu).unwrap();
        }
        let before: Vec<Vec<f32>> = names.iter().map(|n| store.get(n).unwrap().value.to_vec(&gpu).unwrap()).collect();
        let (_, loss) = forward(&mut store, &mut bn, &cfg, p, Mode::Train, &x, [8, 1, 8, 8]);
        let want: Vec<String> = macro_net::expected_tensors(&cfg, p, 8, 8).unwrap().into_keys().filter(|k| !k.starts_with("bn:")).collect();
        // Every op reaches the logits, so the path's parameters are exactly what it touches.
        assert_eq!(store.touched(), want, "{p}");
        for n in &want {
            assert!(store.get(n).unwrap().grad.to_vec(&gpu).unwrap().iter().all(|g| g.is_finite()), "{p}: {n}");
        }
        let mut step = gpu.step();
        store.sgd_update(&mut step, &sgd, Some(5.0)).unwrap();
        step.submit().unwrap();
        for (n, b) in names.iter().zip(&before) {
            let same = store.get(n).unwrap().value.to_vec(&gpu).unwrap() == *b;
            assert_eq!(same, !want.contains(n), "{p}: {n} should {}change", if want.contains(n) { "" } else { "not " });
        }
        store.clear_touched();
        losses.push(loss.unwrap());
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
}

fn args(out: &str, extra: &[&str]) -> Vec<String> {
    let base = ["search", "--space", "macro", "--layers", "3", "--out", out, "--train-limit", "128", "--val", "32", "--batch-size", "32", "--epochs", "2", "--channels", "4", "--budget", "6", "--recalibration-batches", "1", "--seed", "2", "--quiet"];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}



#[test]
fn a_macro_search_runs_records_its_space_and_resumes_exactly() {
    let root = tmp("macro-search");
    let a = root.join("whole");
    let o = ok(run(&strs(&args(a.to_str().unwrap(), &["--sampling", "fair"]))));
    assert!(o.contains("best candidate"), "{o}");
    let cfg = read_json(&a.join("config.json"));
    assert_eq!((cfg["space"]["kind"].as_str(), cfg["space"]["layers"].as_u64(), cfg["space"]["ops"].as_array().map(Vec::len)), (Some("macro"), Some(3), Some(6)));
    assert_eq!((cfg["net"]["kind"].as_str(), cfg["net"]["layers"].as_u64(), cfg["net"]["nodes"].as_u64()), (Some("macro"), Some(3), Some(0)));
    let h = history_without_clock(&a);
    assert_eq!(h.len(), 6);
    assert!(h.iter().all(|e| arch(e["genotype"].as_str().unwrap()).len() == 3), "{h:?}");
    let best = read_json(&a.join("best.json"));
    assert_eq!(best["space"], "macro");

    // Killed after the supernet's first epoch, then resumed: the same search.
    let b = root.join("killed");
    let bs = b.to_str().unwrap();
    let metrics = b.join("metrics.jsonl");
    assert!(kill_when(&strs(&args(bs, &["--sampling", "fair"])), || lines(&metrics) >= 1), "finished before the kill");
    ok(run(&["search", "--resume", bs, "--quiet"]));
    assert_eq!(h, history_without_clock(&b));

    // eval scores the best arch as the search did; train and test take its best.json.
    let best_json = a.join("best.json");
    let e = ok(run(&["eval", "--spec", best_json.to_str().unwrap(), "--run", a.to_str().unwrap()]));
    let pct = format!("{:.2}%", 100.0 * best["metrics"]["val_accuracy"].as_f64().unwrap());
    assert!(e.contains(&format!("inherited-weight val accuracy {pct}")), "{e} vs {pct}");
    let t = root.join("trained");
    ok(run(&["train", "--spec", best_json.to_str().unwrap(), "--epochs", "1", "--train-limit", "128", "--channels", "4", "--precise-bn", "1", "--out", t.to_str().unwrap(), "--quiet"]));
    let tcfg = read_json(&t.join("config.json"));
    assert_eq!((&tcfg["spec"]["arch"], tcfg["net"]["layers"].as_u64()), (&best["arch"], Some(3)));
    assert!(ok(run(&["test", "--run", t.to_str().unwrap()])).contains("test accuracy"));

    // The text form is a spec file too; bad input names itself.
    let text = root.join("arch.txt");
    std::fs::write(&text, format!("{}\n", best["arch"].as_str().unwrap())).unwrap();
    assert!(ok(run(&["genotype", text.to_str().unwrap()])).contains("\"space\": \"macro\""));
    std::fs::write(&text, "conv_3x3|conv_5x5+0|max_pool_3x3+3\n").unwrap();
    let bad = root.join("bad");
    let bad = bad.to_str().unwrap();
    fails(run(&["train", "--spec", text.to_str().unwrap(), "--out", bad]), &["\"max_pool_3x3+3\"", "points forward"]);
    fails(run(&["search", "--space", "macro", "--nodes", "3", "--out", bad]), &["--nodes"]);
    fails(run(&["search", "--space", "macro", "--ops", "conv_3x3,conv_9x9", "--out", bad]), &["conv_9x9"]);
    fails(run(&["search", "--space", "macro", "--layers", "2", "--out", bad]), &["layers must be 3 to 256"]);
    fails(run(&["search", "--resume", a.to_str().unwrap(), "--layers", "4", "--quiet"]), &["layers"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn distinct_samples_have_distinct_keys() {
    let space = MacroSpace::new(MacroOp::ALL.to_vec(), 4).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let archs: HashSet<MacroArch> = (0..3000).map(|_| space.sample(&mut rng)).collect();
    let keys: HashSet<String> = archs.iter().map(MacroArch::key).collect();
    assert_eq!(keys.len(), archs.len());
}
