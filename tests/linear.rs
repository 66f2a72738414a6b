//! Focused tests of shaders/linear.wgsl beyond the op checker: the bench shapes against the
//! reference (no finite differences: too slow there), bitwise determinism of the gradients
//! reduced over the batch, and shape errors.

use cellnas::gpu::{test_gpu, Gpu};
use cellnas::ops::check::{compare, random_vec, rng_for};
use cellnas::ops::linear::{self, reference};
use cellnas::Tensor;
use std::sync::Arc;

struct Out {
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Forward and both backward passes in one step.
fn run(gpu: &Arc<Gpu>, x: &[f32], w: &[f32], b: &[f32], dy: &[f32], (n, k, m): (usize, usize, usize)) -> Out {
    let xt = Tensor::from_slice(gpu, &[n, k], x).unwrap();
    let wt = Tensor::from_slice(gpu, &[m, k], w).unwrap();
    let bt = Tensor::from_slice(gpu, &[m], b).unwrap();
    let dyt = Tensor::from_slice(gpu, &[n, m], dy).unwrap();
    let outs = [Tensor::empty(gpu, &[n, m]), Tensor::empty(gpu, &[n, k]), Tensor::empty(gpu, &[m, k]), Tensor::empty(gpu, &[m])];
    for t in &outs {
        t.poison(gpu).unwrap();
    }
    let [y, dx, dw, db] = &outs;
    let mut step = gpu.step();
    linear::forward(&mut step, &xt, &wt, Some(&bt), y).unwrap();
    linear::backward_input(&mut step, &dyt, &wt, dx).unwrap();
    linear::backward_weight(&mut step, &xt, &dyt, dw, Some(db)).unwrap();
    let h: Vec<_> = outs.iter().map(|t| step.read(&t.buf, 0, 4 * t.numel() as u64)).collect();
    let r = step.submit().unwrap();
    Out { y: r.f32s(h[0]), dx: r.f32s(h[1]), dw: r.f32s(h[2]), db: r.f32s(h[3]) }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn bench_shapes_match_reference_and_are_deterministic() {
    let gpu = test_gpu();
    for &(n, k, m) in &[(64, 64, 10), (64, 256, 10), (64, 512, 512), (300, 33, 7)] {
        let mut rng = rng_for(&format!("linear {n} {k} {m}"));
        let x = random_vec(&mut rng, n * k);
        let w = random_vec(&mut rng, m * k);
        let b = random_vec(&mut rng, m);
        let dy = random_vec(&mut rng, n * m);
        let a = run(&gpu, &x, &w, &b, &dy, (n, k, m));
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let t = |len: usize| 1e-4 * (len as f64 / 64.0).max(1.0);
        compare("y", &a.y, &reference::forward(&x64, &w64, Some(&f64s(&b)), n, k, m), t(k), t(k)).unwrap();
        compare("dx", &a.dx, &reference::backward_input(&dy64, &w64, n, k, m), t(m), t(m)).unwrap();
        let (dw, db) = reference::backward_weight(&x64, &dy64, n, k, m);
        compare("dw", &a.dw, &dw, t(n), t(n)).unwrap();
        compare("db", &a.db, &db, t(n), t(n)).unwrap();

        let again = run(&gpu, &x, &w, &b, &dy, (n, k, m));
        let same = |p: &[f32], q: &[f32]| p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits());
        assert!(same(&a.y, &again.y) && same(&a.dx, &again.dx), "{n} {k} {m}");
        assert!(same(&a.dw, &again.dw) && same(&a.db, &again.db), "{n} {k} {m}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let gpu = test_gpu();
    let t = |s: &[usize]| Tensor::empty(&gpu, s);
    let (x, w, b, y) = (t(&[3, 5]), t(&[4, 5]), t(&[4]), t(&[3, 4]));
    let mut step = gpu.step();
    assert!(linear::forward(&mut step, &x, &t(&[4, 6]), Some(&b), &y).is_err());
    assert!(linear::forward(&mut step, &x, &t(&[20]), None, &y).is_err());
    assert!(linear::forward(&mut step, &x, &w, Some(&t(&[5])), &y).is_err());
    assert!(linear::forward(&mut step, &x, &w, None, &t(&[3, 5])).is_err());
    assert!(linear::backward_input(&mut step, &t(&[2, 4]), &w, &x).is_err());
    assert!(linear::backward_weight(&mut step, &x, &y, &t(&[5, 4]), None).is_err());
    assert!(linear::backward_weight(&mut step, &x, &y, &w, Some(&t(&[3]))).is_err());
    assert_eq!(step.dispatches(), 0, "a rejected call records nothing");
    // [N, C, 1, 1] (global pooling output) is read as [N, C].
    assert!(linear::forward(&mut step, &t(&[3, 5, 1, 1]), &w, Some(&b), &y).is_ok());
}
