//! `cellnas train` re-estimates BN statistics after training (precise BN) and reports both
//! figures; `cellnas test` does the same for a checkpoint. Flip defaults follow the dataset.

mod common;
use common::{ok, read_json, run, tmp};

const SPEC: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3])";
const TINY: &[&str] = &["--epochs", "1", "--train-limit", "96", "--batch-size", "32", "--channels", "4", "--layers", "3", "--quiet"];

/// (stdout, stderr, run folder)
fn train(base: &std::path::Path, out: &str, extra: &[&str]) -> (String, String, std::path::PathBuf) {
    let spec = base.join("spec.txt");
    std::fs::create_dir_all(base).unwrap();
    std::fs::write(&spec, SPEC).unwrap();
    let dir = base.join(out);
    let mut args = vec!["train", "--spec", spec.to_str().unwrap(), "--out", dir.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (ok(o), err, dir)
}

#[test]
fn precise_bn_reports_both_and_checkpoints_get_it_too() {
    let base = tmp("precise-bn");
    let (out, err, dir) = train(&base, "on", &[]);
    assert!(out.contains("with the BN statistics training left") && out.contains("precise BN"), "{out}");
    let m = read_json(&dir.join("metrics.json"));
    // 96 images make 3 batches of 32: the default 32 batches would only repeat them.
    assert_eq!(m["precise_bn_batches"], 3);
    assert!(err.contains("uses 3 batches, not 32"), "{err}");
    let running = m["running_bn"]["test_accuracy"].as_f64().expect("running-BN figures recorded");
    let precise = m["test_accuracy"].as_f64().unwrap();
    // One epoch leaves running variances near their initial 1; re-estimated ones differ.
    assert_ne!(running.to_bits(), precise.to_bits(), "precise BN changed nothing");

    // The final weights hold the re-estimated statistics: `test` reproduces the figure as is.
    let t: serde_json::Value = serde_json::from_str(&ok(run(&["test", "--run", dir.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(t["test_accuracy"].as_f64().unwrap().to_bits(), precise.to_bits());
    assert!(t["running_bn"].is_null());
    // The last checkpoint (same weights, training's running statistics) gets precise BN at test
    // time and both figures, equal to the training's own.
    // (As a run killed before its final weights: the manifest does not record them either.)
    std::fs::remove_file(dir.join("weights.safetensors")).unwrap();
    let mut m = cellnas::run::Manifest::read(&dir).unwrap().unwrap();
    m.files.remove("weights.safetensors");
    m.write(&dir).unwrap();
    let t: serde_json::Value = serde_json::from_str(&ok(run(&["test", "--run", dir.to_str().unwrap(), "--json"]))).unwrap();
    assert_eq!(t["test_accuracy"].as_f64().unwrap().to_bits(), precise.to_bits());
    assert_eq!(t["running_bn"]["test_accuracy"].as_f64().unwrap().to_bits(), running.to_bits());

    // Off: one figure, the running statistics'.
    let (out, _, dir) = train(&base, "off", &["--precise-bn", "0"]);
    assert!(!out.contains("precise BN"), "{out}");
    let m = read_json(&dir.join("metrics.json"));
    assert!(m["running_bn"].is_null());
    assert_eq!(m["test_accuracy"].as_f64().unwrap().to_bits(), running.to_bits());
    assert!(!read_json(&dir.join("config.json")).as_object().unwrap().contains_key("precise_bn"), "0 stays out of config.json");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn flips_default_by_dataset() {
    let base = tmp("flips");
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-small");
    for name in ["digits-mnist", "mydata"] {
        let d = base.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in std::fs::read_dir(&assets).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "gz")) {
            std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
        }
    }
    let spec = base.join("spec.txt");
    std::fs::write(&spec, SPEC).unwrap();
    let flip = |data: &str, extra: &[&str]| -> (bool, String) {
        let out = base.join(format!("run-{data}-{}", extra.len()));
        let data = base.join(data);
        let mut args = vec!["train", "--spec", spec.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--epochs", "1", "--train-limit", "32", "--batch-size", "32", "--channels", "4", "--layers", "3", "--precise-bn", "0"];
        args.extend_from_slice(extra);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        ok(o);
        (read_json(&out.join("config.json"))["train"]["augment"]["flip"].as_bool().unwrap(), err)
    };
    let (f, err) = flip("digits-mnist", &[]);
    assert!(!f && err.contains("MNIST") && err.contains("flips off"), "{err}");
    let (f, err) = flip("mydata", &[]);
    assert!(!f && err.contains("not a dataset cellnas recognises"), "{err}");
    let (f, err) = flip("mydata", &["--flip", "true"]);
    assert!(f && !err.contains("recognises"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}
