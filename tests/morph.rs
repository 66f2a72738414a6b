//! Network morphism, first part (issue 12): a search's candidate grown out of its supernet
//! computes what the search scored, before any training; bad requests are one-line errors.

mod common;
use common::{fails, ok, run, tmp};
use std::path::Path;

fn search(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "search", "--out", dir.to_str().unwrap(), "--train-limit", "256", "--batch-size", "32", "--epochs", "2", "--channels", "4",
        "--layers", "3", "--nodes", "2", "--budget", "4", "--val", "64", "--recalibration-batches", "2", "--quiet", "--seed", "5",
    ];
    args.extend_from_slice(extra);
    ok(run(&args));
}

/// The two percentages of the "grown from" line: the grown network's and the inherited score.
fn grown_line(stdout: &str) -> (String, String) {
    let line = stdout.lines().find(|l| l.starts_with("grown from")).unwrap_or_else(|| panic!("no grown line:\n{stdout}"));
    let pcts: Vec<String> = line.split_whitespace().filter(|w| w.ends_with('%') || w.ends_with("%;")).map(|w| w.trim_end_matches(';').to_string()).collect();
    assert_eq!(pcts.len(), 2, "{line}");
    (pcts[0].clone(), pcts[1].clone())
}

#[test]
fn a_candidate_grown_from_the_supernet_scores_what_the_search_scored() {
    let root = tmp("morph");
    let s = root.join("search");
    search(&s, &[]);
    let spec = s.join("best.json");
    let out = root.join("grown");
    let o = ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--epochs", "0", "--out", out.to_str().unwrap(), "--quiet"]));
    let (grown, inherited) = grown_line(&o);
    assert_eq!(grown, inherited, "{o}");
    let cfg = common::read_json(&out.join("config.json"));
    assert_eq!(cfg["init_from"]["run"], s.to_str().unwrap());
    assert_eq!(cfg["net"]["supernet"], true);
    assert_eq!(cfg["net"]["supernet_affine"], true);
    // And it trains from there like any run, `test` reading its weights; deepened by one cell,
    // whose gate training opens.
    let t = root.join("trained");
    ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--layers", "4", "--epochs", "1", "--precise-bn", "2", "--out", t.to_str().unwrap(), "--quiet"]));
    ok(run(&["test", "--run", t.to_str().unwrap()]));
    let (weights, _) = cellnas::run::load_tensors(&t.join("weights.safetensors")).unwrap();
    let gate = weights.iter().find(|(n, _, _)| n == "cells.0.g0.gate").expect("the gated cell's gate is saved");
    assert!(gate.2.iter().any(|&v| v != 0.0), "training left the gate shut: {:?}", gate.2);

    // Bad requests.
    let bad = root.join("bad");
    fails(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", out.to_str().unwrap(), "--out", bad.to_str().unwrap()]), &["not the config of a `cellnas search` run"]);
    fails(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", root.join("nowhere").to_str().unwrap(), "--out", bad.to_str().unwrap()]), &["nowhere", "is not a search run"]);
    fails(
        run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--layers", "2", "--out", bad.to_str().unwrap()]),
        &["--layers 2", "at least its 3 cells"],
    );
    for c in ["2", "6"] {
        fails(
            run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--channels", c, "--out", bad.to_str().unwrap()]),
            &[&format!("--channels {c}"), "multiple of its 4 channels"],
        );
    }
    // Grown twice as wide: still the candidate's function (widening is exact), so the same score.
    let wide = root.join("wide");
    let o = ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--channels", "8", "--epochs", "0", "--out", wide.to_str().unwrap(), "--quiet"]));
    let (grown, inherited) = grown_line(&o);
    assert_eq!(grown, inherited, "{o}");
    assert_eq!(common::read_json(&wide.join("config.json"))["net"]["channels"], 8);
    // Grown deeper and wider: two gated cells (identity at the start; cell 0 is the only
    // normal cell of 3), same score again.
    let deep = root.join("deep");
    let o = ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--channels", "8", "--layers", "5", "--epochs", "0", "--out", deep.to_str().unwrap(), "--quiet"]));
    let (grown, inherited) = grown_line(&o);
    assert_eq!(grown, inherited, "{o}");
    let net = &common::read_json(&deep.join("config.json"))["net"];
    assert_eq!((net["layers"].as_u64(), net["gated"].clone()), (Some(3), serde_json::json!([0, 0])), "{net}");
    let narrow = root.join("narrow");
    search(&narrow, &["--ops", "skip_connect,max_pool_3x3"]);
    let cell = root.join("cell.txt");
    std::fs::write(&cell, "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('skip_connect', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])").unwrap();
    fails(
        run(&["train", "--spec", cell.to_str().unwrap(), "--init-from", narrow.to_str().unwrap(), "--epochs", "0", "--out", bad.to_str().unwrap()]),
        &["not a sub-architecture of this search run's space", "sep_conv_3x3"],
    );
    let _ = std::fs::remove_dir_all(&root);
}

mod exact {
    use cellnas::gpu::test_gpu;
    use cellnas::morph::{deepen, grow_kernel, placement, widen};
    use cellnas::nn::darts::{self, NetConfig};
    use cellnas::nn::{BnStats, Graph, Mode, ParamStore};
    use cellnas::run::download_named;
    use cellnas::space::{Genotype, Op};
    use cellnas::Tensor;
    use rand::{Rng, SeedableRng};

    const CELL: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('dil_conv_3x3', 0), ('skip_connect', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 2), ('dil_conv_3x3', 1)], reduce_concat=[2, 3])";

    /// Eval-mode logits of `geno` with these parameters and BN statistics.
    fn logits(store: &mut ParamStore, bn: &mut BnStats, net: &NetConfig, geno: &Genotype, shape: &[usize], xs: &[f32], mode: Mode) -> Vec<f32> {
        let gpu = store.gpu().clone();
        let x = Tensor::from_slice(&gpu, shape, xs).unwrap();
        let mut g = Graph::new(gpu.step(), store, bn, mode);
        let x = g.input(x);
        let l = darts::forward(&mut g, net, geno, x).unwrap();
        let lt = g.tensor(l).unwrap().clone();
        let mut step = g.finish().unwrap();
        let h = step.read(&lt.buf, 0, 4 * lt.numel() as u64);
        step.submit().unwrap().f32s(h)
    }

    /// Parameters and BN statistics loaded from `tensors` into a fresh store (another seed, so
    /// anything missing would show as a different function).
    fn restored(gpu: &std::sync::Arc<cellnas::Gpu>, tensors: &[cellnas::run::NamedTensor]) -> (ParamStore, BnStats) {
        let mut store = ParamStore::new(gpu, 99);
        let mut bn = BnStats::new();
        let params: Vec<_> = tensors.iter().filter(|(n, _, _)| !n.starts_with("bn:")).cloned().collect();
        let mut step = gpu.step();
        store.load(&mut step, &params).unwrap();
        bn.load(&mut step, gpu, tensors).unwrap();
        step.submit().unwrap();
        (store, bn)
    }

    /// Random inputs of shape [3, 3, 12, 12].
    fn inputs(seed: u64) -> ([usize; 4], Vec<f32>) {
        let shape = [3, 3, 12, 12];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (shape, (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-1.0..1.0)).collect())
    }

    /// A fresh network with the statistics of one batch (so BN is not the identity in eval
    /// mode): its training-mode and eval-mode logits, and its tensors.
    fn before(gpu: &std::sync::Arc<cellnas::Gpu>, seed: u64, net: &NetConfig, geno: &Genotype, (shape, xs): &([usize; 4], Vec<f32>)) -> (Vec<f32>, Vec<f32>, Vec<cellnas::run::NamedTensor>) {
        let mut store = ParamStore::new(gpu, seed);
        let mut bn = BnStats::new();
        bn.momentum = 1.0;
        let train = logits(&mut store, &mut bn, net, geno, shape, xs, Mode::Recalibrate);
        let eval = logits(&mut store, &mut bn, net, geno, shape, xs, Mode::Eval);
        let mut named = store.named_tensors();
        named.extend(bn.named_tensors());
        (train, eval, download_named(gpu, &named).unwrap())
    }

    /// The same after a morph: `tensors` checked complete for `net`, loaded into a fresh
    /// store; eval-mode, then training-mode logits.
    fn after(gpu: &std::sync::Arc<cellnas::Gpu>, tensors: &[cellnas::run::NamedTensor], net: &NetConfig, geno: &Genotype, (shape, xs): &([usize; 4], Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
        let expected = darts::expected_tensors(net, geno, shape[2], shape[3]).unwrap();
        darts::check_tensors(&expected, tensors, std::path::Path::new("morphed")).unwrap();
        let (mut store, mut bn) = restored(gpu, tensors);
        let eval = logits(&mut store, &mut bn, net, geno, shape, xs, Mode::Eval);
        bn.momentum = 1.0;
        (logits(&mut store, &mut bn, net, geno, shape, xs, Mode::Recalibrate), eval)
    }

    /// Logits agree to 1e-4 of their scale (at least 1).
    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
        assert!(a.iter().any(|&v| v != 0.0), "{what}: all-zero logits test nothing");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * scale, "{what}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn kernel_growth_keeps_the_function_on_odd_shapes() {
        let gpu = test_gpu();
        let geno = Genotype::from_darts(CELL).unwrap();
        for supernet in [false, true] {
            let net = NetConfig { in_channels: 3, classes: 5, channels: 6, layers: 3, nodes: 2, supernet, supernet_affine: supernet, gated: vec![], kind: Default::default() };
            let x = inputs(11);
            let (_, eval, tensors) = before(&gpu, 7, &net, &geno, &x);
            let (g1, t1) = grow_kernel(&geno, &net, false, 0, 0, tensors).unwrap();
            let (g2, t2) = grow_kernel(&g1, &net, true, 1, 1, t1).unwrap();
            assert_eq!(g2.normal.nodes[0][0].op, Op::SepConv5x5);
            assert_eq!(g2.reduce.nodes[1][1].op, Op::DilConv5x5);
            // Every tensor of the grown network is there (nothing initialised at random).
            let (_, grown) = after(&gpu, &t2, &net, &g2, &x);
            assert_close(&format!("supernet {supernet}, kernel grown"), &eval, &grown);
        }
        // Only 3x3 separable and dilated convolutions grow; the edge must exist.
        let net = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
        let err = grow_kernel(&geno, &net, false, 1, 0, vec![]).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("skip_connect") && err.contains("only sep_conv_3x3 and dil_conv_3x3"), "{err}");
        let err = grow_kernel(&geno, &net, true, 5, 0, vec![]).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("no node 5"), "{err}");
    }

    #[test]
    fn widening_keeps_the_function_in_eval_and_training_mode() {
        let gpu = test_gpu();
        let geno = Genotype::from_darts(CELL).unwrap();
        for (supernet, factor) in [(false, 2), (true, 3)] {
            let net = NetConfig { in_channels: 3, classes: 5, channels: 4, layers: 3, nodes: 2, supernet, supernet_affine: supernet, gated: vec![], kind: Default::default() };
            let x = inputs(5);
            let (train, eval, tensors) = before(&gpu, 3, &net, &geno, &x);
            let (wide, t) = widen(&net, factor, tensors).unwrap();
            assert_eq!(wide.channels, 4 * factor);
            let (train_wide, eval_wide) = after(&gpu, &t, &wide, &geno, &x);
            assert_close(&format!("supernet {supernet} x{factor} eval"), &eval, &eval_wide);
            assert_close(&format!("supernet {supernet} x{factor} training"), &train, &train_wide);
        }
        let net = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
        assert!(widen(&net, 0, vec![]).is_err());
        assert!(widen(&net, 2000, vec![]).unwrap_err().to_string().contains("channels must be at most 4096"));
    }

    #[test]
    fn deepening_keeps_the_function_in_eval_and_training_mode_and_other_morphs_reach_gated_cells() {
        let gpu = test_gpu();
        let geno = Genotype::from_darts(CELL).unwrap();
        for supernet in [false, true] {
            // Cell 0 reads the stem twice; cell 3 follows a reduction (its own first input
            // factorized-reduced, the gated cell's not).
            let net = NetConfig { in_channels: 3, classes: 5, channels: 4, layers: 5, nodes: 2, supernet, supernet_affine: supernet, gated: vec![], kind: Default::default() };
            let x = inputs(8);
            let (train, eval, mut t) = before(&gpu, 4, &net, &geno, &x);
            let mut deep = net.clone();
            for after in [4, 0, 4] {
                (deep, t) = deepen(&deep, &geno, after, [12, 12], 3, t).unwrap();
            }
            assert_eq!(deep.gated, vec![0, 4, 4]);
            assert_eq!(deep.cells(), 8);
            // Then the other morphs, which must reach into the gated cells too.
            let (g2, t2) = grow_kernel(&geno, &deep, false, 0, 0, t).unwrap();
            let (deep, t) = widen(&deep, 2, t2).unwrap();
            let gate = t.iter().find(|(n, _, _)| n == "cells.4.g1.gate").expect("the second gated cell after cell 4 has a gate");
            assert_eq!((gate.1.clone(), gate.2.iter().all(|&v| v == 0.0)), (vec![64, 1, 1, 1], true));
            let (train_deep, eval_deep) = after(&gpu, &t, &deep, &g2, &x);
            assert_close(&format!("supernet {supernet} deepened, eval"), &eval, &eval_deep);
            assert_close(&format!("supernet {supernet} deepened, training"), &train, &train_deep);
        }
        let net = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 5, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
        // Gated cells follow normal cells only.
        let err = deepen(&net, &geno, 1, [8, 8], 3, vec![]).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("cell 1 of 5 is a reduction cell"), "{err}");
        // 5 cells (normal 0, 2, 4) grown to 8: one per stage, as an 8-cell DARTS network has.
        assert_eq!(placement(&net, 3), vec![0, 2, 4]);
        assert_eq!(placement(&net, 4), vec![0, 2, 4, 0]);
        let eight = NetConfig { layers: 8, ..net.clone() };
        assert_eq!(placement(&eight, 2), vec![1, 4]);
    }
}

#[test]
fn morphs_drawn_for_a_child_stay_within_the_limits_and_follow_the_seed() {
    use cellnas::morph::{available, draw, Limits, Morph};
    use cellnas::nn::darts::NetConfig;
    use cellnas::space::Genotype;
    use rand::SeedableRng;
    let geno = Genotype::from_darts("Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('skip_connect', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])").unwrap();
    let net = NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 5, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
    let kinds = available(&net, &geno, &Limits { max_channels: 8, max_cells: 6 });
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[1], vec![Morph::Deepen { after: 0 }, Morph::Deepen { after: 2 }, Morph::Deepen { after: 4 }]);
    assert_eq!(kinds[2].len(), 2, "the two 3x3 edges of the normal cell");
    // At the limits only kernel growth is left, and with no 3x3 edge nothing.
    let full = Limits { max_channels: 4, max_cells: 5 };
    assert_eq!(available(&net, &geno, &full).len(), 1);
    let plain = Genotype::from_darts("Genotype(normal=[('skip_connect', 1), ('skip_connect', 0), ('max_pool_3x3', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('skip_connect', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    assert!(draw(&net, &plain, &full, 3, &mut rng).is_empty());
    // Many draws: never past the limits after all of a child's morphs; the same seed, the same morphs.
    let limits = Limits { max_channels: 8, max_cells: 7 };
    for seed in 0..200 {
        let d = draw(&net, &geno, &limits, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        assert!(!d.is_empty() && d.len() <= 4);
        let (mut n, mut g) = (net.clone(), geno.clone());
        for m in &d {
            (n, g) = m.shape(&n, &g);
        }
        assert!(n.channels <= 8 && n.cells() <= 7, "{d:?}");
        n.validate().unwrap();
        g.validate().unwrap();
        assert_eq!(d, draw(&net, &geno, &limits, 4, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)));
    }
}
