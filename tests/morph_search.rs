//! `cellnas search --method morphism` (issue 12): hill climbing by function-preserving morphs;
//! deterministic, and a run killed at any point and resumed equals an uninterrupted one.

mod common;
use common::{fails, history_without_clock, kill_when, ok, read_json, run, strs, tmp};
use std::path::Path;

fn args(out: &str) -> Vec<String> {
    [
        "search", "--method", "morphism", "--out", out, "--train-limit", "192", "--val", "64", "--batch-size", "32", "--epochs", "1", "--channels", "4",
        "--layers", "3", "--nodes", "2", "--rounds", "2", "--children", "2", "--recalibration-batches", "2", "--seed", "3", "--quiet",
        "--checkpoint-minutes", "0.00001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}



fn best_weights(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = cellnas::run::load_tensors(&dir.join("best.safetensors")).unwrap();
    t.into_iter().map(|(n, _, v)| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}


#[test]
fn a_morphism_search_grows_scores_and_exports_and_resumes_exactly() {
    let root = tmp("morph-search");
    let a = root.join("whole");
    let o = ok(run(&strs(&args(a.to_str().unwrap()))));
    assert!(o.contains("best network") && o.contains("test accuracy"), "{o}");
    let h = history_without_clock(&a);
    assert_eq!(h.len(), 5, "the first network and 2 rounds x 2 children");
    assert!(h[0]["parent"].is_null() && h[0]["morphs"].as_array().unwrap().is_empty());
    let acc = |i: usize| h[i]["accuracy"].as_f64().unwrap();
    for (i, e) in h.iter().enumerate().skip(1) {
        assert!(!e["morphs"].as_array().unwrap().is_empty(), "child {i} has no morph: {e}");
        // Morphs keep the function: before fine-tuning, a child scores what its parent scored.
        let parent = e["parent"].as_u64().unwrap() as usize;
        assert_eq!(e["inherited_accuracy"].as_f64(), Some(acc(parent)), "child {i}: {e}");
    }
    // A round's children come from the best of the round before.
    let best1 = if acc(2) > acc(1) { 2 } else { 1 };
    assert_eq!((h[3]["parent"].as_u64(), h[4]["parent"].as_u64()), (Some(best1), Some(best1)));
    let best = read_json(&a.join("best.json"));
    let id = best["metrics"]["candidate"].as_u64().unwrap() as usize;
    assert!((0..5).all(|i| acc(i) <= acc(id)), "best.json names net {id}");
    assert_eq!(best["net"], h[id]["net"]);
    assert!(best["metrics"]["test_accuracy"].as_f64().unwrap() > 0.0);
    // The exported cell is a spec `train` takes.
    assert!(std::fs::read_to_string(a.join("best.genotype.txt")).unwrap().starts_with("Genotype("));

    // Killed while training the first child (its checkpoint exists), then while training the
    // next round, then resumed: the same networks, scores and weights.
    let b = root.join("killed");
    let bs = b.to_str().unwrap();
    assert!(kill_when(&strs(&args(bs)), || b.join("nets/0001/state.json").exists()), "finished before the kill");
    assert!(kill_when(&["search", "--resume", bs, "--quiet", "--checkpoint-minutes", "0.00001"], || b.join("nets/0003/state.json").exists()), "finished before the kill");
    assert!(!b.join("nets/0003/weights.safetensors").exists(), "net 3 was killed in training");
    ok(run(&["search", "--resume", bs, "--quiet"]));
    assert_eq!(h, history_without_clock(&b));
    assert!(best_weights(&a) == best_weights(&b), "best weights differ after resume");
    // Resuming a finished run changes nothing.
    ok(run(&["search", "--resume", bs, "--quiet"]));
    assert_eq!(h, history_without_clock(&b));

    // Bad requests.
    fails(run(&["search", "--resume", bs, "--rounds", "3", "--quiet"]), &["rounds: stored 2, given 3"]);
    fails(run(&["search", "--resume", bs, "--method", "supernet"]), &["--method supernet", "morphism search"]);
    let bad = root.join("bad");
    let bad = bad.to_str().unwrap();
    fails(run(&["search", "--method", "evolution", "--out", bad]), &["--method evolution", "supernet, morphism, darts"]);
    fails(run(&["search", "--method", "morphism", "--budget", "5", "--out", bad]), &["--budget applies to supernet searches"]);
    fails(run(&["search", "--method", "morphism", "--channels", "8", "--max-channels", "4", "--out", bad]), &["--max-channels 4", "8 channels"]);
    fails(run(&["search", "--method", "morphism", "--rounds", "0", "--out", bad]), &["--rounds x --children"]);
    fails(run(&["rank", "--run", bs, "--out", bad]), &["is a morphism search"]);
    let _ = std::fs::remove_dir_all(&root);
}
