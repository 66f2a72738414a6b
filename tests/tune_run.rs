//! `cellnas tune` on the GPU, tiny: a promoted trial continues its schedule bitwise; a tune
//! killed mid-trial and resumed equals an uninterrupted one; bad flags fail cleanly.

mod common;

use cellnas::pipeline::data::{load, DataConfig};
use cellnas::pipeline::fit::{fit_until, FitOptions};
use cellnas::run::{load_checkpoint, RunDir};
use cellnas::train::{Model, TrainConfig};
use common::{fails, kill_when, ok, read_json, run, strs, tmp};
use serde_json::json;
use std::path::Path;

const CELL: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0)], reduce_concat=[2, 3])";

fn weights(run: &RunDir) -> Vec<(String, Vec<u32>)> {
    let (t, _) = load_checkpoint(run).unwrap().expect("a checkpoint");
    t.into_iter().map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn a_promoted_trial_continues_its_schedule_bitwise() {
    let gpu = cellnas::gpu::test_gpu();
    let data = load(&gpu, &DataConfig { path: None, val_count: 16, train_limit: 48 }, 1).unwrap();
    let spec = cellnas::space::Spec::from_text(CELL).unwrap();
    let net = cellnas::nn::darts::NetConfig { in_channels: 1, classes: 10, channels: 4, layers: 3, nodes: 2, supernet: false, supernet_affine: false, gated: vec![], kind: cellnas::nn::darts::NetKind::Darts };
    // The trial's budget: 3 epochs of 3 steps; the cosine runs over all 9 steps.
    let cfg = TrainConfig { epochs: 3, batch_size: 16, lr: 0.1, lr_min: 0.0, momentum: 0.9, weight_decay: 3e-4, grad_clip: 5.0, seed: 2, augment: Default::default(), warmup_epochs: 0.0 };
    let arch = spec.arch.clone();
    let dir = tmp("tune-schedule");
    let train = |name: &str, cfg: &TrainConfig, stops: &[usize]| {
        let run = RunDir::create(&dir.join(name), &json!({ "name": name })).unwrap().with_checkpoint_file("checkpoint.safetensors");
        let mut last = vec![];
        for &until in stops {
            // A fresh model each time, as a promoted trial in a later job (or process) starts.
            let mut model = Model::new(&gpu, net.clone(), cfg.seed).unwrap();
            let opts = FitOptions { run: &run, checkpoint_every: None, quiet: true, expect: None };
            last = fit_until(&mut model, &data.train, cfg, &opts, &mut |_, _| vec![arch.clone()], until).unwrap();
        }
        (weights(&run), last)
    };
    // Rung 0 to 1 epoch, promoted to 2; against 2 epochs in one go, both on the 3-epoch schedule.
    let (promoted, pm) = train("promoted", &cfg, &[1, 2]);
    let (straight, sm) = train("straight", &cfg, &[2]);
    assert_eq!(pm.len(), 2);
    assert_eq!(promoted, straight, "continuing from the rung's checkpoint must equal training straight through");
    assert_eq!(pm.iter().map(|m| m.lr_end).collect::<Vec<_>>(), sm.iter().map(|m| m.lr_end).collect::<Vec<_>>());
    // The schedule is the 3-epoch one: epoch 2 ends at step 6 of 9, not at the end of a cosine.
    assert_eq!(sm[1].lr_end, cfg.lr_at(5, 9));
    assert!(sm[1].lr_end > 0.01);
    // A trial whose schedule were over its rung (2 epochs) would train differently.
    let (short, shm) = train("short", &TrainConfig { epochs: 2, ..cfg.clone() }, &[2]);
    assert_ne!(short, straight);
    assert!(shm[1].lr_end < 0.01);
    // And the full budget continues too: 2 -> 3 equals 3 in one go, i.e. `cellnas train` of the budget.
    let (full_promoted, _) = train("full-promoted", &cfg, &[1, 2, 3]);
    let (full, _) = train("full", &cfg, &[3]);
    assert_eq!(full_promoted, full);
    let _ = std::fs::remove_dir_all(&dir);
}

const HP: &str = r#"{"hyperparameters": [
  {"name": "lr", "type": "Float", "min_value": 0.02, "max_value": 0.2, "sampling": "log"},
  {"name": "momentum", "type": "Choice", "values": [0.8, 0.9]},
  {"name": "use_cutout", "type": "Boolean"},
  {"name": "cutout", "type": "Int", "min_value": 4, "max_value": 8, "step": 4, "parent_name": "use_cutout", "parent_values": [true]}
]}"#;

fn tune_args(flag: &str, out: &Path, dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec!["tune".into(), flag.into(), out.to_str().unwrap().into()];
    if flag == "--out" {
        v.extend(["--spec", dir.join("cell.txt").to_str().unwrap(), "--hp", dir.join("hp.json").to_str().unwrap()].map(String::from));
        for a in ["--tuner", "hyperband", "--max-epochs", "3", "--factor", "3", "--train-limit", "48", "--val", "16", "--batch-size", "16", "--channels", "4", "--layers", "3", "--seed", "3", "--precise-bn", "1"] {
            v.push(a.into());
        }
    }
    v.extend(["--quiet", "--checkpoint-minutes", "0.00001"].map(String::from));
    v
}

/// trials.jsonl without wall-clock fields.
fn trials(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("trials.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["train_seconds", "crc32"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn tune_killed_mid_trial_and_resumed_equals_an_uninterrupted_one() {
    let dir = tmp("tune-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cell.txt"), CELL).unwrap();
    std::fs::write(dir.join("hp.json"), HP).unwrap();
    let a = dir.join("a");
    let out = ok(run(&strs(&tune_args("--out", &a, &dir))));
    assert!(out.contains("<- best"), "{out}");
    let ta = trials(&a);
    // R = 3, eta = 3: bracket 0 runs 3 trials for 1 epoch and continues the best to 3; bracket 1 runs 2 for 3.
    assert_eq!(ta.len(), 6);
    let promoted = &ta[3];
    assert_eq!((promoted["rung"].as_u64(), promoted["epochs"].as_u64(), promoted["curve"].as_array().unwrap().len()), (Some(1), Some(3), 3));
    // The promoted trial's curve starts with its rung-0 point.
    let t = promoted["trial"].as_u64().unwrap() as usize;
    assert_eq!(promoted["curve"][0], ta[t]["curve"][0]);
    // Its report plots every trial's last curve, point for point, and lists every job.
    let html = a.join("r.html");
    ok(run(&["report", a.to_str().unwrap(), "--out", html.to_str().unwrap()]));
    let html = std::fs::read_to_string(html).unwrap();
    let plot = &html[html.find("data-plot=\"tune-curves\"").expect("the trials plot")..];
    let plot = &plot[..plot.find("</svg>").unwrap()];
    let points = plot.matches("<circle").count();
    let mut last = std::collections::BTreeMap::new();
    for r in &ta {
        last.insert(r["trial"].as_u64().unwrap(), r["curve"].as_array().unwrap().len());
    }
    assert_eq!(points, last.values().sum::<usize>(), "one point per epoch of each trial's last curve");
    let rows = &html[html.find("sortable trials").expect("the trials table")..];
    assert_eq!(rows[..rows.find("</table>").unwrap()].matches("<tr data-id=").count(), ta.len(), "one row per job");
    // Inside trial 3 (bracket 1, three epochs), after a mid-epoch checkpoint.
    let b = dir.join("b");
    let probe = b.join("trials/0003/state.json");
    assert!(kill_when(&strs(&tune_args("--out", &b, &dir)), || probe.is_file()), "the tune finished before it could be killed");
    assert!(!b.join("best.json").exists());
    ok(run(&strs(&tune_args("--resume", &b, &dir))));
    assert_eq!(trials(&b), ta);
    let (ba, bb) = (read_json(&a.join("best.json")), read_json(&b.join("best.json")));
    for k in ["trial", "hyperparameters", "val_accuracy", "test_accuracy", "test_loss", "val_accuracy_final"] {
        assert_eq!(ba["best"][k], bb["best"][k], "{k}");
    }
    // The best trial is a finished `cellnas train` run.
    let best_run = a.join("trials").join(format!("{:04}", ba["best"]["trial"].as_u64().unwrap()));
    assert!(best_run.join("weights.safetensors").is_file() && best_run.join("metrics.json").is_file());
    // A resume with another config is refused, naming the field.
    fails(run(&["tune", "--resume", a.to_str().unwrap(), "--max-epochs", "9", "--quiet"]), &["max_epochs"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tune_flags_fail_cleanly() {
    let dir = tmp("tune-bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cell.txt"), CELL).unwrap();
    std::fs::write(dir.join("hp.json"), HP).unwrap();
    std::fs::write(dir.join("bad.json"), r#"{"hyperparameters": [{"name": "lr", "type": "Float", "min_value": 0, "max_value": 0.1, "sampling": "log"}]}"#).unwrap();
    std::fs::write(dir.join("epochs.json"), r#"{"hyperparameters": [{"name": "epochs", "type": "Int", "min_value": 1, "max_value": 3}]}"#).unwrap();
    let (cell, hp, bad) = (dir.join("cell.txt"), dir.join("hp.json"), dir.join("bad.json"));
    let base = |hp: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["tune", "--spec", cell.to_str().unwrap(), "--hp", hp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), "--quiet"].map(String::from).to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    fails(run(&strs(&base(&bad, &[]))), &["bad.json", "\"lr\"", "log sampling"]);
    fails(run(&strs(&base(&hp, &["--tuner", "grid"]))), &["--tuner grid"]);
    fails(run(&strs(&base(&hp, &["--trials", "4"]))), &["--trials", "Hyperband"]);
    fails(run(&strs(&base(&hp, &["--val", "0"]))), &["--val"]);
    fails(run(&strs(&base(&hp, &["--factor", "1"]))), &["--factor"]);
    fails(run(&strs(&base(&hp, &["--epochs", "3"]))), &["--max-epochs"]);
    fails(run(&strs(&base(&dir.join("epochs.json"), &[]))), &["\"epochs\"", "Hyperband"]);
    fails(run(&strs(&base(&hp, &["--tuner", "random", "--early-stop", "--early-stop-min-epochs", "2"]))), &["--early-stop-min-epochs"]);
    assert!(!dir.join("o").join("trials.jsonl").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Hyperband tune in phases and shards (`--phase setup`, two concurrent `--resume T --shard
/// I/2`, `cellnas merge T`) writes the single-process trials.jsonl and picks and tests the same
/// best trial; rounds are rungs, so the promoted trial continues on whichever shard runs it.
#[test]
fn a_sharded_tune_merges_into_the_single_process_tune() {
    let dir = tmp("tune-shards");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cell.txt"), CELL).unwrap();
    std::fs::write(dir.join("hp.json"), HP).unwrap();
    let (a, b) = (dir.join("one"), dir.join("sharded"));
    ok(run(&strs(&tune_args("--out", &a, &dir))));
    let mut setup = tune_args("--out", &b, &dir);
    setup.extend(["--phase", "setup"].map(String::from));
    ok(run(&strs(&setup)));
    let bs = b.to_str().unwrap();
    let shard = |i: usize| std::process::Command::new(env!("CARGO_BIN_EXE_cellnas")).args(["tune", "--resume", bs, "--shard", &format!("{i}/2"), "--quiet"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let children = [shard(0), shard(1)];
    for c in children {
        ok(c.wait_with_output().unwrap());
    }
    fails(run(&["tune", "--resume", bs, "--quiet"]), &["being scored in shards"]);
    ok(run(&["merge", bs]));
    assert_eq!(trials(&a), trials(&b));
    let best = |d: &Path| {
        let v = read_json(&d.join("best.json"));
        (v["best"]["trial"].clone(), v["best"]["test_accuracy"].as_f64().unwrap().to_bits(), v["jobs"].clone())
    };
    assert_eq!(best(&a), best(&b));
    let _ = std::fs::remove_dir_all(&dir);
}
