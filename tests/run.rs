//! The run folder: atomic writes, safetensors weights, config checks on resume, JSON Lines logs
//! and checkpoints that survive a kill at any point.

use cellnas::gpu::test_gpu;
use cellnas::run::{
    append_jsonl, config_diff, download_named, load_checkpoint, load_tensors, read_jsonl, save_checkpoint,
    save_tensors, write_atomic, write_json_atomic, NamedTensor, PendingWrite, RunDir,
};
use cellnas::{Error, Tensor};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test (tests run in parallel, so each has its own).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellnas-run-tests-{}", std::process::id())).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn atomic_write_replaces_the_file_and_leaves_no_temp_files() {
    let dir = scratch("atomic");
    let path = dir.join("a.json");
    write_atomic(&path, b"old").unwrap();
    write_atomic(&path, b"new content").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new content");
    write_json_atomic(&path, &json!({"x": 1})).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&fs::read(&path).unwrap()).unwrap(), json!({"x": 1}));
    assert_eq!(names_in(&dir), ["a.json"]);
}

#[test]
fn a_kill_between_temp_write_and_rename_keeps_the_original() {
    let dir = scratch("atomic-kill");
    let path = dir.join("w.bin");
    write_atomic(&path, b"original").unwrap();

    // Stage the new bytes, then "die" before the rename: forget skips the cleanup a live
    // process would do, exactly as a kill would.
    let pending = PendingWrite::stage(&path, b"half-way").unwrap();
    let temp = pending.temp_path().to_path_buf();
    std::mem::forget(pending);
    assert_eq!(fs::read(&path).unwrap(), b"original");
    assert_eq!(fs::read(&temp).unwrap(), b"half-way");
    fs::remove_file(&temp).unwrap();

    // A live process that gives up before committing removes its temp file.
    drop(PendingWrite::stage(&path, b"abandoned").unwrap());
    assert_eq!(names_in(&dir), ["w.bin"]);
    assert_eq!(fs::read(&path).unwrap(), b"original");
}

#[test]
fn a_failed_rename_keeps_the_original_and_cleans_up() {
    let dir = scratch("atomic-fail");
    // A non-empty directory cannot be renamed over: the temp write succeeds, the rename fails.
    let target = dir.join("busy");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"kept").unwrap();
    let err = write_atomic(&target, b"new").unwrap_err();
    assert!(err.to_string().contains("busy"), "{err}");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"kept");
    assert_eq!(names_in(&dir), ["busy"]);

    let missing = dir.join("no-such-dir").join("f.json");
    let err = write_atomic(&missing, b"x").unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

fn odd_tensors() -> Vec<NamedTensor> {
    let special = vec![0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE / 3.0, 1.0e-45, -3.25];
    let ramp = |n: usize| (0..n).map(|i| (i as f32 * 0.37).sin() * 1e3).collect::<Vec<f32>>();
    vec![
        ("scalar".into(), vec![], vec![42.5]),
        ("empty".into(), vec![0], vec![]),
        ("empty_3d".into(), vec![3, 0, 2], vec![]),
        ("special".into(), vec![2, 4], special),
        ("one".into(), vec![1], vec![-1.0]),
        ("cells.0.edge_3.sep_conv_5x5.w".into(), vec![1, 1, 1, 7], ramp(7)),
        ("b_odd".into(), vec![3, 5, 7], ramp(105)),
    ]
}

fn sorted(mut t: Vec<NamedTensor>) -> Vec<NamedTensor> {
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn assert_bit_exact(got: &[NamedTensor], want: &[NamedTensor]) {
    assert_eq!(got.len(), want.len());
    for ((gn, gs, gd), (wn, ws, wd)) in got.iter().zip(want) {
        assert_eq!((gn, gs), (wn, ws));
        let bits = |d: &[f32]| d.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(gd), bits(wd), "tensor {gn}");
    }
}

#[test]
fn safetensors_round_trip_is_bit_exact() {
    let dir = scratch("st-roundtrip");
    let path = dir.join("w.safetensors");
    let tensors = odd_tensors();

    save_tensors(&path, &tensors, &BTreeMap::new()).unwrap();
    let (back, meta) = load_tensors(&path).unwrap();
    assert_bit_exact(&back, &sorted(tensors.clone()));
    assert!(meta.is_empty());

    let meta = BTreeMap::from([("epoch".to_string(), "3".to_string()), ("note".to_string(), "ü, \"quoted\"".to_string())]);
    save_tensors(&path, &tensors, &meta).unwrap();
    let (back, meta_back) = load_tensors(&path).unwrap();
    assert_bit_exact(&back, &sorted(tensors));
    assert_eq!(meta_back, meta);

    // It is a standard file: u64 header length, JSON header, F32 little-endian data.
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["one"]["dtype"], "F32");
    assert_eq!(header["b_odd"]["shape"], json!([3, 5, 7]));
    assert_eq!(names_in(&dir), ["w.safetensors"]);
}

#[test]
fn bad_tensor_files_are_errors_naming_the_file() {
    let dir = scratch("st-bad");
    let path = dir.join("w.safetensors");

    let err = load_tensors(&path).unwrap_err();
    assert!(err.to_string().contains("w.safetensors"), "{err}");

    save_tensors(&path, &odd_tensors(), &BTreeMap::new()).unwrap();
    let bytes = fs::read(&path).unwrap();
    for cut in [bytes.len() - 3, 20, 4, 0] {
        fs::write(&path, &bytes[..cut]).unwrap();
        let err = load_tensors(&path).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        assert!(err.to_string().contains("w.safetensors") && err.to_string().contains("truncated"), "{err}");
    }
    let mut garbage = bytes.clone();
    garbage[8..20].copy_from_slice(b"not json!!!!");
    fs::write(&path, &garbage).unwrap();
    let err = load_tensors(&path).unwrap_err();
    assert!(err.to_string().contains("w.safetensors"), "{err}");

    // A tensor of another dtype is named.
    let ints = [1i32, 2, 3];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![3], bytemuck::cast_slice(&ints)).unwrap();
    fs::write(&path, safetensors::serialize([("labels", view)], None).unwrap()).unwrap();
    let err = load_tensors(&path).unwrap_err().to_string();
    assert!(err.contains("w.safetensors") && err.contains("labels") && err.contains("F32"), "{err}");

    // Saving checks lengths and names before writing anything.
    let bad: Vec<NamedTensor> = vec![("x".into(), vec![2, 2], vec![1.0; 3])];
    let err = save_tensors(&path, &bad, &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("[2, 2]"), "{err}");
    let twice: Vec<NamedTensor> = vec![("x".into(), vec![1], vec![1.0]), ("x".into(), vec![1], vec![2.0])];
    assert!(save_tensors(&path, &twice, &BTreeMap::new()).is_err());
}

fn config() -> Value {
    json!({
        "train": {"epochs": 10, "lr": 0.025, "batch": 64},
        "space": {"ops": ["skip_connect", "sep_conv_3x3"], "nodes": 4},
        "resume_ignore": {"out": "/runs/a", "adapter": "llvmpipe"}
    })
}

#[test]
fn run_dir_create_refuses_folders_it_should_not_write_into() {
    let root = scratch("rundir-create");
    let run = RunDir::create(&root.join("new").join("nested"), &config()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&fs::read(run.config_path()).unwrap()).unwrap(), config());
    assert_eq!(run.checkpoint_path(), run.dir().join("supernet.safetensors"));
    assert_eq!(run.state_path(), run.dir().join("state.json"));
    assert_eq!(run.metrics_path(), run.dir().join("metrics.jsonl"));
    assert_eq!(run.history_path(), run.dir().join("history.jsonl"));
    // The writer's lock is there while the run is held, and gone when it is dropped.
    assert_eq!(names_in(run.dir()), ["config.json", "lock", "manifest.json"]);

    let empty = root.join("empty");
    fs::create_dir(&empty).unwrap();
    RunDir::create(&empty, &config()).unwrap();

    let other = root.join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("thesis.tex"), b"precious").unwrap();
    let err = RunDir::create(&other, &config()).unwrap_err().to_string();
    assert!(err.contains("other") && err.contains("not a cellnas run"), "{err}");
    assert_eq!(names_in(&other), ["thesis.tex"]);

    let err = RunDir::create(run.dir(), &config()).unwrap_err().to_string();
    assert!(err.contains("already holds a cellnas run"), "{err}");
    let dir = run.dir().to_path_buf();
    drop(run);
    assert_eq!(names_in(&dir), ["config.json", "manifest.json"]);
}

#[test]
fn resume_lists_every_differing_field_and_respects_resume_ignore() {
    let root = scratch("rundir-resume");
    let dir = root.join("run");
    RunDir::create(&dir, &config()).unwrap();
    RunDir::resume(&dir, &config()).unwrap();

    // What is under resume_ignore may change, at any depth.
    let mut moved = config();
    moved["resume_ignore"] = json!({"out": "/elsewhere", "adapter": "NVIDIA H200"});
    moved["train"]["resume_ignore"] = json!({"log_every": 5});
    RunDir::resume(&dir, &moved).unwrap();

    let mut changed = config();
    changed["train"]["epochs"] = json!(12);
    changed["train"]["lr"] = json!(0.1);
    changed["space"]["ops"][1] = json!("dil_conv_3x3");
    changed["space"].as_object_mut().unwrap().remove("nodes");
    changed["seed"] = json!(7);
    let err = RunDir::resume(&dir, &changed).unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    let msg = err.to_string();
    for line in [
        "train.epochs: stored 10, given 12",
        "train.lr: stored 0.025, given 0.1",
        "space.ops[1]: stored \"sep_conv_3x3\", given \"dil_conv_3x3\"",
        "space.nodes: stored 4, given (absent)",
        "seed: stored (absent), given 7",
    ] {
        assert!(msg.contains(line), "missing '{line}' in:\n{msg}");
    }
    assert!(msg.contains("config.json") && !msg.contains("resume_ignore"), "{msg}");

    assert!(config_diff(&json!({"a": 10}), &json!({"a": 10.0})).is_empty());
    assert_eq!(config_diff(&json!({"a": 1}), &json!({"a": 2})), ["a: stored 1, given 2"]);

    let err = RunDir::resume(&root.join("missing"), &config()).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("no such run folder"), "{err}");
    let not_run = root.join("not-run");
    fs::create_dir(&not_run).unwrap();
    let err = RunDir::resume(&not_run, &config()).unwrap_err().to_string();
    assert!(err.contains("not a cellnas run"), "{err}");
}

#[test]
fn resume_sweeps_temp_files_left_by_a_killed_writer() {
    let dir = scratch("rundir-sweep");
    let run = RunDir::create(&dir.join("run"), &config()).unwrap();
    // Pid 4294967295 is never alive; the sweep keeps this process's own temp files.
    let stale = run.dir().join(".supernet.safetensors.tmp-4294967295-0");
    fs::write(&stale, b"half a checkpoint").unwrap();
    // While the run is held, a resume is refused before it sweeps: the temp file could be the
    // holder's write in progress.
    assert!(matches!(RunDir::resume(run.dir(), &config()), Err(Error::Locked { .. })));
    assert!(stale.is_file());
    let dir = run.dir().to_path_buf();
    drop(run);
    drop(RunDir::resume(&dir, &config()).unwrap());
    assert_eq!(names_in(&dir), ["config.json", "manifest.json"]);
}

#[test]
fn one_writer_at_a_time_and_readers_do_not_count() {
    let root = scratch("rundir-lock");
    let dir = root.join("run");
    let run = RunDir::create(&dir, &config()).unwrap();
    let clone = run.clone();
    drop(run);
    // A clone keeps the lock; a second writer is refused with the holder named, whatever its
    // config, and so is a new run in the folder.
    let pid = format!("pid {}", std::process::id());
    for given in [config(), json!({"other": 1})] {
        let err = RunDir::resume(&dir, &given).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&pid) && msg.contains(&dir.display().to_string()) && msg.contains("another cellnas process"), "{msg}");
    }
    assert!(RunDir::create(&dir, &config()).is_err());
    // Readers take no lock.
    let reader = RunDir::open(&dir);
    assert_eq!(reader.config_path(), clone.config_path());
    drop(clone);
    assert_eq!(names_in(&dir), ["config.json", "manifest.json"]);
    let resumed = RunDir::resume(&dir, &config()).unwrap();
    assert!(RunDir::resume(&dir, &config()).is_err());
    drop(resumed);
    drop(reader);
    RunDir::resume(&dir, &config()).unwrap();
}

#[test]
fn a_stale_lock_is_taken_over_and_does_not_make_a_folder_non_empty() {
    let root = scratch("rundir-stale-lock");
    // A lock naming a pid above any pid_max: its holder is gone.
    let stale = json!({"pid": 4_000_000_000u32, "start_ticks": 1, "since_unix": 0,
                       "host": fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
                       "command": "cellnas search --out run"});
    if !Path::new("/proc/self/stat").exists() {
        return; // without /proc a lock's holder cannot be checked, so it is never taken over
    }
    // A folder holding only a killed writer's lock is still empty for a new run.
    let fresh = root.join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    fs::write(fresh.join("lock"), stale.to_string()).unwrap();
    let run = RunDir::create(&fresh, &config()).unwrap();
    let lock: Value = serde_json::from_slice(&fs::read(fresh.join("lock")).unwrap()).unwrap();
    assert_eq!(lock["pid"], std::process::id());
    drop(run);

    // A killed writer's lock and temp file in a run: the resume takes over, then sweeps.
    fs::write(fresh.join("lock"), stale.to_string()).unwrap();
    fs::write(fresh.join(".state.json.tmp-4294967295-3"), b"{").unwrap();
    drop(RunDir::resume(&fresh, &config()).unwrap());
    assert_eq!(names_in(&fresh), ["config.json", "manifest.json"]);
}

#[test]
fn jsonl_tolerates_a_cut_last_line_and_rejects_a_corrupt_middle_line() {
    let dir = scratch("jsonl");
    let path = dir.join("metrics.jsonl");
    let (none, warning) = read_jsonl::<Value>(&path).unwrap();
    assert!(none.is_empty() && warning.is_empty());

    for epoch in 0..3 {
        append_jsonl(&path, &json!({"epoch": epoch, "loss": 1.0 / (epoch as f64 + 1.0)})).unwrap();
    }
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["epoch"], 2);
    assert!(warning.is_empty(), "{warning:?}");

    // A kill mid-append leaves part of a line.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, br#"{"epoch": 3, "lo"#).unwrap();
    drop(f);
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.len(), 3);
    let warning = warning.join("\n");
    assert!(warning.contains("metrics.jsonl") && warning.contains("line 4"), "{warning}");

    // The next append cuts the partial line off instead of gluing onto it.
    append_jsonl(&path, &json!({"epoch": 3, "loss": 0.2})).unwrap();
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.iter().map(|r| r["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(warning.is_empty(), "{warning:?}");

    // A bad line that is not the last is corruption, not a kill.
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"epoch\": 1, \"loss\": oops}";
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = read_jsonl::<Value>(&path).unwrap_err();
    assert!(matches!(err, Error::Jsonl { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("metrics.jsonl, line 2"), "{err}");

    // So is a complete last line (it has its newline) that is not valid.
    fs::write(&path, "{\"epoch\": 0}\nnot json\n").unwrap();
    assert!(matches!(read_jsonl::<Value>(&path).unwrap_err(), Error::Jsonl { line: 2, .. }));
}

/// Three checksummed lines in `name`, and their text.
fn three_lines(name: &str) -> (std::path::PathBuf, Vec<String>) {
    let path = scratch(name).join("history.jsonl");
    for id in 0..3 {
        append_jsonl(&path, &json!({"id": id, "genotype": "normal=[('sep_conv_3x3', 0)]", "accuracy": 0.25 + id as f64 / 8.0})).unwrap();
    }
    let lines = fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    (path, lines)
}

#[test]
fn jsonl_lines_carry_a_checksum_that_jq_can_ignore_and_readers_never_see() {
    let (path, lines) = three_lines("jsonl-crc");
    for line in &lines {
        // Still one JSON object per line, the checksum its last field.
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["crc32"].as_str().unwrap().len(), 8, "{line}");
        assert!(line.ends_with("\"}"), "{line}");
    }
    let (rows, warnings) = read_jsonl::<Value>(&path).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(rows[1], json!({"id": 1, "genotype": "normal=[('sep_conv_3x3', 0)]", "accuracy": 0.375}));
    // An empty record still makes a valid line.
    let empty = scratch("jsonl-empty").join("e.jsonl");
    append_jsonl(&empty, &json!({})).unwrap();
    assert_eq!(read_jsonl::<Value>(&empty).unwrap().0, [json!({})]);
    assert!(append_jsonl(&empty, &json!([1, 2])).is_err(), "a record must be an object");
}

#[test]
fn jsonl_line_changed_after_writing_is_an_error_naming_the_line() {
    let (path, lines) = three_lines("jsonl-changed");
    let write = |middle: &str| fs::write(&path, format!("{}\n{middle}\n{}\n", lines[0], lines[2])).unwrap();
    let expect = |what: &str| {
        let err = read_jsonl::<Value>(&path).unwrap_err();
        assert!(matches!(err, Error::Jsonl { line: 2, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("history.jsonl, line 2: ") && text.contains(what), "{text}");
    };
    // A flipped bit inside a string value: still valid JSON, only the checksum tells.
    let mut flipped = lines[1].clone().into_bytes();
    let at = lines[1].find("sep_conv").unwrap();
    flipped[at] ^= 0x01;
    write(std::str::from_utf8(&flipped).unwrap());
    expect("checksum mismatch (stored ");
    expect("the line was changed after cellnas wrote it");
    // A hand-edited number.
    write(&lines[1].replace("0.375", "0.975"));
    expect("checksum mismatch");
    // A damaged checksum field.
    write(&lines[1].replace("\"crc32\":\"", "\"crc32\":\"z"));
    expect("\"crc32\" field is damaged");
    // A line without a checksum after checksummed ones was not written by cellnas.
    write(r#"{"id": 1, "accuracy": 0.375}"#);
    expect("no checksum");
    // The same damage on an unterminated last line is what a kill leaves: dropped, as before.
    fs::write(&path, format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..lines[2].len() - 3])).unwrap();
    let (rows, warnings) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!((rows.len(), warnings.len()), (2, 1), "{warnings:?}");
    assert!(warnings[0].contains("line 3: dropped an incomplete last line"), "{warnings:?}");
}

#[test]
fn jsonl_from_an_older_cellnas_without_checksums_is_read_with_one_warning() {
    let (path, lines) = three_lines("jsonl-old");
    let old: Vec<String> = (0..2).map(|id| json!({"id": id, "accuracy": 0.5}).to_string()).collect();
    // An old run resumed by this cellnas: old lines first, then checksummed ones.
    fs::write(&path, format!("{}\n{}\n{}\n", old[0], old[1], lines[2])).unwrap();
    let (rows, warnings) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("history.jsonl: lines 1-2 written by an older cellnas") && warnings[0].contains("not verified"), "{warnings:?}");
    // Appending to it works and the new line is checked.
    append_jsonl(&path, &json!({"id": 3})).unwrap();
    assert_eq!(read_jsonl::<Value>(&path).unwrap().0.len(), 4);
}

fn weights(scale: f32) -> Vec<NamedTensor> {
    vec![
        ("alpha.normal".into(), vec![14, 8], (0..112).map(|i| i as f32 * scale).collect()),
        ("stem.conv.w".into(), vec![16, 3, 3, 3], (0..432).map(|i| (i as f32).cos() * scale).collect()),
    ]
}

#[test]
fn checkpoint_round_trip_and_a_kill_between_weights_and_state() {
    let dir = scratch("ckpt");
    let run = RunDir::create(&dir.join("run"), &config()).unwrap();
    assert!(load_checkpoint(&run).unwrap().is_none());

    let err = save_checkpoint(&run, &weights(1.0), &json!({"step": 3})).unwrap_err().to_string();
    assert!(err.contains("epoch"), "{err}");

    save_checkpoint(&run, &weights(1.0), &json!({"epoch": 1, "rng": [1, 2]})).unwrap();
    let (t, state) = load_checkpoint(&run).unwrap().unwrap();
    assert_bit_exact(&t, &weights(1.0));
    assert_eq!(state, json!({"epoch": 1, "rng": [1, 2]}));
    let state_file: Value = serde_json::from_slice(&fs::read(run.state_path()).unwrap()).unwrap();
    assert_eq!(state_file["epoch"], 1);
    assert_eq!(state_file["weights"], "supernet.safetensors");
    assert!(state_file["weights_fnv1a64"].as_str().is_some_and(|h| h.len() == 16));

    // The weights file alone is a standard safetensors file with its epoch in the metadata.
    let (_, meta) = load_tensors(&run.checkpoint_path()).unwrap();
    assert_eq!(meta["cellnas.epoch"], "1");

    // Killed after writing epoch 2's weights, before its state: state.json still says epoch 1.
    let epoch1_state = fs::read(run.state_path()).unwrap();
    save_checkpoint(&run, &weights(2.0), &json!({"epoch": 2})).unwrap();
    fs::write(run.state_path(), &epoch1_state).unwrap();
    let (t, state) = load_checkpoint(&run).unwrap().unwrap();
    assert_bit_exact(&t, &weights(2.0));
    assert_eq!(state, json!({"epoch": 2}));

    // Killed before the very first state.json.
    let run2 = RunDir::create(&dir.join("run2"), &config()).unwrap();
    save_checkpoint(&run2, &weights(3.0), &json!({"epoch": 0})).unwrap();
    fs::remove_file(run2.state_path()).unwrap();
    let (t, state) = load_checkpoint(&run2).unwrap().unwrap();
    assert_bit_exact(&t, &weights(3.0));
    assert_eq!(state["epoch"], 0);
    assert_eq!(names_in(run2.dir()), ["config.json", "lock", "manifest.json", "supernet.safetensors"]);
}

#[test]
fn checkpoint_state_and_weights_mismatch_is_an_error() {
    let dir = scratch("ckpt-mismatch");
    let run = RunDir::create(&dir.join("run"), &config()).unwrap();
    save_checkpoint(&run, &weights(1.0), &json!({"epoch": 1})).unwrap();
    save_checkpoint(&run, &weights(2.0), &json!({"epoch": 2})).unwrap();
    let epoch2_weights = fs::read(run.checkpoint_path()).unwrap();

    // Weights written by something else (no run id).
    save_tensors(&run.checkpoint_path(), &weights(2.0), &BTreeMap::new()).unwrap();
    let err = load_checkpoint(&run).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }));
    let msg = err.to_string();
    assert!(msg.contains("supernet.safetensors") && msg.contains("no run") && msg.contains("refusing"), "{msg}");
    // The same in a folder an older cellnas wrote (no run ids anywhere): caught by the hash.
    let legacy = RunDir::open(run.dir());
    let msg = load_checkpoint(&legacy).unwrap_err().to_string();
    assert!(msg.contains("supernet.safetensors") && msg.contains("epoch 2") && msg.contains("refusing to mix"), "{msg}");

    // Weights of another run's checkpoint, and then that run's whole checkpoint pair: both are
    // consistent cellnas checkpoints, refused by run id.
    let other = RunDir::create(&dir.join("other"), &config()).unwrap();
    save_checkpoint(&other, &weights(5.0), &json!({"epoch": 5})).unwrap();
    fs::copy(other.checkpoint_path(), run.checkpoint_path()).unwrap();
    let msg = load_checkpoint(&run).unwrap_err().to_string();
    assert!(msg.contains(other.run_id().unwrap()) && msg.contains(run.run_id().unwrap()) && msg.contains("copied from another run"), "{msg}");
    fs::copy(other.state_path(), run.state_path()).unwrap();
    let msg = load_checkpoint(&run).unwrap_err().to_string();
    assert!(msg.contains("copied from another run"), "{msg}");
    fs::write(run.checkpoint_path(), &epoch2_weights).unwrap();
    let msg = load_checkpoint(&run).unwrap_err().to_string();
    assert!(msg.contains("state.json") && msg.contains("copied from another run"), "{msg}");

    // An older weights file of this run (epoch 1 under epoch 2's state) is not accepted either.
    let run3 = RunDir::create(&dir.join("run3"), &config()).unwrap();
    save_checkpoint(&run3, &weights(1.0), &json!({"epoch": 1})).unwrap();
    let epoch1_weights = fs::read(run3.checkpoint_path()).unwrap();
    save_checkpoint(&run3, &weights(2.0), &json!({"epoch": 2})).unwrap();
    fs::write(run3.checkpoint_path(), &epoch1_weights).unwrap();
    assert!(load_checkpoint(&run3).unwrap_err().to_string().contains("holds epoch 1"));

    // state.json edited by hand: the epoch set back to 0 everywhere in it, or in one place.
    let run4 = RunDir::create(&dir.join("run4"), &config()).unwrap();
    save_checkpoint(&run4, &weights(2.0), &json!({"epoch": 2})).unwrap();
    let original = fs::read_to_string(run4.state_path()).unwrap();
    assert_eq!(original.matches("\"epoch\": 2").count(), 2, "{original}");
    fs::write(run4.state_path(), original.replace("\"epoch\": 2", "\"epoch\": 0")).unwrap();
    let msg = load_checkpoint(&run4).unwrap_err().to_string();
    assert!(msg.contains("state.json") && msg.contains("changed after cellnas wrote it"), "{msg}");
    fs::write(run4.state_path(), original.replacen("\"epoch\": 2", "\"epoch\": 0", 1)).unwrap();
    let msg = load_checkpoint(&run4).unwrap_err().to_string();
    assert!(msg.contains("state.json") && msg.contains("edited"), "{msg}");

    // State without weights, and a truncated weights file.
    fs::remove_file(run.checkpoint_path()).unwrap();
    let msg = load_checkpoint(&run).unwrap_err().to_string();
    assert!(msg.contains("supernet.safetensors") && msg.contains("missing"), "{msg}");
    fs::write(run.checkpoint_path(), &epoch2_weights[..epoch2_weights.len() / 2]).unwrap();
    let msg = load_checkpoint(&run).unwrap_err().to_string();
    assert!(msg.contains("supernet.safetensors") && msg.contains("truncated"), "{msg}");
}

#[test]
fn download_named_round_trips_through_the_gpu_and_disk() {
    let gpu = test_gpu();
    let host = odd_tensors();
    let on_gpu: Vec<(String, Tensor)> =
        host.iter().map(|(n, s, d)| (n.clone(), Tensor::from_slice(&gpu, s, d).unwrap())).collect();
    let named: Vec<(String, &Tensor)> = on_gpu.iter().map(|(n, t)| (n.clone(), t)).collect();
    let back = download_named(&gpu, &named).unwrap();
    assert_bit_exact(&back, &host);

    let dir = scratch("gpu");
    let path = dir.join("w.safetensors");
    save_tensors(&path, &back, &BTreeMap::new()).unwrap();
    let (loaded, _) = load_tensors(&path).unwrap();
    assert_bit_exact(&loaded, &sorted(host));
    assert!(download_named(&gpu, &[]).unwrap().is_empty());
}
