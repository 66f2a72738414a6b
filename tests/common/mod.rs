//! Helpers for tests that run the `cellnas` binary as a user would.
#![allow(dead_code)]

pub mod graph;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellnas")).args(args).output().expect("run cellnas")
}

/// A fresh, absent folder under the temp dir, unique to this process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Fails with stderr when the command did not succeed; returns stdout.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails unless the command exits 1 with an error containing every `needle`, no panic.
pub fn fails(o: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "expected a clean failure, got {:?}\n{err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}':\n{err}");
    }
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Owned args as the `&str`s `run` takes.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A run folder's history.jsonl, each line without the fields that are wall-clock facts.
pub fn history_without_clock(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["time", "eval_ms", "train_seconds", "crc32"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

/// Starts `cellnas args` and SIGKILLs it as soon as `ready()` (polled every 2 ms, for at most
/// five minutes); whether it was killed (false: it finished first).
pub fn kill_when(args: &[&str], ready: impl Fn() -> bool) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellnas")).args(args).spawn().expect("spawn cellnas");
    let t0 = std::time::Instant::now();
    while !ready() && t0.elapsed() < std::time::Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

/// Lines in a file (0 when it does not exist yet).
pub fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}
