//! The DARTS network on the tape: sizes against the published numbers, and the tape's
//! gradients against finite differences along a random direction, on a tiny supernet path
//! that uses every op (so every backward node, fan-out accumulation included, is exercised).

use cellnas::gpu::test_gpu;
use cellnas::nn::darts::{self, NetConfig};
use cellnas::nn::{BnStats, Graph, Mode, ParamStore};
use cellnas::space::{Cell, Edge, Genotype, Op};
use cellnas::tensor::upload_u32;
use cellnas::Tensor;
use rand::{Rng, SeedableRng};

const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

#[test]
fn darts_v2_on_cifar_has_the_published_size() {
    // DARTS (Liu et al. 2019), Table 1: 3.3M parameters for the CIFAR-10 network (C=36, 20
    // cells, auxiliary head excluded as in the reference code's count).
    let cfg = NetConfig { in_channels: 3, classes: 10, channels: 36, layers: 20, nodes: 4, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
    let g = Genotype::from_darts(DARTS_V2).unwrap();
    let (params, flops) = darts::size(&cfg, &g, 32, 32).unwrap();
    assert!((3_250_000..3_400_000).contains(&params), "{params} parameters");
    // ~530M multiply-adds per image is the commonly quoted figure for this network.
    assert!((0.9e9..1.2e9).contains(&(flops as f64)), "{flops} FLOPs");
}

/// A genotype that puts every op on some edge, in both cells.
fn every_op() -> Genotype {
    let e = |op, input| Edge { op, input };
    let normal = Cell {
        nodes: vec![[e(Op::SepConv3x3, 0), e(Op::SkipConnect, 1)], [e(Op::DilConv3x3, 2), e(Op::MaxPool3x3, 0)], [e(Op::AvgPool3x3, 3), e(Op::SepConv5x5, 2)]],
        concat: vec![2, 3, 4],
    };
    let reduce = Cell {
        nodes: vec![[e(Op::SkipConnect, 0), e(Op::DilConv5x5, 1)], [e(Op::MaxPool3x3, 1), e(Op::SepConv3x3, 2)], [e(Op::AvgPool3x3, 0), e(Op::SkipConnect, 3)]],
        concat: vec![2, 3, 4],
    };
    Genotype { normal, reduce }
}

#[test]
fn tape_gradients_match_finite_differences() {
    let gpu = test_gpu();
    let cfg = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 3, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() };
    let geno = every_op();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(3));
    let (b, h) = (3, 8);
    let xs: Vec<f32> = (0..b * h * h).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels = upload_u32(&gpu, &[0, 2, 1]).unwrap();
    let mut store = ParamStore::new(&gpu, 42);

    // One training-mode pass: loss and the gradients of every parameter the path uses.
    let run = |store: &mut ParamStore, backward: bool| -> f64 {
        let mut bn = BnStats::new();
        let x = Tensor::from_slice(&gpu, &[b, 1, h, h], &xs).unwrap();
        let mut g = Graph::new(gpu.step(), store, &mut bn, Mode::Train);
        let x = g.input(x);
        let logits = darts::forward(&mut g, &cfg, &geno, x).unwrap();
        let (loss, _) = g.cross_entropy(logits, &labels).unwrap();
        if backward {
            g.backward().unwrap();
        }
        let mut step = g.finish().unwrap();
        let hd = step.read(&loss.buf, 0, 4);
        step.submit().unwrap().f32s(hd)[0] as f64
    };
    // Poison every gradient first: a parameter the tape forgets to write stays NaN.
    run(&mut store, false);
    for n in store.names().cloned().collect::<Vec<_>>() {
        store.get(&n).unwrap().grad.poison(&gpu).unwrap();
    }
    run(&mut store, true);
    let names = store.touched();
    assert!(names.len() > 30, "the path should use many parameters, used {}", names.len());
    assert_eq!(names.len(), store.len(), "every parameter created by the path gets a gradient");
    store.clear_touched();

    // For a spread of parameter tensors: the directional derivative along that tensor's own
    // gradient g/|g| must equal |g|. A gradient routed to the wrong tensor, scaled wrongly or
    // not summed over a fan-out fails this. (The gradient's own direction gives f32 finite
    // differences the strongest signal; kinks of ReLU and max pool make random directions
    // too noisy at f32.)
    let eps: f32 = std::env::var("EPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3e-4);
    let grads: Vec<Vec<f32>> = names.iter().map(|n| store.get(n).unwrap().grad.to_vec(&gpu).unwrap()).collect();
    assert!(grads.iter().flatten().all(|g| g.is_finite()), "a gradient was left unwritten (NaN)");
    let norms: Vec<f64> = grads.iter().map(|g| g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()).collect();
    let max_norm = norms.iter().cloned().fold(0.0, f64::max);
    let mut checked = 0;
    for (i, n) in names.iter().enumerate().step_by(3) {
        if norms[i] < 0.02 * max_norm {
            continue;
        }
        let value = store.get(n).unwrap().value.clone();
        let p0 = value.to_vec(&gpu).unwrap();
        let moved = |sign: f32| -> Vec<f32> { p0.iter().zip(&grads[i]).map(|(p, g)| p + sign * eps * (*g as f64 / norms[i]) as f32).collect() };
        value.write(&gpu, &moved(1.0)).unwrap();
        let lp = run(&mut store, false);
        value.write(&gpu, &moved(-1.0)).unwrap();
        let lm = run(&mut store, false);
        value.write(&gpu, &p0).unwrap();
        let fd = (lp - lm) / (2.0 * eps as f64);
        assert!((fd - norms[i]).abs() <= 0.05 * norms[i] + 2e-3 * max_norm, "{n}: |grad| is {}, finite differences give {fd}", norms[i]);
        checked += 1;
    }
    assert!(checked >= 8, "checked only {checked} tensors");
}

/// ReLU -> conv fused (the default) against the unfused reference path (`set_fuse(false)`), on
/// the every-op path of a supernet and of a stand-alone network: the same logits in training
/// and eval mode and the same gradient for every parameter (the same math; only gradients
/// summed into a value with several consumers may add in another order), and the fused graphs
/// launch no ReLU kernel, so no relu(x) tensor is written.
#[test]
fn fused_relu_conv_matches_unfused() {
    let gpu = test_gpu();
    let geno = every_op();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (b, h) = (3, 8);
    let xs: Vec<f32> = (0..b * h * h).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels = upload_u32(&gpu, &[1, 0, 2]).unwrap();
    for supernet in [true, false] {
        let cfg = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 3, supernet, supernet_affine: false, gated: vec![], kind: Default::default() };
        let mut store = ParamStore::new(&gpu, 7);
        // (logits, gradient of every parameter by name, kernels launched)
        let mut run = |fuse: bool, mode: Mode| {
            let mut bn = BnStats::new();
            let x = Tensor::from_slice(&gpu, &[b, 1, h, h], &xs).unwrap();
            let mut g = Graph::new(gpu.step(), &mut store, &mut bn, mode);
            g.set_fuse(fuse);
            let x = g.input(x);
            let logits = darts::forward(&mut g, &cfg, &geno, x).unwrap();
            if mode == Mode::Train {
                g.cross_entropy(logits, &labels).unwrap();
                g.backward().unwrap();
            }
            let lt = g.tensor(logits).unwrap().clone();
            let mut step = g.finish().unwrap();
            let kernels = step.kernels();
            let hd = step.read(&lt.buf, 0, 4 * lt.numel() as u64);
            let logits = step.submit().unwrap().f32s(hd);
            let mut grads = std::collections::BTreeMap::new();
            if mode == Mode::Train {
                for n in store.touched() {
                    grads.insert(n.clone(), store.get(&n).unwrap().grad.to_vec(&gpu).unwrap());
                }
                store.clear_touched();
            }
            (logits, grads, kernels)
        };
        let relus = |k: &[&str]| k.iter().filter(|k| k.starts_with("relu_")).count();
        for mode in [Mode::Train, Mode::Eval] {
            let (l0, g0, k0) = run(false, mode);
            let (l1, g1, k1) = run(true, mode);
            let what = format!("supernet {supernet} {mode:?}");
            assert!(relus(&k0) > 0, "{what}: the reference path should run ReLU kernels");
            assert_eq!(relus(&k1), 0, "{what}: the fused path still runs ReLU kernels");
            assert!(k1.len() < k0.len(), "{what}: fused {} dispatches, unfused {}", k1.len(), k0.len());
            let scale = l0.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in l0.iter().zip(&l1) {
                assert!((a - b).abs() <= 1e-5 * scale + 1e-6, "{what}: logits {l0:?} vs fused {l1:?}");
            }
            assert_eq!(g0.keys().collect::<Vec<_>>(), g1.keys().collect::<Vec<_>>(), "{what}: same parameters get gradients");
            if mode == Mode::Train {
                assert!(g0.len() > 30, "{what}: {} gradients", g0.len());
            }
            for (n, a) in &g0 {
                let b = &g1[n];
                let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    assert!((x - y).abs() <= 1e-4 * scale + 1e-7, "{what}: gradient of {n}[{i}]: unfused {x}, fused {y}");
                }
            }
        }
    }
}

#[test]
fn supernet_affine_adds_a_scale_and_shift_per_bn_channel() {
    let plain = NetConfig { in_channels: 1, classes: 3, channels: 4, layers: 3, nodes: 3, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() };
    let affine = NetConfig { supernet_affine: true, ..plain.clone() };
    let geno = every_op();
    let (p0, f0) = darts::size(&plain, &geno, 8, 8).unwrap();
    let (p1, f1) = darts::size(&affine, &geno, 8, 8).unwrap();
    assert!(p1 > p0 && (p1 - p0) % 2 == 0, "{p0} -> {p1}");
    assert_eq!(f0, f1);
    assert!(affine.affine() && !plain.affine());
}
