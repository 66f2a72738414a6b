//! Batch norm beyond the op checker: running statistics, momentum, saved statistics, the
//! one-value-per-channel error, numerical stability and bitwise determinism.

use cellnas::ops::batchnorm::{self, reference, BatchNorm};
use cellnas::ops::check::{compare, random_vec, rng_for};
use cellnas::{Error, Gpu, Tensor};
use rand::Rng;
use std::sync::Arc;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

struct Layer {
    shape: [usize; 4],
    running_mean: Tensor,
    running_var: Tensor,
    save_mean: Tensor,
    save_inv_std: Tensor,
}

impl Layer {
    fn new(gpu: &Arc<Gpu>, shape: [usize; 4], rm: &[f32], rv: &[f32]) -> Layer {
        let c = shape[1];
        Layer {
            shape,
            running_mean: Tensor::from_slice(gpu, &[c], rm).unwrap(),
            running_var: Tensor::from_slice(gpu, &[c], rv).unwrap(),
            save_mean: Tensor::empty(gpu, &[c]),
            save_inv_std: Tensor::empty(gpu, &[c]),
        }
    }

    /// One training forward (no affine) on x; returns y.
    fn train(&self, gpu: &Arc<Gpu>, x: &[f32], bn: &BatchNorm) -> Vec<f32> {
        let xt = Tensor::from_slice(gpu, &self.shape, x).unwrap();
        let y = Tensor::empty(gpu, &self.shape);
        let mut step = gpu.step();
        batchnorm::forward_train(&mut step, &xt, None, None, &self.running_mean, &self.running_var, bn, &y, &self.save_mean, &self.save_inv_std)
            .unwrap();
        step.submit().unwrap();
        y.to_vec(gpu).unwrap()
    }
}

/// Running statistics over two training forwards (different batches) against f64.
fn running_stats_follow_reference(momentum: f32) {
    let gpu = cellnas::gpu::test_gpu();
    // 7 partials over 6 values per image: the stage-1 cursor steps a whole image plus one.
    let shape = [7, 5, 2, 3];
    let c = shape[1];
    let n: usize = shape.iter().product();
    let mut rng = rng_for(&format!("running stats {momentum}"));
    let rm0 = random_vec(&mut rng, c);
    let rv0: Vec<f32> = (0..c).map(|_| rng.random_range(0.5..2.0)).collect();
    let layer = Layer::new(&gpu, shape, &rm0, &rv0);
    let bn = BatchNorm { momentum, ..BatchNorm::default() };
    let (mut rm, mut rv) = (f64s(&rm0), f64s(&rv0));
    for round in 0..2 {
        // The second batch is shifted and scaled so its statistics differ from the first.
        let x: Vec<f32> = random_vec(&mut rng, n).iter().map(|v| v * (1.0 + round as f32) + round as f32).collect();
        layer.train(&gpu, &x, &bn);
        reference::update_running(&f64s(&x), shape, &mut rm, &mut rv, momentum as f64);
        let what = format!("momentum {momentum}, after forward {}", round + 1);
        compare(&format!("running_mean, {what}"), &layer.running_mean.to_vec(&gpu).unwrap(), &rm, 1e-6, 1e-5).unwrap();
        compare(&format!("running_var, {what}"), &layer.running_var.to_vec(&gpu).unwrap(), &rv, 1e-6, 1e-5).unwrap();
    }
}

#[test]
fn running_stats_after_one_and_two_forwards() {
    running_stats_follow_reference(BatchNorm::default().momentum);
}

#[test]
fn momentum_is_respected() {
    running_stats_follow_reference(0.3);
    running_stats_follow_reference(1.0);
    // Momentum 0 leaves the running statistics untouched, bit for bit.
    let gpu = cellnas::gpu::test_gpu();
    let (rm, rv) = (vec![0.25, -1.5, 3.0], vec![0.5, 2.0, 7.0]);
    let layer = Layer::new(&gpu, [1, 3, 7, 7], &rm, &rv);
    let x = random_vec(&mut rng_for("momentum 0"), 3 * 49);
    layer.train(&gpu, &x, &BatchNorm { momentum: 0.0, ..BatchNorm::default() });
    assert_eq!(layer.running_mean.to_vec(&gpu).unwrap(), rm);
    assert_eq!(layer.running_var.to_vec(&gpu).unwrap(), rv);
}

#[test]
fn saved_statistics_match_reference() {
    let gpu = cellnas::gpu::test_gpu();
    let shape = [2, 17, 9, 11];
    let x = random_vec(&mut rng_for("saved"), shape.iter().product());
    let layer = Layer::new(&gpu, shape, &[0.0; 17], &[1.0; 17]);
    layer.train(&gpu, &x, &BatchNorm::default());
    let (mean, var) = reference::batch_stats(&f64s(&x), shape);
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    compare("save_mean", &layer.save_mean.to_vec(&gpu).unwrap(), &mean, 1e-6, 1e-5).unwrap();
    compare("save_inv_std", &layer.save_inv_std.to_vec(&gpu).unwrap(), &inv_std, 1e-6, 1e-5).unwrap();
}

/// A large common offset: E[x^2] - E[x]^2 in f32 would lose the variance entirely.
#[test]
fn variance_is_stable_under_a_large_mean() {
    // The scalar path, then the vec4 path (units of four 5x5 planes).
    for shape in [[4, 3, 5, 5], [4, 4, 5, 5]] {
        stable_under_large_mean(shape);
    }
}

fn stable_under_large_mean(shape: [usize; 4]) {
    let gpu = cellnas::gpu::test_gpu();
    let c = shape[1];
    let x: Vec<f32> = random_vec(&mut rng_for("offset"), shape.iter().product()).iter().map(|v| 1000.0 + 0.1 * v).collect();
    let layer = Layer::new(&gpu, shape, &vec![0.0; c], &vec![1.0; c]);
    let y = layer.train(&gpu, &x, &BatchNorm::default());
    let (_, var) = reference::batch_stats(&f64s(&x), shape);
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    compare("save_inv_std", &layer.save_inv_std.to_vec(&gpu).unwrap(), &inv_std, 0.0, 1e-4).unwrap();
    // The mean itself rounds to f32 (half an ulp at 1000 is 3e-5), which shifts y by up to
    // 3e-5 / std = 5e-4.
    let want = reference::forward_train(&f64s(&x), shape, None, None, 1e-5);
    compare("y", &y, &want, 1e-3, 0.0).unwrap();
}

#[test]
fn one_value_per_channel_is_an_error_in_training() {
    let gpu = cellnas::gpu::test_gpu();
    for shape in [vec![1, 4, 1, 1], vec![1, 4]] {
        let x = Tensor::from_slice(&gpu, &shape, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = Tensor::empty(&gpu, &shape);
        let stat = || Tensor::from_slice(&gpu, &[4], &[1.0; 4]).unwrap();
        let (rm, rv, sm, sis) = (stat(), stat(), stat(), stat());
        let mut step = gpu.step();
        let err = batchnorm::forward_train(&mut step, &x, None, None, &rm, &rv, &BatchNorm::default(), &y, &sm, &sis).unwrap_err();
        assert!(matches!(&err, Error::Invalid(m) if m.contains("N*H*W = 1")), "{shape:?}: {err}");
        assert_eq!(step.dispatches(), 0);
        // Evaluation mode is fine with one value per channel.
        batchnorm::forward_eval(&mut step, &x, None, None, &rm, &rv, &BatchNorm::default(), &y).unwrap();
        step.submit().unwrap();
        let want: Vec<f64> = (1..=4).map(|v| (v as f64 - 1.0) / (1.0 + 1e-5f64).sqrt()).collect();
        compare("eval y", &y.to_vec(&gpu).unwrap(), &want, 1e-6, 1e-6).unwrap();
    }
}

#[test]
fn bad_arguments_are_errors() {
    let gpu = cellnas::gpu::test_gpu();
    let t = |s: &[usize]| Tensor::empty(&gpu, s);
    let (x, c3, c4) = (t(&[2, 3, 4, 4]), t(&[3]), t(&[4]));
    let bn = BatchNorm::default();
    let mut step = gpu.step();
    let e = batchnorm::forward_train(&mut step, &x, Some(&c3), None, &c3, &c3, &bn, &x, &c3, &c3).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    let e = batchnorm::forward_train(&mut step, &x, None, None, &c4, &c3, &bn, &t(&[2, 3, 4, 4]), &c3, &c3).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let e = batchnorm::forward_eval(&mut step, &x, None, None, &c3, &c3, &bn, &t(&[2, 3, 4, 5])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let e = batchnorm::backward(&mut step, &x, &x, Some(&c4), &c3, &c3, &t(&[2, 3, 4, 4]), None, None).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

/// Same inputs, same bits: forward (y, saved and running statistics) and backward.
/// Which shapes take the vec4 (unit) path: the supernet's all do.
#[test]
fn vec4_path_is_taken_for_aligned_shapes() {
    for (shape, want) in [
        ([64, 16, 28, 28], Some(1)),
        ([64, 32, 14, 14], Some(1)),
        ([64, 64, 7, 7], Some(4)),
        ([2, 6, 3, 2], Some(2)),
        ([1, 3, 7, 7], None),
        ([2, 17, 9, 11], None),
        ([2, 3, 3, 2], None),
    ] {
        assert_eq!(batchnorm::unit_planes(&shape), want, "{shape:?}");
    }
}

#[test]
fn forward_and_backward_are_deterministic() {
    deterministic([3, 17, 9, 11]);
    // The vec4 path, units of four 7x7 planes.
    deterministic([3, 8, 7, 7]);
}

fn deterministic(shape: [usize; 4]) {
    let gpu = cellnas::gpu::test_gpu();
    let n: usize = shape.iter().product();
    let c = shape[1];
    let mut rng = rng_for("determinism");
    let x = Tensor::from_slice(&gpu, &shape, &random_vec(&mut rng, n)).unwrap();
    let dy = Tensor::from_slice(&gpu, &shape, &random_vec(&mut rng, n)).unwrap();
    let gamma = Tensor::from_slice(&gpu, &[c], &random_vec(&mut rng, c)).unwrap();
    let beta = Tensor::from_slice(&gpu, &[c], &random_vec(&mut rng, c)).unwrap();
    let run = || {
        let t = |v: f32| Tensor::from_slice(&gpu, &[c], &vec![v; c]).unwrap();
        let (rm, rv, sm, sis, dg, db) = (t(0.0), t(1.0), t(0.0), t(0.0), t(0.0), t(0.0));
        let (y, dx) = (Tensor::empty(&gpu, &shape), Tensor::empty(&gpu, &shape));
        let mut step = gpu.step();
        batchnorm::forward_train(&mut step, &x, Some(&gamma), Some(&beta), &rm, &rv, &BatchNorm::default(), &y, &sm, &sis).unwrap();
        batchnorm::backward(&mut step, &x, &dy, Some(&gamma), &sm, &sis, &dx, Some(&dg), Some(&db)).unwrap();
        step.submit().unwrap();
        [y, rm, rv, sm, sis, dx, dg, db].map(|t| t.to_vec(&gpu).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let (a, b) = (run(), run());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(a == b, "output {i} differs between identical runs");
    }
}
