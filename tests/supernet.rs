//! Supernet pieces on tiny shapes: path training lowers the loss, FairNAS sampling is strictly
//! fair, and BN recalibration's statistics equal a direct computation over the same batches.

use cellnas::data::device::reference;
use cellnas::data::{Augment, DeviceData};
use cellnas::nn::darts::NetConfig;
use cellnas::nn::params::name_seed;
use cellnas::ops::conv2d::{self, Conv2d};
use cellnas::ops::optim::Sgd;
use cellnas::space::{Op, SearchSpace};
use cellnas::supernet::{recalibrate, sample_paths, EvalConfig, Sampling};
use cellnas::train::{epoch_batches, train_step, Model};
use rand::SeedableRng;

fn tiny_net() -> NetConfig {
    NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 2, supernet: true, supernet_affine: false, gated: vec![], kind: Default::default() }
}

fn small_data() -> (cellnas::data::Dataset, Vec<f32>, Vec<f32>) {
    let s = cellnas::data::embedded().unwrap();
    let ds = s.train.subset(&(0..256).map(|i| i * 17).collect::<Vec<_>>());
    let (m, sd) = ds.channel_stats();
    (ds, m, sd)
}

#[test]
fn path_training_lowers_the_loss() {
    let gpu = cellnas::gpu::test_gpu();
    let (ds, mean, std) = small_data();
    let data = DeviceData::upload(&gpu, &ds, &mean, &std).unwrap();
    let space = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap();
    let mut model = Model::new(&gpu, tiny_net(), 7).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 3e-4, nesterov: false };
    let batch: Vec<u32> = (0..32).collect();
    let mut losses = Vec::new();
    for _ in 0..24 {
        let paths = sample_paths(&space, Sampling::Uniform, &mut rng);
        losses.push(train_step(&mut model, &data, &batch, &Augment::default(), 0, &paths, &sgd, 5.0).unwrap().0);
    }
    let first = losses[..4].iter().sum::<f64>() / 4.0;
    let last = losses[20..].iter().sum::<f64>() / 4.0;
    assert!(last < 0.9 * first, "SPOS training on one batch should lower the loss: {losses:?}");
}

#[test]
fn fair_sampling_trains_every_op_of_every_edge_once_per_step() {
    let space = SearchSpace::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..20 {
        let paths: Vec<_> = sample_paths(&space, Sampling::Fair, &mut rng).into_iter().map(|a| a.darts().unwrap().clone()).collect();
        assert_eq!(paths.len(), space.ops().len());
        for p in &paths {
            space.contains(p).unwrap();
        }
        for cell in 0..2 {
            for node in 0..space.nodes() {
                for slot in 0..2 {
                    let mut ops: Vec<Op> = paths.iter().map(|p| if cell == 0 { &p.normal } else { &p.reduce }.nodes[node][slot].op).collect();
                    ops.sort_by_key(|o| o.index());
                    assert_eq!(ops, space.ops().to_vec(), "cell {cell} node {node} slot {slot}");
                }
            }
        }
    }
}

#[test]
fn recalibrated_statistics_equal_a_direct_computation() {
    let gpu = cellnas::gpu::test_gpu();
    let (ds, mean, std) = small_data();
    let data = DeviceData::upload(&gpu, &ds, &mean, &std).unwrap();
    let mut model = Model::new(&gpu, tiny_net(), 3).unwrap();
    let genotype = SearchSpace::new(Op::SEARCHABLE.to_vec(), 2).unwrap().sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let cfg = EvalConfig { recalibration_batches: 3, batch_size: 20 };
    let seed = 11;
    let bn = recalibrate(&mut model, &genotype.into(), &data, &cfg, seed).unwrap();

    // The stem BN's input is the stem conv of the batch: recompute it on the CPU reference for
    // the same batches, take each batch's mean and unbiased variance, and average.
    let w = model.store.get("stem.conv").unwrap().value.to_vec(&gpu).unwrap();
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let c = 12; // 3 * channels
    let batches = epoch_batches(ds.n, 20, name_seed(seed, "recalibration"), 0);
    let (mut want_mean, mut want_var) = (vec![0.0; c], vec![0.0; c]);
    for idx in batches.iter().take(3) {
        let (x, _) = reference::assemble(&ds, &mean, &std, idx, &Augment::default(), 0);
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let p = Conv2d { stride: 1, padding: 1, dilation: 1, groups: 1 };
        let y = conv2d::reference::forward(&x64, [20, 1, 28, 28], &w64, [c, 1, 3, 3], &p);
        let m = 20 * 28 * 28;
        for ch in 0..c {
            let vals: Vec<f64> = (0..20).flat_map(|n| y[(n * c + ch) * 784..(n * c + ch + 1) * 784].to_vec()).collect();
            let mu = vals.iter().sum::<f64>() / m as f64;
            let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (m - 1) as f64;
            want_mean[ch] += mu / 3.0;
            want_var[ch] += var / 3.0;
        }
    }
    let (rm, rv) = &bn.map["stem.bn"];
    let (got_mean, got_var) = (rm.to_vec(&gpu).unwrap(), rv.to_vec(&gpu).unwrap());
    for ch in 0..c {
        assert!((got_mean[ch] as f64 - want_mean[ch]).abs() < 1e-4 * (1.0 + want_mean[ch].abs()), "mean of channel {ch}: {} vs {}", got_mean[ch], want_mean[ch]);
        assert!((got_var[ch] as f64 - want_var[ch]).abs() < 1e-4 * (1.0 + want_var[ch].abs()), "var of channel {ch}: {} vs {}", got_var[ch], want_var[ch]);
    }
    // Every BN layer of the candidate got statistics, and the supernet's own were not touched.
    assert!(bn.map.len() > 10);
    assert!(model.bn.map.is_empty());
}
