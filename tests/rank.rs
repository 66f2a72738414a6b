//! `cellnas rank` as a user runs it, on tiny settings: the report holds every architecture
//! with both scores and the statistics; a killed rank resumes without redoing finished
//! trainings and ends equal; `--reuse` takes finished trainings from another rank; bad input
//! gets a one-line error. With --early-stop: stopped trainings are recorded with their curve and
//! prediction, a finished one equals the plain training, and a killed rank resumes to the same
//! report.

mod common;
use common::{fails, ok, read_json, run, tmp};
use std::path::Path;

const SEARCH: &[&str] = &[
    "--train-limit", "96", "--batch-size", "32", "--epochs", "1", "--channels", "4", "--layers", "3", "--nodes", "2",
    "--budget", "4", "--val", "48", "--recalibration-batches", "1", "--quiet", "--seed", "5",
];
const RANK: &[&str] = &["--archs", "3", "--top", "1", "--epochs", "1", "--train-limit", "64", "--batch-size", "32", "--channels", "4", "--layers", "3", "--precise-bn", "2", "--quiet"];

fn rank(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["rank"];
    args.extend_from_slice(extra);
    args.extend_from_slice(RANK);
    run(&args)
}

/// (source, genotype, inherited bits, stand-alone bits) per architecture.
fn scores(dir: &Path) -> Vec<(String, String, u64, u64)> {
    let v = read_json(&dir.join("rank.json"));
    v["archs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["source"].as_str().unwrap().to_string(),
                a["genotype"].as_str().unwrap().to_string(),
                a["inherited_accuracy"].as_f64().unwrap().to_bits(),
                a["standalone_test_accuracy"].as_f64().unwrap().to_bits(),
            )
        })
        .collect()
}

#[test]
fn rank_reports_resumes_and_reuses() {
    let base = tmp("rank");
    let (s, r1, r2) = (base.join("search"), base.join("r1"), base.join("r2"));
    let mut args = vec!["search", "--out", s.to_str().unwrap()];
    args.extend_from_slice(SEARCH);
    let out = ok(run(&args));
    // The search prints, and best.json records, the supernet's accuracy and the random
    // baseline beside the best candidate (budget 4: evolution's first 2 are random).
    assert!(out.contains("best candidate") && out.contains("median of the 2 random candidates"), "{out}");
    let b = read_json(&s.join("best.json"))["baseline"].clone();
    assert_eq!(b["random_candidates"], 2);
    assert!(b["random_median_val_accuracy"].as_f64().unwrap() <= read_json(&s.join("best.json"))["metrics"]["val_accuracy"].as_f64().unwrap());
    assert!(b["supernet_train_accuracy"].as_f64().is_some());

    let out = ok(rank(&["--run", s.to_str().unwrap(), "--out", r1.to_str().unwrap()]));
    assert!(out.contains("Kendall tau") && out.contains("random baseline"), "{out}");
    let first = scores(&r1);
    assert_eq!(first.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(), ["uniform", "uniform", "uniform", "top"]);
    let best = std::fs::read_to_string(s.join("best.genotype.txt")).unwrap();
    assert_eq!(first[3].1, best.trim(), "the top architecture is the search's best");
    let report = read_json(&r1.join("rank.json"));
    assert_eq!(report["stats"]["n"], 4);
    for (_, _, inh, sa) in &first {
        let (inh, sa) = (f64::from_bits(*inh), f64::from_bits(*sa));
        assert!((0.0..=1.0).contains(&inh) && (0.0..=1.0).contains(&sa), "{inh} {sa}");
    }
    // Each training is a `cellnas train` run that `cellnas test` reads.
    ok(run(&["test", "--run", r1.join("train/00").to_str().unwrap()]));

    // Killed in the middle of training 01 (after its last checkpoint), before rank.json.
    let kept = r1.join("train/00/metrics.json");
    let stamp = std::fs::metadata(&kept).unwrap().modified().unwrap();
    for f in ["rank.json", "train/01/metrics.json", "train/01/weights.safetensors"] {
        std::fs::remove_file(r1.join(f)).unwrap();
    }
    ok(run(&["rank", "--resume", r1.to_str().unwrap(), "--quiet"]));
    assert_eq!(scores(&r1), first, "a resumed rank equals the uninterrupted one");
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), stamp, "finished trainings are not redone");

    // The same sample and fidelity on another rank folder: every training is reused.
    let o = rank(&["--run", s.to_str().unwrap(), "--out", r2.to_str().unwrap(), "--reuse", r1.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    ok(o);
    assert_eq!(scores(&r2), first, "{err}");
    assert_eq!(read_json(&r2.join("rank.json"))["stats"], report["stats"]);

    // A supernet trained differently (here with affine BN) is ranked against the same trainings:
    // all of the uniform ones are reused, none retrained.
    let (sa, r3) = (base.join("search-affine"), base.join("r3"));
    let mut args = vec!["search", "--supernet-affine", "--out", sa.to_str().unwrap()];
    args.extend_from_slice(SEARCH);
    ok(run(&args));
    let mut args = vec!["rank", "--run", sa.to_str().unwrap(), "--out", r3.to_str().unwrap(), "--reuse", r1.to_str().unwrap(), "--archs", "3", "--top", "0"];
    assert_eq!(RANK[..4], ["--archs", "3", "--top", "1"]);
    args.extend_from_slice(&RANK[4..]);
    ok(run(&args));
    for i in 0..3 {
        assert!(!r3.join(format!("train/{i:02}/checkpoint.safetensors")).exists(), "training {i} was redone instead of reused");
    }
    assert_eq!(scores(&r3).iter().map(|a| a.3).collect::<Vec<_>>(), first[..3].iter().map(|a| a.3).collect::<Vec<_>>());

    // Bad input: one line naming the folder or flag.
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(rank(&["--run", empty.to_str().unwrap(), "--out", base.join("x1").to_str().unwrap()]), &["is not a search run", "empty"]);
    let sp = s.to_str().unwrap();
    fails(run(&["rank", "--run", sp, "--archs", "100000000", "--out", base.join("x2").to_str().unwrap()]), &["--archs 100000000", "space"]);
    fails(run(&["rank", "--run", sp, "--train-limit", "10", "--batch-size", "32", "--out", base.join("x3").to_str().unwrap()]), &["--train-limit", "--batch-size"]);
    fails(run(&["rank", "--run", sp, "--epochs", "0", "--out", base.join("x4").to_str().unwrap()]), &["--epochs 0"]);
    fails(run(&["rank", "--run", sp, "--archs", "1", "--top", "0", "--out", base.join("x5").to_str().unwrap()]), &["nothing to rank"]);
    fails(run(&["rank", "--resume", base.join("nope").to_str().unwrap()]), &["nope"]);
    for x in ["x1", "x2", "x3", "x4", "x5"] {
        assert!(!base.join(x).exists(), "a refused rank leaves no folder {x}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// rank.json without the wall-clock fields, which a resume changes.
fn without_clock(mut v: serde_json::Value) -> serde_json::Value {
    for a in v["archs"].as_array_mut().unwrap() {
        let a = a.as_object_mut().unwrap();
        a.remove("train_seconds");
        if let Some(s) = a.get_mut("early_stop").and_then(|s| s.as_object_mut()) {
            s.remove("train_seconds");
        }
    }
    v
}

#[test]
fn early_stop_records_stopped_trainings_and_resumes_to_the_same_report() {
    let base = tmp("rank-stop");
    let (s, r1, r2, plain) = (base.join("search"), base.join("r1"), base.join("r2"), base.join("plain"));
    let mut args = vec!["search", "--out", s.to_str().unwrap()];
    args.extend_from_slice(SEARCH);
    ok(run(&args));
    let sp = s.to_str().unwrap();
    // k = 1: the incumbent is the best finished one; P 0.5 stops a curve whose predicted final
    // is more likely below it than not.
    let stop_args = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["rank", "--run", sp, "--out", out.to_str().unwrap(), "--archs", "6", "--top", "0", "--epochs", "4", "--precision-k", "1", "--early-stop", "--early-stop-probability", "0.5"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        v.extend(RANK[6..].iter().map(|x| x.to_string()));
        v
    };
    assert_eq!(RANK[4..6], ["--epochs", "1"]);
    let a1 = stop_args(&r1);
    let out = ok(run(&common::strs(&a1)));
    assert!(out.contains("early stop (P >= 0.5, from epoch 3)") && out.contains("(fully trained only)"), "{out}");
    let report = read_json(&r1.join("rank.json"));
    let archs = report["archs"].as_array().unwrap();
    assert_eq!(archs.len(), 6);
    let mut finals: Vec<f64> = vec![];
    let mut curves: Vec<Vec<f64>> = vec![];
    let mut stopped = 0;
    for a in archs {
        let curve: Vec<f64> = a["val_curve"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        if a["stopped_early"].as_bool().unwrap() {
            stopped += 1;
            let e = &a["early_stop"];
            // Stopped at the first check (epoch 3 of 4), against the best earlier finished one.
            assert_eq!((curve.len(), e["epochs"].as_u64().unwrap()), (3, 3), "{a}");
            assert!(a["standalone_test_accuracy"].is_null(), "a stopped training has no test accuracy: {a}");
            let best = finals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(e["incumbent"].as_f64().unwrap(), best, "{a}");
            assert!(e["prob_below"].as_f64().unwrap() >= 0.5, "{a}");
            let (lo, hi, p) = (e["predicted_90"][0].as_f64().unwrap(), e["predicted_90"][1].as_f64().unwrap(), e["predicted"].as_f64().unwrap());
            assert!(0.0 <= lo && lo <= hi && hi <= 1.0 && (0.0..=1.0).contains(&p), "{a}");
            // Compared at the same epoch: the prediction is shifted by the incumbent's own
            // extrapolation error at that epoch.
            let (raw, inc, inc_pred) = (e["predicted_raw"].as_f64().unwrap(), e["incumbent"].as_f64().unwrap(), e["incumbent_predicted"].as_f64().unwrap());
            assert!((p - (raw + inc - inc_pred).clamp(0.0, 1.0)).abs() < 1e-12, "{a}");
            let inc_curve = curves.iter().find(|c| c[3] == best).unwrap();
            let seed = cellnas::nn::params::name_seed(5, &format!("rank.curve{}", a["id"]));
            assert_eq!(inc_pred, cellnas::tune::curve::predict(&inc_curve[..3], 4, seed).unwrap().mean, "{a}");
            assert!(!r1.join(format!("train/{:02}/metrics.json", a["id"])).exists());
        } else {
            assert_eq!(curve.len(), 4, "{a}");
            assert!(a["standalone_test_accuracy"].as_f64().is_some(), "{a}");
            finals.push(curve[3]);
            curves.push(curve.clone());
        }
    }
    assert!(!archs[0]["stopped_early"].as_bool().unwrap(), "the first has no incumbent to stop against");
    assert!(stopped >= 1, "nothing stopped; the test needs a case that does: {report}");
    let e = &report["early_stop"];
    assert_eq!(e["stopped"], stopped);
    assert_eq!((e["epochs_full"].as_u64().unwrap(), e["epochs_trained"].as_u64().unwrap()), (24, 24 - stopped as u64));
    assert_eq!((report["stats"]["n"].as_u64(), report["stats_trained"]["n"].as_u64()), (Some(6), Some(6 - stopped as u64)));

    // The report marks the stopped ones and says what the statistics took for them.
    let html = base.join("r1.html");
    ok(run(&["report", r1.to_str().unwrap(), "--out", html.to_str().unwrap()]));
    let html = std::fs::read_to_string(&html).unwrap();
    assert_eq!(html.matches("stopped at epoch 3, predicted").count(), stopped, "one mark per stopped training");
    assert!(html.contains("Kendall tau, fully trained only"));

    // A finished training under early stopping is the plain training, bitwise.
    // (The same seed draws the same first architectures; the first is never stopped.)
    let mut a = vec!["rank", "--run", sp, "--out", plain.to_str().unwrap(), "--archs", "2", "--top", "0", "--epochs", "4"];
    a.extend(RANK[6..].iter().copied());
    ok(run(&a));
    let p = read_json(&plain.join("rank.json"));
    for i in 0..2 {
        assert_eq!(p["archs"][i]["genotype"], archs[i]["genotype"]);
        if !archs[i]["stopped_early"].as_bool().unwrap() {
            assert_eq!(p["archs"][i]["standalone_test_accuracy"], archs[i]["standalone_test_accuracy"]);
            assert_eq!(p["archs"][i]["standalone_val_accuracy"], archs[i]["standalone_val_accuracy"]);
        }
    }

    // Killed in the middle of architecture 2's training, then resumed: the same report.
    let a2 = stop_args(&r2);
    let val2 = r2.join("train/02/val.jsonl");
    assert!(common::kill_when(&common::strs(&a2), || common::lines(&val2) >= 1), "the rank finished before it could be killed");
    assert!(!r2.join("rank.json").exists());
    ok(run(&["rank", "--resume", r2.to_str().unwrap(), "--quiet"]));
    assert_eq!(without_clock(read_json(&r2.join("rank.json"))), without_clock(report.clone()));
    // Killed between a stop's last score and its record: the same decision on resume.
    let first_stopped = archs.iter().find(|a| a["stopped_early"].as_bool().unwrap()).unwrap()["id"].as_u64().unwrap();
    for f in ["rank.json".to_string(), format!("train/{first_stopped:02}/stopped.json")] {
        std::fs::remove_file(r2.join(f)).unwrap();
    }
    ok(run(&["rank", "--resume", r2.to_str().unwrap(), "--quiet"]));
    assert_eq!(without_clock(read_json(&r2.join("rank.json"))), without_clock(report));

    // Bad input: one line naming the flag.
    fails(run(&["rank", "--run", sp, "--early-stop", "--epochs", "3", "--out", base.join("x1").to_str().unwrap()]), &["--early-stop", "--epochs 3", "stops nothing"]);
    fails(run(&["rank", "--run", sp, "--early-stop", "--early-stop-probability", "1.5", "--epochs", "4", "--out", base.join("x2").to_str().unwrap()]), &["--early-stop-probability", "1.5"]);
    fails(run(&["rank", "--run", sp, "--early-stop", "--early-stop-min-epochs", "2", "--epochs", "4", "--out", base.join("x3").to_str().unwrap()]), &["--early-stop-min-epochs", "at least 3"]);
    let o = run(&["rank", "--run", sp, "--early-stop", "--reuse", r1.to_str().unwrap(), "--out", base.join("x4").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--reuse"), "{o:?}");
    for x in ["x1", "x2", "x3", "x4"] {
        assert!(!base.join(x).exists(), "a refused rank leaves no folder {x}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A rank in phases and shards: `--phase inherited`, N concurrent `--resume R --shard I/N`,
/// `cellnas merge R` gives the single-process rank's scores and statistics; a merge before every
/// shard finished names the missing ones, and --early-stop is refused by shards.
#[test]
fn a_sharded_rank_merges_into_the_single_process_rank() {
    let base = tmp("rank-shards");
    let s = base.join("search");
    let mut args = vec!["search", "--out", s.to_str().unwrap(), "--no-report"];
    args.extend_from_slice(SEARCH);
    ok(run(&args));
    let sp = s.to_str().unwrap();
    let (one, sharded) = (base.join("one"), base.join("sharded"));
    ok(rank(&["--run", sp, "--out", one.to_str().unwrap()]));
    let r = sharded.to_str().unwrap();
    ok(rank(&["--run", sp, "--out", r, "--phase", "inherited"]));
    assert!(sharded.join("inherited.json").is_file() && !sharded.join("rank.json").exists());
    fails(run(&["merge", r]), &["no shards"]);
    ok(run(&["rank", "--resume", r, "--shard", "1/2", "--quiet"]));
    fails(run(&["merge", r]), &["1 of its 2 shards have not finished", ": 0;"]);
    fails(run(&["rank", "--resume", r, "--quiet"]), &["being scored in shards"]);
    fails(run(&["rank", "--resume", r, "--shard", "0/3"]), &["scored in 2 shards, not 3"]);
    ok(run(&["rank", "--resume", r, "--shard", "0/2", "--quiet"]));
    ok(run(&["merge", r]));
    assert_eq!(scores(&one), scores(&sharded));
    let stats = |d: &Path| read_json(&d.join("rank.json"))["stats"].clone();
    assert_eq!(stats(&one), stats(&sharded));
    // Shard 1 trained architectures 1 and 3, shard 0 architectures 0 and 2.
    for i in 0..4 {
        assert!(sharded.join(format!("train/{i:02}/metrics.json")).is_file());
    }
    let es = base.join("es");
    let mut args = vec!["rank", "--run", sp, "--out", es.to_str().unwrap(), "--phase", "inherited", "--early-stop", "--epochs", "4"];
    args.extend(RANK.iter().enumerate().filter(|&(i, _)| !matches!(i, 4 | 5)).map(|(_, a)| *a));
    assert_eq!(RANK[4], "--epochs");
    ok(run(&args));
    fails(run(&["rank", "--resume", es.to_str().unwrap(), "--shard", "0/2"]), &["--early-stop cannot be sharded"]);
    let _ = std::fs::remove_dir_all(base);
}
