//! `cellnas search / eval / train / genotype` as a user runs them, on tiny settings: a run
//! killed at any point and resumed equals an uninterrupted one; bad input gives a clear error
//! and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TINY: &[&str] = &[
    "--train-limit", "96", "--batch-size", "32", "--epochs", "2", "--channels", "4", "--layers", "3", "--nodes", "2",
    "--budget", "6", "--val", "48", "--recalibration-batches", "1", "--quiet", "--seed", "5",
];

const DARTS_TEXT: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellnas"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run cellnas")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn search_args<'a>(out_flag: &'a str, dir: &'a str) -> Vec<&'a str> {
    let mut v = vec!["search", out_flag, dir];
    v.extend_from_slice(TINY);
    v
}

/// Fails with stderr when the command did not succeed.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails unless the command exits 1 with an error line containing every `needle`, no panic.
fn fails(o: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "expected a clean failure, got {:?}\n{err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}':\n{err}");
    }
}

/// History as (genotype, accuracy bits, loss bits): what must equal across interrupted runs.
fn history(dir: &Path) -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["genotype"].as_str().unwrap().to_string(), v["accuracy"].as_f64().unwrap().to_bits(), v["loss"].as_f64().unwrap().to_bits())
        })
        .collect()
}

fn weights(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let (t, _) = cellnas::run::load_tensors(&dir.join("supernet.safetensors")).unwrap();
    t.into_iter().map(|(n, s, v)| (n, s, v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Start a search and SIGKILL it as soon as `file` has `n` lines.
fn kill_when(args: &[&str], file: &Path, n: usize) {
    let mut child = bin().args(args).spawn().expect("spawn cellnas");
    let t0 = Instant::now();
    while lines(file) < n && t0.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return; // finished before the kill point: resuming a finished run must be a no-op
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killed_and_resumed_run_equals_an_uninterrupted_one() {
    let a = tmp("whole");
    ok(run(&search_args("--out", a.to_str().unwrap())));
    for f in ["config.json", "supernet.safetensors", "state.json", "metrics.jsonl", "history.jsonl", "best.json", "best.genotype.txt"] {
        assert!(a.join(f).exists(), "run folder lacks {f}");
    }
    assert_eq!(lines(&a.join("history.jsonl")), 6);

    let b = tmp("killed");
    let bs = b.to_str().unwrap();
    // Killed during training (after the first epoch's metrics), then during the search.
    kill_when(&search_args("--out", bs), &b.join("metrics.jsonl"), 1);
    kill_when(&["search", "--resume", bs, "--quiet"], &b.join("history.jsonl"), 2);
    // A kill mid-write leaves a partial last line: resume must drop it.
    std::fs::OpenOptions::new().append(true).open(b.join("history.jsonl")).and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"id\": 9, \"geno")).unwrap();
    ok(run(&["search", "--resume", bs, "--quiet"]));

    assert_eq!(history(&a), history(&b));
    assert_eq!(std::fs::read_to_string(a.join("best.genotype.txt")).unwrap(), std::fs::read_to_string(b.join("best.genotype.txt")).unwrap());
    assert!(weights(&a) == weights(&b), "supernet weights differ after resume");
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn resume_refuses_a_changed_config_and_a_folder_that_is_not_a_run() {
    let a = tmp("refuse");
    let s = a.to_str().unwrap();
    ok(run(&search_args("--out", s)));
    fails(run(&["search", "--resume", s, "--epochs", "3", "--quiet"]), &["train.epochs: stored 2, given 3"]);
    fails(run(&search_args("--out", s)), &[s]);
    let empty = tmp("not-a-run");
    std::fs::create_dir_all(&empty).unwrap();
    fails(run(&["search", "--resume", empty.to_str().unwrap()]), &["not a cellnas run"]);

    // eval: the inherited-weight score of a spec on this run's supernet.
    let spec = a.join("best.genotype.txt");
    let text = ok(run(&["eval", "--spec", spec.to_str().unwrap(), "--run", s]));
    assert!(text.contains("inherited-weight val accuracy"), "{text}");
    // The search's best.json (spec beside its metrics) is accepted as the same spec.
    let best = ok(run(&["eval", "--spec", a.join("best.json").to_str().unwrap(), "--run", s]));
    let score = |t: &str| t.split("; ").next().map(str::to_string);
    assert_eq!(score(&best), score(&text), "{best}\n{text}");
    let _ = std::fs::remove_dir_all(&a);
}

#[test]
fn impossible_configs_and_bad_data_are_clear_errors() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    fails(run(&["search", "--out", o, "--channels", "0"]), &["channels"]);
    fails(run(&["search", "--out", o, "--layers", "2"]), &["layers must be at least 3"]);
    fails(run(&["search", "--out", o, "--batch-size", "0"]), &["batch size"]);
    fails(run(&["search", "--out", o, "--ops", "sep_conv_7x7"]), &["sep_conv_7x7"]);
    fails(run(&["search", "--out", o, "--strategy", "annealing"]), &["annealing"]);
    fails(run(&["search", "--out", o, "--sampling", "greedy"]), &["greedy"]);

    let data = tmp("data");
    std::fs::create_dir_all(&data).unwrap();
    fails(run(&["search", "--out", o, "--data", data.to_str().unwrap()]), &["train-images-idx3-ubyte"]);
    // A truncated image file.
    let mut head = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    head.extend(vec![0u8; 100]);
    std::fs::write(data.join("train-images-idx3-ubyte"), &head).unwrap();
    std::fs::write(data.join("train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    std::fs::write(data.join("t10k-images-idx3-ubyte"), &head).unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    fails(run(&["search", "--out", o, "--data", data.to_str().unwrap()]), &["train-images-idx3-ubyte", "truncated"]);

    let spec = data.join("bad.txt");
    std::fs::write(&spec, DARTS_TEXT.replace("('max_pool_3x3', 1)", "('sep_conv_7x7', 1)")).unwrap();
    fails(run(&["train", "--spec", spec.to_str().unwrap(), "--out", o]), &["sep_conv_7x7", "bad.txt"]);
    fails(run(&["train", "--spec", "/no/such/spec.json", "--out", o]), &["/no/such/spec.json"]);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn darts_genotype_imports_trains_and_exports_back() {
    let dir = tmp("genotype");
    std::fs::create_dir_all(&dir).unwrap();
    let text_file = dir.join("darts.txt");
    std::fs::write(&text_file, DARTS_TEXT).unwrap();
    let json = ok(run(&["genotype", text_file.to_str().unwrap()]));
    let json_file = dir.join("spec.json");
    std::fs::write(&json_file, &json).unwrap();
    assert_eq!(ok(run(&["genotype", json_file.to_str().unwrap()])).trim(), DARTS_TEXT);

    let out = dir.join("train");
    let text = ok(run(&[
        "train", "--spec", json_file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--epochs", "1", "--channels", "4", "--layers", "3",
        "--train-limit", "64", "--batch-size", "32", "--quiet",
    ]));
    assert!(text.contains("test accuracy"), "{text}");
    let (tensors, meta) = cellnas::run::load_tensors(&out.join("weights.safetensors")).unwrap();
    assert_eq!(meta["genotype"], DARTS_TEXT);
    assert!(tensors.iter().any(|(n, _, _)| n.ends_with(".bn.weight")), "stand-alone BN is affine");
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["test_accuracy"].as_f64().unwrap() >= 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn legal_but_suspicious_settings_warn_and_still_run() {
    let dir = tmp("suspicious");
    std::fs::create_dir_all(&dir).unwrap();
    let warned = |o: Output, needles: &[&str]| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "exit {:?}\n{err}", o.status);
        for n in needles {
            assert!(err.lines().any(|l| l.starts_with("warning: ") && l.contains(n)), "stderr should warn '{n}':\n{err}");
        }
    };
    let s = dir.join("search");
    warned(
        run(&[
            "search", "--out", s.to_str().unwrap(), "--epochs", "0", "--ops", "sep_conv_3x3,max_pool_3x3", "--nodes", "1", "--budget", "20",
            "--val", "48", "--train-limit", "96", "--batch-size", "32", "--channels", "4", "--layers", "3", "--recalibration-batches", "1",
            "--quiet", "--seed", "5",
        ]),
        &[
            "--epochs 0: the supernet is not trained",
            "--val 48: a validation split of 48 images measures accuracy in steps of 2.08%",
            "--budget 20 is more than the 16 distinct architectures",
        ],
    );
    let spec = dir.join("cell.txt");
    std::fs::write(&spec, DARTS_TEXT).unwrap();
    let t = dir.join("train");
    warned(
        run(&[
            "train", "--spec", spec.to_str().unwrap(), "--out", t.to_str().unwrap(), "--epochs", "1", "--val", "20", "--train-limit", "64",
            "--batch-size", "32", "--channels", "4", "--layers", "3", "--precise-bn", "0", "--quiet",
        ]),
        &["--val 20: ", "one image is 5.00% of 20", "--train-limit 64 with --batch-size 32 gives 2 training steps per epoch"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spec_files_are_bounded_and_must_be_utf8() {
    let dir = tmp("bounded-spec");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    // A byte-order mark is skipped.
    let bom = file("bom.txt", &[b"\xEF\xBB\xBF", DARTS_TEXT.as_bytes()].concat());
    assert!(ok(run(&["genotype", &bom])).contains("\"version\": 1"));
    // A Latin-1 byte (as 'ö' would be saved) where DARTS text has a letter.
    let mut latin1 = DARTS_TEXT.as_bytes().to_vec();
    latin1[20] = 0xf6;
    let bad = file("latin1.txt", &latin1);
    fails(run(&["genotype", &bad]), &["latin1.txt: not UTF-8 text: byte 0xf6 at offset 20 (line 1)"]);
    let huge = file("huge.json", &vec![b' '; 2 << 20]);
    fails(run(&["genotype", &huge]), &["huge.json: 2097152 bytes, more than the 1048576 bytes"]);
    fails(run(&["genotype", "/dev/zero"]), &["/dev/zero: more than the 1048576 bytes"]);
    // serde_json's depth limit, not the stack, ends a deeply nested spec.
    let deep = file("deep.json", format!("{{\"version\": 1, \"genotype\": {}", "[".repeat(100_000)).as_bytes());
    fails(run(&["genotype", &deep]), &["deep.json", "recursion limit exceeded"]);
    // Node and concat lists are bounded like DARTS text's, whatever the file size allows.
    let cell = |nodes: usize, concat: usize| {
        let node = r#"[{"op": "sep_conv_3x3", "input": 0}, {"op": "sep_conv_3x3", "input": 1}]"#;
        let c = format!(r#"{{"nodes": [{}], "concat": [{}]}}"#, vec![node; nodes].join(","), vec!["2"; concat].join(","));
        format!(r#"{{"version": 1, "genotype": {{"normal": {c}, "reduce": {c}}}}}"#)
    };
    let many = file("many.json", cell(1025, 1).as_bytes());
    fails(run(&["genotype", &many]), &["many.json", "normal cell has 1025 intermediate nodes; at most 1024"]);
    let long = file("long.json", cell(2, 100_000).as_bytes());
    fails(run(&["genotype", &long]), &["long.json", "normal_concat lists 100000 nodes, but the cell has only 2"]);
    // train --spec reads through the same bounds.
    fails(run(&["train", "--spec", &huge, "--out", dir.join("t").to_str().unwrap()]), &["huge.json: 2097152 bytes"]);
    let _ = std::fs::remove_dir_all(&dir);
}
