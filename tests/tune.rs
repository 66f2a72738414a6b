//! `cellnas tune`'s logic without a GPU: the hyperparameter file and its errors, the tuners'
//! determinism on synthetic scores, Hyperband's bracket arithmetic, learning-curve
//! extrapolation on synthetic curves.

use cellnas::tune::space::{Assignment, HpSpace};
use cellnas::tune::{curve, hyperband, next_job, Job, TrialRecord, Tuner};
use serde_json::{json, Value};

const FILE: &str = r#"{"hyperparameters": [
  {"name": "lr", "type": "Float", "min_value": 0.001, "max_value": 0.3, "sampling": "log"},
  {"name": "momentum", "type": "Float", "min_value": 0.8, "max_value": 0.95, "step": 0.05},
  {"name": "weight_decay", "type": "Choice", "values": [0, 0.0003, 0.001]},
  {"name": "batch_size", "type": "Choice", "values": [16, 32, 64]},
  {"name": "channels", "type": "Int", "min_value": 4, "max_value": 16, "step": 4},
  {"name": "layers", "type": "Fixed", "value": 3},
  {"name": "epochs", "type": "Int", "min_value": 2, "max_value": 8, "sampling": "log"},
  {"name": "flip", "type": "Boolean"},
  {"name": "crop", "type": "Int", "min": 0, "max": 4, "step": 2},
  {"name": "use_cutout", "type": "Boolean"},
  {"name": "cutout", "type": "Int", "min_value": 4, "max_value": 12, "step": 4, "parent_name": "use_cutout", "parent_values": [true]}
]}"#;

fn space() -> HpSpace {
    HpSpace::parse(FILE).expect("valid file")
}

#[test]
fn the_file_parses_and_values_land_in_the_training_config() {
    let s = space();
    assert_eq!(s.params.len(), 11);
    assert_eq!(s.get("momentum").unwrap().grid().unwrap(), vec![json!(0.8), json!(0.85), json!(0.9), json!(0.95)]);
    assert_eq!(s.get("channels").unwrap().grid().unwrap(), vec![json!(4), json!(8), json!(12), json!(16)]);
    // The conditional child exists exactly when its parent is true.
    let mut seen = [false; 2];
    for i in 0..40 {
        let a = cellnas::tune::random_assignment(&s, 7, i);
        let on = a["use_cutout"].as_bool().unwrap();
        assert_eq!(a.contains_key("cutout"), on, "{a:?}");
        seen[on as usize] = true;
        let lr = a["lr"].as_f64().unwrap();
        assert!((0.001..=0.3).contains(&lr));
        let e = a["epochs"].as_u64().unwrap();
        assert!((2..=8).contains(&e));
    }
    assert!(seen[0] && seen[1]);
    // Applied to a stand-alone config.
    let spec = cellnas::space::Spec::from_text("Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0)], normal_concat=[2], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])").unwrap();
    let base = cellnas::pipeline::standalone::StandaloneConfig {
        spec,
        data: cellnas::pipeline::data::DataConfig { path: None, val_count: 10, train_limit: 0 },
        net: cellnas::nn::darts::NetConfig { in_channels: 1, classes: 10, channels: 16, layers: 8, nodes: 1, supernet: false, supernet_affine: false, gated: vec![], kind: cellnas::nn::darts::NetKind::Darts },
        train: cellnas::train::TrainConfig { epochs: 1, batch_size: 8, lr: 0.1, lr_min: 0.0, momentum: 0.9, weight_decay: 0.0, grad_clip: 5.0, seed: 1, augment: Default::default(), warmup_epochs: 0.0 },
        eval_batch_size: 8,
        precise_bn: 0,
        init_from: None,
        resume_ignore: json!({}),
    };
    let a: Assignment = [("lr", json!(0.02)), ("batch_size", json!(32)), ("channels", json!(8)), ("layers", json!(3)), ("flip", json!(true)), ("cutout", json!(12)), ("crop", json!(4)), ("weight_decay", json!(0.001)), ("momentum", json!(0.85)), ("epochs", json!(5)), ("use_cutout", json!(true))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let c = s.apply(&base, &a);
    assert_eq!((c.train.lr, c.train.batch_size, c.train.momentum, c.train.weight_decay, c.train.epochs), (0.02, 32, 0.85, 0.001, 5));
    assert_eq!((c.net.channels, c.net.layers), (8, 3));
    assert_eq!((c.train.augment.flip, c.train.augment.cutout, c.train.augment.crop_padding), (true, 12, 4));
}

#[test]
fn every_bad_file_is_one_line_naming_the_parameter() {
    let one = |p: &str| format!("{{\"hyperparameters\": [{p}]}}");
    let cases: &[(String, &[&str])] = &[
        (one(r#"{"name": "lr", "type": "Gaussian", "min_value": 0.1, "max_value": 1}"#), &["\"lr\"", "unknown type \"Gaussian\""]),
        (one(r#"{"name": "lr", "type": "Float", "min_value": 0.1, "max_value": 0.1}"#), &["\"lr\"", "empty range"]),
        (one(r#"{"name": "lr", "type": "Float", "min_value": 0.3, "max_value": 0.1}"#), &["\"lr\"", "inverted range"]),
        (one(r#"{"name": "channels", "type": "Int", "min_value": 8, "max_value": 4}"#), &["\"channels\"", "inverted range"]),
        (one(r#"{"name": "lr", "type": "Float", "min_value": 0, "max_value": 0.1, "sampling": "log"}"#), &["\"lr\"", "log sampling", "above zero"]),
        (one(r#"{"name": "weight_decay", "type": "Float", "min_value": -1, "max_value": 1, "sampling": "log"}"#), &["\"weight_decay\"", "log sampling"]),
        (one(r#"{"name": "lr", "type": "Float", "min_value": 0.01, "max_value": 0.1, "sampling": "cubic"}"#), &["\"lr\"", "sampling"]),
        (one(r#"{"name": "cutout", "type": "Int", "min_value": 4, "max_value": 8, "parent_name": "use_cutout", "parent_values": [true]}"#), &["\"cutout\"", "unknown parent \"use_cutout\""]),
        (one(r#"{"name": "learning_rate", "type": "Float", "min_value": 0.01, "max_value": 0.1}"#), &["\"learning_rate\"", "unknown hyperparameter name"]),
        (one(r#"{"name": "batch_size", "type": "Float", "min_value": 8, "max_value": 64}"#), &["\"batch_size\"", "integers"]),
        (one(r#"{"name": "batch_size", "type": "Choice", "values": []}"#), &["\"batch_size\"", "empty Choice"]),
        (one(r#"{"name": "flip", "type": "Choice", "values": [1, 2]}"#), &["\"flip\"", "true or false"]),
        (one(r#"{"name": "lr", "type": "Float", "min_value": 0.01, "max_value": 0.1, "stepp": 0.01}"#), &["\"lr\"", "unknown field \"stepp\""]),
        (one(r#"{"name": "channels", "type": "Int", "min_value": 4, "max_value": 8, "step": 0}"#), &["\"channels\"", "step"]),
        (one(r#"{"name": "lr", "type": "Float", "max_value": 0.1}"#), &["\"lr\"", "min_value"]),
        (
            one(r#"{"name": "use_cutout", "type": "Boolean"}, {"name": "cutout", "type": "Int", "min_value": 4, "max_value": 8, "parent_name": "use_cutout", "parent_values": [3]}"#),
            &["\"cutout\"", "never takes"],
        ),
        (one(r#"{"name": "lr", "type": "Fixed", "value": 0.1}, {"name": "lr", "type": "Fixed", "value": 0.2}"#), &["\"lr\"", "defined twice"]),
        ("{\"hyperparameters\": 3}".to_string(), &["expected"]),
        ("not json".to_string(), &["not valid JSON"]),
    ];
    for (text, needles) in cases {
        let e = HpSpace::parse(text).expect_err(text);
        assert!(!e.contains('\n'), "{e}");
        for n in *needles {
            assert!(e.contains(n), "'{e}' should mention {n}");
        }
    }
}

/// A file under a fresh temp folder of this process.
fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cellnas-test-{}-hp", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_toml_file_and_its_json_twin_give_the_same_space() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/hp");
    let json = HpSpace::read(&docs.join("hp-fm.json")).expect("the JSON example");
    let toml = HpSpace::read(&docs.join("hp-fm.toml")).expect("the TOML example");
    assert_eq!(toml, json);
    assert_eq!(json.params.len(), 10);
    // Not vacuous: the fields that differ most between the formats (log sampling, a float step,
    // mixed int/float choices, a conditional on a boolean) came through.
    assert_eq!(toml.get("weight_decay").unwrap().grid().unwrap(), vec![json!(0), json!(0.0003), json!(0.001)]);
    assert_eq!(toml.get("cutout").unwrap().parent, Some(("use_cutout".to_string(), vec![json!(true)])));
    // The extension decides: the TOML text under a .json name is read as JSON and refused.
    let docs_toml = std::fs::read_to_string(docs.join("hp-fm.toml")).unwrap();
    let e = HpSpace::read(&temp_file("toml-text.json", &docs_toml)).unwrap_err().to_string();
    assert!(e.contains("toml-text.json") && e.contains("not valid JSON"), "{e}");
}

#[test]
fn bad_toml_is_one_line_naming_the_file_and_the_line_or_parameter() {
    let cases: &[(&str, &[&str])] = &[
        // Syntax: the file, the line and column.
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Float\"\nmin_value = 0.01,\n", &["bad-syntax-0.toml", "not valid TOML", "line 4"]),
        ("[[hyperparameters]]\nname = \"lr\"\nname = \"momentum\"\n", &["bad-syntax-1.toml", "not valid TOML", "line 3"]),
        ("[[hyperparameters]\nname = \"lr\"\n", &["bad-syntax-2.toml", "not valid TOML", "line 1"]),
        // Shape.
        ("hyperparameters = 3\n", &["expected [[hyperparameters]]"]),
        ("title = \"no parameters\"\n", &["expected [[hyperparameters]]"]),
        ("hyperparameters = []\n", &["no hyperparameters"]),
        // The JSON cases, through TOML.
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Gaussian\"\nmin_value = 0.1\nmax_value = 1\n", &["\"lr\"", "unknown type \"Gaussian\""]),
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Float\"\nmin_value = 0.3\nmax_value = 0.1\n", &["\"lr\"", "inverted range"]),
        ("[[hyperparameters]]\nname = \"channels\"\ntype = \"Int\"\nmin_value = 8\nmax_value = 4\n", &["\"channels\"", "inverted range"]),
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Float\"\nmin_value = 0\nmax_value = 0.1\nsampling = \"log\"\n", &["\"lr\"", "log sampling", "above zero"]),
        ("[[hyperparameters]]\nname = \"cutout\"\ntype = \"Int\"\nmin_value = 4\nmax_value = 8\nparent_name = \"use_cutout\"\nparent_values = [true]\n", &["\"cutout\"", "unknown parent \"use_cutout\""]),
        // TOML-only values: inf, and a date, are no numbers.
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Float\"\nmin_value = 0.1\nmax_value = inf\n", &["\"lr\"", "finite number", "inf"]),
        ("[[hyperparameters]]\nname = \"lr\"\ntype = \"Fixed\"\nvalue = 1979-05-27\n", &["\"lr\"", "a number >= 0", "1979-05-27"]),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let name = if i < 3 { format!("bad-syntax-{i}.toml") } else { format!("bad-{i}.toml") };
        let path = temp_file(&name, text);
        let e = HpSpace::read(&path).expect_err(text).to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with(&path.display().to_string()), "'{e}' should name the file");
        for n in *needles {
            assert!(e.contains(n), "'{e}' should mention {n}");
        }
    }
}

/// Synthetic validation accuracy: best at lr 0.05, batch 32; improves with epochs.
fn score(hp: &Assignment, epochs: usize) -> f64 {
    let lr = hp.get("lr").and_then(Value::as_f64).unwrap_or(0.05);
    let b = if hp.get("batch_size") == Some(&json!(32)) { 0.05 } else { 0.0 };
    (0.8 - 0.1 * (lr / 0.05).ln().powi(2) + b - 0.3 / epochs as f64).clamp(0.0, 1.0)
}

fn simulate(tuner: &Tuner, seed: u64, max_epochs: usize) -> Vec<TrialRecord> {
    let s = space();
    let mut done: Vec<TrialRecord> = vec![];
    while let Some(job) = next_job(tuner, &s, seed, max_epochs, &done) {
        let curve: Vec<f64> = (1..=job.epochs).map(|e| score(&job.hyperparameters, e)).collect();
        done.push(TrialRecord { val_accuracy: *curve.last().unwrap(), curve, job, stopped_early: false, predicted: None, prob_below: None, train_seconds: 0.0 });
        assert!(done.len() < 10_000);
    }
    done
}

#[test]
fn every_tuner_is_deterministic_for_a_seed() {
    let no_epochs = HpSpace { params: space().params.into_iter().filter(|p| p.name != "epochs").collect() };
    for tuner in [Tuner::Random { trials: 12 }, Tuner::Bayes { trials: 16, initial: 4, gamma: 0.25, candidates: 24 }, Tuner::Hyperband { factor: 3, iterations: 1 }] {
        let run = |seed| {
            let mut done: Vec<TrialRecord> = vec![];
            let s = if matches!(tuner, Tuner::Hyperband { .. }) { no_epochs.clone() } else { space() };
            while let Some(job) = next_job(&tuner, &s, seed, 9, &done) {
                let curve: Vec<f64> = (1..=job.epochs).map(|e| score(&job.hyperparameters, e)).collect();
                done.push(TrialRecord { val_accuracy: *curve.last().unwrap(), curve, job, stopped_early: false, predicted: None, prob_below: None, train_seconds: 0.0 });
            }
            done.into_iter().map(|r| r.job).collect::<Vec<Job>>()
        };
        let (a, b, c) = (run(3), run(3), run(4));
        assert_eq!(a, b, "{tuner:?}");
        assert_ne!(a, c, "{tuner:?}: another seed should draw other hyperparameters");
        // Values round-trip through trials.jsonl unchanged (a resume compares them).
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Job>>(&text).unwrap(), a);
    }
}

#[test]
fn tpe_beats_random_on_a_smooth_objective() {
    let mean_best = |tuner: Tuner| -> f64 {
        let mut total = 0.0;
        for seed in 0..5 {
            let done = simulate(&tuner, seed, 4);
            total += done.iter().map(|r| r.val_accuracy).fold(0.0, f64::max);
        }
        total / 5.0
    };
    let random = mean_best(Tuner::Random { trials: 20 });
    let tpe = mean_best(Tuner::Bayes { trials: 20, initial: 5, gamma: 0.25, candidates: 24 });
    assert!(tpe >= random, "TPE {tpe} vs random {random}");
}

#[test]
fn hyperband_brackets_follow_li_et_al() {
    // Li et al. (2018), Table 1: R = 81, eta = 3.
    let b = hyperband::brackets(81, 3);
    let rungs: Vec<Vec<(usize, usize)>> = b.iter().map(|b| b.rungs.clone()).collect();
    assert_eq!(
        rungs,
        vec![
            vec![(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
            vec![(34, 3), (11, 9), (3, 27), (1, 81)],
            vec![(15, 9), (5, 27), (1, 81)],
            vec![(8, 27), (2, 81)],
            vec![(5, 81)],
        ]
    );
    assert_eq!(hyperband::s_max(81, 3), 4);
    assert_eq!(hyperband::s_max(9, 3), 2);
    assert_eq!(hyperband::s_max(8, 3), 1);
    assert_eq!(hyperband::s_max(1, 3), 0);
    let b9 = hyperband::brackets(9, 3);
    assert_eq!(b9.iter().map(|b| b.rungs.clone()).collect::<Vec<_>>(), vec![vec![(9, 1), (3, 3), (1, 9)], vec![(5, 3), (1, 9)], vec![(3, 9)]]);
    // Continuing promoted trials: 9 + 3*2 + 6 + 15 + 6 + 27 epochs, against 9 + 9 + 9 + 15 + 9 + 27.
    assert_eq!(hyperband::epochs_total(&b9), (69, 78));

    // The tuner runs that plan: 17 trials, 9 + 3 + 1 + 5 + 1 + 3 jobs, each promotion the best
    // of the rung before.
    let no_epochs = HpSpace { params: space().params.into_iter().filter(|p| p.name != "epochs").collect() };
    let t = Tuner::Hyperband { factor: 3, iterations: 1 };
    let mut done: Vec<TrialRecord> = vec![];
    while let Some(job) = next_job(&t, &no_epochs, 1, 9, &done) {
        let curve: Vec<f64> = (1..=job.epochs).map(|e| score(&job.hyperparameters, e)).collect();
        done.push(TrialRecord { val_accuracy: *curve.last().unwrap(), curve, job, stopped_early: false, predicted: None, prob_below: None, train_seconds: 0.0 });
    }
    assert_eq!(done.len(), 22);
    let trials: std::collections::BTreeSet<usize> = done.iter().map(|r| r.job.trial).collect();
    assert_eq!(trials.len(), 17);
    let rung0: Vec<&TrialRecord> = done.iter().filter(|r| r.job.bracket == Some(0) && r.job.rung == Some(0)).collect();
    let mut by_score = rung0.clone();
    by_score.sort_by(|a, b| b.val_accuracy.total_cmp(&a.val_accuracy));
    let mut top3: Vec<usize> = by_score[..3].iter().map(|r| r.job.trial).collect();
    top3.sort();
    let rung1: Vec<usize> = done.iter().filter(|r| r.job.bracket == Some(0) && r.job.rung == Some(1)).map(|r| r.job.trial).collect();
    assert_eq!(rung1, top3);
    assert!(done.iter().all(|r| r.job.budget == 9));
    // A trial stopped early is never promoted.
    let mut stopped = done[..9].to_vec();
    let best = stopped.iter().enumerate().max_by(|a, b| a.1.val_accuracy.total_cmp(&b.1.val_accuracy)).unwrap().0;
    stopped[best].stopped_early = true;
    let next = next_job(&t, &no_epochs, 1, 9, &stopped).unwrap();
    assert_eq!(next.rung, Some(1));
    assert_ne!(next.trial, stopped[best].job.trial);
}

#[test]
fn curve_extrapolation_recovers_synthetic_curves() {
    // Power law, exponential and log-linear curves: each model family fits its own exactly,
    // and the ensemble predicts epoch 30 from the first 8 epochs within a few points.
    let curves: [Box<dyn Fn(f64) -> f64>; 3] = [Box::new(|x| 0.9 - 0.5 * x.powf(-0.8)), Box::new(|x| 0.85 - 0.6 * (-0.3 * x).exp()), Box::new(|x| 0.4 + 0.1 * x.ln())];
    for (k, f) in curves.iter().enumerate() {
        let ys: Vec<f64> = (1..=8).map(|x| f(x as f64)).collect();
        let own = curve::fit(curve::MODELS[k], &ys).unwrap();
        assert!(own.sse < 1e-8, "model {k} sse {}", own.sse);
        assert!((own.at(30.0) - f(30.0)).abs() < 1e-3, "model {k}: {} vs {}", own.at(30.0), f(30.0));
        let p = curve::predict(&ys, 30, 1).unwrap();
        assert!((p.mean - f(30.0)).abs() < 0.08, "curve {k}: mean {} vs {}", p.mean, f(30.0));
        // Deterministic for a seed.
        assert_eq!(curve::predict(&ys, 30, 1).unwrap().samples, p.samples);
    }
    // A noisy curve heading for ~0.70 is stopped against an incumbent of 0.9 and kept against 0.5.
    let noise = [0.004, -0.006, 0.003, -0.002, 0.005, -0.004];
    let ys: Vec<f64> = (1..=6).map(|x| 0.7 - 0.4 * (x as f64).powf(-1.0) + noise[x - 1]).collect();
    let (stop, mean, p) = curve::should_stop(&ys, 20, 0.9, 0.95, 3).unwrap();
    assert!(stop && p >= 0.95 && mean < 0.8, "stop {stop} p {p} mean {mean}");
    let (stop, _, p) = curve::should_stop(&ys, 20, 0.5, 0.95, 3).unwrap();
    assert!(!stop && p < 0.05, "p {p}");
    // Too short a curve is not extrapolated.
    assert!(curve::predict(&ys[..2], 20, 3).is_none());
}
