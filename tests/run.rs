//! The run folder: atomic writes, safetensors weights, config checks on resume, JSON Lines logs
//! and checkpoints that survive a kill at any point.

use cellnas::run::{append_jsonl, read_jsonl, write_atomic, write_json_atomic, PendingWrite};
use cellnas::Error;
use serde_json::{json, Value};
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

#[test]
fn jsonl_tolerates_a_cut_last_line_and_rejects_a_corrupt_middle_line() {
    let dir = scratch("jsonl");
    let path = dir.join("metrics.jsonl");
    let (none, warning) = read_jsonl::<Value>(&path).unwrap();
    assert!(none.is_empty() && warning.is_none());

    for epoch in 0..3 {
        append_jsonl(&path, &json!({"epoch": epoch, "loss": 1.0 / (epoch as f64 + 1.0)})).unwrap();
    }
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["epoch"], 2);
    assert!(warning.is_none());

    // A kill mid-append leaves part of a line.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, br#"{"epoch": 3, "lo"#).unwrap();
    drop(f);
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.len(), 3);
    let warning = warning.expect("a warning for the dropped line");
    assert!(warning.contains("metrics.jsonl") && warning.contains("line 4"), "{warning}");

    // The next append cuts the partial line off instead of gluing onto it.
    append_jsonl(&path, &json!({"epoch": 3, "loss": 0.2})).unwrap();
    let (rows, warning) = read_jsonl::<Value>(&path).unwrap();
    assert_eq!(rows.iter().map(|r| r["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(warning.is_none());

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
