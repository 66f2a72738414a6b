//! Strategies and cost constraints through `cellnas search` on tiny NB201 settings: a
//! constrained batched Bayesian search killed and resumed equals an uninterrupted one, every
//! proposal meets the constraints, costs and fronts are recorded; bad settings are one-line
//! errors naming the flag.

mod common;
use common::{fails, history_without_clock, kill_when, lines, ok, read_json, run, strs, tmp};

fn args(out_flag: &str, dir: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["search", out_flag, dir].map(String::from).to_vec();
    for a in [
        "--space", "nb201", "--train-limit", "96", "--batch-size", "32", "--epochs", "1", "--channels", "4", "--val", "48",
        "--recalibration-batches", "1", "--quiet", "--seed", "5",
    ]
    .iter()
    .chain(extra)
    {
        v.push(a.to_string());
    }
    v
}

/// History without wall-clock fields and without latency (measured, so it differs between runs).
fn history(dir: &std::path::Path) -> Vec<serde_json::Value> {
    history_without_clock(dir)
        .into_iter()
        .map(|mut v| {
            assert!(v["latency_ms"].as_f64().unwrap() > 0.0, "latency recorded: {v}");
            v.as_object_mut().unwrap().remove("latency_ms");
            v
        })
        .collect()
}

#[test]
fn constrained_batched_search_resumes_exactly_and_records_costs() {
    let extra = ["--strategy", "bayes", "--batch", "3", "--budget", "7", "--max-params", "8000", "--max-latency-ms", "100000"];
    let a = tmp("bayes-whole");
    let out = ok(run(&strs(&args("--out", a.to_str().unwrap(), &extra))));
    assert!(out.contains("pareto") && out.contains("Pareto fronts (pareto.json)"), "{out}");
    let whole = history(&a);
    assert_eq!(whole.len(), 7);
    for e in &whole {
        assert!(e["params"].as_u64().unwrap() <= 8000 && e["flops"].as_u64().unwrap() > 0, "{e}");
    }
    let pareto = read_json(&a.join("pareto.json"));
    for front in ["params", "flops", "latency_ms"] {
        let f = pareto[front].as_array().unwrap();
        assert!(!f.is_empty(), "{front}");
        // Cheaper first and strictly more accurate along the front.
        assert!(f.windows(2).all(|w| w[0]["cost"].as_f64() <= w[1]["cost"].as_f64() && w[0]["accuracy"].as_f64() < w[1]["accuracy"].as_f64()));
    }
    assert!(lines(&a.join("latency.jsonl")) >= 7);
    let cfg = read_json(&a.join("config.json"));
    assert_eq!(cfg["strategy"]["kind"], "bayes");
    assert_eq!(cfg["constraints"]["max_params"], 8000);

    // Killed inside the second batch (after 4 entries), then resumed.
    let b = tmp("bayes-killed");
    let bs = b.to_str().unwrap().to_string();
    let hist = b.join("history.jsonl");
    kill_when(&strs(&args("--out", &bs, &extra)), || lines(&hist) >= 4);
    ok(run(&["search", "--resume", &bs, "--quiet"]));
    assert_eq!(history(&b), whole);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn bad_strategy_settings_and_impossible_constraints_are_one_line_errors() {
    let d = tmp("bad-strategy");
    let o = d.to_str().unwrap();
    let n = std::cell::Cell::new(0);
    // Each in its own folder: an error after the run folder is made leaves it behind.
    let bad = |extra: &[&str], needles: &[&str]| {
        n.set(n.get() + 1);
        fails(run(&strs(&args("--out", &format!("{o}/{}", n.get()), extra))), needles)
    };
    bad(&["--max-params", "10"], &["--max-params 10: none of 500 sampled architectures", "the fewest: "]);
    bad(&["--max-flops", "10"], &["--max-flops 10:"]);
    bad(&["--strategy", "bayes", "--population", "4"], &["--population applies to --strategy evolution; this search uses bayes"]);
    bad(&["--controller-lr", "1"], &["--controller-lr applies to --strategy reinforce"]);
    bad(&["--strategy", "bayes", "--acquisition", "pi"], &["--acquisition pi: expected ei or ucb"]);
    bad(&["--strategy", "reinforce", "--baseline-decay", "1"], &["--baseline-decay must be in [0, 1)"]);
    bad(&["--strategy", "grid", "--grid-limit", "100"], &["the nb201 space has 15625 architectures, more than --grid-limit 100"]);
    bad(&["--batch", "30", "--budget", "20"], &["--batch must be between 1 and the budget (20)"]);
    bad(&["--latency-batch", "4"], &["--latency-batch applies to --max-latency-ms"]);
    bad(&["--max-latency-ms", "0"], &["--max-latency-ms must be a number above 0"]);
    fails(run(&["search", "--out", o, "--strategy", "annealing"]), &["unknown search strategy 'annealing'", "bayes, reinforce"]);
    assert!(!d.join("1/history.jsonl").exists());
    let _ = std::fs::remove_dir_all(&d);
}
