//! One helper checks any op: random inputs at the case's (odd) shape, GPU forward against the
//! CPU reference, GPU gradients against the reference's, and the reference's gradients against
//! central finite differences. GPU outputs are poisoned with NaN before every run, so an element
//! a kernel forgets to write fails the comparison.
//!
//! Tolerances (|gpu - ref| <= atol + rtol * |ref|, per element):
//! - GPU vs reference: the case's `tolerance()`, default atol = rtol = 1e-4. The reference runs
//!   in f64 on the same f32-rounded inputs, so the gap is the kernel's f32 accumulation error,
//!   which grows with the reduction length; cases with long reductions widen it.
//! - Reference gradient vs finite differences: step 1e-6 in f64, atol = rtol = 1e-5. Piecewise
//!   linear ops (ReLU, max pool) are checked at random points, which lie on a kink with
//!   probability ~1e-6.

use super::OpCase;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::{numel, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Deterministic generator seeded from a string (the case name), so failures reproduce.
pub fn rng_for(name: &str) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// Uniform values in [-1, 1], kept away from exact zero.
pub fn random_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if v.abs() < 1e-3 { 0.5 } else { v }
        })
        .collect()
}

/// First element that differs by more than atol + rtol*|want|, with a message naming it.
pub fn compare(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} vs reference {}", got.len(), want.len()));
    }
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        if !(err <= atol + rtol * w.abs()) {
            return Err(format!("{what}: element {i} is {g}, reference {w} (|err| {err:.3e}; {} elements)", got.len()));
        }
        worst = worst.max(err);
    }
    Ok(())
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Runs every check on one case; returns a description of the first failure.
pub fn check_case(gpu: &Arc<Gpu>, case: &dyn OpCase) -> std::result::Result<(), String> {
    let label = format!("{} [{}]", case.name(), case.shape());
    run(gpu, case, &label).map_err(|e| format!("{label}: {e}"))?
}

fn run(gpu: &Arc<Gpu>, case: &dyn OpCase, label: &str) -> Result<std::result::Result<(), String>> {
    let mut rng = rng_for(label);
    let shapes = case.inputs();
    let xs: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| case.sample_input(i, &mut rng, numel(s))).collect();
    let xs64: Vec<Vec<f64>> = xs.iter().map(|v| to_f64(v)).collect();
    let (atol, rtol) = case.tolerance();

    // Forward.
    let y_ref = case.forward_ref(&xs64);
    if y_ref.len() != numel(&case.output()) {
        return Ok(Err(format!("reference forward gave {} values for output {:?}", y_ref.len(), case.output())));
    }
    let xt: Vec<Tensor> = xs.iter().zip(&shapes).map(|(v, s)| Tensor::from_slice(gpu, s, v)).collect::<Result<_>>()?;
    let y = Tensor::empty(gpu, &case.output());
    y.poison(gpu)?;
    let mut step = gpu.step();
    let saved = case.forward(&mut step, &xt, &y)?;
    step.submit()?;
    if let Err(e) = compare("forward", &y.to_vec(gpu)?, &y_ref, atol, rtol) {
        return Ok(Err(e));
    }

    let diff = case.differentiable();
    if !diff.iter().any(|&d| d) {
        return Ok(Ok(()));
    }
    // Backward: GPU vs reference, one input at a time (each is its own launcher pass).
    let dy = random_vec(&mut rng, y_ref.len());
    let dy64 = to_f64(&dy);
    let grads_ref = case.backward_ref(&xs64, &dy64);
    let dyt = Tensor::from_slice(gpu, &case.output(), &dy)?;
    for (i, s) in shapes.iter().enumerate() {
        if !diff[i] {
            continue;
        }
        let dx = Tensor::empty(gpu, s);
        dx.poison(gpu)?;
        let mut step = gpu.step();
        case.backward(&mut step, &xt, &y, &saved, &dyt, i, &dx)?;
        step.submit()?;
        if let Err(e) = compare(&format!("gradient of input {i}"), &dx.to_vec(gpu)?, &grads_ref[i], atol, rtol) {
            return Ok(Err(e));
        }
    }

    // Reference gradients vs central differences of L = sum(dy * f(x)), on a sample of elements.
    let loss = |x: &[Vec<f64>]| case.forward_ref(x).iter().zip(&dy64).map(|(a, b)| a * b).sum::<f64>();
    let h = 1e-6;
    for (i, s) in shapes.iter().enumerate() {
        if !diff[i] {
            continue;
        }
        let n = numel(s);
        let picks: Vec<usize> = if n <= 48 { (0..n).collect() } else { (0..48).map(|_| rng.random_range(0..n)).collect() };
        for j in picks {
            let mut xp = xs64.clone();
            xp[i][j] += h;
            let lp = loss(&xp);
            xp[i][j] -= 2.0 * h;
            let lm = loss(&xp);
            let fd = (lp - lm) / (2.0 * h);
            let an = grads_ref[i][j];
            if (fd - an).abs() > 1e-5 + 1e-5 * fd.abs().max(an.abs()) {
                return Ok(Err(format!("reference gradient of input {i}, element {j}: {an} but finite differences give {fd}")));
            }
        }
    }
    Ok(Ok(()))
}

/// Checks every test case of a registered op family; panics listing all failures.
pub fn check_family(name: &str) {
    let gpu = crate::gpu::test_gpu();
    let fam = super::family(name).unwrap_or_else(|| panic!("no op family '{name}' in ops::FAMILIES"));
    let cases = (fam.test_cases)();
    assert!(!cases.is_empty(), "{name} has no test cases");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(&gpu, c.as_ref()).err()).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
