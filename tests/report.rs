//! `cellnas report` on real tiny runs: `search` writes it at its end, `--no-report` not, every
//! plotted point is the number in the run's files, the page is self-contained, it opens in
//! headless Chromium without a script error (a screenshot is kept), and a folder that is not a
//! run is a one-line error naming the file expected.

mod common;

use common::{fails, ok, run, tmp};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NET: &[&str] = &["--train-limit", "64", "--batch-size", "32", "--epochs", "2", "--channels", "4", "--layers", "3", "--quiet", "--seed", "5"];
const SEARCH: &[&str] = &["--nodes", "2", "--budget", "5", "--val", "48", "--recalibration-batches", "1"];

struct Runs {
    search: PathBuf,
    train: PathBuf,
    rank: PathBuf,
    /// What `search` printed.
    search_stdout: String,
}

/// One tiny search, train and rank, shared by the tests of this file.
fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let base = tmp("report");
        let (search, train, rank) = (base.join("search"), base.join("train"), base.join("rank"));
        let mut a = vec!["search", "--out", search.to_str().unwrap()];
        a.extend_from_slice(NET);
        a.extend_from_slice(SEARCH);
        let search_stdout = ok(run(&a));
        let best = search.join("best.json");
        // --no-report here (search tests the report written at the end); `report` writes it.
        let mut a = vec!["train", "--spec", best.to_str().unwrap(), "--out", train.to_str().unwrap(), "--precise-bn", "1", "--val", "32", "--no-report"];
        a.extend_from_slice(NET);
        let train_stdout = ok(run(&a));
        assert!(!train_stdout.contains("report:") && !train.join("report.html").exists(), "--no-report writes none:\n{train_stdout}");
        ok(run(&["report", train.to_str().unwrap()]));
        let a = ["rank", "--run", search.to_str().unwrap(), "--out", rank.to_str().unwrap(), "--archs", "1", "--top", "1", "--epochs", "1", "--train-limit", "64", "--batch-size", "32", "--channels", "4", "--layers", "3", "--precise-bn", "1", "--quiet"];
        ok(run(&a));
        Runs { search, train, rank, search_stdout }
    })
}

/// Every `<svg>...</svg>` of the page (none is nested in another), parsed as XML.
fn svgs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<svg ") {
        let end = rest[i..].find("</svg>").expect("an <svg> is closed") + i + "</svg>".len();
        let svg = &rest[i..end];
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("an SVG of the report is not XML: {e}\n{svg}"));
        out.push(svg.to_string());
        rest = &rest[end..];
    }
    out
}

/// Per plot id, per series name, its points' attributes (`data-x`, `data-y`, `data-id`, ...).
type Points = BTreeMap<String, BTreeMap<String, Vec<BTreeMap<String, String>>>>;

fn plotted(html: &str) -> Points {
    let mut plots = Points::new();
    for svg in svgs(html) {
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let Some(plot) = doc.root_element().attribute("data-plot") else { continue };
        let series = plots.entry(plot.to_string()).or_default();
        for g in doc.descendants().filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("series")) {
            let pts = series.entry(g.attribute("data-series").unwrap().to_string()).or_default();
            for c in g.children().filter(|n| n.has_tag_name("circle")) {
                pts.push(c.attributes().filter_map(|a| Some((a.name().strip_prefix("data-")?.to_string(), a.value().to_string()))).collect());
            }
        }
    }
    plots
}

fn f(p: &BTreeMap<String, String>, k: &str) -> f64 {
    p.get(k).unwrap_or_else(|| panic!("point without data-{k}: {p:?}")).parse().unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    let (records, warnings) = cellnas::run::read_jsonl::<Value>(path).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    records
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page names nothing outside itself: no scripts, styles, images or fonts to fetch.
fn self_contained(html: &str) {
    let outside = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in ["http://", "https://", "src=", "<link", "@import", "url(http"] {
        assert!(!outside.contains(needle), "the report refers to something outside itself ({needle})");
    }
}

/// Training curves: epoch (from 1) against loss and accuracy of every line of metrics.jsonl.
fn check_curves(points: &Points, metrics: &[Value]) {
    assert!(!metrics.is_empty());
    for (plot, field) in [("train-loss", "loss"), ("train-accuracy", "accuracy")] {
        let pts = &points[plot][field];
        assert_eq!(pts.len(), metrics.len(), "{plot}");
        for (p, m) in pts.iter().zip(metrics) {
            assert_eq!(f(p, "x"), m["epoch"].as_f64().unwrap() + 1.0, "{plot}");
            assert_eq!(f(p, "y"), m[field].as_f64().unwrap(), "{plot}: the plotted value is the file's, bit for bit");
        }
    }
}

#[test]
fn search_report_plots_exactly_the_runs_files() {
    let r = runs();
    let path = r.search.join("report.html");
    assert!(r.search_stdout.contains(&format!("report: {}", path.display())), "search prints the report's path:\n{}", r.search_stdout);
    let html = read(&path);
    self_contained(&html);
    let points = plotted(&html);
    let history = jsonl(&r.search.join("history.jsonl"));
    assert_eq!(history.len(), 5);
    let acc = |e: &Value| e["accuracy"].as_f64().unwrap();

    // Score per candidate and best so far, against candidates.
    let cand = &points["progress-candidates"]["candidate"];
    assert_eq!(cand.len(), history.len());
    let mut best = f64::MIN;
    for ((p, b), e) in cand.iter().zip(&points["progress-candidates"]["best so far"]).zip(&history) {
        assert_eq!((f(p, "x"), f(p, "y")), (e["id"].as_f64().unwrap(), acc(e)));
        assert_eq!(p["id"], e["id"].to_string());
        best = best.max(acc(e));
        assert_eq!((f(b, "x"), f(b, "y")), (e["id"].as_f64().unwrap(), best));
    }
    // Against time: the same scores, in order, at non-decreasing times.
    let timed = &points["progress-time"]["candidate"];
    assert_eq!(timed.iter().map(|p| f(p, "y")).collect::<Vec<_>>(), history.iter().map(acc).collect::<Vec<_>>());
    assert!(timed.windows(2).all(|w| f(&w[0], "x") <= f(&w[1], "x")) && f(&timed[0], "x") > 0.0, "{timed:?}");

    // Accuracy against parameters and FLOPs: each architecture once, and the marked front is
    // exactly the set no other architecture dominates.
    let mut seen = HashSet::new();
    let unique: Vec<&Value> = history.iter().filter(|e| seen.insert(e["key"].as_str().unwrap())).collect();
    for (plot, cost) in [("acc-params", "params"), ("acc-flops", "flops")] {
        let pts = &points[plot]["architecture"];
        let want: Vec<(String, f64, f64)> = unique.iter().map(|e| (e["id"].to_string(), e[cost].as_f64().unwrap(), acc(e))).collect();
        let got: Vec<(String, f64, f64)> = pts.iter().map(|p| (p["id"].clone(), f(p, "x"), f(p, "y"))).collect();
        assert_eq!(got, want, "{plot}");
        let front: HashSet<String> = points[plot]["Pareto front"].iter().map(|p| p["id"].clone()).collect();
        for (id, c, a) in &want {
            let dominated = want.iter().any(|(_, c2, a2)| c2 <= c && a2 >= a && (c2 < c || a2 > a));
            assert_eq!(front.contains(id), !dominated, "{plot}: candidate {id} ({c}, {a}) on the front: {}", front.contains(id));
        }
    }
    check_curves(&points, &jsonl(&r.search.join("metrics.jsonl")));
    // The top table: the best candidate first, with its cells drawn.
    let best_json = common::read_json(&r.search.join("best.json"));
    let best_id = best_json["metrics"]["candidate"].to_string();
    let top = html.split("<section id=\"top\">").nth(1).unwrap();
    assert!(top[top.find("<tr data-id=").unwrap()..].starts_with(&format!("<tr data-id=\"{best_id}\">")), "best candidate first");
    let drawn = svgs(top).iter().filter(|s| s.contains("data-cell=\"normal\"")).count();
    assert_eq!(drawn, unique.len().min(5), "a normal cell drawn per top candidate");
    // ids are unique on the page (several drawings share it).
    let ids: Vec<&str> = html.match_indices(" id=\"").map(|(i, _)| html[i + 5..].split('"').next().unwrap()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len(), "duplicate ids");
}

#[test]
fn train_and_rank_reports_show_their_results() {
    let r = runs();
    let html = read(&r.train.join("report.html"));
    self_contained(&html);
    let metrics = common::read_json(&r.train.join("metrics.json"));
    check_curves(&plotted(&html), &jsonl(&r.train.join("metrics.jsonl")));
    let test = format!("{:.2}%", 100.0 * metrics["test_accuracy"].as_f64().unwrap());
    assert!(html.contains(&format!("<div class=\"v\">{test}</div><div class=\"k\">test accuracy</div>")), "test accuracy {test} shown");
    assert!(html.contains("data-cell=\"normal\"") && html.contains("data-cell=\"reduce\""), "the trained cells drawn");

    // `rank` writes no report itself; `cellnas report` does, to --out.
    assert!(!r.rank.join("report.html").exists());
    let out = r.rank.parent().unwrap().join("rank.html");
    let printed = ok(run(&["report", r.rank.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    assert!(printed.contains(&out.display().to_string()));
    let html = read(&out);
    self_contained(&html);
    let rank = common::read_json(&r.rank.join("rank.json"));
    let points = plotted(&html);
    let mut got: Vec<(String, f64, f64)> = points["rank-scatter"].values().flatten().map(|p| (p["id"].clone(), f(p, "x"), f(p, "y"))).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, f64, f64)> = rank["archs"].as_array().unwrap().iter().map(|a| (a["id"].to_string(), a["inherited_accuracy"].as_f64().unwrap(), a["standalone_test_accuracy"].as_f64().unwrap())).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert_eq!(points["rank-loss"].len(), want.len(), "one training curve per ranked architecture");
    let tau = rank["stats"]["kendall_tau"].as_f64().map_or("-".into(), |t| format!("{t:.3}"));
    assert!(html.contains(&tau), "Kendall tau {tau} shown");
}

#[test]
fn bad_folders_are_one_line_errors() {
    let base = tmp("report-bad");
    let train = &runs().train;
    let best = runs().search.join("best.json");
    std::fs::create_dir_all(base.join("empty")).unwrap();
    let one_line = |o: std::process::Output, needles: &[&str]| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        fails(o, needles);
    };
    one_line(run(&["report", base.join("empty").to_str().unwrap()]), &["empty", "config.json"]);
    one_line(run(&["report", base.join("nope").to_str().unwrap()]), &["nope", "config.json"]);
    one_line(run(&["report", best.to_str().unwrap()]), &["best.json", "config.json"]);
    one_line(run(&["report", train.to_str().unwrap(), "--out", base.to_str().unwrap()]), &["--out", "folder"]);
    // An edited file is refused by name, as every reader of a run does.
    let copy = base.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(train).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "report.html" {
            continue;
        }
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let m = copy.join("metrics.json");
    std::fs::write(&m, read(&m).replace("\"test_accuracy\"", "\"test_accuracy\" ")).unwrap();
    one_line(run(&["report", copy.to_str().unwrap()]), &["metrics.json", "changed"]);
    assert!(!copy.join("report.html").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// Opens `page` in headless Chromium: the DOM after scripts ran, and what Chromium logged.
fn chromium(args: &[&str], page: &Path) -> (String, String) {
    let profile = tmp(&format!("chromium-profile-{}", page.file_stem().unwrap().to_string_lossy()));
    let mut cmd = Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start chromium ({e}): the report's browser test needs Debian's chromium package (apt-get install -y chromium; .ci/run installs it)"));
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let t0 = Instant::now();
    let out = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
        // The one process this test started, by its id.
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
        panic!("chromium did not finish within 120 s on {}", page.display())
    });
    let out = out.expect("chromium ran");
    let _ = std::fs::remove_dir_all(&profile);
    let (dom, log) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "chromium failed after {:?}: {}\n{log}", t0.elapsed(), out.status);
    (dom, log)
}

/// Script errors of a page opened in Chromium: those its error hook recorded on the root
/// element, a page whose script never reached its last line, and uncaught errors Chromium logged.
fn script_errors(page: &Path) -> Vec<String> {
    let (dom, log) = chromium(&["--dump-dom"], page);
    let mut errors = Vec::new();
    if let Some(i) = dom.find("data-script-errors=\"") {
        errors.push(dom[i..].split('"').nth(1).unwrap_or("").to_string());
    }
    if !dom.contains("data-report-ready=\"1\"") {
        errors.push("the page's script did not finish (no data-report-ready)".into());
    }
    errors.extend(log.lines().filter(|l| l.contains("Uncaught")).map(str::to_string));
    errors
}

#[test]
fn report_opens_in_chromium_without_script_errors() {
    let r = runs();
    // The check itself sees an error when there is one.
    let broken = tmp("broken-page");
    std::fs::create_dir_all(&broken).unwrap();
    let bad = broken.join("broken.html");
    let good = read(&r.search.join("report.html"));
    std::fs::write(&bad, good.replacen("document.querySelectorAll('table.sortable')", "document.querySelectorAll('table.sortable').nope()", 1)).unwrap();
    assert!(!script_errors(&bad).is_empty(), "a page with a failing script must be caught");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, page) in [("search", r.search.join("report.html")), ("train", r.train.join("report.html"))] {
        let errors = script_errors(&page);
        assert!(errors.is_empty(), "{}: script errors in Chromium: {errors:?}", page.display());
        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,2400", "--hide-scrollbars"], &page);
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "{} is not a screenshot of a page", shot.display());
        println!("screenshot of the {name} report: {}", shot.display());
    }
    let _ = std::fs::remove_dir_all(&broken);
}
