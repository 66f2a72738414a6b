//! One writer per run folder, as a user meets it: a second `cellnas search --resume` on a run
//! that is still going is refused (instead of both appending to its history), and a lock left
//! by a killed process does not stop the run from being resumed.

mod common;

use common::{fails, ok, run, tmp};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TINY: &[&str] = &[
    "--train-limit", "96", "--batch-size", "32", "--epochs", "2", "--channels", "4", "--layers", "3", "--nodes", "2",
    "--budget", "6", "--val", "48", "--recalibration-batches", "1", "--quiet", "--seed", "5",
];
const BUDGET: usize = 6;

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// This process's start time as `/proc/self/stat` gives it (field 22), if there is a `/proc`.
fn own_start_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn plant_lock(dir: &Path, pid: u32, start_ticks: Option<u64>) {
    let lock = serde_json::json!({
        "pid": pid, "start_ticks": start_ticks, "since_unix": 1_795_988_169u64, "host": hostname(),
        "command": "cellnas search --out run",
    });
    std::fs::write(dir.join("lock"), lock.to_string()).unwrap();
}

#[test]
fn a_second_writer_is_refused_while_the_first_runs_and_the_run_stays_whole() {
    let dir = tmp("lock-busy");
    let s = dir.to_str().unwrap();
    let mut args = vec!["search", "--out", s];
    args.extend_from_slice(TINY);
    let mut first = Command::new(env!("CARGO_BIN_EXE_cellnas")).args(&args).stdout(Stdio::null()).spawn().expect("spawn cellnas");
    let t0 = Instant::now();
    while !dir.join("lock").is_file() {
        assert!(first.try_wait().unwrap().is_none(), "the first search ended before its lock was seen");
        assert!(t0.elapsed() < Duration::from_secs(120), "no lock file after 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = run(&["search", "--resume", s, "--quiet"]);
    // The refusal is only meaningful while the first one still runs.
    assert!(first.try_wait().unwrap().is_none(), "the first search finished too soon for this test");
    let pid = format!("pid {}", first.id());
    fails(second, &[s, &pid, "being written by another cellnas process", "cellnas search --out"]);
    // A new run in the same folder is refused too (whether or not config.json is there yet).
    fails(run(&args), &[s]);

    assert!(first.wait().unwrap().success());
    assert_eq!(lines(&dir.join("history.jsonl")), BUDGET);
    assert!(!dir.join("lock").exists(), "the lock outlived its writer");
    // The finished run resumes (a no-op) now that nobody holds it.
    ok(run(&["search", "--resume", s, "--quiet"]));
    assert_eq!(lines(&dir.join("history.jsonl")), BUDGET);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_lock_is_taken_over_and_a_live_one_is_not() {
    let Some(ticks) = own_start_ticks() else {
        return; // without /proc no lock counts as stale (the user is told to delete it)
    };
    let dir = tmp("lock-stale");
    let s = dir.to_str().unwrap();
    // A search killed so early that it left only its lock: a new run may start there.
    std::fs::create_dir_all(&dir).unwrap();
    plant_lock(&dir, 4_000_000_000, Some(1));
    let mut args = vec!["search", "--out", s];
    args.extend_from_slice(TINY);
    ok(run(&args));
    assert_eq!(lines(&dir.join("history.jsonl")), BUDGET);

    // A lock naming a live process (this test) is respected, with the holder in the message...
    plant_lock(&dir, std::process::id(), Some(ticks));
    fails(run(&["search", "--resume", s, "--quiet"]), &[&format!("pid {}", std::process::id()), "2026-11-29 21:36:09 UTC"]);
    // ...but not one whose pid now belongs to a process that started later (a reused pid).
    plant_lock(&dir, std::process::id(), Some(ticks + 1));
    ok(run(&["search", "--resume", s, "--quiet"]));
    assert!(!dir.join("lock").exists());
    // Nor a garbled one that is not new (its writer was killed writing it).
    std::fs::write(dir.join("lock"), b"{\"pid\": 1").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options().write(true).open(dir.join("lock")).unwrap().set_modified(old).unwrap();
    ok(run(&["search", "--resume", s, "--quiet"]));
    assert_eq!(lines(&dir.join("history.jsonl")), BUDGET);
    let _ = std::fs::remove_dir_all(&dir);
}
