//! A tiny network (conv - BN - ReLU - max pool - linear, softmax cross-entropy) trained with SGD
//! on the GPU and on the CPU reference from the same initial weights. Reads top to bottom like
//! llm.c: forward, loss, backward, update. Each GPU training step is one Step (one submit) that
//! reads back only the loss.

use cellnas::gpu::{test_gpu, Gpu};
use cellnas::ops::batchnorm::{self, BatchNorm};
use cellnas::ops::conv2d::{self, Conv2d};
use cellnas::ops::optim::{self, Sgd};
use cellnas::ops::pool::{self, Pool2d, PoolKind};
use cellnas::ops::{elementwise, linear, loss};
use cellnas::tensor::upload_u32;
use cellnas::Tensor;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const B: usize = 12;
const H: usize = 9;
const C: usize = 6;
const CLASSES: usize = 4;
const PH: usize = 5; // pooled size: floor((9 + 2 - 3) / 2) + 1
const FEAT: usize = C * PH * PH;
const STEPS: usize = 30;
const CONV: Conv2d = Conv2d { stride: 1, padding: 1, dilation: 1, groups: 1 };
const POOL: Pool2d = Pool2d { kind: PoolKind::Max, kernel: 3, stride: 2, padding: 1 };
const SGD: Sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nesterov: false };

/// Each class lights up one quadrant; noise everywhere.
fn data() -> (Vec<f32>, Vec<u32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut x = vec![0f32; B * H * H];
    let labels: Vec<u32> = (0..B).map(|i| (i % CLASSES) as u32).collect();
    for (i, &l) in labels.iter().enumerate() {
        for r in 0..H {
            for c in 0..H {
                let quad = (r >= H / 2) as u32 * 2 + (c >= H / 2) as u32;
                let signal = if quad == l { 1.0 } else { 0.0 };
                x[i * H * H + r * H + c] = signal + rng.random_range(-0.5..0.5);
            }
        }
    }
    (x, labels)
}

/// Initial weights: w0 [C,1,3,3], gamma [C], beta [C], w1 [CLASSES, FEAT], b1 [CLASSES].
fn init() -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut uni = |n: usize, scale: f32| (0..n).map(|_| rng.random_range(-scale..scale)).collect::<Vec<f32>>();
    vec![uni(C * 9, 0.5), vec![1.0; C], vec![0.0; C], uni(CLASSES * FEAT, 0.1), vec![0.0; CLASSES]]
}

const SHAPES: [&[usize]; 5] = [&[C, 1, 3, 3], &[C], &[C], &[CLASSES, FEAT], &[CLASSES]];

/// Trains on the GPU; returns the loss of every step and the final weights.
fn train_gpu(gpu: &Arc<Gpu>) -> (Vec<f32>, Vec<Vec<f32>>) {
    let (xs, ls) = data();
    let x = Tensor::from_slice(gpu, &[B, 1, H, H], &xs).unwrap();
    let labels = upload_u32(gpu, &ls).unwrap();
    let params: Vec<Tensor> = init().iter().zip(SHAPES).map(|(v, s)| Tensor::from_slice(gpu, s, v).unwrap()).collect();
    let grads: Vec<Tensor> = SHAPES.iter().map(|s| Tensor::empty(gpu, s)).collect();
    let momenta: Vec<Tensor> = SHAPES.iter().map(|s| Tensor::from_slice(gpu, s, &vec![0.0; s.iter().product()]).unwrap()).collect();
    let (run_mean, run_var) = (Tensor::from_slice(gpu, &[C], &[0.0; C]).unwrap(), Tensor::from_slice(gpu, &[C], &[1.0; C]).unwrap());
    let t = |s: &[usize]| Tensor::empty(gpu, s);
    let (a1, a2, a3, a4) = (t(&[B, C, H, H]), t(&[B, C, H, H]), t(&[B, C, H, H]), t(&[B, C, PH, PH]));
    let (logits, loss_t, dlogits) = (t(&[B, CLASSES]), t(&[1]), t(&[B, CLASSES]));
    let (mean, inv_std) = (t(&[C]), t(&[C]));
    let (d4, d3, d2, d1) = (t(&[B, C, PH, PH]), t(&[B, C, H, H]), t(&[B, C, H, H]), t(&[B, C, H, H]));
    let norm_sq = t(&[1]);
    let [w0, gamma, beta, w1, b1] = [0, 1, 2, 3, 4].map(|i| &params[i]);

    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let mut s = gpu.step();
        // forward
        conv2d::forward(&mut s, &x, w0, &CONV, &a1).unwrap();
        batchnorm::forward_train(&mut s, &a1, Some(gamma), Some(beta), &run_mean, &run_var, &BatchNorm::default(), &a2, &mean, &inv_std).unwrap();
        elementwise::relu(&mut s, &a2, &a3).unwrap();
        pool::forward(&mut s, &a3, &POOL, &a4).unwrap();
        linear::forward(&mut s, &a4, w1, Some(b1), &logits).unwrap();
        // loss (fused with its gradient)
        loss::softmax_cross_entropy(&mut s, &logits, &labels, &loss_t, &dlogits).unwrap();
        // backward
        linear::backward_weight(&mut s, &a4, &dlogits, &grads[3], Some(&grads[4])).unwrap();
        linear::backward_input(&mut s, &dlogits, w1, &d4).unwrap();
        pool::backward(&mut s, &a3, &d4, &POOL, &d3).unwrap();
        elementwise::relu_backward(&mut s, &a2, &d3, &d2).unwrap();
        batchnorm::backward(&mut s, &a1, &d2, Some(gamma), &mean, &inv_std, &d1, Some(&grads[1]), Some(&grads[2])).unwrap();
        conv2d::backward_weight(&mut s, &x, &d1, &CONV, &grads[0]).unwrap();
        // clip (a generous bound: exercised, rarely active) and update
        let g: Vec<&Tensor> = grads.iter().collect();
        optim::grad_norm_sq(&mut s, &g, &norm_sq).unwrap();
        optim::clip_grads(&mut s, &g, &norm_sq, 5.0).unwrap();
        for i in 0..5 {
            optim::sgd_step(&mut s, &params[i], &grads[i], &momenta[i], &SGD).unwrap();
        }
        let h = s.read(&loss_t.buf, 0, 4);
        losses.push(s.submit().unwrap().f32s(h)[0]);
    }
    (losses, params.iter().map(|p| p.to_vec(gpu).unwrap()).collect())
}

/// The same training on the CPU reference, in f64.
fn train_reference() -> (Vec<f64>, Vec<Vec<f64>>) {
    use cellnas::ops::{batchnorm::reference as bn, conv2d::reference as conv, elementwise::reference as ew};
    use cellnas::ops::{linear::reference as lin, loss::reference as ce, optim::reference as opt, pool::reference as pl};
    let (xs, labels) = data();
    let x: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
    let mut params: Vec<Vec<f64>> = init().iter().map(|v| v.iter().map(|&a| a as f64).collect()).collect();
    let mut momenta: Vec<Vec<f64>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
    let eps = BatchNorm::default().eps as f64;
    let (xs4, ws, as4) = ([B, 1, H, H], [C, 1, 3, 3], [B, C, H, H]);
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let a1 = conv::forward(&x, xs4, &params[0], ws, &CONV);
        let a2 = bn::forward_train(&a1, as4, Some(&params[1]), Some(&params[2]), eps);
        let a3 = ew::relu(&a2);
        let a4 = pl::pool_forward(&a3, as4, &POOL);
        let logits = lin::forward(&a4, &params[3], Some(&params[4]), B, FEAT, CLASSES);
        let (l, dlogits) = ce::softmax_cross_entropy(&logits, &labels, B, CLASSES);
        losses.push(l);
        let (dw1, db1) = lin::backward_weight(&a4, &dlogits, B, FEAT, CLASSES);
        let d4 = lin::backward_input(&dlogits, &params[3], B, FEAT, CLASSES);
        let d3 = pl::pool_backward(&a3, as4, &d4, &POOL);
        let d2 = ew::relu_backward(&a2, &d3);
        let (d1, dgamma, dbeta) = bn::backward_train(&a1, as4, &d2, Some(&params[1]), eps);
        let dw0 = conv::backward_weight(&x, xs4, &d1, ws, &CONV);
        let grads = opt::clip_grads(&[&dw0, &dgamma, &dbeta, &dw1, &db1], 5.0);
        for i in 0..5 {
            let (p, m) = opt::sgd(&params[i], &grads[i], &momenta[i], &SGD);
            params[i] = p;
            momenta[i] = m;
        }
    }
    (losses, params)
}

#[test]
fn gpu_training_matches_reference_and_learns() {
    let gpu = test_gpu();
    let (gpu_losses, _) = train_gpu(&gpu);
    let (ref_losses, _) = train_reference();
    for (i, (g, r)) in gpu_losses.iter().zip(&ref_losses).enumerate() {
        // f32 vs f64 through 30 steps of a chaotic-ish optimisation: errors compound slowly.
        assert!((*g as f64 - r).abs() <= 2e-3 * r.abs().max(1.0), "step {i}: GPU loss {g}, reference {r}\nGPU {gpu_losses:?}\nref {ref_losses:?}");
    }
    let first = gpu_losses[..3].iter().sum::<f32>() / 3.0;
    let last = gpu_losses[STEPS - 3..].iter().sum::<f32>() / 3.0;
    assert!(last < 0.5 * first, "loss should fall: first {first}, last {last}: {gpu_losses:?}");
}

#[test]
fn training_is_bitwise_deterministic() {
    let gpu = test_gpu();
    let (l1, w1) = train_gpu(&gpu);
    let (l2, w2) = train_gpu(&gpu);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&l1), bits(&l2));
    for (a, b) in w1.iter().zip(&w2) {
        assert_eq!(bits(a), bits(b), "weights differ between two identical runs");
    }
}
