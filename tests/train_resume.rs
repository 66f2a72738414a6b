//! Mid-epoch checkpoints: `cellnas train` and `cellnas search` killed inside an epoch and
//! resumed end bitwise equal to an uninterrupted run (weights, per-epoch metrics, results).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const GENOTYPE: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])";

// 10 steps per epoch, a checkpoint after every step (0.00001 minutes is less than a step).
const TRAIN: &[&str] = &[
    "--channels", "4", "--layers", "3", "--train-limit", "160", "--batch-size", "16", "--epochs", "2", "--seed", "3",
    "--cutout", "4", "--quiet", "--checkpoint-minutes", "0.00001",
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellnas"))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// (epoch, step) of the run's last checkpoint; (0, 0) before the first.
fn position(dir: &Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else { return (0, 0) };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return (0, 0) };
    let s = &v["state"];
    (s["epoch"].as_u64().unwrap_or(0), s["progress"]["step"].as_u64().unwrap_or(0))
}

/// Run cellnas and SIGKILL it once its last checkpoint is at (epoch, step) or later. Returns
/// whether it was killed (a fast machine may finish first; resuming then must be a no-op).
fn kill_at(args: &[&str], dir: &Path, at: (u64, u64)) -> bool {
    let mut child = bin().args(args).spawn().expect("spawn cellnas");
    let t0 = Instant::now();
    while position(dir) < at && t0.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = cellnas::run::load_tensors(path).unwrap();
    t.into_iter().map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn test_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(bin().args(["test", "--run", dir.to_str().unwrap(), "--json"]).output().unwrap())).unwrap()
}

/// Per-epoch (loss, accuracy) bits from metrics.jsonl: time fields differ between runs.
fn epochs(dir: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["loss"].as_f64().unwrap().to_bits(), v["accuracy"].as_f64().unwrap().to_bits())
        })
        .collect()
}

#[test]
fn train_killed_mid_epoch_and_resumed_equals_an_uninterrupted_run() {
    let dir = tmp("train");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("cell.txt");
    std::fs::write(&spec, GENOTYPE).unwrap();
    let spec = spec.to_str().unwrap();
    let run = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--spec", spec, "--out", out.to_str().unwrap()].map(String::from).to_vec();
        v.extend(TRAIN.iter().map(|s| s.to_string()));
        v
    };

    let a = dir.join("whole");
    let whole = ok(bin().args(run(&a)).output().unwrap());
    let b = dir.join("killed");
    let bs = b.to_str().unwrap();
    // Inside the first epoch, then inside the second; the resumes take the stored config.
    let first = run(&b);
    let killed = kill_at(&first.iter().map(String::as_str).collect::<Vec<_>>(), &b, (0, 4));
    assert!(killed, "the run finished before it could be killed mid-epoch");
    assert_eq!(position(&b).0, 0, "killed in the first epoch");
    kill_at(&["train", "--resume", bs, "--quiet", "--checkpoint-minutes", "0.00001"], &b, (1, 3));
    // `cellnas test` follows an unfinished run on its latest checkpoint, and leaves the temp
    // files of the writer it may be running beside alone.
    let writing = b.join(".checkpoint.safetensors.tmp-4294967295-0");
    std::fs::write(&writing, b"half a checkpoint").unwrap();
    let t = test_json(&b);
    assert!(writing.is_file(), "cellnas test deleted a live writer's temp file");
    assert_eq!(t["finished"], false, "{t}");
    let (epoch, step) = position(&b);
    assert_eq!((t["epoch"].as_u64(), t["step"].as_u64()), (Some(epoch), (step > 0).then_some(step)), "{t}");
    assert!((0.0..=1.0).contains(&t["test_accuracy"].as_f64().unwrap()), "{t}");
    let resumed = ok(bin().args(["train", "--resume", bs, "--quiet"]).output().unwrap());

    assert_eq!(epochs(&a), epochs(&b));
    assert_eq!(epochs(&a).len(), 2);
    assert!(bits(&a.join("weights.safetensors")) == bits(&b.join("weights.safetensors")), "weights differ after resume");
    let acc = |s: &str| s.split("test accuracy ").nth(1).and_then(|r| r.split('%').next()).map(str::to_string);
    assert_eq!(acc(&whole), acc(&resumed), "{whole}\n{resumed}");
    // On a finished run it tests the saved weights: the same accuracy and loss as training
    // reported, bit for bit (BN running statistics included in the file).
    let t = test_json(&a);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.join("metrics.json")).unwrap()).unwrap();
    assert_eq!((t["finished"].as_bool(), t["epoch"].as_u64()), (Some(true), Some(2)), "{t}");
    for k in ["test_accuracy", "test_loss"] {
        assert_eq!(t[k].as_f64().map(f64::to_bits), m[k].as_f64().map(f64::to_bits), "{k}: {t} vs {m}");
    }
    let o = bin().args(["test", "--run", spec]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("config.json"), "test on a folder that is not a run must name what is missing: {err}");

    // A resume must not change the config: a different flag is refused, naming the field.
    let o = bin().args(["train", "--resume", bs, "--epochs", "3"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("train.epochs"), "{err}");
    let o = bin().args(["train", "--out", dir.join("none").to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--spec"), "train without --spec or --resume must say what it needs");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn search_killed_mid_epoch_and_resumed_equals_an_uninterrupted_run() {
    let args = |flag: &'static str, out: &Path| -> Vec<String> {
        let mut v: Vec<String> = vec!["search".into(), flag.into(), out.to_str().unwrap().into()];
        for a in [
            "--train-limit", "160", "--batch-size", "16", "--epochs", "1", "--channels", "4", "--layers", "3", "--nodes", "2", "--budget", "2",
            "--val", "32", "--recalibration-batches", "1", "--quiet", "--seed", "4", "--sampling", "fair", "--checkpoint-minutes", "0.00001",
        ] {
            v.push(a.into());
        }
        v
    };
    let a = tmp("search-whole");
    ok(bin().args(args("--out", &a)).output().unwrap());
    let b = tmp("search-killed");
    let first: Vec<String> = args("--out", &b);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    assert!(kill_at(&first, &b, (0, 5)), "the search finished before it could be killed mid-epoch");
    ok(bin().args(["search", "--resume", b.to_str().unwrap(), "--quiet"]).output().unwrap());
    assert_eq!(epochs(&a), epochs(&b));
    assert!(bits(&a.join("supernet.safetensors")) == bits(&b.join("supernet.safetensors")), "supernet weights differ after resume");
    let scores = |d: &Path| -> Vec<(String, String)> {
        let text = std::fs::read_to_string(d.join("history.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["genotype"].to_string(), v["accuracy"].to_string()))
            .collect()
    };
    assert_eq!(scores(&a), scores(&b));
    assert_eq!(std::fs::read_to_string(a.join("best.genotype.txt")).unwrap(), std::fs::read_to_string(b.join("best.genotype.txt")).unwrap());
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
