//! conv2d beyond the registry check: the simple kernels, the two-stage weight gradient over
//! many chunks (determinism), and shape validation.

use cellnas::ops::check::{check_case, compare, random_vec, rng_for};
use cellnas::ops::conv2d::{self, reference, Conv2d};
use cellnas::{Error, Tensor};

#[test]
fn simple_kernels_match_reference() {
    let gpu = cellnas::gpu::test_gpu();
    let failures: Vec<String> = conv2d::simple_test_cases().iter().filter_map(|c| check_case(&gpu, c.as_ref()).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Depthwise weights are tiny next to N*Ho*Wo, so the weight gradient runs as many chunks;
/// two runs must agree bit for bit and match the reference.
#[test]
fn weight_gradient_many_chunks_is_deterministic() {
    let gpu = cellnas::gpu::test_gpu();
    let p = Conv2d { stride: 1, padding: 1, dilation: 1, groups: 3 };
    let (xs, ws) = ([4, 3, 16, 15], [3, 1, 3, 3]);
    let ys = conv2d::out_shape(&xs, &ws, &p).unwrap();
    let len = ys[0] * ys[2] * ys[3];
    assert!(conv2d::weight_chunks(&xs, &ws, &p).unwrap() > 8, "case should need many chunks");

    let mut rng = rng_for("conv2d determinism");
    let x = random_vec(&mut rng, xs.iter().product());
    let dy = random_vec(&mut rng, ys.iter().product());
    let xt = Tensor::from_slice(&gpu, &xs, &x).unwrap();
    let dyt = Tensor::from_slice(&gpu, &ys, &dy).unwrap();
    let run = || {
        let dw = Tensor::empty(&gpu, &ws);
        dw.poison(&gpu).unwrap();
        let mut step = gpu.step();
        conv2d::backward_weight(&mut step, &xt, &dyt, &p, &dw).unwrap();
        step.submit().unwrap();
        dw.to_vec(&gpu).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());

    let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let want = reference::backward_weight(&f64s(&x), xs, &f64s(&dy), ws, &p);
    let tol = 1e-4 * (len as f64 / 256.0);
    compare("dw", &a, &want, tol, tol).unwrap();
}

/// Runs all three passes of a convolution twice on the same random inputs; the outputs must
/// agree bit for bit.
fn assert_deterministic(xs: [usize; 4], ws: [usize; 4], p: Conv2d) {
    assert_deterministic_with(xs, ws, p, false)
}

/// The same, with a ReLU fused in front (`relu`) or not.
fn assert_deterministic_with(xs: [usize; 4], ws: [usize; 4], p: Conv2d, relu: bool) {
    let gpu = cellnas::gpu::test_gpu();
    let ys = conv2d::out_shape(&xs, &ws, &p).unwrap();
    let mut rng = rng_for(&format!("conv2d determinism {xs:?} {ws:?}"));
    let mut upload = |s: &[usize]| Tensor::from_slice(&gpu, s, &random_vec(&mut rng, s.iter().product())).unwrap();
    let (x, w, dy) = (upload(&xs), upload(&ws), upload(&ys));
    let run = || {
        let (y, dx, dw) = (Tensor::empty(&gpu, &ys), Tensor::empty(&gpu, &xs), Tensor::empty(&gpu, &ws));
        let mut step = gpu.step();
        conv2d::forward_with(&mut step, &x, &w, &p, relu, &y).unwrap();
        conv2d::backward_input_with(&mut step, &dy, &w, &p, relu.then_some(&x), &dx).unwrap();
        conv2d::backward_weight_with(&mut step, &x, &dy, &p, relu, &dw).unwrap();
        step.submit().unwrap();
        [y, dx, dw].map(|t| t.to_vec(&gpu).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let (a, b) = (run(), run());
    for (i, what) in ["forward", "backward_input", "backward_weight"].iter().enumerate() {
        assert!(a[i] == b[i], "{what} of x {xs:?} w {ws:?} {p:?} differs between two runs");
    }
}

/// The pointwise (gemm) paths, including a weight gradient summed over many chunks.
#[test]
fn pointwise_is_deterministic() {
    let p = Conv2d { stride: 1, padding: 0, dilation: 1, groups: 1 };
    assert!(conv2d::pointwise_weight_chunks(&[3, 12, 16, 20], 10) > 4, "case should need many chunks");
    assert_deterministic([3, 12, 16, 20], [10, 12, 1, 1], p);
    assert_deterministic([2, 5, 7, 7], [9, 5, 1, 1], p);
}

/// The 1x1 stride-2 path (gather, gemm, scatter), vec4 and scalar scatters.
#[test]
fn strided_pointwise_is_deterministic() {
    let p = Conv2d { stride: 2, padding: 0, dilation: 1, groups: 1 };
    assert_deterministic([3, 8, 27, 27], [4, 8, 1, 1], p);
    assert_deterministic([3, 8, 28, 28], [4, 8, 1, 1], p);
}

/// The depthwise and dense stride-1 paths (forward and, through a flipped kernel,
/// backward_input) and their weight gradients.
#[test]
fn row_kernels_are_deterministic() {
    assert_deterministic([2, 3, 10, 13], [10, 3, 3, 3], Conv2d { stride: 1, padding: 1, dilation: 1, groups: 1 });
    assert_deterministic([2, 6, 11, 13], [6, 1, 3, 3], Conv2d { stride: 1, padding: 2, dilation: 2, groups: 6 });
    assert_deterministic([1, 4, 9, 9], [4, 1, 5, 5], Conv2d { stride: 1, padding: 2, dilation: 1, groups: 4 });
    // Small planes: weight gradient in chunks of several images.
    assert_deterministic([40, 3, 5, 5], [3, 1, 3, 3], Conv2d { stride: 1, padding: 1, dilation: 1, groups: 3 });
    // weight_rows4.
    assert_deterministic([3, 4, 12, 28], [4, 1, 5, 5], Conv2d { stride: 1, padding: 2, dilation: 1, groups: 4 });
}

#[test]
fn out_shape_validates() {
    let p = |stride, padding, dilation, groups| Conv2d { stride, padding, dilation, groups };
    assert_eq!(conv2d::out_shape(&[2, 4, 9, 7], &[6, 2, 3, 3], &p(2, 1, 1, 2)).unwrap(), vec![2, 6, 5, 4]);
    assert_eq!(conv2d::out_shape(&[1, 5, 7, 7], &[5, 1, 5, 5], &p(1, 4, 2, 5)).unwrap(), vec![1, 5, 7, 7]);
    let bad = [
        ([1, 4, 7, 7], vec![6, 2, 3, 3], p(1, 1, 1, 3)), // Cin % groups
        ([1, 4, 7, 7], vec![5, 2, 3, 3], p(1, 1, 1, 2)), // Cout % groups
        ([1, 4, 7, 7], vec![6, 4, 3, 3], p(1, 1, 1, 2)), // w[1] != Cin/groups
        ([1, 4, 2, 2], vec![6, 4, 3, 3], p(1, 0, 1, 1)), // output would be empty
        ([1, 4, 7, 7], vec![6, 4, 3, 3], p(0, 1, 1, 1)), // stride 0
        ([1, 4, 7, 7], vec![6, 4, 3, 3], p(1, 1, 0, 1)), // dilation 0
        ([1, 4, 7, 7], vec![6, 4, 3], p(1, 1, 1, 1)),    // 3-D weight
    ];
    for (x, w, p) in bad {
        assert!(conv2d::out_shape(&x, &w, &p).is_err(), "{x:?} {w:?} {p:?} should be rejected");
    }
}

#[test]
fn launchers_reject_mismatched_tensors() {
    let gpu = cellnas::gpu::test_gpu();
    let p = Conv2d { stride: 1, padding: 1, dilation: 1, groups: 1 };
    let x = Tensor::empty(&gpu, &[1, 3, 7, 7]);
    let w = Tensor::empty(&gpu, &[5, 3, 3, 3]);
    let wrong_y = Tensor::empty(&gpu, &[1, 5, 6, 7]);
    let mut step = gpu.step();
    assert!(matches!(conv2d::forward(&mut step, &x, &w, &p, &wrong_y), Err(Error::Shape { .. })));
    assert!(matches!(conv2d::backward_input(&mut step, &wrong_y, &w, &p, &x), Err(Error::Shape { .. })));
    assert!(matches!(conv2d::backward_weight(&mut step, &x, &wrong_y, &p, &w), Err(Error::Shape { .. })));
    assert_eq!(step.dispatches(), 0);
}

/// The stride-2 row paths: depthwise forward, depthwise_t input gradient, weight_rows.
#[test]
fn stride2_row_kernels_are_deterministic() {
    assert_deterministic([2, 6, 15, 17], [6, 1, 3, 3], Conv2d { stride: 2, padding: 1, dilation: 1, groups: 6 });
    assert_deterministic([2, 4, 14, 14], [4, 1, 5, 5], Conv2d { stride: 2, padding: 4, dilation: 2, groups: 4 });
    assert_deterministic([40, 3, 7, 7], [3, 1, 3, 3], Conv2d { stride: 2, padding: 2, dilation: 2, groups: 3 });
}

/// Which kernel each pass of the supernet's convolutions runs.
#[test]
fn paths_by_shape() {
    use cellnas::ops::Pass::{BackwardInput as Bi, BackwardWeight as Bw, Forward as F};
    let conv = |stride, padding, dilation, groups| Conv2d { stride, padding, dilation, groups };
    let passes = |x: [usize; 4], w: [usize; 4], p: Conv2d| [F, Bi, Bw].map(|pass| conv2d::path(&x, &w, &p, pass));
    // Depthwise stride 1 and 2 (sep_conv, dil_conv), k3/k5, dilation 1/2.
    // (28-wide rows are whole vec4s: weight_rows4; the stride-2 outputs below are not.)
    assert_eq!(passes([64, 16, 28, 28], [16, 1, 3, 3], conv(1, 1, 1, 16)), ["depthwise", "depthwise", "weight_rows4"]);
    assert_eq!(passes([64, 32, 14, 14], [32, 1, 3, 3], conv(1, 1, 1, 32)), ["depthwise", "depthwise", "weight_rows"]);
    for (k, pad, d) in [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2)] {
        for x in [[64, 16, 28, 28], [64, 32, 14, 14], [64, 64, 7, 7], [1, 3, 9, 11]] {
            assert_eq!(passes(x, [x[1], 1, k, k], conv(2, pad, d, x[1])), ["depthwise", "depthwise_t", "weight_rows"], "{x:?} k{k}");
        }
    }
    // Dense stride 2 (forward and dw on the row kernels, dx general).
    assert_eq!(passes([2, 3, 9, 7], [4, 3, 3, 3], conv(2, 1, 1, 1)), ["dense", "general", "weight_rows"]);
    // FactorizedReduce: 1x1 stride 2 on the input and on its one-pixel crop; with padding it
    // is a dense conv.
    for (x, cout) in [([64, 32, 28, 28], 8), ([100, 32, 27, 27], 8), ([64, 64, 14, 14], 16), ([64, 64, 13, 13], 16)] {
        assert_eq!(passes(x, [cout, x[1], 1, 1], conv(2, 0, 1, 1)), ["gather+gemm", "gemm+scatter", "gather+gemm"], "{x:?}");
    }
    assert_eq!(passes([64, 16, 28, 28], [8, 16, 1, 1], conv(2, 1, 1, 1)), ["dense", "general", "weight_rows"]);
    assert_eq!(passes([64, 16, 28, 28], [16, 16, 1, 1], conv(1, 0, 1, 1)), ["gemm", "gemm", "gemm"]);
    // Stride 3 and segments too long for the registers fall back.
    assert_eq!(passes([1, 4, 20, 20], [4, 1, 3, 3], conv(3, 1, 1, 4)), ["general", "general", "general"]);
    assert_eq!(passes([1, 4, 30, 30], [4, 1, 5, 5], conv(2, 6, 3, 4)), ["general", "general", "general"]);
}

/// Fused ReLU: the pointwise, strided, depthwise (stride 1 and 2) and dense paths, twice, bit for bit.
#[test]
fn relu_fused_is_deterministic() {
    let conv = |stride, padding, dilation, groups| Conv2d { stride, padding, dilation, groups };
    assert_deterministic_with([3, 12, 16, 20], [10, 12, 1, 1], conv(1, 0, 1, 1), true);
    assert_deterministic_with([3, 8, 27, 27], [4, 8, 1, 1], conv(2, 0, 1, 1), true);
    assert_deterministic_with([2, 6, 11, 13], [6, 1, 3, 3], conv(1, 2, 2, 6), true);
    assert_deterministic_with([2, 6, 15, 17], [6, 1, 3, 3], conv(2, 1, 1, 6), true);
    assert_deterministic_with([2, 3, 10, 13], [10, 3, 3, 3], conv(1, 1, 1, 1), true);
}

/// Tiny tensors next to kernels that bind vec4 views (the vec4 scatter, the row kernels' vec4
/// mask): a binding of fewer than 16 bytes would be a validation error, fused or not.
#[test]
fn tiny_tensors_bind_validly() {
    let conv = |stride, padding, dilation, groups| Conv2d { stride, padding, dilation, groups };
    for relu in [false, true] {
        assert_deterministic_with([1, 1, 4, 4], [1, 1, 1, 1], conv(4, 0, 1, 1), relu);
        assert_deterministic_with([1, 1, 1, 1], [1, 1, 3, 3], conv(1, 1, 1, 1), relu);
        assert_deterministic_with([1, 1, 2, 1], [1, 1, 3, 3], conv(1, 1, 1, 1), relu);
    }
}

/// A fused ReLU changes no kernel choice: at the supernet's shapes every pass of the fused
/// launchers records exactly the kernels of the plain ones (no fallback to the general
/// kernels, no extra pass), and those are the fast kernels `path()` names.
#[test]
fn relu_fused_path_choice() {
    use cellnas::ops::Pass::{self, BackwardInput as Bi, BackwardWeight as Bw, Forward as F};
    let gpu = cellnas::gpu::test_gpu();
    let conv = |stride, padding, dilation, groups| Conv2d { stride, padding, dilation, groups };
    let mut convs = vec![];
    for x in [[4, 16, 28, 28], [4, 32, 14, 14], [4, 64, 7, 7]] {
        let c = x[1];
        convs.push((x, [c, c, 1, 1], conv(1, 0, 1, 1)));
        for (k, pad, d) in [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2)] {
            convs.push((x, [c, 1, k, k], conv(1, pad, d, c)));
            convs.push((x, [c, 1, k, k], conv(2, pad, d, c)));
        }
    }
    for (x, cout) in [([4, 32, 28, 28], 8), ([4, 32, 27, 27], 8), ([4, 64, 14, 14], 16), ([4, 64, 13, 13], 16)] {
        convs.push((x, [cout, x[1], 1, 1], conv(2, 0, 1, 1)));
    }
    let general = ["forward", "backward_input", "weight_partial"];
    for (xs, ws, p) in convs {
        let ys = conv2d::out_shape(&xs, &ws, &p).unwrap();
        let (x, w, y) = (Tensor::empty(&gpu, &xs), Tensor::empty(&gpu, &ws), Tensor::empty(&gpu, &ys));
        let (dx, dw) = (Tensor::empty(&gpu, &xs), Tensor::empty(&gpu, &ws));
        let record = |pass: Pass, relu: bool| {
            let mut step = gpu.step();
            match pass {
                F => conv2d::forward_with(&mut step, &x, &w, &p, relu, &y),
                Bi => conv2d::backward_input_with(&mut step, &y, &w, &p, relu.then_some(&x), &dx),
                Bw => conv2d::backward_weight_with(&mut step, &x, &y, &p, relu, &dw),
            }
            .unwrap();
            step.kernels()
        };
        for pass in [F, Bi, Bw] {
            let (plain, fused) = (record(pass, false), record(pass, true));
            assert_eq!(plain, fused, "{xs:?} {ws:?} {p:?} {pass:?}");
            assert_ne!(conv2d::path(&xs, &ws, &p, pass), "general", "{xs:?} {ws:?} {p:?} {pass:?}");
            assert!(fused.iter().all(|k| !general.contains(k) && !k.starts_with("relu")), "{xs:?} {ws:?} {p:?} {pass:?}: {fused:?}");
        }
    }
}
