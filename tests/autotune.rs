//! Autotune: the cache file, the Gpu loading its adapter's entries, kernel choice functions
//! obeying them, `cellnas autotune` writing them, and runs pinning the choices they started
//! with (kernels.json) across a resume with a changed cache.

use cellnas::autotune::{self, AdapterEntries, AdapterKey, CacheFile, CacheSource, Choices, Entry};
use cellnas::gpu::{test_gpu, AdapterOptions, Gpu};
use cellnas::nn::darts::NetConfig;
use cellnas::ops::conv2d::{self, Conv2d, ConvCase};
use cellnas::ops::pool::{self, Pool2d, PoolKind};
use cellnas::ops::{check, Pass};
use cellnas::space::Genotype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-autotune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entry(variant: &str) -> Entry {
    Entry { variant: variant.into(), ms: BTreeMap::from([("fast".into(), 1.0), ("general".into(), 0.5)]), shape: "n1".into() }
}

fn adapter_entries(adapter: AdapterKey, choices: &[(&str, &str)]) -> AdapterEntries {
    AdapterEntries { adapter, timing: "host".into(), entries: choices.iter().map(|(k, v)| (k.to_string(), entry(v))).collect() }
}

fn this_adapter() -> AdapterKey {
    AdapterKey::of(&test_gpu().info)
}

fn open_with(path: &Path) -> Arc<Gpu> {
    Gpu::new(&AdapterOptions { kernel_cache: CacheSource::File(path.to_path_buf()), ..Default::default() }).unwrap()
}

const X: [usize; 4] = [2, 4, 9, 8];
const W: [usize; 4] = [4, 1, 3, 3];
const DW: Conv2d = Conv2d { stride: 1, padding: 1, dilation: 1, groups: 4 };
const POOL: Pool2d = Pool2d { kind: PoolKind::Max, kernel: 3, stride: 2, padding: 1 };

#[test]
fn cache_round_trip_and_merge() {
    let dir = tmp("roundtrip");
    let path = dir.join("sub/autotune.json");
    let other = AdapterKey { name: "Other GPU".into(), backend: "metal".into(), driver: "x".into(), driver_info: "1".into() };
    let key = autotune::conv_key(&X, &W, &DW, Pass::Forward).unwrap();
    let mut file = CacheFile { version: CacheFile::VERSION, adapters: vec![adapter_entries(other.clone(), &[(&key, "general")])] };
    file.merge(adapter_entries(this_adapter(), &[(&key, "fast"), ("max_pool.both k3 s2 p1 9x8", "general")]));
    file.write(&path).unwrap();
    let back = CacheFile::read(&path).unwrap();
    assert_eq!(back, file);
    assert_eq!(back.adapters.len(), 2);
    // Merging new measurements replaces the same keys and keeps the others.
    let mut merged = back.clone();
    merged.merge(adapter_entries(this_adapter(), &[(&key, "general")]));
    let mine = merged.for_adapter(&this_adapter()).unwrap().choices();
    assert_eq!(mine, Choices::from([(key.clone(), "general".into()), ("max_pool.both k3 s2 p1 9x8".into(), "general".into())]));
    assert_eq!(merged.for_adapter(&other).unwrap().choices().len(), 1);
    let (choices, warning) = autotune::load_choices(&CacheSource::File(path.clone()), &this_adapter());
    assert_eq!(warning, None);
    assert_eq!(choices, Choices::from([(key, "fast".into()), ("max_pool.both k3 s2 p1 9x8".into(), "general".into())]));
    // No file: no choices, no warning (a machine that never ran autotune).
    assert_eq!(autotune::load_choices(&CacheSource::File(dir.join("none.json")), &this_adapter()), (Choices::new(), None));
    assert_eq!(autotune::load_choices(&CacheSource::Off, &this_adapter()), (Choices::new(), None));
}

#[test]
fn a_general_entry_changes_the_kernel_and_the_result_still_matches_the_reference() {
    let dir = tmp("force");
    let path = dir.join("autotune.json");
    let fwd = autotune::conv_key(&X, &W, &DW, Pass::Forward).unwrap();
    let pool_key = autotune::pool_key(&X, &POOL).unwrap();
    let relu_key = autotune::relu_key(&X).unwrap();
    assert_eq!(relu_key, "relu.both 9x8");
    let file = CacheFile {
        version: CacheFile::VERSION,
        adapters: vec![adapter_entries(this_adapter(), &[(&fwd, "general"), (&pool_key, "general"), (&relu_key, "scalar")])],
    };
    file.write(&path).unwrap();
    let forced = open_with(&path);
    assert_eq!(forced.autotune_warning, None);
    let plain = test_gpu();
    assert_eq!(conv2d::path_on(&plain, &X, &W, &DW, Pass::Forward), "depthwise");
    assert_eq!(conv2d::path_on(&forced, &X, &W, &DW, Pass::Forward), "general");
    // Only that pass of that shape class: the input gradient keeps its fast kernel, and so
    // does the same convolution at another plane size (another class).
    assert_eq!(conv2d::path_on(&forced, &X, &W, &DW, Pass::BackwardInput), "depthwise");
    assert_eq!(conv2d::path_on(&forced, &[2, 4, 10, 8], &W, &DW, Pass::Forward), "depthwise");
    assert!(autotune::pool_rows(&plain, &X, &POOL));
    assert!(!autotune::pool_rows(&forced, &X, &POOL));
    let case = ConvCase { x: X, w: W, p: DW, simple: false, relu: false };
    check::check_case(&forced, &case).unwrap();
    check::check_case(&forced, pool::case(X, POOL).as_ref()).unwrap();
    assert!(autotune::relu_vec4(&plain, &X));
    assert!(!autotune::relu_vec4(&forced, &X));
    check::check_case(&forced, cellnas::ops::elementwise::relu_case(&X).as_ref()).unwrap();

    // Choices set at run time (a resume puts back recorded ones) take effect at once.
    forced.set_kernel_choices(Choices::new());
    assert_eq!(conv2d::path_on(&forced, &X, &W, &DW, Pass::Forward), "depthwise");
}

#[test]
fn entries_for_another_adapter_are_ignored() {
    let dir = tmp("other");
    let path = dir.join("autotune.json");
    let fwd = autotune::conv_key(&X, &W, &DW, Pass::Forward).unwrap();
    let me = this_adapter();
    // Same name, other driver version: another adapter as far as the cache is concerned.
    let newer = AdapterKey { driver_info: format!("{} (newer)", me.driver_info), ..me.clone() };
    let stranger = AdapterKey { name: "Some Other GPU".into(), ..me.clone() };
    let file = CacheFile { version: CacheFile::VERSION, adapters: vec![adapter_entries(newer, &[(&fwd, "general")]), adapter_entries(stranger, &[(&fwd, "general")])] };
    file.write(&path).unwrap();
    let gpu = open_with(&path);
    assert_eq!(gpu.autotune_warning, None);
    assert!(gpu.kernel_choices().is_empty());
    assert_eq!(conv2d::path_on(&gpu, &X, &W, &DW, Pass::Forward), "depthwise");
}

#[test]
fn a_corrupt_cache_warns_naming_the_file_and_falls_back_to_the_defaults() {
    let dir = tmp("corrupt");
    let fwd = autotune::conv_key(&X, &W, &DW, Pass::Forward).unwrap();
    let cases = [
        ("garbage.json", "{\"version\": 1, \"adapters\": [".to_string(), "not a cellnas autotune cache"),
        ("version.json", "{\"version\": 99, \"adapters\": []}".to_string(), "version 99"),
        (
            "variant.json",
            serde_json::to_string(&CacheFile { version: 1, adapters: vec![adapter_entries(this_adapter(), &[(&fwd, "turbo")])] }).unwrap(),
            "unknown variant 'turbo'",
        ),
        (
            "point.json",
            serde_json::to_string(&CacheFile { version: 1, adapters: vec![adapter_entries(this_adapter(), &[("matmul.forward 8x8", "fast")])] }).unwrap(),
            "unknown choice point 'matmul.forward 8x8'",
        ),
    ];
    for (name, text, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let gpu = open_with(&path);
        let w = gpu.autotune_warning.clone().unwrap_or_else(|| panic!("{name}: no warning"));
        assert!(w.contains(&path.display().to_string()) && w.contains(says) && w.contains("default kernels"), "{name}: {w}");
        assert!(gpu.kernel_choices().is_empty(), "{name}");
        assert_eq!(conv2d::path_on(&gpu, &X, &W, &DW, Pass::Forward), "depthwise", "{name}");
    }
    // `cellnas autotune` refuses to merge into it (it would lose what is there), naming it.
    let path = dir.join("garbage.json");
    let o = bin().args(["autotune", "--channels", "4", "--layers", "3", "--batch-size", "1", "--cache"]).arg(&path).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&path.display().to_string()) && !err.contains("panicked"), "{err}");
    // A bad flag is an error, not a panic.
    let o = bin().args(["autotune", "--image", "28x28", "--cache"]).arg(dir.join("x.json")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--image") && !err.contains("panicked"), "{err}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellnas"))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

#[test]
fn autotune_on_a_tiny_network_writes_an_entry_per_choice_point() {
    let dir = tmp("tiny");
    let path = dir.join("autotune.json");
    let other = AdapterKey { name: "Other GPU".into(), backend: "dx12".into(), driver: "d".into(), driver_info: "i".into() };
    let keep = CacheFile { version: 1, adapters: vec![adapter_entries(other.clone(), &[("avg_pool.both k3 s1 p1 32x32", "general")])] };
    keep.write(&path).unwrap();
    let out = ok(bin()
        .args(["autotune", "--channels", "4", "--layers", "3", "--batch-size", "2", "--warmup", "0", "--reps", "1", "--json", "--cache"])
        .arg(&path)
        .env_remove("CELLNAS_CONV_GENERIC")
        .env_remove("CELLNAS_POOL_GENERIC")
        .output()
        .unwrap());
    let printed: AdapterEntries = serde_json::from_str(out.trim()).unwrap();
    let file = CacheFile::read(&path).unwrap();
    assert_eq!(file.for_adapter(&other), keep.for_adapter(&other), "another adapter's entries survive the merge");
    let mine = file.for_adapter(&this_adapter()).expect("entries for this adapter");
    assert_eq!(mine, &printed);
    let cfg = NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 4, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
    let points = autotune::network_points(&cfg, &[Genotype::from_darts(DARTS_V2).unwrap()], 2, [1, 28, 28]).unwrap();
    let want: Vec<&String> = points.iter().map(|p| &p.key).collect();
    let got: Vec<&String> = mine.entries.keys().collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    // The network hits conv fast paths of all three passes, the pool row kernels and the
    // batch-norm reductions of both passes; its ReLUs are fused into the convs, so no ReLU
    // kernel (and no relu.both point) is left to tune.
    for needle in ["conv2d.forward depthwise", "conv2d.backward_input depthwise", "conv2d.backward_weight pointwise", "conv2d.forward strided_pointwise", "max_pool.both", "batch_norm.forward", "batch_norm.backward"] {
        assert!(want.iter().any(|k| k.starts_with(needle)), "no {needle} point in {want:?}");
    }
    assert!(!want.iter().any(|k| k.starts_with("relu.both")), "fused ReLUs are not separate choice points: {want:?}");
    for (k, e) in &mine.entries {
        assert!(autotune::variants_of(k).unwrap().contains(&e.variant.as_str()), "{k}: {}", e.variant);
        assert_eq!(e.ms.len(), 2, "{k}: both variants timed");
        assert!(e.ms.values().all(|m| m.is_finite() && *m > 0.0), "{k}: {:?}", e.ms);
    }
}

// A tiny stand-alone training run: 10 steps per epoch, a checkpoint after every step.
const GENOTYPE: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])";
const TRAIN: &[&str] = &[
    "train", "--channels", "4", "--layers", "3", "--train-limit", "160", "--batch-size", "16", "--epochs", "2", "--seed", "3", "--quiet",
    "--checkpoint-minutes", "0.00001",
];

fn train_cmd(cache: &str, spec: &Path) -> Command {
    let mut c = bin();
    c.args(TRAIN).arg("--spec").arg(spec).env("CELLNAS_AUTOTUNE", cache).env_remove("CELLNAS_CONV_GENERIC").env_remove("CELLNAS_POOL_GENERIC");
    c
}

fn bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = cellnas::run::load_tensors(path).unwrap();
    t.into_iter().map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}

/// Names of the tensors whose bits differ between two weight files (all of them on a
/// mismatch in names).
fn differing(a: &Path, b: &Path) -> Vec<String> {
    let (a, b) = (bits(a), bits(b));
    if a.iter().map(|t| &t.0).ne(b.iter().map(|t| &t.0)) {
        return a.into_iter().map(|t| t.0).collect();
    }
    a.into_iter().zip(b).filter(|(x, y)| x.1 != y.1).map(|(x, _)| x.0).collect()
}

/// (epoch, step) of the run's last checkpoint; (0, 0) before the first.
fn position(dir: &Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else { return (0, 0) };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return (0, 0) };
    let s = &v["state"];
    (s["epoch"].as_u64().unwrap_or(0), s["progress"]["step"].as_u64().unwrap_or(0))
}

#[test]
fn pin_records_at_start_and_a_resume_restores_the_recorded_choices() {
    let dir = tmp("pin");
    let gpu = open_with(&dir.join("none.json"));
    let key = autotune::conv_key(&X, &W, &DW, Pass::Forward).unwrap();
    let started = Choices::from([(key.clone(), "general".to_string())]);
    gpu.set_kernel_choices(started.clone());
    let run = cellnas::run::RunDir::create(&dir.join("run"), &serde_json::json!({"x": 1})).unwrap();
    cellnas::pipeline::kernels::pin(&gpu, &run, false).unwrap();
    // The cache changed since: the Gpu opened with other choices.
    gpu.set_kernel_choices(Choices::from([(key.clone(), "fast".to_string())]));
    cellnas::pipeline::kernels::pin(&gpu, &run, true).unwrap();
    assert_eq!(gpu.kernel_choices(), started);
    assert_eq!(conv2d::path_on(&gpu, &X, &W, &DW, Pass::Forward), "general");
    // A run from before kernels.json existed ran the defaults, and resumes with them.
    std::fs::remove_file(run.dir().join("kernels.json")).unwrap();
    cellnas::pipeline::kernels::pin(&gpu, &run, true).unwrap();
    assert!(gpu.kernel_choices().is_empty());
    assert!(run.dir().join("kernels.json").is_file());
    // A damaged record stops the resume with an error naming it.
    std::fs::write(run.dir().join("kernels.json"), "{\"choices\": 3}").unwrap();
    let err = cellnas::pipeline::kernels::pin(&gpu, &run, true).unwrap_err().to_string();
    assert!(err.contains("kernels.json"), "{err}");
}

#[test]
fn a_resume_with_a_changed_cache_uses_the_recorded_kernels_bit_for_bit() {
    let dir = tmp("resume");
    let spec = dir.join("g.txt");
    std::fs::write(&spec, GENOTYPE).unwrap();
    // A cache that sends every choice point of this network to its other (non-default) kernel.
    let g = Genotype::from_darts(GENOTYPE).unwrap();
    let cfg = NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: Default::default() };
    let points = autotune::network_points(&cfg, &[g], 16, [1, 28, 28]).unwrap();
    assert!(points.len() > 10, "{} choice points", points.len());
    let all: Vec<(&str, &str)> = points.iter().map(|p| (p.key.as_str(), p.variants[1])).collect();
    let general = dir.join("general.json");
    CacheFile { version: 1, adapters: vec![adapter_entries(this_adapter(), &all)] }.write(&general).unwrap();
    let general = general.to_str().unwrap();

    let (plain, forced, resumed) = (dir.join("plain"), dir.join("forced"), dir.join("resumed"));
    ok(train_cmd("off", &spec).arg("--out").arg(&plain).output().unwrap());
    ok(train_cmd(general, &spec).arg("--out").arg(&forced).output().unwrap());
    let forced_rec = cellnas::pipeline::kernels::read(&forced).unwrap().unwrap();
    assert_eq!(forced_rec.choices.len(), points.len());
    // The other kernels round differently: without pinning, a resume under the changed
    // cache would not reproduce the run.
    assert!(!differing(&plain.join("weights.safetensors"), &forced.join("weights.safetensors")).is_empty());

    // Start without a cache, kill mid-epoch, resume with the other cache in place.
    let mut child = train_cmd("off", &spec).arg("--out").arg(&resumed).spawn().unwrap();
    let t0 = Instant::now();
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if position(&resumed) >= (0, 4) {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    assert!(killed, "the run finished before it could be killed");
    assert!(!resumed.join("weights.safetensors").exists());
    ok(train_cmd(general, &spec).arg("--resume").arg(&resumed).output().unwrap());
    assert!(cellnas::pipeline::kernels::read(&resumed).unwrap().unwrap().choices.is_empty());
    let diff = differing(&plain.join("weights.safetensors"), &resumed.join("weights.safetensors"));
    assert!(diff.is_empty(), "the resumed run's weights differ from the uninterrupted run's in {} tensors: {diff:?}", diff.len());
}

#[test]
fn the_generic_env_overrides_win_over_autotune() {
    let dir = tmp("env");
    let path = dir.join("autotune.json");
    let o = bin()
        .args(["autotune", "--channels", "4", "--layers", "3", "--batch-size", "1", "--warmup", "0", "--reps", "1", "--json", "--cache"])
        .arg(&path)
        .env("CELLNAS_CONV_GENERIC", "1")
        .env_remove("CELLNAS_POOL_GENERIC")
        .output()
        .unwrap();
    let out = ok(o.clone());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CELLNAS_CONV_GENERIC is set"), "{err}");
    let printed: AdapterEntries = serde_json::from_str(out.trim()).unwrap();
    // The general conv kernels are forced, so there is no conv choice to make; pools still have one.
    assert!(printed.entries.keys().any(|k| k.starts_with("max_pool.")), "{:?}", printed.entries.keys());
    assert!(!printed.entries.keys().any(|k| k.starts_with("conv2d.")), "{:?}", printed.entries.keys());
}
