//! A run folder is one verified whole (issue 11): readers refuse, naming the file, weights or
//! results that were damaged, edited, copied from another run or incomplete, instead of
//! succeeding with a wrong result.

mod common;
use common::{fails, ok, read_json, run, tmp};
use std::fs;
use std::path::Path;

const GENOTYPE: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])";

fn train(dir: &Path, spec: &Path, channels: &str) {
    ok(run(&[
        "train", "--spec", spec.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--channels", channels, "--layers", "3",
        "--train-limit", "64", "--batch-size", "16", "--epochs", "1", "--val", "32", "--precise-bn", "1", "--quiet",
    ]));
}

fn search(dir: &Path, seed: &str) {
    ok(run(&[
        "search", "--out", dir.to_str().unwrap(), "--train-limit", "64", "--batch-size", "32", "--epochs", "1", "--channels", "4",
        "--layers", "3", "--nodes", "2", "--budget", "2", "--val", "32", "--recalibration-batches", "1", "--quiet", "--seed", seed,
    ]));
}

fn test_run(dir: &Path) -> std::process::Output {
    run(&["test", "--run", dir.to_str().unwrap(), "--json"])
}

/// Copies every file of a run folder (flat) into a fresh one.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn damaged_foreign_or_incomplete_training_results_are_refused_by_name() {
    let root = tmp("manifest-train");
    fs::create_dir_all(&root).unwrap();
    let spec = root.join("cell.txt");
    fs::write(&spec, GENOTYPE).unwrap();
    let a = root.join("a");
    train(&a, &spec, "4");
    let manifest = read_json(&a.join("manifest.json"));
    for f in ["config.json", "weights.safetensors", "metrics.json", "kernels.json"] {
        assert!(manifest["files"][f]["fnv1a64"].is_string(), "manifest lacks {f}: {manifest}");
    }
    let good: serde_json::Value = serde_json::from_str(&ok(test_run(&a))).unwrap();

    // A bit flip in the final weights, then an empty weights file.
    let case = root.join("flip");
    copy_dir(&a, &case);
    let mut w = fs::read(case.join("weights.safetensors")).unwrap();
    let at = w.len() - 7;
    w[at] ^= 0x10;
    fs::write(case.join("weights.safetensors"), &w).unwrap();
    fails(test_run(&case), &["weights.safetensors", "changed after cellnas wrote it"]);
    fs::write(case.join("weights.safetensors"), b"").unwrap();
    fails(test_run(&case), &["weights.safetensors", "0 bytes"]);

    // Another run's weights (a wider network), and a search's supernet, as weights.safetensors.
    let b = root.join("b");
    train(&b, &spec, "6");
    let case = root.join("foreign");
    copy_dir(&a, &case);
    fs::copy(b.join("weights.safetensors"), case.join("weights.safetensors")).unwrap();
    fails(test_run(&case), &["weights.safetensors", "changed after cellnas wrote it"]);
    let s = root.join("s");
    search(&s, "1");
    fs::copy(s.join("supernet.safetensors"), case.join("weights.safetensors")).unwrap();
    fails(test_run(&case), &["weights.safetensors", "changed after cellnas wrote it"]);

    // Results edited by hand.
    let case = root.join("edited");
    copy_dir(&a, &case);
    let m = fs::read_to_string(case.join("metrics.json")).unwrap().replacen("\"test_accuracy\": 0", "\"test_accuracy\": 1", 1);
    fs::write(case.join("metrics.json"), m).unwrap();
    fails(test_run(&case), &["metrics.json", "changed after cellnas wrote it"]);

    // A consistent folder whose weights lack a tensor (recorded as if cellnas had written them):
    // the missing parameter would otherwise be initialised at random.
    let case = root.join("incomplete");
    copy_dir(&a, &case);
    let (mut t, meta) = cellnas::run::load_tensors(&case.join("weights.safetensors")).unwrap();
    let dropped = t.iter().position(|(n, _, _)| n.ends_with(".weight") && !n.starts_with("bn:")).unwrap();
    let name = t.remove(dropped).0;
    cellnas::run::save_tensors(&case.join("weights.safetensors"), &t, &meta).unwrap();
    let rd = cellnas::run::RunDir::open(&case);
    let mut man: cellnas::run::Manifest = serde_json::from_value(read_json(&case.join("manifest.json"))).unwrap();
    man.files.insert("weights.safetensors".into(), cellnas::run::FileEntry::of(&fs::read(case.join("weights.safetensors")).unwrap()));
    man.write(rd.dir()).unwrap();
    fails(test_run(&case), &["weights.safetensors", "lacks 1 of the network's", &name]);

    // Finished files nobody recorded (copied in, or a kill before the record).
    let case = root.join("unrecorded");
    copy_dir(&a, &case);
    let mut man = read_json(&case.join("manifest.json"));
    man["files"].as_object_mut().unwrap().remove("metrics.json");
    fs::write(case.join("manifest.json"), serde_json::to_vec_pretty(&man).unwrap()).unwrap();
    fails(test_run(&case), &["metrics.json", "not recorded"]);

    // A folder written by an older cellnas (no manifest) is still read, with a warning.
    let case = root.join("legacy");
    copy_dir(&a, &case);
    fs::remove_file(case.join("manifest.json")).unwrap();
    let o = test_run(&case);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let legacy: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    assert!(err.contains("not verified"), "{err}");
    assert_eq!(legacy["test_accuracy"], good["test_accuracy"]);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_supernet_checkpoint_pair_from_another_search_is_refused() {
    let root = tmp("manifest-search");
    let (a, b) = (root.join("a"), root.join("b"));
    search(&a, "1");
    search(&b, "2");
    let spec = a.join("best.json");
    ok(run(&["eval", "--run", a.to_str().unwrap(), "--spec", spec.to_str().unwrap()]));
    // Both files of b's checkpoint: a consistent pair, but b's run id.
    for f in ["supernet.safetensors", "state.json"] {
        fs::copy(b.join(f), a.join(f)).unwrap();
    }
    fails(run(&["eval", "--run", a.to_str().unwrap(), "--spec", spec.to_str().unwrap()]), &["copied from another run"]);
    let o = run(&["search", "--resume", a.to_str().unwrap(), "--quiet"]);
    fails(o, &["copied from another run"]);
    let _ = fs::remove_dir_all(&root);
}
