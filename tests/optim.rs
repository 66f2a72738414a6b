//! Optimizers over several steps against the f64 reference, gradient clipping on both sides of
//! max_norm, determinism of the gradient norm, and shape errors.

use cellnas::gpu::test_gpu;
use cellnas::ops::check::{compare, random_vec, rng_for};
use cellnas::ops::optim::{self, reference, Adam, Sgd};
use cellnas::Tensor;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Host-side cosine schedule, as the trainer will use it: a different lr in every step's uniform.
fn cosine_lr(base: f32, t: usize, steps: usize) -> f32 {
    (0.5 * base as f64 * (1.0 + (std::f64::consts::PI * t as f64 / steps as f64).cos())) as f32
}

const STEPS: usize = 10;

#[test]
fn sgd_ten_steps_match_reference() {
    let gpu = test_gpu();
    for (name, nesterov, wd) in [("sgd momentum", false, 0.0), ("sgd nesterov wd", true, 3e-2)] {
        let n = 1031;
        let mut rng = rng_for(name);
        let p0 = random_vec(&mut rng, n);
        let param = Tensor::from_slice(&gpu, &[n], &p0).unwrap();
        let buf = Tensor::from_slice(&gpu, &[n], &vec![0.0; n]).unwrap();
        let (mut p_ref, mut b_ref) = (f64s(&p0), vec![0.0; n]);
        // All steps recorded into one Step: in-place updates must be ordered between dispatches.
        let mut step = gpu.step();
        let mut grads = Vec::new();
        for t in 0..STEPS {
            let g = random_vec(&mut rng, n);
            let cfg = Sgd { lr: cosine_lr(0.1, t, STEPS), momentum: 0.9, weight_decay: wd, nesterov };
            let gt = Tensor::from_slice_in(&mut step, &[n], &g).unwrap();
            optim::sgd_step(&mut step, &param, &gt, &buf, &cfg).unwrap();
            grads.push(gt);
            (p_ref, b_ref) = reference::sgd(&p_ref, &f64s(&g), &b_ref, &cfg);
        }
        step.submit().unwrap();
        compare(&format!("{name}: param"), &param.to_vec(&gpu).unwrap(), &p_ref, 1e-4, 1e-4).unwrap();
        compare(&format!("{name}: momentum"), &buf.to_vec(&gpu).unwrap(), &b_ref, 1e-4, 1e-4).unwrap();
    }
}

#[test]
fn adam_ten_steps_match_reference() {
    let gpu = test_gpu();
    for decoupled in [false, true] {
        let name = if decoupled { "adamw" } else { "adam" };
        let n = 1031;
        let mut rng = rng_for(name);
        let p0 = random_vec(&mut rng, n);
        let param = Tensor::from_slice(&gpu, &[n], &p0).unwrap();
        let m = Tensor::from_slice(&gpu, &[n], &vec![0.0; n]).unwrap();
        let v = Tensor::from_slice(&gpu, &[n], &vec![0.0; n]).unwrap();
        let (mut p_ref, mut m_ref, mut v_ref) = (f64s(&p0), vec![0.0; n], vec![0.0; n]);
        // One submit per step, like the trainer.
        for t in 1..=STEPS as u32 {
            let g = random_vec(&mut rng, n);
            let cfg = Adam {
                lr: cosine_lr(1e-2, t as usize - 1, STEPS),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05,
                decoupled,
            };
            let gt = Tensor::from_slice(&gpu, &[n], &g).unwrap();
            let mut step = gpu.step();
            optim::adam_step(&mut step, &param, &gt, &m, &v, &cfg, t).unwrap();
            step.submit().unwrap();
            (p_ref, m_ref, v_ref) = reference::adam(&p_ref, &f64s(&g), &m_ref, &v_ref, &cfg, t);
        }
        compare(&format!("{name}: param"), &param.to_vec(&gpu).unwrap(), &p_ref, 1e-4, 1e-4).unwrap();
        compare(&format!("{name}: m"), &m.to_vec(&gpu).unwrap(), &m_ref, 1e-5, 1e-4).unwrap();
        compare(&format!("{name}: v"), &v.to_vec(&gpu).unwrap(), &v_ref, 1e-6, 1e-4).unwrap();
    }
}

struct Clipped {
    before: Vec<Vec<f32>>,
    /// After grad_norm_sq + clip_grads recorded in one step.
    after: Vec<Vec<f32>>,
    want: Vec<Vec<f64>>,
}

/// Random grads clipped at max_norm = norm * max_norm_over_norm.
fn clip_once(sizes: &[usize], max_norm_over_norm: f64, seed: &str) -> Clipped {
    let gpu = test_gpu();
    let mut rng = rng_for(seed);
    let host: Vec<Vec<f32>> = sizes.iter().map(|&n| random_vec(&mut rng, n)).collect();
    let host64: Vec<Vec<f64>> = host.iter().map(|g| f64s(g)).collect();
    let slices: Vec<&[f64]> = host64.iter().map(|g| g.as_slice()).collect();
    let norm = reference::grad_norm_sq(&slices).sqrt();
    let max_norm = (norm * max_norm_over_norm) as f32;
    let want = reference::clip_grads(&slices, max_norm as f64);

    let grads: Vec<Tensor> = host.iter().zip(sizes).map(|(g, &n)| Tensor::from_slice(&gpu, &[n], g).unwrap()).collect();
    let refs: Vec<&Tensor> = grads.iter().collect();
    let norm_sq = Tensor::empty(&gpu, &[1]);
    norm_sq.poison(&gpu).unwrap();
    let mut step = gpu.step();
    optim::grad_norm_sq(&mut step, &refs, &norm_sq).unwrap();
    optim::clip_grads(&mut step, &refs, &norm_sq, max_norm).unwrap();
    step.submit().unwrap();
    let after = grads.iter().map(|g| g.to_vec(&gpu).unwrap()).collect();
    Clipped { before: host, after, want }
}

#[test]
fn clip_grads_above_max_norm_scales_down() {
    let sizes = [17, 4099, 1, 300];
    let Clipped { before: host, after: got, want } = clip_once(&sizes, 0.25, "clip above");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        compare(&format!("clipped grad {i}"), g, w, 1e-6, 1e-4).unwrap();
        assert!(g.iter().zip(&host[i]).all(|(a, b)| a.abs() < b.abs()), "grad {i} was not scaled down");
    }
}

#[test]
fn clip_grads_below_max_norm_leaves_grads_alone() {
    let sizes = [17, 4099, 1, 300];
    let Clipped { before: host, after: got, want } = clip_once(&sizes, 2.0, "clip below");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        compare(&format!("grad {i}"), g, w, 0.0, 0.0).unwrap();
        // The coefficient is exactly 1, so the grads come back bit for bit.
        assert_eq!(g, &host[i], "grad {i} changed though its norm is under max_norm");
    }
}

#[test]
fn grad_norm_sq_is_bitwise_deterministic() {
    let gpu = test_gpu();
    let mut rng = rng_for("grad norm determinism");
    let sizes = [70000, 17, 1, 4099, 33333];
    let grads: Vec<Tensor> = sizes.iter().map(|&n| Tensor::from_slice(&gpu, &[n], &random_vec(&mut rng, n)).unwrap()).collect();
    let refs: Vec<&Tensor> = grads.iter().collect();
    let run = || {
        let out = Tensor::empty(&gpu, &[1]);
        out.poison(&gpu).unwrap();
        let mut step = gpu.step();
        optim::grad_norm_sq(&mut step, &refs, &out).unwrap();
        step.submit().unwrap();
        out.to_vec(&gpu).unwrap()[0]
    };
    let (a, b) = (run(), run());
    assert!(a.is_finite() && a > 0.0, "norm^2 = {a}");
    assert_eq!(a.to_bits(), b.to_bits(), "two runs gave {a} and {b}");
}

#[test]
fn grad_norm_sq_of_nothing_is_zero() {
    let gpu = test_gpu();
    let out = Tensor::empty(&gpu, &[1]);
    out.poison(&gpu).unwrap();
    let mut step = gpu.step();
    optim::grad_norm_sq(&mut step, &[], &out).unwrap();
    step.submit().unwrap();
    assert_eq!(out.to_vec(&gpu).unwrap(), vec![0.0]);
}

#[test]
fn mismatched_shapes_are_errors() {
    let gpu = test_gpu();
    let a = Tensor::empty(&gpu, &[5]);
    let b = Tensor::empty(&gpu, &[6]);
    let none = Tensor::empty(&gpu, &[0]);
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    let adam = Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
    let mut step = gpu.step();
    let shape = |r: cellnas::Result<()>| matches!(r, Err(cellnas::Error::Shape { .. }));
    assert!(shape(optim::sgd_step(&mut step, &a, &b, &a, &sgd)));
    assert!(shape(optim::sgd_step(&mut step, &a, &a, &b, &sgd)));
    assert!(shape(optim::adam_step(&mut step, &a, &a, &a, &b, &adam, 1)));
    assert!(shape(optim::grad_norm_sq(&mut step, &[&a], &none)));
    assert!(shape(optim::clip_grads(&mut step, &[&a], &none, 1.0)));
    let invalid = |r: cellnas::Result<()>| matches!(r, Err(cellnas::Error::Invalid(_)));
    assert!(invalid(optim::adam_step(&mut step, &a, &a, &a, &a, &adam, 0)));
    assert!(invalid(optim::sgd_step(&mut step, &a, &a, &a, &Sgd { momentum: 0.0, nesterov: true, ..sgd })));
    assert_eq!(step.dispatches(), 0);
}
