//! `cellnas search --space nb201` (issue 13): the NAS-Bench-201 cell space through the same
//! supernet, strategies, history and resume as DARTS.

mod common;
use cellnas::space::{Nb201Space, Space};
use common::{fails, history_without_clock, kill_when, lines, ok, read_json, run, strs, tmp};
use rand::SeedableRng;

fn args(out: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "search", "--space", "nb201", "--out", out, "--train-limit", "128", "--val", "32", "--batch-size", "32", "--epochs", "2", "--channels", "4",
        "--budget", "6", "--recalibration-batches", "1", "--seed", "2", "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}



#[test]
fn an_nb201_search_runs_records_its_space_and_resumes_exactly() {
    let root = tmp("nb201-search");
    let a = root.join("whole");
    let o = ok(run(&strs(&args(a.to_str().unwrap(), &["--sampling", "fair"]))));
    assert!(o.contains("best candidate"), "{o}");
    let cfg = read_json(&a.join("config.json"));
    assert_eq!(cfg["space"]["kind"], "nb201");
    assert_eq!(cfg["space"]["ops"].as_array().unwrap().len(), 5);
    assert_eq!((cfg["net"]["kind"].as_str(), cfg["net"]["layers"].as_u64(), cfg["net"]["nodes"].as_u64()), (Some("nb201"), Some(1), Some(4)));
    let h = history_without_clock(&a);
    assert_eq!(h.len(), 6);
    for e in &h {
        let text = e["genotype"].as_str().unwrap();
        assert!(cellnas::space::Nb201Cell::parse(text).is_ok(), "history holds NB201 arch strings: {text}");
    }
    let best = read_json(&a.join("best.json"));
    assert_eq!(best["space"], "nb201");
    assert!(cellnas::space::Nb201Cell::parse(best["arch"].as_str().unwrap()).is_ok());

    // Killed after the supernet's first epoch, then resumed: the same search.
    let b = root.join("killed");
    let bs = b.to_str().unwrap();
    let metrics = b.join("metrics.jsonl");
    assert!(kill_when(&strs(&args(bs, &["--sampling", "fair"])), || lines(&metrics) >= 1), "finished before the kill");
    ok(run(&["search", "--resume", bs, "--quiet"]));
    assert_eq!(h, history_without_clock(&b));

    // eval scores the best arch as the search did; train and test take it like a DARTS spec.
    let best_json = a.join("best.json");
    let e = ok(run(&["eval", "--spec", best_json.to_str().unwrap(), "--run", a.to_str().unwrap()]));
    let pct = format!("{:.2}%", 100.0 * best["metrics"]["val_accuracy"].as_f64().unwrap());
    assert!(e.contains(&format!("inherited-weight val accuracy {pct}")), "{e} vs {pct}");
    let t = root.join("trained");
    ok(run(&["train", "--spec", best_json.to_str().unwrap(), "--epochs", "1", "--train-limit", "128", "--channels", "4", "--layers", "1", "--precise-bn", "1", "--out", t.to_str().unwrap(), "--quiet"]));
    assert_eq!(read_json(&t.join("config.json"))["spec"]["arch"], best["arch"]);
    assert!(ok(run(&["test", "--run", t.to_str().unwrap()])).contains("test accuracy"));

    // rank checks the NB201 supernet like a DARTS one.
    // What is not built for NB201 yet says so; bad flags name themselves.
    let bad = root.join("bad");
    let bad = bad.to_str().unwrap();
    let r = root.join("rank");
    let o = ok(run(&["rank", "--run", a.to_str().unwrap(), "--archs", "2", "--top", "1", "--epochs", "1", "--train-limit", "128", "--channels", "4", "--precise-bn", "1", "--out", r.to_str().unwrap(), "--quiet"]));
    assert!(o.contains("Kendall tau"), "{o}");
    let archs = read_json(&r.join("archs.json"));
    assert!(archs.as_array().unwrap().iter().all(|a| cellnas::space::Nb201Cell::parse(a["genotype"].as_str().unwrap()).is_ok()), "{archs}");
    fails(run(&["train", "--spec", a.join("best.json").to_str().unwrap(), "--init-from", a.to_str().unwrap(), "--out", bad]), &["DARTS"]);
    fails(run(&["search", "--space", "nb201", "--nodes", "3", "--out", bad]), &["--nodes", "4 nodes"]);
    fails(run(&["search", "--space", "nb201", "--ops", "nor_conv_3x3,nor_conv_9x9", "--out", bad]), &["nor_conv_9x9"]);
    fails(run(&["search", "--space", "nasbench101", "--out", bad]), &["--space nasbench101", "darts, nb201"]);
    fails(run(&["search", "--resume", a.to_str().unwrap(), "--space", "darts", "--quiet"]), &["--space darts", "nb201 space"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn fair_nb201_paths_put_every_op_on_every_edge_exactly_once() {
    let space = Nb201Space::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    for _ in 0..50 {
        let paths = space.fair_paths(&mut rng);
        assert_eq!(paths.len(), 5);
        for e in 0..6 {
            let mut ops: Vec<usize> = paths.iter().map(|p| match p {
                cellnas::space::Arch::Nb201(c) => c.ops[e].index(),
                other => panic!("not an NB201 path: {other:?}"),
            }).collect();
            ops.sort();
            assert_eq!(ops, vec![0, 1, 2, 3, 4], "edge {e}");
        }
    }
}
