//! The multi-tensor optimizer (flat arenas, one update per arena block) against the per-tensor
//! path it replaces: same results with a segment list that skips tensors, clipping on both
//! sides of max_norm, supernet training that is deterministic and resumes bitwise with a
//! different arena layout, the number of dispatches an update costs, and no new buffers (nor
//! chunk tables) in the steady state of one path.

use cellnas::data::{Augment, DeviceData};
use cellnas::gpu::{test_gpu, Gpu, Step};
use cellnas::nn::darts::{self, NetConfig};
use cellnas::nn::{BnStats, Graph, Mode, ParamStore};
use cellnas::ops::arena::{Arena, Slot};
use cellnas::ops::check::{random_vec, rng_for};
use cellnas::ops::optim::{self, Sgd};
use cellnas::ops::optim_multi::{self, BlockBufs, Plan, Segment};
use cellnas::space::{Op, SearchSpace};
use cellnas::supernet::{sample_paths, Sampling};
use cellnas::tensor::upload_u32;
use cellnas::train::{train_step, Model};
use cellnas::Tensor;
use rand::SeedableRng;
use std::sync::Arc;

const SIZES: &[usize] = &[1, 7, 1000, 4099, 3, 517, 1500, 64, 2];
/// Small blocks spread SIZES over three (4099 gets one of its own; 1500 opens a third block,
/// and the tensors after it fill the first block's gap).
const SMALL_BLOCK: u64 = 8 << 10;
const SGD: Sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 1e-2, nesterov: false };

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Arena holding SIZES with the same random (value, grad, momentum) in every call.
fn filled_arena(gpu: &Arc<Gpu>, step: &mut Step) -> (Arena, Vec<(Slot, Tensor, Tensor, Tensor)>) {
    let mut arena = Arena::new(gpu, Some(SMALL_BLOCK));
    let mut rng = rng_for("multi arena");
    let mut out = Vec::new();
    for &n in SIZES {
        let slot = arena.alloc(step, n).unwrap();
        let (v, g, m) = arena.tensors(&slot, &[n]).unwrap();
        for t in [&v, &m] {
            step.upload(&t.buf, 0, bytemuck::cast_slice(&random_vec(&mut rng, n))).unwrap();
        }
        out.push((slot, v, g, m));
    }
    (arena, out)
}

fn blocks(arena: &Arena) -> Vec<BlockBufs<'_>> {
    arena.blocks().iter().map(|b| BlockBufs { value: &b.value, grad: &b.grad, momentum: &b.momentum }).collect()
}

/// Rounds of (skip pattern, max_norm). Tensor 1 is skipped in every round.
fn rounds() -> Vec<(Vec<bool>, Option<f32>)> {
    let s = |p: &[u8]| p.iter().map(|&b| b == 1).collect::<Vec<bool>>();
    vec![
        (s(&[0, 1, 0, 0, 1, 0, 0, 1, 0]), Some(1.0)),
        (s(&[1, 1, 0, 1, 0, 0, 1, 0, 1]), None),
        (s(&[0, 1, 1, 0, 0, 1, 0, 0, 0]), Some(1e6)),
    ]
}

#[test]
fn multi_tensor_update_equals_per_tensor_and_leaves_skipped_tensors_alone() {
    let gpu = test_gpu();
    let mut step = gpu.step();
    let (multi, a) = filled_arena(&gpu, &mut step);
    let (single, b) = filled_arena(&gpu, &mut step);
    assert_eq!(multi.blocks().len(), 3, "the test needs several blocks");
    let before: Vec<Vec<f32>> = {
        step.submit().unwrap();
        a.iter().flat_map(|(_, v, _, m)| [v.to_vec(&gpu).unwrap(), m.to_vec(&gpu).unwrap()]).collect()
    };
    let mut rng = rng_for("multi grads");
    for (skip, max_norm) in rounds() {
        let mut step = gpu.step();
        for (i, &n) in SIZES.iter().enumerate() {
            let g = random_vec(&mut rng, n);
            step.upload(&a[i].2.buf, 0, bytemuck::cast_slice(&g)).unwrap();
            step.upload(&b[i].2.buf, 0, bytemuck::cast_slice(&g)).unwrap();
        }
        let live: Vec<usize> = (0..SIZES.len()).filter(|&i| !skip[i]).collect();
        // Multi-tensor on one arena.
        let segs: Vec<Segment> = live.iter().map(|&i| Segment { block: a[i].0.block, offset: a[i].0.offset, len: a[i].0.len }).collect();
        let elems: Vec<u64> = multi.blocks().iter().map(|b| b.elems()).collect();
        let plan = Plan::new(&gpu, &segs, &elems).unwrap();
        let table = gpu.alloc(plan.table_bytes());
        step.upload(&table, 0, plan.bytes()).unwrap();
        let norm_multi = Tensor::empty(&gpu, &[1]);
        optim_multi::sgd_multi(&mut step, &blocks(&multi), &plan, &table, &SGD, max_norm, Some(&norm_multi)).unwrap();
        // Per tensor on the other.
        let grads: Vec<&Tensor> = live.iter().map(|&i| &b[i].2).collect();
        let norm_single = Tensor::empty(&gpu, &[1]);
        optim::grad_norm_sq(&mut step, &grads, &norm_single).unwrap();
        if let Some(m) = max_norm {
            optim::clip_grads(&mut step, &grads, &norm_single, m).unwrap();
        }
        for &i in &live {
            optim::sgd_step(&mut step, &b[i].1, &b[i].2, &b[i].3, &SGD).unwrap();
        }
        step.submit().unwrap();
        assert_eq!(bits(&norm_multi.to_vec(&gpu).unwrap()), bits(&norm_single.to_vec(&gpu).unwrap()), "global norm, skip {skip:?}");
        for i in 0..SIZES.len() {
            for (what, x, y) in [("value", &a[i].1, &b[i].1), ("momentum", &a[i].3, &b[i].3)] {
                let (x, y) = (x.to_vec(&gpu).unwrap(), y.to_vec(&gpu).unwrap());
                assert_eq!(bits(&x), bits(&y), "{what} of tensor {i} (size {}), skip {skip:?}, clip {max_norm:?}", SIZES[i]);
            }
        }
    }
    // Tensor 1 was skipped every round: bitwise what it was.
    assert_eq!(bits(&a[1].1.to_vec(&gpu).unwrap()), bits(&before[2]));
    assert_eq!(bits(&a[1].3.to_vec(&gpu).unwrap()), bits(&before[3]));
    drop(single);
}

/// Values after one multi-tensor update of every tensor with `max_norm`, and the norm.
fn update_all(gpu: &Arc<Gpu>, max_norm: Option<f32>) -> (Vec<Vec<f32>>, f32) {
    let mut step = gpu.step();
    let (arena, t) = filled_arena(gpu, &mut step);
    let mut rng = rng_for("clip grads");
    for (i, &n) in SIZES.iter().enumerate() {
        step.upload(&t[i].2.buf, 0, bytemuck::cast_slice(&random_vec(&mut rng, n))).unwrap();
    }
    let segs: Vec<Segment> = t.iter().map(|(s, ..)| Segment { block: s.block, offset: s.offset, len: s.len }).collect();
    let elems: Vec<u64> = arena.blocks().iter().map(|b| b.elems()).collect();
    let plan = Plan::new(gpu, &segs, &elems).unwrap();
    let table = gpu.alloc(plan.table_bytes());
    step.upload(&table, 0, plan.bytes()).unwrap();
    let norm = Tensor::empty(gpu, &[1]);
    optim_multi::sgd_multi(&mut step, &blocks(&arena), &plan, &table, &SGD, max_norm, Some(&norm)).unwrap();
    step.submit().unwrap();
    (t.iter().map(|(_, v, ..)| v.to_vec(gpu).unwrap()).collect(), norm.to_vec(gpu).unwrap()[0].sqrt())
}

#[test]
fn clipping_engages_above_max_norm_and_not_below() {
    let gpu = test_gpu();
    let (plain, norm) = update_all(&gpu, None);
    assert!(norm > 10.0, "the test's gradients should have a large norm, got {norm}");
    let (loose, _) = update_all(&gpu, Some(norm * 2.0));
    assert_eq!(plain.iter().map(|v| bits(v)).collect::<Vec<_>>(), loose.iter().map(|v| bits(v)).collect::<Vec<_>>(), "a bound above the norm changes nothing");
    let (tight, _) = update_all(&gpu, Some(1.0));
    let moved = |v: &[Vec<f32>]| v.iter().flatten().zip(plain.iter().flatten()).filter(|(a, b)| a != b).count();
    assert!(moved(&tight) > SIZES.iter().sum::<usize>() / 2, "a bound below the norm must change the update");
}

fn tiny_net() -> NetConfig {
    NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 2, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() }
}

/// `steps` SPOS steps from `model`'s state; the path sampler replays from step 0.
fn train(model: &mut Model, data: &DeviceData, skip: usize, steps: usize) {
    let space = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let batch: Vec<u32> = (0..16).collect();
    for i in 0..skip + steps {
        let paths = sample_paths(&space, Sampling::Uniform, &mut rng);
        if i >= skip {
            train_step(model, data, &batch, &Augment::default(), i as u32, &paths, &SGD, 0.5).unwrap();
        }
    }
}

fn small_block_model(gpu: &Arc<Gpu>) -> Model {
    let mut m = Model::new(gpu, tiny_net(), 3).unwrap();
    m.store = ParamStore::with_block_bytes(gpu, 3, Some(SMALL_BLOCK));
    m
}

#[test]
fn supernet_training_is_deterministic_and_resumes_bitwise_with_another_layout() {
    let gpu = test_gpu();
    let s = cellnas::data::embedded().unwrap();
    let ds = s.train.subset(&(0..64).collect::<Vec<_>>());
    let (mean, std) = ds.channel_stats();
    let data = DeviceData::upload(&gpu, &ds, &mean, &std).unwrap();
    let run = |split: Option<usize>| {
        let mut m = small_block_model(&gpu);
        match split {
            None => train(&mut m, &data, 0, 4),
            Some(k) => {
                train(&mut m, &data, 0, k);
                // A fresh store loads in name order: a different arena layout from the lazy one.
                let saved = m.download().unwrap();
                m = small_block_model(&gpu);
                m.restore(&saved).unwrap();
                train(&mut m, &data, k, 4 - k);
            }
        }
        assert!(m.store.arena_blocks() > 1, "small blocks should give several");
        m.download().unwrap()
    };
    let a = run(None);
    assert_eq!(a, run(None), "same seed, same adapter: bitwise the same");
    assert_eq!(a, run(Some(2)), "checkpoint after step 2 and resume: bitwise the same");
}

/// Records forward + backward of one path into a step; returns the step.
fn recorded_step<'a>(gpu: &Arc<Gpu>, store: &'a mut ParamStore, bn: &'a mut BnStats) -> Step {
    let space = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap();
    let paths = sample_paths(&space, Sampling::Uniform, &mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
    let labels = upload_u32(gpu, &[0, 3, 9]).unwrap();
    let x = Tensor::from_slice(gpu, &[3, 1, 8, 8], &random_vec(&mut rng_for("x"), 3 * 64)).unwrap();
    let mut g = Graph::new(gpu.step(), store, bn, Mode::Train);
    let x = g.input(x);
    let logits = darts::forward(&mut g, &tiny_net(), paths[0].darts().unwrap(), x).unwrap();
    g.cross_entropy(logits, &labels).unwrap();
    g.backward().unwrap();
    g.finish().unwrap()
}

#[test]
fn an_update_costs_a_few_dispatches_per_arena_block_not_three_per_tensor() {
    let gpu = test_gpu();
    let mut counts = Vec::new();
    let mut values = Vec::new();
    for multi in [true, false] {
        let mut store = ParamStore::new(&gpu, 1);
        let mut bn = BnStats::new();
        let mut step = recorded_step(&gpu, &mut store, &mut bn);
        let touched = store.touched().len();
        let before = step.dispatches();
        if multi {
            store.sgd_update(&mut step, &SGD, Some(0.5)).unwrap();
        } else {
            store.sgd_update_per_tensor(&mut step, &SGD, Some(0.5)).unwrap();
        }
        counts.push((step.dispatches() - before, touched, store.arena_blocks(), step.dispatches()));
        step.submit().unwrap();
        let named = store.named_tensors();
        values.push(cellnas::run::download_named(&gpu, &named).unwrap());
    }
    let ((multi, touched, blocks, multi_total), (single, _, _, single_total)) = (counts[0], counts[1]);
    println!(
        "optimizer dispatches for {touched} touched tensors in {blocks} arena block(s): multi-tensor {multi}, per-tensor {single} \
         (whole training step: {multi_total} vs {single_total})"
    );
    assert!(touched > 20, "the path should touch many tensors, touched {touched}");
    assert!(multi <= 2 * blocks + 1, "multi-tensor update took {multi} dispatches for {blocks} blocks");
    assert!(single >= 2 * touched, "per-tensor path took {single} for {touched} tensors");
    assert_eq!(values[0], values[1], "multi-tensor and per-tensor updates give the same weights and momenta");
}

#[test]
fn bad_plans_views_and_configs_are_errors() {
    let gpu = test_gpu();
    let mut step = gpu.step();
    let (arena, t) = filled_arena(&gpu, &mut step);
    step.submit().unwrap();
    let elems: Vec<u64> = arena.blocks().iter().map(|b| b.elems()).collect();
    let seg = |block, offset, len| Segment { block, offset, len };
    let invalid = |r: cellnas::Result<Plan>| matches!(r, Err(cellnas::Error::Invalid(_)));
    assert!(invalid(Plan::new(&gpu, &[seg(0, 0, 10), seg(0, 5, 10)], &elems)), "overlapping segments");
    assert!(invalid(Plan::new(&gpu, &[seg(0, elems[0] as u32 - 3, 4)], &elems)), "segment past its block");
    assert!(invalid(Plan::new(&gpu, &[seg(elems.len(), 0, 1)], &elems)), "unknown block");

    let segs: Vec<Segment> = t.iter().map(|(s, ..)| seg(s.block, s.offset, s.len)).collect();
    let plan = Plan::new(&gpu, &segs, &elems).unwrap();
    let table = gpu.alloc(plan.table_bytes());
    let small = gpu.alloc(16);
    let mut step = gpu.step();
    let err = |r: cellnas::Result<()>| matches!(r, Err(cellnas::Error::Invalid(_)));
    assert!(err(optim_multi::sgd_multi(&mut step, &blocks(&arena), &plan, &small, &SGD, None, None)), "table too small");
    assert!(err(optim_multi::sgd_multi(&mut step, &blocks(&arena)[..1], &plan, &table, &SGD, None, None)), "missing block");
    for m in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(err(optim_multi::sgd_multi(&mut step, &blocks(&arena), &plan, &table, &SGD, Some(m), None)), "max_norm {m}");
    }
    let nesterov = Sgd { momentum: 0.0, nesterov: true, ..SGD };
    assert!(err(optim_multi::sgd_multi(&mut step, &blocks(&arena), &plan, &table, &nesterov, None, None)), "nesterov without momentum");
    assert_eq!(step.dispatches(), 0, "a rejected call records nothing");

    let parent = gpu.alloc(1024);
    let align = gpu.limits.min_storage_buffer_offset_alignment as u64;
    assert!(gpu.view(&parent, align, 64).is_ok());
    assert!(gpu.view(&parent, 4, 64).is_err() || align <= 4, "misaligned offset");
    assert!(gpu.view(&parent, 0, 6).is_err(), "size not a multiple of 4");
    assert!(gpu.view(&parent, 0, 2048).is_err(), "larger than the parent");
    // Reading one view while writing another of the same buffer is something wgpu rejects.
    let (a, b) = (Tensor { buf: gpu.view(&parent, 0, 64).unwrap(), shape: vec![16] }, Tensor { buf: gpu.view(&parent, 512, 64).unwrap(), shape: vec![16] });
    assert!(err(optim::sgd_step(&mut step, &a, &b, &Tensor::empty(&gpu, &[16]), &SGD)), "grad read and param written in one buffer");
}

#[test]
fn a_repeated_path_creates_no_buffers_and_reuses_its_chunk_table() {
    // A private device so other tests' allocations do not interfere with the count.
    let gpu = Gpu::new(&cellnas::gpu::AdapterOptions::default()).unwrap();
    let s = cellnas::data::embedded().unwrap();
    let ds = s.train.subset(&(0..16).collect::<Vec<_>>());
    let (mean, std) = ds.channel_stats();
    let data = DeviceData::upload(&gpu, &ds, &mean, &std).unwrap();
    let space = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap();
    let paths = sample_paths(&space, Sampling::Uniform, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
    let mut model = Model::new(&gpu, tiny_net(), 3).unwrap();
    let batch: Vec<u32> = (0..16).collect();
    let mut step = |i: u32| train_step(&mut model, &data, &batch, &Augment::default(), i, &paths, &SGD, 0.5).unwrap();
    step(0);
    step(1);
    let created = gpu.buffers_created();
    for i in 2..5 {
        step(i);
    }
    assert_eq!(gpu.buffers_created(), created, "steady-state steps of one path must not create buffers");
}
