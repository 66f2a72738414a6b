//! Gradient-based search (`cellnas search --method darts`, issue 13): the relaxed network's
//! gradient to alpha against finite differences, the parameter groups kept apart, the
//! derivation of a genotype from alpha, and the job: deterministic, resumable after a kill,
//! bad requests refused in one line.

mod common;
use cellnas::gpu::test_gpu;
use cellnas::nn::darts::NetConfig;
use cellnas::nn::mixed::{self, is_alpha, ALPHA_NORMAL, ALPHA_REDUCE};
use cellnas::nn::{BnStats, Graph, Mode, ParamStore};
use cellnas::space::{Genotype, Op};
use cellnas::tensor::upload_u32;
use cellnas::Tensor;
use common::graph::random_images;
use common::{fails, kill_when, ok, read_json, run, strs, tmp};

fn tiny_net() -> NetConfig {
    NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 2, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() }
}

const OPS: [Op; 5] = [Op::None, Op::SkipConnect, Op::SepConv3x3, Op::MaxPool3x3, Op::AvgPool3x3];
const SHAPE: [usize; 4] = [4, 1, 8, 8];

/// Loss of one batch through the relaxed network (batch statistics in BN), and with `grads`
/// the gradients of the two alphas after a backward pass with the weights frozen.
fn loss(store: &mut ParamStore, x: &[f32], grads: bool) -> (f64, Vec<Vec<f32>>) {
    let gpu = store.gpu().clone();
    let labels = upload_u32(&gpu, &[0, 1, 2, 1]).unwrap();
    let xt = Tensor::from_slice(&gpu, &SHAPE, x).unwrap();
    let mut bn = BnStats::new();
    let mode = if grads { Mode::Train } else { Mode::Recalibrate };
    let mut g = Graph::new(gpu.step(), store, &mut bn, mode);
    g.freeze(|n| !is_alpha(n));
    let xv = g.input(xt);
    let logits = mixed::forward(&mut g, &tiny_net(), &OPS, xv).unwrap();
    let (l, _) = g.cross_entropy(logits, &labels).unwrap();
    if grads {
        g.backward().unwrap();
    }
    let mut step = g.finish().unwrap();
    let hl = step.read(&l.buf, 0, 4);
    let out = step.submit().unwrap();
    let lv = out.f32s(hl)[0] as f64;
    if !grads {
        return (lv, vec![]);
    }
    assert_eq!(store.touched(), vec![ALPHA_NORMAL.to_string(), ALPHA_REDUCE.to_string()], "weights frozen: only alpha has a gradient");
    let gs = [ALPHA_NORMAL, ALPHA_REDUCE].iter().map(|n| store.get(n).unwrap().grad.to_vec(&gpu).unwrap()).collect();
    store.clear_touched();
    (lv, gs)
}

#[test]
fn the_gradient_to_alpha_matches_finite_differences() {
    let gpu = test_gpu();
    let mut store = ParamStore::new(&gpu, 5);
    let x = random_images(11, SHAPE.iter().product());
    // Alpha away from uniform, so every op's weight differs.
    let edges = mixed::edges(2);
    let _ = loss(&mut store, &x, false);
    let mut step = gpu.step();
    let alphas: Vec<Vec<f32>> = (0..2).map(|k| random_images(20 + k, edges * OPS.len()).into_iter().map(|v| 2.0 * v).collect()).collect();
    for (name, a) in [ALPHA_NORMAL, ALPHA_REDUCE].iter().zip(&alphas) {
        store.insert(&mut step, name, &[edges, OPS.len()], a).unwrap();
    }
    step.submit().unwrap();
    let (_, grads) = loss(&mut store, &x, true);
    // Directional derivatives (central differences along a unit direction d, against g . d):
    // along the gradient of each alpha, and of both. Along a direction many entries share, the
    // f32 rounding of the loss averages out, where a single entry's quotient is mostly rounding
    // (measured: within 0.07% along each direction at h = 1e-3; at h = 1e-2 the curvature and
    // the ReLU and max-pool kinks a step crosses put it 3% off).
    let set = |store: &mut ParamStore, a: &[Vec<f32>]| {
        let mut step = gpu.step();
        for (name, v) in [ALPHA_NORMAL, ALPHA_REDUCE].iter().zip(a) {
            store.insert(&mut step, name, &[edges, OPS.len()], v).unwrap();
        }
        step.submit().unwrap();
    };
    let h = 1e-3f64;
    for which in [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] {
        let d: Vec<Vec<f64>> = grads.iter().zip(which).map(|(g, k)| g.iter().map(|&v| k * v as f64).collect()).collect();
        let norm = d.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let at = |store: &mut ParamStore, t: f64| {
            let a: Vec<Vec<f32>> = alphas.iter().zip(&d).map(|(a, d)| a.iter().zip(d).map(|(&a, &d)| (a as f64 + t * d / norm) as f32).collect()).collect();
            set(store, &a);
            loss(store, &x, false).0
        };
        let fd = (at(&mut store, h) - at(&mut store, -h)) / (2.0 * h);
        assert!(norm > 1e-3, "the gradient is too small to test: {norm}");
        assert!((fd - norm).abs() <= 0.005 * norm, "along {which:?}: backward gives {norm}, finite differences {fd}");
    }
    // Entry by entry, for the larger ones: right sign and size.
    set(&mut store, &alphas);
    for (k, name) in [ALPHA_NORMAL, ALPHA_REDUCE].iter().enumerate() {
        for j in (0..edges * OPS.len()).filter(|&j| grads[k][j].abs() > 2e-3) {
            let mut a = alphas.clone();
            a[k][j] += h as f32;
            set(&mut store, &a);
            let lp = loss(&mut store, &x, false).0;
            a[k][j] -= 2.0 * h as f32;
            set(&mut store, &a);
            let fd = (lp - loss(&mut store, &x, false).0) / (2.0 * h);
            let an = grads[k][j] as f64;
            assert!((fd - an).abs() <= 0.1 * an.abs(), "{name}[{j}] (edge {}, op {}): backward {an}, finite differences {fd}", j / OPS.len(), OPS[j % OPS.len()]);
        }
    }
    set(&mut store, &alphas);
}

#[test]
fn with_alpha_frozen_only_the_weights_get_gradients() {
    let gpu = test_gpu();
    let mut store = ParamStore::new(&gpu, 5);
    let x = Tensor::from_slice(&gpu, &SHAPE, &random_images(3, SHAPE.iter().product())).unwrap();
    let mut bn = BnStats::new();
    let labels = upload_u32(&gpu, &[0, 1, 2, 1]).unwrap();
    let mut g = Graph::new(gpu.step(), &mut store, &mut bn, Mode::Train);
    g.freeze(is_alpha);
    let xv = g.input(x);
    let logits = mixed::forward(&mut g, &tiny_net(), &OPS, xv).unwrap();
    g.cross_entropy(logits, &labels).unwrap();
    g.backward().unwrap();
    g.finish().unwrap().submit().unwrap();
    let touched = store.touched();
    assert!(!touched.iter().any(|n| is_alpha(n)), "{touched:?}");
    // Every op of every edge ran: each one's weights have a gradient.
    for op in ["sep_conv_3x3", "stem.conv", "classifier.weight", "node3.from2.sep_conv_3x3.1.pw"] {
        assert!(touched.iter().any(|n| n.contains(op)), "no gradient for {op}: {touched:?}");
    }
}

#[test]
fn derivation_keeps_the_two_strongest_inputs_and_ignores_none() {
    let ops = [Op::None, Op::SkipConnect, Op::SepConv3x3];
    // 2 nodes: node 2 reads inputs 0, 1; node 3 reads 0, 1, 2 (5 edges x 3 ops).
    let normal = [
        [0.9, 0.05, 0.05], // edge 0 -> 2: none dominates but is ignored; strongest real op 0.05
        [0.1, 0.2, 0.7],   // edge 1 -> 2: sep 0.7
        [0.2, 0.5, 0.3],   // edge 0 -> 3: skip 0.5
        [0.2, 0.3, 0.5],   // edge 1 -> 3: sep 0.5, tie with edge 0 -> the earlier input first
        [0.1, 0.6, 0.3],   // edge 2 -> 3: skip 0.6
    ]
    .concat();
    let reduce = [[0.0, 0.5, 0.5]; 5].concat();
    let g = mixed::derive(&normal, &reduce, &ops, 2).unwrap();
    let want = Genotype::from_darts(
        "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 2), ('skip_connect', 0)], normal_concat=[2, 3], \
         reduce=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2, 3])",
    )
    .unwrap();
    assert_eq!(g, want, "{}", g.to_darts());
    assert!(mixed::derive(&normal[1..], &reduce, &ops, 2).is_err(), "wrong length refused");
}

fn args(out: &str) -> Vec<String> {
    [
        "search", "--method", "darts", "--out", out, "--train-limit", "128", "--val", "48", "--batch-size", "16", "--epochs", "2", "--channels", "4",
        "--layers", "3", "--nodes", "2", "--ops", "skip_connect,sep_conv_3x3,max_pool_3x3", "--arch-lr", "0.05", "--recalibration-batches", "2",
        "--seed", "4", "--quiet", "--checkpoint-minutes", "0.00001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// metrics.jsonl without wall-clock fields.
fn epochs(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["seconds", "crc32"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn a_darts_search_learns_alpha_derives_a_cell_and_resumes_exactly() {
    let root = tmp("darts-search");
    let a = root.join("whole");
    let o = ok(run(&strs(&args(a.to_str().unwrap()))));
    assert!(o.contains("DARTS search: 2 epochs") && o.contains("derived cell"), "{o}");
    let e = epochs(&a);
    assert_eq!(e.len(), 2);
    let uniform = 1.0 / 4.0;
    let w = e[1]["normal"].as_array().unwrap();
    assert_eq!(w.len(), mixed::edges(2));
    assert!(w.iter().flat_map(|r| r.as_array().unwrap()).any(|v| (v.as_f64().unwrap() - uniform).abs() > 1e-3), "alpha did not move: {w:?}");
    assert_eq!(e[1]["ops"], serde_json::json!(["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"]));
    let best = read_json(&a.join("best.json"));
    assert_eq!(best["method"], "darts");
    let g = Genotype::from_darts(std::fs::read_to_string(a.join("best.genotype.txt")).unwrap().trim()).unwrap();
    assert_eq!(g.to_darts(), e[1]["genotype"].as_str().unwrap(), "best is the last epoch's genotype");
    assert!(best["metrics"]["val_accuracy"].as_f64().unwrap() > 0.0);
    // Its report shows alpha epoch by epoch.
    let report = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(report.contains("Architecture weights by epoch") && report.contains("derived from alpha"), "report.html lacks the DARTS section");
    // The derived cell is a spec `train` takes.
    let t = root.join("train");
    ok(run(&["train", "--spec", a.join("best.json").to_str().unwrap(), "--epochs", "1", "--train-limit", "64", "--batch-size", "16", "--channels", "4", "--layers", "3", "--quiet", "--out", t.to_str().unwrap()]));

    // Killed mid-epoch twice, then resumed: the same epochs, alpha and cell, bit for bit.
    let b = root.join("killed");
    let bs = b.to_str().unwrap();
    assert!(kill_when(&strs(&args(bs)), || b.join("state.json").exists()), "finished before the kill");
    assert!(kill_when(&["search", "--resume", bs, "--quiet", "--checkpoint-minutes", "0.00001"], || common::lines(&b.join("metrics.jsonl")) >= 1), "finished before the kill");
    ok(run(&["search", "--resume", bs, "--quiet"]));
    assert_eq!(e, epochs(&b));
    assert_eq!(read_json(&a.join("best.json"))["metrics"], read_json(&b.join("best.json"))["metrics"]);

    // The DARTS+ rule stops once the normal cell has that many skips (any cell has >= 0).
    let s = root.join("stop");
    let mut sa = args(s.to_str().unwrap());
    let at = sa.iter().position(|a| a == "--ops").unwrap();
    sa[at + 1] = "skip_connect,max_pool_3x3".into();
    sa.extend(["--stop-skips", "1"].map(String::from));
    let o = ok(run(&strs(&sa)));
    let se = epochs(&s);
    if se[0]["normal_skips"].as_u64().unwrap() >= 1 {
        assert_eq!(se.len(), 1, "{o}");
        assert_eq!(read_json(&s.join("best.json"))["stopped_after_epoch"], 1);
    }

    // Bad requests: one line each, naming the flag.
    let bad = root.join("bad");
    let bad = bad.to_str().unwrap();
    fails(run(&["search", "--method", "darts", "--ops", "skip_connect", "--no-none", "--out", bad]), &["--ops", "at least 2 ops"]);
    fails(run(&["search", "--method", "darts", "--space", "nb201", "--out", bad]), &["--space nb201", "DARTS cells"]);
    fails(run(&["search", "--method", "darts", "--budget", "5", "--out", bad]), &["--budget does not apply to --method darts"]);
    fails(run(&["search", "--method", "darts", "--max-params", "5000", "--out", bad]), &["--max-params does not apply to --method darts"]);
    fails(run(&["search", "--beta-decay", "0.5", "--out", bad]), &["--beta-decay applies to --method darts"]);
    fails(run(&["search", "--method", "darts", "--batch-size", "60000", "--out", bad]), &["--batch-size", "every op on every edge"]);
    fails(run(&["search", "--method", "darts", "--beta-decay=-1", "--out", bad]), &["--beta-decay"]);
    fails(run(&["search", "--resume", bs, "--method", "supernet"]), &["--method supernet", "darts search"]);
    let _ = std::fs::remove_dir_all(&root);
}
