//! Network morphism, first part (issue 12): a search's candidate grown out of its supernet
//! computes what the search scored, before any training; bad requests are one-line errors.

mod common;
use common::{fails, ok, run, tmp};
use std::path::Path;

fn search(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "search", "--out", dir.to_str().unwrap(), "--train-limit", "256", "--batch-size", "32", "--epochs", "2", "--channels", "4",
        "--layers", "3", "--nodes", "2", "--budget", "4", "--val", "64", "--recalibration-batches", "2", "--quiet", "--seed", "5",
    ];
    args.extend_from_slice(extra);
    ok(run(&args));
}

/// The two percentages of the "grown from" line: the grown network's and the inherited score.
fn grown_line(stdout: &str) -> (String, String) {
    let line = stdout.lines().find(|l| l.starts_with("grown from")).unwrap_or_else(|| panic!("no grown line:\n{stdout}"));
    let pcts: Vec<String> = line.split_whitespace().filter(|w| w.ends_with('%') || w.ends_with("%;")).map(|w| w.trim_end_matches(';').to_string()).collect();
    assert_eq!(pcts.len(), 2, "{line}");
    (pcts[0].clone(), pcts[1].clone())
}

#[test]
fn a_candidate_grown_from_the_supernet_scores_what_the_search_scored() {
    let root = tmp("morph");
    let s = root.join("search");
    search(&s, &[]);
    let spec = s.join("best.json");
    let out = root.join("grown");
    let o = ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--epochs", "0", "--out", out.to_str().unwrap(), "--quiet"]));
    let (grown, inherited) = grown_line(&o);
    assert_eq!(grown, inherited, "{o}");
    let cfg = common::read_json(&out.join("config.json"));
    assert_eq!(cfg["init_from"]["run"], s.to_str().unwrap());
    assert_eq!(cfg["net"]["supernet"], true);
    assert_eq!(cfg["net"]["supernet_affine"], true);
    // And it trains from there like any run, `test` reading its weights.
    let t = root.join("trained");
    ok(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--epochs", "1", "--precise-bn", "2", "--out", t.to_str().unwrap(), "--quiet"]));
    ok(run(&["test", "--run", t.to_str().unwrap()]));

    // Bad requests.
    let bad = root.join("bad");
    fails(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", out.to_str().unwrap(), "--out", bad.to_str().unwrap()]), &["not the config of a `cellnas search` run"]);
    fails(run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", root.join("nowhere").to_str().unwrap(), "--out", bad.to_str().unwrap()]), &["nowhere", "is not a search run"]);
    fails(
        run(&["train", "--spec", spec.to_str().unwrap(), "--init-from", s.to_str().unwrap(), "--channels", "8", "--out", bad.to_str().unwrap()]),
        &["differs from the supernet's", "not built yet"],
    );
    let narrow = root.join("narrow");
    search(&narrow, &["--ops", "skip_connect,max_pool_3x3"]);
    let cell = root.join("cell.txt");
    std::fs::write(&cell, "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('max_pool_3x3', 2)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), ('skip_connect', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])").unwrap();
    fails(
        run(&["train", "--spec", cell.to_str().unwrap(), "--init-from", narrow.to_str().unwrap(), "--epochs", "0", "--out", bad.to_str().unwrap()]),
        &["not a sub-architecture of this search run's space", "sep_conv_3x3"],
    );
    let _ = std::fs::remove_dir_all(&root);
}
