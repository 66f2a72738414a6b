//! Pooling and concat behaviour the random-input checker cannot reach: ties in max pooling,
//! padding semantics, reproducibility, and shape errors.

use cellnas::error::Error;
use cellnas::gpu::test_gpu;
use cellnas::ops::concat::{concat_channels, split_channels};
use cellnas::ops::pool::{self, reference, Pool2d, PoolKind};
use cellnas::Tensor;

const MAX3: Pool2d = Pool2d { kind: PoolKind::Max, kernel: 3, stride: 1, padding: 1 };
const AVG3: Pool2d = Pool2d { kind: PoolKind::Avg, kernel: 3, stride: 1, padding: 1 };

fn pool_forward(x: &[f32], shape: [usize; 4], p: &Pool2d) -> Vec<f32> {
    let gpu = test_gpu();
    let xt = Tensor::from_slice(&gpu, &shape, x).unwrap();
    let y = Tensor::empty(&gpu, &pool::out_shape(&shape, p).unwrap());
    let mut step = gpu.step();
    pool::forward(&mut step, &xt, p, &y).unwrap();
    step.submit().unwrap();
    y.to_vec(&gpu).unwrap()
}

fn pool_backward(x: &[f32], shape: [usize; 4], dy: &[f32], p: &Pool2d) -> Vec<f32> {
    let gpu = test_gpu();
    let xt = Tensor::from_slice(&gpu, &shape, x).unwrap();
    let dyt = Tensor::from_slice(&gpu, &pool::out_shape(&shape, p).unwrap(), dy).unwrap();
    let dx = Tensor::empty(&gpu, &shape);
    dx.poison(&gpu).unwrap();
    let mut step = gpu.step();
    pool::backward(&mut step, &xt, &dyt, p, &dx).unwrap();
    step.submit().unwrap();
    dx.to_vec(&gpu).unwrap()
}

#[test]
fn max_pool_ties_go_to_the_first_maximum() {
    // All equal: output (oy, ox) takes cell (max(oy-1, 0), max(ox-1, 0)), its window's first.
    let dx = pool_backward(&[1.0; 9], [1, 1, 3, 3], &[1.0; 9], &MAX3);
    assert_eq!(dx, [4.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0]);

    // Values from a few levels tie everywhere; GPU must agree with the reference exactly.
    for (shape, stride) in [([1, 3, 7, 7], 1), ([2, 5, 9, 7], 2), ([1, 2, 1, 1], 2)] {
        let p = Pool2d { stride, ..MAX3 };
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 7) % 3) as f32 - 1.0).collect();
        let ny: usize = pool::out_shape(&shape, &p).unwrap().iter().product();
        let dy: Vec<f32> = (0..ny).map(|i| 1.0 + (i % 5) as f32).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let dy64: Vec<f64> = dy.iter().map(|&v| v as f64).collect();
        let want: Vec<f32> = reference::pool_backward(&x64, shape, &dy64, &p).iter().map(|&v| v as f32).collect();
        assert_eq!(pool_backward(&x, shape, &dy, &p), want, "{shape:?} s{stride}");
        let want: Vec<f32> = reference::pool_forward(&x64, shape, &p).iter().map(|&v| v as f32).collect();
        assert_eq!(pool_forward(&x, shape, &p), want, "{shape:?} s{stride}");
    }
}

#[test]
fn padding_never_counts() {
    // Max: padding is -inf, so an all-negative input keeps its values (not 0).
    assert_eq!(pool_forward(&[-2.0; 4], [1, 1, 2, 2], &MAX3), [-2.0; 4]);
    // Avg: count_include_pad = false, so a constant stays constant at the border.
    assert_eq!(pool_forward(&[3.0; 6], [1, 1, 2, 3], &AVG3), [3.0; 6]);
    // Its gradient: each output spreads dy over its real cells only.
    let dx = pool_backward(&[0.0; 1], [1, 1, 1, 1], &[5.0], &AVG3);
    assert_eq!(dx, [5.0]);
}

#[test]
fn backward_is_bitwise_reproducible() {
    let shape = [2, 16, 14, 14];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 2654435761usize) % 1000) as f32 / 997.0 - 0.5).collect();
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let p = Pool2d { kind, kernel: 3, stride: 2, padding: 1 };
        let ny: usize = pool::out_shape(&shape, &p).unwrap().iter().product();
        let dy: Vec<f32> = (0..ny).map(|i| (i % 13) as f32 * 0.37 - 2.0).collect();
        let a = pool_backward(&x, shape, &dy, &p);
        let b = pool_backward(&x, shape, &dy, &p);
        assert!(a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()), "{kind:?}");
    }
}

/// The saved-argmax path (training) and the recomputing `backward` agree bitwise, ties included
/// (x has many repeated values), and the saved argmax points at the maximum of each window.
#[test]
fn saved_argmax_backward_matches_recomputing_backward() {
    let gpu = test_gpu();
    for (shape, stride) in [([2, 3, 11, 19], 1), ([1, 4, 9, 7], 2), ([3, 2, 1, 1], 1)] {
        let p = Pool2d { kind: PoolKind::Max, kernel: 3, stride, padding: 1 };
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 5) as f32).collect();
        let ys = pool::out_shape(&shape, &p).unwrap();
        let ny: usize = ys.iter().product();
        let dy: Vec<f32> = (0..ny).map(|i| (i % 13) as f32 * 0.37 - 2.0).collect();
        let xt = Tensor::from_slice(&gpu, &shape, &x).unwrap();
        let dyt = Tensor::from_slice(&gpu, &ys, &dy).unwrap();
        let (y, arg, dx) = (Tensor::empty(&gpu, &ys), Tensor::empty(&gpu, &ys), Tensor::empty(&gpu, &shape));
        dx.poison(&gpu).unwrap();
        let mut step = gpu.step();
        pool::forward_with_argmax(&mut step, &xt, &p, &y, &arg).unwrap();
        pool::backward_with_argmax(&mut step, &xt, &dyt, &arg, &p, &dx).unwrap();
        step.submit().unwrap();
        let (yv, argv) = (y.to_vec(&gpu).unwrap(), arg.to_vec(&gpu).unwrap());
        let plane_in = shape[2] * shape[3];
        let plane_out = ys[2] * ys[3];
        for (o, (v, a)) in yv.iter().zip(&argv).enumerate() {
            assert_eq!(x[o / plane_out * plane_in + a.to_bits() as usize], *v, "{shape:?} output {o}");
        }
        let a = dx.to_vec(&gpu).unwrap();
        let b = pool_backward(&x, shape, &dy, &p);
        assert!(a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()), "{shape:?} s{stride}");
    }
    let x = Tensor::empty(&gpu, &[1, 3, 7, 7]);
    let y = Tensor::empty(&gpu, &[1, 3, 7, 7]);
    let mut step = gpu.step();
    assert!(matches!(pool::forward_with_argmax(&mut step, &x, &AVG3, &y, &y.clone()), Err(Error::Invalid(_))));
    assert!(matches!(pool::forward_with_argmax(&mut step, &x, &MAX3, &y, &Tensor::empty(&gpu, &[1, 3, 7, 6])), Err(Error::Shape { .. })));
}

#[test]
fn shape_errors_are_reported() {
    let gpu = test_gpu();
    let bad = Pool2d { padding: 3, ..MAX3 };
    assert!(matches!(pool::out_shape(&[1, 3, 7, 7], &bad), Err(Error::Invalid(_))));
    assert!(matches!(pool::out_shape(&[3, 7, 7], &MAX3), Err(Error::Shape { .. })));
    assert!(matches!(pool::out_shape(&[1, 1, 1, 1], &Pool2d { padding: 0, ..MAX3 }), Err(Error::Shape { .. })));
    assert_eq!(pool::out_shape(&[1, 3, 9, 7], &Pool2d { stride: 2, ..MAX3 }).unwrap(), [1, 3, 5, 4]);

    let x = Tensor::empty(&gpu, &[1, 3, 7, 7]);
    let wrong = Tensor::empty(&gpu, &[1, 3, 7, 6]);
    let mut step = gpu.step();
    assert!(matches!(pool::forward(&mut step, &x, &MAX3, &wrong), Err(Error::Shape { .. })));
    assert!(matches!(pool::backward(&mut step, &x, &x, &MAX3, &wrong), Err(Error::Shape { .. })));
    assert!(matches!(pool::global_avg_pool(&mut step, &x, &Tensor::empty(&gpu, &[1, 4])), Err(Error::Shape { .. })));
    assert!(matches!(pool::global_avg_pool_backward(&mut step, &Tensor::empty(&gpu, &[3, 1]), &x), Err(Error::Shape { .. })));

    let a = Tensor::empty(&gpu, &[1, 3, 7, 7]);
    let b = Tensor::empty(&gpu, &[1, 5, 7, 7]);
    let y = Tensor::empty(&gpu, &[1, 9, 7, 7]);
    assert!(matches!(concat_channels(&mut step, &[&a, &b], &y), Err(Error::Shape { .. })));
    assert!(matches!(split_channels(&mut step, &y, &[&a, &wrong]), Err(Error::Shape { .. })));
    assert!(matches!(concat_channels(&mut step, &[], &y), Err(Error::Invalid(_))));
    assert_eq!(step.dispatches(), 0);
}

/// The general kernels of pool.wgsl stay the fallback (stride 3, long windows, and
/// CELLNAS_POOL_GENERIC=1): run every test case on them.
#[test]
fn general_kernels_match_reference() {
    let gpu = test_gpu();
    let cases = pool::general_test_cases();
    assert_eq!(cases.len(), 30);
    let failures: Vec<String> = cases.iter().filter_map(|c| cellnas::ops::check::check_case(&gpu, c.as_ref()).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Which poolings take the row kernels of pool_rows.wgsl.
#[test]
fn row_kernels_by_shape() {
    for stride in [1, 2] {
        assert!(pool::fast(&Pool2d { stride, ..MAX3 }) && pool::fast(&Pool2d { stride, ..AVG3 }));
    }
    assert!(pool::fast(&Pool2d { kernel: 5, padding: 2, stride: 2, ..AVG3 }));
    assert!(!pool::fast(&Pool2d { kernel: 2, stride: 3, ..MAX3 }));
    assert!(!pool::fast(&Pool2d { kernel: 7, padding: 3, stride: 2, ..MAX3 }));
}
