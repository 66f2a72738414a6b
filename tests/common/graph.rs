//! Running one network on one batch, for the network tests of each space.

use cellnas::nn::{BnStats, Graph, Mode, ParamStore, Var};
use cellnas::tensor::upload_u32;
use cellnas::Tensor;
use rand::{Rng, SeedableRng};

/// Logits of one batch `x` of `shape` through the network `build` records (and, in training
/// mode, the cross-entropy loss against labels i % classes, after a backward pass).
pub fn logits_and_loss(store: &mut ParamStore, bn: &mut BnStats, classes: usize, mode: Mode, x: &[f32], shape: [usize; 4], build: impl FnOnce(&mut Graph, Var) -> cellnas::Result<Var>) -> (Vec<f32>, Option<f32>) {
    let gpu = store.gpu().clone();
    let labels = upload_u32(&gpu, &(0..shape[0] as u32).map(|i| i % classes as u32).collect::<Vec<_>>()).unwrap();
    let xt = Tensor::from_slice(&gpu, &shape, x).unwrap();
    let mut g = Graph::new(gpu.step(), store, bn, mode);
    let xv = g.input(xt);
    let logits = build(&mut g, xv).unwrap();
    let loss = (mode == Mode::Train).then(|| {
        let (loss, _) = g.cross_entropy(logits, &labels).unwrap();
        g.backward().unwrap();
        loss
    });
    let lt = g.tensor(logits).unwrap().clone();
    let mut step = g.finish().unwrap();
    let hl = step.read(&lt.buf, 0, 4 * lt.numel() as u64);
    let hloss = loss.map(|l| step.read(&l.buf, 0, 4));
    let out = step.submit().unwrap();
    (out.f32s(hl), hloss.map(|h| out.f32s(h)[0]))
}

/// `n` values uniform in [-1, 1) from `seed`.
pub fn random_images(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}
