//! The `workgroup` variant of the batch-norm reductions (src/ops/batchnorm_wg.rs): checked
//! against the f64 reference on odd shapes, against the default `units` variant, chosen by an
//! autotune cache entry, and bitwise reproducible.

use cellnas::autotune::{self, AdapterEntries, AdapterKey, CacheFile, CacheSource, Choices, Entry};
use cellnas::gpu::{test_gpu, AdapterOptions};
use cellnas::ops::batchnorm::{self, BatchNorm};
use cellnas::ops::batchnorm_wg;
use cellnas::ops::check::{self, random_vec, rng_for};
use cellnas::ops::Pass;
use cellnas::{Gpu, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A Gpu of its own (the shared test Gpu must keep the defaults) with the workgroup variant
/// chosen for both passes at every plane size of `shapes`.
fn workgroup_gpu(shapes: &[[usize; 4]]) -> Arc<Gpu> {
    let gpu = Gpu::new(&AdapterOptions { kernel_cache: CacheSource::Off, ..Default::default() }).unwrap();
    let mut choices = Choices::new();
    for s in shapes {
        for pass in [Pass::Forward, Pass::BackwardInput] {
            choices.insert(autotune::batch_norm_key(s, pass).unwrap(), "workgroup".into());
        }
    }
    gpu.set_kernel_choices(choices);
    gpu
}

/// One channel; 1x1 planes (the cursor steps whole images); channels shorter than a
/// workgroup and not a multiple of it; planes longer than a workgroup (the cursor steps
/// within a plane); a channel long enough for several slabs.
const SHAPES: &[[usize; 4]] = &[[3, 1, 5, 7], [5, 3, 1, 1], [2, 17, 9, 11], [2, 1, 4, 4], [2, 3, 17, 19], [1, 3, 7, 7], [2, 2, 181, 183]];

#[test]
fn workgroup_variant_matches_the_reference() {
    let gpu = workgroup_gpu(SHAPES);
    let wg = batchnorm_wg::workgroup_size(&gpu);
    assert!(wg.is_power_of_two(), "{wg}");
    let long = SHAPES[SHAPES.len() - 1];
    assert!(batchnorm_wg::slabs(long[0] * long[2] * long[3], wg).0 > 1, "{long:?} should need several slabs of {wg}");
    let mut failures = vec![];
    for &shape in SHAPES {
        assert!(autotune::batch_norm_workgroup(&gpu, &shape, Pass::Forward));
        for affine in [true, false] {
            if let Err(e) = check::check_case(&gpu, batchnorm::train_case(shape, affine).as_ref()) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn slabs_cover_the_channel_in_whole_workgroups() {
    for wg in [1, 32, 64, 256, 1024] {
        for m in [1, 2, 31, 255, 256, 257, 3136, 50176, 65536, 65537, 1 << 20, 3_000_001] {
            let (slabs, slab) = batchnorm_wg::slabs(m, wg);
            assert!(slabs >= 1 && slab % wg as usize == 0, "m {m} wg {wg}: {slabs} x {slab}");
            assert!(slabs * slab >= m && (slabs - 1) * slab < m, "m {m} wg {wg}: {slabs} x {slab}");
        }
    }
    // The DARTS layers at batch 64 are one slab per channel with 256 lanes.
    for m in [64 * 28 * 28, 64 * 14 * 14, 64 * 7 * 7] {
        assert_eq!(batchnorm_wg::slabs(m, 256).0, 1, "m {m}");
    }
}

type Outputs = [Vec<f32>; 8];

/// Training forward then backward (affine); y, running stats, saved stats, dx, dgamma, dbeta.
fn run(gpu: &Arc<Gpu>, shape: [usize; 4], seed: &str) -> Outputs {
    let n: usize = shape.iter().product();
    let c = shape[1];
    let mut rng = rng_for(seed);
    let t = |s: &[usize], v: &[f32]| Tensor::from_slice(gpu, s, v).unwrap();
    let x = t(&shape, &random_vec(&mut rng, n));
    let dy = t(&shape, &random_vec(&mut rng, n));
    let gamma = t(&[c], &random_vec(&mut rng, c));
    let beta = t(&[c], &random_vec(&mut rng, c));
    let k = |v: f32| t(&[c], &vec![v; c]);
    let (rm, rv, sm, sis, dg, db) = (k(0.0), k(1.0), k(0.0), k(0.0), k(0.0), k(0.0));
    let (y, dx) = (Tensor::empty(gpu, &shape), Tensor::empty(gpu, &shape));
    let mut step = gpu.step();
    batchnorm::forward_train(&mut step, &x, Some(&gamma), Some(&beta), &rm, &rv, &BatchNorm::default(), &y, &sm, &sis).unwrap();
    batchnorm::backward(&mut step, &x, &dy, Some(&gamma), &sm, &sis, &dx, Some(&dg), Some(&db)).unwrap();
    step.submit().unwrap();
    [y, rm, rv, sm, sis, dx, dg, db].map(|t| t.to_vec(gpu).unwrap())
}

#[test]
fn both_variants_agree_on_the_same_input() {
    // A vec4 (unit) shape and a scalar one for the default path.
    let shapes = [[8, 4, 28, 28], [3, 5, 9, 11]];
    let wgpu = workgroup_gpu(&shapes);
    for shape in shapes {
        let a = run(&test_gpu(), shape, "variants");
        let b = run(&wgpu, shape, "variants");
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            let want: Vec<f64> = a.iter().map(|&v| v as f64).collect();
            check::compare(&format!("{shape:?} output {i}, workgroup vs units"), b, &want, 1e-5, 1e-4).unwrap();
        }
    }
}

#[test]
fn workgroup_variant_is_deterministic() {
    for shape in [[3, 17, 9, 11], [2, 2, 181, 183]] {
        let gpu = workgroup_gpu(&[shape]);
        let bits = |o: Outputs| o.map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let (a, b) = (bits(run(&gpu, shape, "determinism")), bits(run(&gpu, shape, "determinism")));
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(a == b, "{shape:?}: output {i} differs between identical runs");
        }
    }
}

/// Entry points a training forward + backward of `shape` records on `gpu`.
fn kernels(gpu: &Arc<Gpu>, shape: [usize; 4]) -> (Vec<&'static str>, Vec<&'static str>) {
    let c = shape[1];
    let t = |s: &[usize]| Tensor::empty(gpu, s);
    let (x, y, dx) = (t(&shape), t(&shape), t(&shape));
    let (rm, rv, sm, sis) = (t(&[c]), t(&[c]), t(&[c]), t(&[c]));
    let mut step = gpu.step();
    batchnorm::forward_train(&mut step, &x, None, None, &rm, &rv, &BatchNorm::default(), &y, &sm, &sis).unwrap();
    let fwd = step.kernels();
    let mut step = gpu.step();
    batchnorm::backward(&mut step, &x, &y, None, &sm, &sis, &dx, None, None).unwrap();
    (fwd, step.kernels())
}

#[test]
fn a_cache_entry_selecting_workgroup_makes_the_launcher_use_it() {
    let shape = [2, 3, 9, 11];
    let fwd_key = autotune::batch_norm_key(&shape, Pass::Forward).unwrap();
    assert_eq!(fwd_key, "batch_norm.forward 9x11");
    assert_eq!(autotune::batch_norm_key(&shape, Pass::BackwardInput).unwrap(), "batch_norm.backward 9x11");
    assert_eq!(autotune::batch_norm_key(&[4, 6], Pass::Forward).unwrap(), "batch_norm.forward 1x1");
    let dir = std::env::temp_dir().join(format!("cellnas-bnwg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("autotune.json");
    let entry = |v: &str| Entry { variant: v.into(), ms: BTreeMap::from([("units".into(), 1.0), ("workgroup".into(), 0.5)]), shape: "n2 c3 9x11".into() };
    let me = AdapterKey::of(&test_gpu().info);
    let file = CacheFile {
        version: CacheFile::VERSION,
        adapters: vec![AdapterEntries { adapter: me, timing: "host".into(), entries: BTreeMap::from([(fwd_key.clone(), entry("workgroup"))]) }],
    };
    file.write(&path).unwrap();
    let forced = Gpu::new(&AdapterOptions { kernel_cache: CacheSource::File(path.clone()), ..Default::default() }).unwrap();
    assert_eq!(forced.autotune_warning, None);
    let (fwd, bwd) = kernels(&forced, shape);
    assert!(fwd.contains(&"sum_wg") && fwd.contains(&"sq_wg"), "{fwd:?}");
    assert!(!fwd.contains(&"sum_partial") && !fwd.contains(&"sum_units"), "{fwd:?}");
    // Only the forward was chosen: the backward keeps the default.
    assert!(bwd.contains(&"backward_partial") && !bwd.contains(&"backward_wg"), "{bwd:?}");
    // Without a cache the defaults run, and an entry for the backward switches that pass.
    let (fwd, bwd) = kernels(&test_gpu(), shape);
    assert!(fwd.contains(&"sum_partial") && !fwd.contains(&"sum_wg"), "{fwd:?}");
    assert!(bwd.contains(&"backward_partial"), "{bwd:?}");
    let (_, bwd) = kernels(&workgroup_gpu(&[shape]), shape);
    assert!(bwd.contains(&"backward_wg") && !bwd.contains(&"backward_partial"), "{bwd:?}");
    // An unknown variant makes the cache invalid (warned about, defaults used).
    let bad = CacheFile {
        adapters: vec![AdapterEntries { adapter: AdapterKey::of(&test_gpu().info), timing: "host".into(), entries: BTreeMap::from([(fwd_key, entry("subgroup"))]) }],
        ..file
    };
    bad.write(&path).unwrap();
    assert!(CacheFile::read(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
