//! Focused tests of shaders/loss.wgsl beyond the op checker: count_correct against a CPU count
//! (ties, all/none correct, batches that are not a multiple of the workgroup), out-of-range
//! labels, bitwise determinism and the bench shapes.

use cellnas::gpu::{test_gpu, Buffer, Gpu};
use cellnas::ops::check::{compare, random_vec, rng_for};
use cellnas::ops::loss::{self, reference};
use cellnas::tensor::upload_u32;
use cellnas::Tensor;
use rand::Rng;
use std::sync::Arc;

fn gpu_count(gpu: &Arc<Gpu>, logits: &[f32], labels: &[u32], n: usize, c: usize) -> u32 {
    let x = Tensor::from_slice(gpu, &[n, c], logits).unwrap();
    let l = upload_u32(gpu, labels).unwrap();
    let correct = upload_u32(gpu, &[u32::MAX]).unwrap();
    let mut step = gpu.step();
    loss::count_correct(&mut step, &x, &l, &correct).unwrap();
    let h = step.read(&correct, 0, 4);
    step.submit().unwrap().u32s(h)[0]
}

fn argmax(row: &[f32]) -> u32 {
    let mut a = 0;
    for j in 1..row.len() {
        if row[j] > row[a] {
            a = j;
        }
    }
    a as u32
}

#[test]
fn count_correct_ties_take_the_first_max() {
    let gpu = test_gpu();
    #[rustfmt::skip]
    let logits = [
        0.5, 0.5, 0.1,   // tie between 0 and 1: argmax 0
        0.5, 0.5, 0.1,
        0.2, 0.9, 0.9,   // tie between 1 and 2: argmax 1
        0.2, 0.9, 0.9,
        -1.0, -1.0, -1.0, // all equal: argmax 0
    ];
    let labels = [0, 1, 1, 2, 0];
    assert_eq!(reference::count_correct(&logits, &labels, 5, 3), 3);
    assert_eq!(gpu_count(&gpu, &logits, &labels, 5, 3), 3);
}

#[test]
fn count_correct_matches_cpu_on_many_batch_sizes() {
    let gpu = test_gpu();
    // Batch sizes around and past the workgroup size (256 or less), so some invocations take
    // several rows and the last is partial.
    for &(n, c) in &[(1, 10), (7, 1), (63, 10), (255, 3), (257, 10), (1000, 7)] {
        let mut rng = rng_for(&format!("count {n}x{c}"));
        // Few distinct values: ties are frequent.
        let logits: Vec<f32> = (0..n * c).map(|_| rng.random_range(0..4) as f32).collect();
        let random: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
        let best: Vec<u32> = (0..n).map(|r| argmax(&logits[r * c..(r + 1) * c])).collect();
        let wrong: Vec<u32> = best.iter().map(|&a| (a + 1) % c as u32).collect();
        let want = reference::count_correct(&logits, &random, n, c);
        assert_eq!(gpu_count(&gpu, &logits, &random, n, c), want, "random labels, n {n} c {c}");
        assert_eq!(gpu_count(&gpu, &logits, &best, n, c), n as u32, "all correct, n {n} c {c}");
        let none = if c == 1 { n as u32 } else { 0 };
        assert_eq!(gpu_count(&gpu, &logits, &wrong, n, c), none, "none correct, n {n} c {c}");
    }
}

fn run_ce(gpu: &Arc<Gpu>, logits: &[f32], labels: &Buffer, n: usize, c: usize) -> (f32, Vec<f32>) {
    let x = Tensor::from_slice(gpu, &[n, c], logits).unwrap();
    let loss_t = Tensor::empty(gpu, &[1]);
    let dl = Tensor::empty(gpu, &[n, c]);
    loss_t.poison(gpu).unwrap();
    dl.poison(gpu).unwrap();
    let mut step = gpu.step();
    loss::softmax_cross_entropy(&mut step, &x, labels, &loss_t, &dl).unwrap();
    let hl = step.read(&loss_t.buf, 0, 4);
    let hd = step.read(&dl.buf, 0, 4 * (n * c) as u64);
    let out = step.submit().unwrap();
    (out.f32s(hl)[0], out.f32s(hd))
}

#[test]
fn out_of_range_label_gives_nan_loss_and_zero_gradient_row() {
    let gpu = test_gpu();
    let (n, c) = (5, 4);
    let logits = random_vec(&mut rng_for("bad label"), n * c);
    let labels = [1, 3, 4, u32::MAX, 0];
    let (l, d) = run_ce(&gpu, &logits, &upload_u32(&gpu, &labels).unwrap(), n, c);
    assert!(l.is_nan(), "loss {l}");
    // The valid rows keep their gradient (still divided by the full batch size N).
    let x64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let (_, want) = reference::softmax_cross_entropy(&x64, &[1, 3, 0, 0, 0], n, c);
    for r in 0..n {
        let row = &d[r * c..(r + 1) * c];
        if r == 2 || r == 3 {
            assert!(row.iter().all(|&v| v == 0.0), "row {r}: {row:?}");
        } else {
            compare(&format!("row {r}"), row, &want[r * c..(r + 1) * c], 1e-6, 1e-5).unwrap();
        }
    }
    assert_eq!(gpu_count(&gpu, &[0.0, 1.0, 0.0, 1.0], &[5, 1], 2, 2), 1);
}

#[test]
fn cross_entropy_is_bitwise_deterministic_and_matches_reference() {
    let gpu = test_gpu();
    for &(n, c) in &[(64, 10), (256, 10), (1000, 10)] {
        let mut rng = rng_for(&format!("ce {n}"));
        let logits: Vec<f32> = random_vec(&mut rng, n * c).iter().map(|v| v * 5.0).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..c as u32)).collect();
        let lb = upload_u32(&gpu, &labels).unwrap();
        let (l1, d1) = run_ce(&gpu, &logits, &lb, n, c);
        let (l2, d2) = run_ce(&gpu, &logits, &lb, n, c);
        assert_eq!(l1.to_bits(), l2.to_bits(), "n {n}");
        assert!(d1.iter().zip(&d2).all(|(a, b)| a.to_bits() == b.to_bits()), "n {n}");
        let x64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let (lr, dr) = reference::softmax_cross_entropy(&x64, &labels, n, c);
        compare("loss", &[l1], &[lr], 1e-5, 1e-5).unwrap();
        compare("dlogits", &d1, &dr, 1e-7, 1e-4).unwrap();
    }
}

#[test]
fn bad_shapes_are_errors() {
    let gpu = test_gpu();
    let x = Tensor::empty(&gpu, &[4, 3]);
    let short = upload_u32(&gpu, &[0, 1, 2]).unwrap();
    let labels = upload_u32(&gpu, &[0, 1, 2, 0]).unwrap();
    let one = Tensor::empty(&gpu, &[1]);
    let two = Tensor::empty(&gpu, &[2]);
    let dl = Tensor::empty(&gpu, &[4, 3]);
    let dl_wrong = Tensor::empty(&gpu, &[3, 4]);
    let flat = Tensor::empty(&gpu, &[12]);
    let mut step = gpu.step();
    assert!(loss::softmax_cross_entropy(&mut step, &x, &short, &one, &dl).is_err());
    assert!(loss::softmax_cross_entropy(&mut step, &x, &labels, &two, &dl).is_err());
    assert!(loss::softmax_cross_entropy(&mut step, &x, &labels, &one, &dl_wrong).is_err());
    assert!(loss::softmax_cross_entropy(&mut step, &flat, &labels, &one, &dl).is_err());
    assert!(loss::count_correct(&mut step, &x, &short, &labels).is_err());
    assert!(loss::count_correct(&mut step, &x, &labels, &short).is_ok());
    assert_eq!(step.dispatches(), 1);
}
