//! Export and prediction: random architectures of every space (DARTS, with and without gated
//! cells; NB201, with an all-`none` node; macro) with random weights and BN statistics, their
//! ONNX run by tract against cellnas's own GPU logits (max abs difference under 1e-4), the
//! one-file safetensors model read back to the same logits, and the ONNX file's structure.

use cellnas::data::Dataset;
use cellnas::export::predict::logits;
use cellnas::export::{onnx, Input, TrainedNet};
use cellnas::gpu::test_gpu;
use cellnas::nn::darts::{NetConfig, NetKind};
use cellnas::nn::Graph;
use cellnas::space::{Arch, MacroSpace, Nb201Cell, Nb201Space, SearchSpace, Space, Spec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::prelude::*;

const CLASSES: usize = 5;

fn net(kind: NetKind, in_channels: usize, layers: usize, gated: Vec<usize>) -> NetConfig {
    let nodes = match kind {
        NetKind::Darts => 4,
        NetKind::Nb201 => 4,
        NetKind::Macro => 0,
    };
    NetConfig { in_channels, classes: CLASSES, channels: 4, layers, nodes, supernet: false, supernet_affine: false, gated, kind }
}

/// The network with random weights (about unit-variance activations), BN statistics away from
/// 0 / 1 and BN scales and shifts away from 1 / 0, so every tensor matters.
fn random_model(arch: Arch, net: NetConfig, image: [usize; 3], seed: u64) -> TrainedNet {
    let [c, h, w] = image;
    let g = Graph::record([1, c, h, w], |g, x| cellnas::nn::forward(g, &net, &arch, x)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = Vec::new();
    for (name, (shape, _)) in g.param_inits() {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if shape.len() == 1 && name.ends_with(".weight") {
            (0..n).map(|_| rng.random_range(0.5..1.5)).collect()
        } else if shape.len() == 1 {
            (0..n).map(|_| rng.random_range(-0.5..0.5)).collect()
        } else {
            let fan: usize = shape[1..].iter().product();
            let a = (3.0 / fan as f32).sqrt();
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        };
        tensors.push((name.clone(), shape.clone(), values));
    }
    for (name, n) in g.tensors_used().into_iter().filter(|(n, _)| n.starts_with("bn:")) {
        let values = if name.ends_with(".var") { (0..n).map(|_| rng.random_range(0.5..2.0)).collect() } else { (0..n).map(|_| rng.random_range(-0.3..0.3)).collect() };
        tensors.push((name, vec![n], values));
    }
    let mean = (0..c).map(|k| 0.2 + 0.1 * k as f32).collect();
    let std = (0..c).map(|k| 0.3 + 0.05 * k as f32).collect();
    let model = TrainedNet {
        spec: Spec::new(arch),
        net,
        input: Input { channels: c, height: h, width: w, mean, std },
        classes: None,
        dataset: "random".into(),
        tensors,
        weights: "random.safetensors".into(),
        checkpoint: None,
        run_id: None,
        data: None,
    };
    model.check().unwrap();
    model
}

fn random_images(n: usize, [c, h, w]: [usize; 3], seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let images = (0..n * c * h * w).map(|_| rng.random::<u8>()).collect();
    Dataset { images, labels: vec![0; n], n, c, h, w, classes: CLASSES }
}

/// Logits of the ONNX model on `images` (bytes scaled to 0..1), by tract; its probabilities
/// output must be their softmax (rows summing to 1).
fn tract_logits(bytes: &[u8], images: &Dataset, classes: usize) -> Vec<f32> {
    let shape = [images.n, images.c, images.h, images.w];
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x: Vec<f32> = images.images.iter().map(|&b| b as f32 / 255.0).collect();
    let input = tract_ndarray::Array4::from_shape_vec(shape, x).unwrap().into_tensor();
    let out = model.run(tvec!(input.into())).unwrap();
    let logits = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(logits.shape(), &[images.n, classes]);
    let probs = out[1].to_plain_array_view::<f32>().unwrap();
    for row in probs.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5, "probabilities sum to 1");
    }
    logits.iter().copied().collect()
}

/// ONNX through tract against the GPU's logits on 3 images forwarded 2 at a time.
fn check_onnx(model: &TrainedNet, seed: u64) -> f32 {
    let i = &model.input;
    let images = random_images(3, [i.channels, i.height, i.width], seed);
    let gpu = logits(&test_gpu(), model, &images, 2).unwrap();
    let bytes = onnx::to_onnx(model).unwrap();
    let cpu = tract_logits(&bytes, &images, CLASSES);
    assert_eq!(gpu.len(), cpu.len());
    let diff = gpu.iter().zip(&cpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = gpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(diff < 1e-4, "{}: max |GPU - ONNX| = {diff:e} (logits up to {scale})\nGPU  {gpu:?}\nONNX {cpu:?}", model.spec.arch.text());
    assert!(scale > 1e-2, "logits too small to tell anything: {gpu:?}");
    eprintln!("{} {}: max |GPU - ONNX| = {diff:e}, logits up to {scale}", model.spec.arch.space(), model.spec.arch.text());
    diff
}

#[test]
fn onnx_of_random_darts_networks_matches_the_gpu() {
    let space = SearchSpace::default();
    for seed in 0..3u64 {
        let arch = Space::sample(&space, &mut ChaCha8Rng::seed_from_u64(seed));
        let in_channels = if seed == 1 { 3 } else { 1 };
        // Seed 2: gated residual cells (deepening), two after the first normal cell.
        let gated = if seed == 2 { vec![0, 0] } else { vec![] };
        let model = random_model(arch, net(NetKind::Darts, in_channels, 3, gated), [in_channels, 8, 8], 10 + seed);
        check_onnx(&model, seed);
    }
}

#[test]
fn onnx_of_random_nb201_networks_matches_the_gpu() {
    let space = Nb201Space::default();
    let mut archs: Vec<Arch> = (0..2u64).map(|s| Space::sample(&space, &mut ChaCha8Rng::seed_from_u64(s))).collect();
    // Node 1 has only `none` inputs (zeros), and node 2 reads it through a conv.
    archs.push(Arch::Nb201(Nb201Cell::parse("|none~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|").unwrap()));
    for (k, arch) in archs.into_iter().enumerate() {
        let model = random_model(arch, net(NetKind::Nb201, 1, 1, vec![]), [1, 8, 8], 20 + k as u64);
        check_onnx(&model, k as u64);
    }
}

#[test]
fn onnx_of_random_macro_networks_matches_the_gpu() {
    let space = MacroSpace::new(MacroSpace::default().ops().to_vec(), 4).unwrap();
    for seed in 0..3u64 {
        let arch = Space::sample(&space, &mut ChaCha8Rng::seed_from_u64(seed));
        let in_channels = if seed == 1 { 3 } else { 1 };
        let model = random_model(arch, net(NetKind::Macro, in_channels, 4, vec![]), [in_channels, 8, 8], 30 + seed);
        check_onnx(&model, seed);
    }
}

#[test]
fn one_file_model_reads_back_to_the_same_network_and_logits() {
    let arch = Space::sample(&SearchSpace::default(), &mut ChaCha8Rng::seed_from_u64(7));
    let mut model = random_model(arch, net(NetKind::Darts, 1, 3, vec![]), [1, 8, 8], 7);
    model.classes = Some((0..CLASSES).map(|k| format!("class {k}")).collect());
    let dir = std::env::temp_dir().join(format!("cellnas-test-{}-bundle", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let back = TrainedNet::from_file(&path).unwrap();
    assert_eq!((&back.spec, &back.net, &back.input, &back.classes, &back.dataset), (&model.spec, &model.net, &model.input, &model.classes, &model.dataset));
    let images = random_images(4, [1, 8, 8], 1);
    let gpu = test_gpu();
    assert_eq!(logits(&gpu, &model, &images, 4).unwrap(), logits(&gpu, &back, &images, 4).unwrap(), "same weights, same logits, bitwise");
    // The plain safetensors reader sees the weights, so other tools can open the file.
    let (tensors, meta) = cellnas::run::load_tensors(&path).unwrap();
    assert_eq!(tensors.len(), model.tensors.len());
    assert_eq!(meta["format"], "cellnas-model");
    // A weights file without the metadata is refused, naming the file.
    let bare = dir.join("bare.safetensors");
    cellnas::run::save_tensors(&bare, &tensors, &Default::default()).unwrap();
    let e = TrainedNet::from_file(&bare).unwrap_err().to_string();
    assert!(e.contains("bare.safetensors") && e.contains("not a cellnas model"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn onnx_file_declares_opset_17_and_the_expected_ops() {
    let arch = Space::sample(&SearchSpace::default(), &mut ChaCha8Rng::seed_from_u64(3));
    let model = random_model(arch, net(NetKind::Darts, 1, 3, vec![]), [1, 8, 8], 3);
    let bytes = onnx::to_onnx(&model).unwrap();
    let m = tract_onnx::onnx().proto_model_for_read(&mut std::io::Cursor::new(&bytes)).unwrap();
    assert_eq!((m.ir_version, m.producer_name.as_str()), (8, "cellnas"));
    assert_eq!(m.opset_import[0].version, 17);
    let g = m.graph.unwrap();
    let ops: std::collections::BTreeSet<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    for op in ["Sub", "Div", "Conv", "BatchNormalization", "Relu", "Add", "Concat", "GlobalAveragePool", "Gemm", "Softmax"] {
        assert!(ops.contains(op), "{op} missing from {ops:?}");
    }
    assert_eq!(g.input[0].name, "image");
    assert_eq!(g.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["logits", "probabilities"]);
    // Every weight is an initializer under its own name; the normalisation is in the metadata too.
    for (name, _, _) in &model.tensors {
        assert!(g.initializer.iter().any(|t| &t.name == name), "{name} is not an initializer");
    }
    assert!(m.metadata_props.iter().any(|p| p.key == "cellnas.input" && p.value.contains("\"mean\"")));
    // Average pools exclude padding, as cellnas's do.
    for n in g.node.iter().filter(|n| n.op_type == "AveragePool") {
        assert!(n.attribute.iter().any(|a| a.name == "count_include_pad" && a.i == 0));
    }
}

mod common;
use common::{fails, ok, read_json, run, tmp};

/// An IDX images file of `images` (each h x w bytes).
fn write_idx(path: &std::path::Path, images: &[&[u8]], h: usize, w: usize) {
    let mut b = vec![0, 0, 8, 3];
    for d in [images.len(), h, w] {
        b.extend((d as u32).to_be_bytes());
    }
    for img in images {
        b.extend_from_slice(img);
    }
    std::fs::write(path, b).unwrap();
}

/// CSV rows as (label, predicted, predicted_name, logits).
fn csv_rows(text: &str) -> Vec<(String, usize, String, Vec<f32>)> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&head[..5], ["index", "source", "label", "predicted", "predicted_name"]);
    let k = (head.len() - 5) / 2;
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_string(), f[3].parse().unwrap(), f[4].to_string(), f[5..5 + k].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One tiny `cellnas train` run (macro space, embedded Fashion-MNIST subset), then every way of
/// predicting with it and exporting it, as a user runs them.
#[test]
fn predict_and_export_a_trained_run() {
    let root = tmp("export-cli");
    std::fs::create_dir_all(&root).unwrap();
    let p = |name: &str| root.join(name).to_str().unwrap().to_string();
    std::fs::write(p("arch.txt"), "conv_3x3|sep_conv_3x3|max_pool_3x3+0|avg_pool_3x3+1").unwrap();
    let dir = p("run");
    ok(run(&["train", "--spec", &p("arch.txt"), "--out", &dir, "--channels", "4", "--train-limit", "64", "--batch-size", "32", "--epochs", "1", "--precise-bn", "2", "--quiet"]));
    let tested = serde_json::from_str::<serde_json::Value>(&ok(run(&["test", "--run", &dir, "--json"]))).unwrap();

    // The run's own test split (1000 embedded images): the same accuracy `test` measured.
    let o = run(&["predict", "--run", &dir, "--out", &p("test.csv")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(o);
    let rows = csv_rows(&std::fs::read_to_string(p("test.csv")).unwrap());
    assert_eq!(rows.len(), 1000);
    let right = rows.iter().filter(|r| r.0 == r.1.to_string()).count();
    assert_eq!(right as f64 / 1000.0, tested["test_accuracy"].as_f64().unwrap(), "predict's argmax agrees with test's accuracy");
    assert!(err.contains(&format!("accuracy {:.2}%", right as f64 / 10.0)), "{err}");
    let names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
    assert!(rows.iter().all(|r| r.2 == names[r.1]), "Fashion-MNIST class names");

    // ONNX through tract against the GPU's logits of the first 8 test images.
    ok(run(&["export", "--run", &dir, "--out", &p("model.onnx")]));
    let test = cellnas::data::embedded().unwrap().test.subset(&(0..8).collect::<Vec<_>>());
    let onnx_logits = tract_logits(&std::fs::read(p("model.onnx")).unwrap(), &test, 10);
    let gpu_logits: Vec<f32> = rows[..8].iter().flat_map(|r| r.3.clone()).collect();
    let d = max_diff(&onnx_logits, &gpu_logits);
    eprintln!("trained run: max |GPU - ONNX| = {d:e}");
    assert!(d < 1e-4, "max |GPU - ONNX| = {d:e}");

    // The one-file model predicts the same from an IDX file (labels beside it) and PNGs.
    ok(run(&["export", "--run", &dir, "--format", "safetensors", "--out", &p("model.safetensors")]));
    let imgs: Vec<&[u8]> = (0..8).map(|i| test.image(i)).collect();
    std::fs::create_dir_all(p("idx")).unwrap();
    write_idx(&root.join("idx/t10k-images-idx3-ubyte"), &imgs, 28, 28);
    let mut labels = vec![0, 0, 8, 1];
    labels.extend(8u32.to_be_bytes());
    labels.extend(&test.labels);
    std::fs::write(root.join("idx/t10k-labels-idx1-ubyte"), labels).unwrap();
    ok(run(&["predict", "--run", &p("model.safetensors"), "--data", &p("idx/t10k-images-idx3-ubyte"), "--out", &p("idx.json")]));
    let v = read_json(&root.join("idx.json"));
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 8);
    for (i, pr) in preds.iter().enumerate() {
        assert_eq!(pr["label"].as_u64().unwrap(), test.labels[i] as u64);
        let l: Vec<f32> = pr["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert!(max_diff(&l, &rows[i].3) < 1e-5, "image {i}: {l:?} vs {:?}", rows[i].3);
        let probs: f64 = pr["probabilities"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-5);
    }
    image::GrayImage::from_raw(28, 28, test.image(0).to_vec()).unwrap().save(p("zero.png")).unwrap();
    let rgb = image::RgbImage::from_fn(28, 28, |x, y| {
        let v = test.image(1)[(y * 28 + x) as usize];
        image::Rgb([v, v, v])
    });
    rgb.save(p("one_rgb.png")).unwrap();
    let o = run(&["predict", "--run", &p("model.safetensors"), "--data", &p("zero.png"), &p("one_rgb.png"), "--format", "csv"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let png_rows = csv_rows(&ok(o));
    assert!(err.contains("1 image(s) converted to grayscale"), "{err}");
    assert_eq!(png_rows.len(), 2);
    for (i, r) in png_rows.iter().enumerate() {
        assert_eq!(r.0, "", "PNGs have no labels");
        assert!(max_diff(&r.3, &rows[i].3) < 1e-5, "png {i}");
    }

    // Bad input: wrong sizes name the file and what was expected; --resize scales.
    image::GrayImage::new(32, 30).save(p("big.png")).unwrap();
    fails(run(&["predict", "--run", &dir, "--data", &p("big.png")]), &["big.png", "32x30", "28x28", "--resize"]);
    ok(run(&["predict", "--run", &dir, "--data", &p("big.png"), "--resize"]));
    write_idx(&root.join("small-images-idx3-ubyte"), &[&[0u8; 400][..]], 20, 20);
    fails(run(&["predict", "--run", &dir, "--data", &p("small-images-idx3-ubyte")]), &["small-images-idx3-ubyte", "20x20", "28x28"]);
    fails(run(&["predict", "--run", &p("model.safetensors")]), &["model.safetensors", "--data"]);
    fails(run(&["export", "--run", &dir, "--out", &p("model.bin")]), &["--format onnx"]);

    // A run without final weights (as if stopped before its end): export refuses it, naming
    // the file; predict falls back to the latest checkpoint and says so.
    std::fs::remove_file(root.join("run/weights.safetensors")).unwrap();
    let mpath = root.join("run/manifest.json");
    let mut manifest = read_json(&mpath);
    manifest["files"].as_object_mut().unwrap().remove("weights.safetensors");
    std::fs::write(&mpath, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let o = run(&["export", "--run", &dir, "--out", &p("late.onnx")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    fails(o, &["weights.safetensors", "no final weights"]);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!root.join("late.onnx").exists());
    let o = run(&["predict", "--run", &dir, "--data", &p("zero.png")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("checkpoint after 1 of 1 epochs"));
    ok(o);
    std::fs::remove_dir_all(&root).unwrap();
}
