//! The host side of a step: steady-state training creates no buffers, bind groups or staging;
//! deferred read-back and bounded submits change nothing in the results.

use cellnas::data::{Augment, DeviceData};
use cellnas::gpu::{AdapterOptions, Counters, Gpu, BIND_GROUPS_CACHED_MAX};
use cellnas::ops::elementwise;
use cellnas::Tensor;
use cellnas::nn::darts::NetConfig;
use cellnas::run::download_named;
use cellnas::space::{Arch, Op, SearchSpace};
use cellnas::supernet::{recalibrate_bounded, recalibration_batches, EvalConfig};
use cellnas::train::{evaluate_bounded, train_epoch_in_flight, EpochMetrics, EpochProgress, Model, StepDone, TrainConfig, IN_FLIGHT};
use rand::SeedableRng;
use std::sync::Arc;

/// A device of its own: other tests' work would move the counters.
fn private_gpu() -> Arc<Gpu> {
    Gpu::new(&AdapterOptions::default()).unwrap()
}

fn net(supernet: bool) -> NetConfig {
    NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 2, supernet, supernet_affine: false, gated: vec![], kind: Default::default() }
}

fn data(gpu: &Arc<Gpu>, n: usize) -> DeviceData {
    let s = cellnas::data::embedded().unwrap();
    let ds = s.train.subset(&(0..n).map(|i| i * 13).collect::<Vec<_>>());
    let (m, sd) = ds.channel_stats();
    DeviceData::upload(gpu, &ds, &m, &sd).unwrap()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 16,
        lr: 0.05,
        lr_min: 0.001,
        momentum: 0.9,
        weight_decay: 3e-4,
        grad_clip: 5.0,
        seed: 5,
        augment: Augment { crop_padding: 2, flip: true, ..Augment::default() },
        warmup_epochs: 0.0,
    }
}

fn genotypes() -> [Arch; 2] {
    let space = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let a = space.sample(&mut rng);
    let mut b = space.sample(&mut rng);
    while b == a {
        b = space.sample(&mut rng);
    }
    [a.into(), b.into()]
}

/// Runs `epoch` of training; `in_flight` steps may be unread. Returns the metrics and the
/// progress seen by every callback.
/// From step `settle_at` on, the callback asks to settle and, once settled, downloads the
/// weights (returned with the step they belong to).
#[allow(clippy::type_complexity)]
fn epoch(model: &mut Model, data: &DeviceData, epoch: usize, paths: &[Arch], in_flight: usize, settle_at: Option<usize>) -> (EpochMetrics, Vec<EpochProgress>, Option<(usize, Vec<u32>)>) {
    let mut seen = Vec::new();
    let mut settled_weights = None;
    let n = paths.len();
    let m = train_epoch_in_flight(
        model,
        data,
        &cfg(),
        epoch,
        EpochProgress::default(),
        &mut |i| vec![paths[i % n].clone()],
        &mut |done: StepDone| {
            seen.push(done.progress.clone());
            if settle_at.is_some_and(|s| done.progress.step >= s) && settled_weights.is_none() {
                if !done.settled {
                    return Ok(true);
                }
                settled_weights = Some((done.progress.step, bits(done.model)));
            }
            Ok(false)
        },
        in_flight,
    )
    .unwrap();
    (m, seen, settled_weights)
}

fn bits(model: &Model) -> Vec<u32> {
    model.download().unwrap().into_iter().flat_map(|(_, _, v)| v.into_iter().map(f32::to_bits)).collect()
}

fn creations(c: Counters) -> (u64, u64, u64) {
    (c.buffers_created, c.buffer_bytes, c.bind_groups_created)
}

fn steady_state(supernet: bool, paths: &[Arch]) {
    let gpu = private_gpu();
    let data = data(&gpu, 128);
    let mut model = Model::new(&gpu, net(supernet), 1).unwrap();
    // Read back every step first: then the staging needed is exact, not a matter of timing.
    epoch(&mut model, &data, 0, paths, 0, None);
    let warm = gpu.counters();
    let (m, seen, _) = epoch(&mut model, &data, 1, paths, 0, None);
    let after = gpu.counters();
    assert_eq!(seen.len(), 8);
    assert!(m.loss.is_finite());
    assert_eq!(creations(after), creations(warm), "steady-state steps created objects: {warm:?} -> {after:?}");
    assert_eq!(after.staging_created, warm.staging_created, "{warm:?} -> {after:?}");
    // With steps in flight each holds its own readback buffer, as many as are in flight at
    // once (which depends on timing): bounded by the ring, never one per step.
    epoch(&mut model, &data, 2, paths, IN_FLIGHT, None);
    let deferred = gpu.counters();
    epoch(&mut model, &data, 3, paths, IN_FLIGHT, None);
    let end = gpu.counters();
    assert_eq!(creations(end), creations(warm), "{warm:?} -> {end:?}");
    assert!(end.staging_created <= warm.staging_created + IN_FLIGHT as u64, "{warm:?} -> {deferred:?} -> {end:?}");
    assert!(after.submits >= warm.submits + 8, "one submit per step at least: {warm:?} -> {after:?}");
    assert!(after.dispatches > warm.dispatches + 8 * 20, "{warm:?} -> {after:?}");
    assert!(warm.bind_groups_created > 0 && warm.staging_created > 0 && warm.buffer_bytes > 0);
    assert!(gpu.bind_groups_cached() as u64 <= warm.bind_groups_created);
}

#[test]
fn steady_state_standalone_steps_create_nothing() {
    let [a, _] = genotypes();
    steady_state(false, &[a]);
}

#[test]
fn steady_state_supernet_steps_alternating_two_paths_create_nothing() {
    steady_state(true, &genotypes());
}

#[test]
fn deferred_readback_equals_reading_every_step() {
    let gpu = cellnas::gpu::test_gpu();
    let data = data(&gpu, 128);
    let paths = genotypes();
    let run = |in_flight: usize, settle_at: Option<usize>| {
        let mut model = Model::new(&gpu, net(true), 2).unwrap();
        let e0 = epoch(&mut model, &data, 0, &paths, in_flight, None);
        let e1 = epoch(&mut model, &data, 1, &paths, in_flight, settle_at);
        (e0, e1, bits(&model))
    };
    let (d0, d1, dw) = run(IN_FLIGHT, Some(3));
    let settled_at = d1.2.as_ref().expect("the deferred run settled").0;
    assert!((3..8).contains(&settled_at), "settled at step {settled_at}");
    let (b0, b1, bw) = run(0, Some(settled_at));
    for ((b, bseen, _), (d, dseen, _)) in [(&b0, &d0), (&b1, &d1)] {
        assert_eq!((b.loss.to_bits(), b.accuracy.to_bits(), b.lr_end.to_bits()), (d.loss.to_bits(), d.accuracy.to_bits(), d.lr_end.to_bits()));
        let sums = |s: &Vec<EpochProgress>| s.iter().map(|p| (p.step, p.loss_sum.to_bits(), p.correct, p.seen, p.lr.to_bits())).collect::<Vec<_>>();
        assert_eq!(sums(bseen), sums(dseen), "callbacks see the same progress, step by step");
        assert_eq!(dseen.iter().map(|p| p.step).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    }
    assert!(b1.2 == d1.2, "weights at a settled step equal the blocking run's after as many steps");
    assert_ne!(b1.2.as_ref().unwrap().1, bw, "the settled weights are not the final ones");
    assert_eq!(bw, dw);
}

#[test]
fn bounded_submits_give_the_same_evaluation_and_statistics() {
    let gpu = cellnas::gpu::test_gpu();
    let data = data(&gpu, 100);
    let [g, _] = genotypes();
    let mut model = Model::new(&gpu, net(true), 4).unwrap();
    epoch(&mut model, &data, 0, std::slice::from_ref(&g), IN_FLIGHT, None);
    let cfg = EvalConfig { recalibration_batches: 5, batch_size: 12 };
    let stats = |model: &mut Model, per_submit: usize| {
        let bn = recalibrate_bounded(model, &g, &data, &cfg, 3, per_submit).unwrap();
        let named = bn.named_tensors();
        download_named(&gpu, &named).unwrap().into_iter().map(|(n, _, v)| (n, v.into_iter().map(f32::to_bits).collect::<Vec<_>>())).collect::<Vec<_>>()
    };
    let one = stats(&mut model, usize::MAX);
    assert!(!one.is_empty());
    assert_eq!(stats(&mut model, 1), one);
    assert_eq!(stats(&mut model, 2), one);
    let mut bn = recalibrate_bounded(&mut model, &g, &data, &cfg, 3, 8).unwrap();
    // 100 images in batches of 12: the last batch is short, and 1, 3 and 8 batches per submit
    // split the set differently.
    let whole = evaluate_bounded(&model.net, &mut model.store, &mut bn, &g, &data, 12, usize::MAX).unwrap();
    assert!(whole.0 > 0.0 && whole.1.is_finite());
    for per_submit in [1, 3, 8] {
        let got = evaluate_bounded(&model.net, &mut model.store, &mut bn, &g, &data, 12, per_submit).unwrap();
        assert_eq!((got.0.to_bits(), got.1.to_bits()), (whole.0.to_bits(), whole.1.to_bits()), "{per_submit} batches per submit");
    }
}

#[test]
fn divergence_found_late_still_names_its_step() {
    let gpu = cellnas::gpu::test_gpu();
    let data = data(&gpu, 64);
    let [g, _] = genotypes();
    let mut model = Model::new(&gpu, net(false), 6).unwrap();
    let cfg = TrainConfig { lr: 1e30, lr_min: 1e30, grad_clip: 0.0, ..cfg() };
    let mut calls = 0;
    let err = train_epoch_in_flight(&mut model, &data, &cfg, 0, EpochProgress::default(), &mut |_| vec![g.clone()], &mut |_| {
        calls += 1;
        Ok(false)
    }, IN_FLIGHT)
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("training diverged at epoch 1 step {}/4", calls + 1)), "{err} (after {calls} good steps)");
}

#[test]
fn bind_group_cache_stays_bounded_when_every_dispatch_binds_new_buffers() {
    let gpu = private_gpu();
    let per_step = 2048;
    let steps = BIND_GROUPS_CACHED_MAX / per_step + 3;
    // Held to the end, so the pool cannot hand a buffer out twice: every dispatch is new.
    let mut held = Vec::new();
    for _ in 0..steps {
        let mut step = gpu.step();
        for _ in 0..per_step {
            let (x, y) = (Tensor::empty(&gpu, &[1]), Tensor::empty(&gpu, &[1]));
            elementwise::scale(&mut step, &x, 2.0, &y).unwrap();
            held.push((x, y));
        }
        step.submit().unwrap();
        assert!(gpu.bind_groups_cached() <= BIND_GROUPS_CACHED_MAX, "{} cached", gpu.bind_groups_cached());
    }
    assert_eq!(gpu.counters().bind_groups_created, (steps * per_step) as u64);
    assert!(gpu.bind_groups_cached() >= per_step, "this submit's bind groups stay");
    gpu.trim_pool();
    assert_eq!(gpu.bind_groups_cached(), 0);
}

/// Recalibration and evaluation stream their batches through submits of a fixed size: asking
/// for more batches adds submits, not memory (no buffer, staging or pool byte is created once
/// a full submit has run), and a recalibration count beyond one pass over the training split
/// is cut to that pass, with the very same statistics.
#[test]
fn recalibration_and_evaluation_memory_does_not_grow_with_the_batch_count() {
    let gpu = private_gpu();
    let (small, large, big) = (data(&gpu, 16), data(&gpu, 96), data(&gpu, 100));
    let [g, _] = genotypes();
    let mut model = Model::new(&gpu, net(true), 4).unwrap();
    let cfg = |n| EvalConfig { recalibration_batches: n, batch_size: 2 };
    let memory = |c: Counters| (c.buffers_created, c.buffer_bytes, c.staging_created);
    // The first pass also creates the path's parameters (their upload takes its own staging).
    for _ in 0..2 {
        recalibrate_bounded(&mut model, &g, &big, &cfg(8), 3, 8).unwrap();
    }
    let warm = gpu.counters();
    let mut bn = recalibrate_bounded(&mut model, &g, &big, &cfg(40), 3, 8).unwrap();
    let after = gpu.counters();
    assert_eq!(after.submits - warm.submits, 5, "40 batches, 8 per submit");
    assert_eq!(memory(after), memory(warm), "40 batches took more memory than 8");

    // Two submits warm up: one runs while the next is recorded, each with its own read-back.
    evaluate_bounded(&model.net, &mut model.store, &mut bn, &g, &small, 2, 4).unwrap();
    let warm = gpu.counters();
    evaluate_bounded(&model.net, &mut model.store, &mut bn, &g, &large, 2, 4).unwrap();
    let after = gpu.counters();
    assert_eq!(after.submits - warm.submits, 12, "48 batches, 4 per submit");
    assert_eq!(memory(after), memory(warm), "evaluating 48 batches took more memory than 8");
    drop(bn);

    // 100 images make 50 batches of 2; a hundred million would repeat them two million times.
    let (used, note) = recalibration_batches(&cfg(100_000_000), big.n());
    assert_eq!(used, 50);
    assert!(note.is_some_and(|n| n.contains("50 batches") && n.contains("100000000")));
    assert_eq!(recalibration_batches(&cfg(50), big.n()), (50, None));
    let stats = |model: &mut Model, n: usize| {
        let bn = recalibrate_bounded(model, &g, &big, &cfg(n), 3, 8).unwrap();
        download_named(&gpu, &bn.named_tensors()).unwrap().into_iter().map(|(n, _, v)| (n, v.into_iter().map(f32::to_bits).collect::<Vec<_>>())).collect::<Vec<_>>()
    };
    let pass = stats(&mut model, 50);
    for asked in [120, 100_000_000] {
        let before = gpu.counters();
        assert_eq!(stats(&mut model, asked), pass, "{asked} batches");
        assert_eq!(gpu.counters().submits - before.submits, 7 + 1, "one pass in 7 submits, then the download");
    }
}
