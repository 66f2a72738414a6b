//! `cellnas report RUN`: one self-contained HTML page of a run folder (search, morphism
//! search, stand-alone training, rank): its configuration, training curves, search progress,
//! accuracy against parameters, FLOPs (and latency where the history records it) with the
//! Pareto front, the top candidates with their cell drawings, ranking statistics, and the
//! stand-alone test figures. Plots are inline SVG (`plot`), drawings come from `crate::draw`,
//! and every figure is read from the run's own files (`load`).

mod darts;
mod tune;
mod html;
mod load;
mod plot;

pub use load::{parse_time, read, Candidate, Epoch, RunFiles, RunKind};
pub use plot::{Plot, Pt, Series, Style};

use crate::draw;
use crate::error::{Error, Result};
use crate::space::{Arch, Spec};
use html::{config_table, table, tiles, Page, Td};
use plot::{auto_scale, fmt, Format, Scale, COLOURS};
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Candidates shown with drawings in the top table unless asked otherwise.
pub const DEFAULT_TOP: usize = 5;

/// Where `search` and `train` put their report: `report.html` in the run folder.
pub fn default_path(run: &Path) -> PathBuf {
    run.join("report.html")
}

/// Reads the run folder `dir` and writes its report to `out` atomically.
pub fn write(dir: &Path, out: &Path, top: usize) -> Result<()> {
    let html = render(dir, top)?;
    crate::run::write_atomic(out, html.as_bytes())
}

/// The report of the run folder `dir` as one HTML page.
pub fn render(dir: &Path, top: usize) -> Result<String> {
    let mut files = read(dir)?;
    fill_sizes(&mut files);
    let f = &files;
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let adapter = f.kernels.as_ref().and_then(|k| k["adapter"]["name"].as_str()).map(|a| format!(", adapter {a}")).unwrap_or_default();
    let run_id = f.run_id.as_deref().map(|r| format!(", run {r}")).unwrap_or_default();
    let mut page = Page::new(&format!("cellnas {}: {name}", f.kind.name()), &format!("{}{run_id}{adapter}", dir.display()));
    page.section("overview", "Overview", &overview(f));
    if !f.epochs.is_empty() {
        let what = match f.kind {
            RunKind::Search => "Supernet training (one random path per step)",
            RunKind::Morphism => "Training of the first network",
            _ => "Training curves",
        };
        page.section("training", what, &training(f));
    }
    if !f.history.is_empty() {
        page.section("progress", "Search progress", &progress(f));
        page.section("cost", "Accuracy against size", &cost(f));
        page.section("top", "Top candidates", &top_table(f, top));
    }
    if f.config.get("method").and_then(Value::as_str) == Some("darts") {
        if let Some(s) = darts::section(dir) {
            page.section("alpha", "Architecture weights by epoch (DARTS)", &s);
        }
    }
    if let Some(s) = tune::section(dir) {
        page.section("trials", "Trials", &s);
    }
    if let Some(rank) = &f.rank {
        page.section("ranking", "Ranking: inherited against stand-alone accuracy", &ranking(f, rank));
    }
    if !f.rank_trainings.is_empty() {
        page.section("trainings", "Stand-alone trainings of the ranked architectures", &rank_curves(f));
    }
    // A train run's spec as its text form rather than the genotype's JSON tree.
    let mut config = f.config.clone();
    if let Some(spec) = config.get("spec").and_then(|s| serde_json::from_value::<Spec>(s.clone()).ok()) {
        config["spec"] = Value::String(spec.arch.text());
    }
    page.section("config", "Configuration", &config_table(&config));
    if !f.warnings.is_empty() {
        let mut w = String::new();
        for m in &f.warnings {
            let _ = writeln!(w, "<p class=\"warn\">{}</p>", draw::esc(m));
        }
        page.section("warnings", "Warnings", &w);
    }
    let now = crate::search::rfc3339(std::time::SystemTime::now());
    Ok(page.finish(&format!("cellnas {} report of {}, written {now}; every figure is read from the run folder's files.", env!("CARGO_PKG_VERSION"), dir.display())))
}

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn count(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| fmt(v as f64, Format::Number))
}

/// The drawings of an architecture's text form, ids prefixed so many share a page.
fn drawings(text: &str, prefix: &str) -> String {
    match Spec::from_text(text) {
        Ok(spec) => arch_drawings(&spec.arch, prefix),
        Err(e) => format!("<p class=\"warn\">cannot draw: {}</p>", draw::esc(&e.to_string())),
    }
}

fn arch_drawings(arch: &Arch, prefix: &str) -> String {
    let mut o = String::from("<div class=\"cells\">");
    for d in draw::diagrams(arch) {
        let _ = write!(o, "<figure>{}<figcaption>{}</figcaption></figure>", d.svg(&format!("{prefix}-{}", d.name)), draw::esc(&d.title));
    }
    o.push_str("</div>\n");
    o
}

fn overview(f: &RunFiles) -> String {
    let mut o = String::new();
    let mut t: Vec<(String, String)> = Vec::new();
    match f.kind {
        RunKind::Search | RunKind::Morphism | RunKind::Other if f.best.is_some() || !f.history.is_empty() => {
            // A tune's best.json keeps its figures under "best" (trial, val and test accuracy).
            let m = f.best.as_ref().map(|b| if b["metrics"].is_object() { &b["metrics"] } else { &b["best"] });
            let best_acc = m.and_then(|m| m["val_accuracy"].as_f64()).or_else(|| f.history.iter().map(|c| c.accuracy).filter(|a| a.is_finite()).reduce(f64::max));
            t.push(("best validation accuracy".into(), pct(best_acc)));
            if let Some(test) = m.and_then(|m| m["test_accuracy"].as_f64()) {
                t.push(("its test accuracy".into(), pct(Some(test))));
            }
            if !f.history.is_empty() || f.best.as_ref().is_some_and(|b| b["metrics"]["candidate"].is_u64()) {
                t.push(("candidates".into(), f.history.len().to_string()));
            }
            if let Some(b) = f.best.as_ref().map(|b| &b["baseline"]) {
                if let Some(r) = b["random_median_val_accuracy"].as_f64() {
                    t.push((format!("median of the {} random candidates", b["random_candidates"]), pct(Some(r))));
                }
                if let Some(s) = b["supernet_train_accuracy"].as_f64() {
                    t.push(("supernet train accuracy, last epoch".into(), pct(Some(s))));
                }
                if let Some(s) = b["first_network_val_accuracy"].as_f64() {
                    t.push(("first network's validation accuracy".into(), pct(Some(s))));
                }
            }
            if let Some(m) = m {
                t.push(("best: parameters".into(), count(m["params"].as_u64())));
                t.push(("best: FLOPs per image".into(), count(m["flops"].as_u64())));
            }
            o.push_str(&tiles(&t));
            if let Some(b) = &f.best {
                let arch = b.get("spec").and_then(|s| serde_json::from_value::<Spec>(s.clone()).ok()).map(|s| s.arch).or_else(|| {
                    let text = b["arch"].as_str()?;
                    Spec::from_text(text).ok().map(|s| s.arch)
                });
                if let Some(arch) = arch {
                    let which = b["metrics"]["candidate"].as_u64().map_or_else(|| "derived from alpha".to_string(), |c| format!("candidate {c}"));
                    let _ = write!(o, "<h3>Best architecture ({which})</h3>\n{}<p class=\"mono\">{}</p>\n", arch_drawings(&arch, "best"), draw::esc(&arch.text()));
                }
            }
        }
        RunKind::Train => {
            let m = f.metrics.as_ref();
            let g = |k: &str| m.and_then(|m| m[k].as_f64());
            t.push(("test accuracy".into(), pct(g("test_accuracy"))));
            if let Some(r) = m.and_then(|m| m["running_bn"]["test_accuracy"].as_f64()) {
                t.push(("with training's BN statistics (before precise BN)".into(), pct(Some(r))));
            }
            if let Some(v) = g("val_accuracy") {
                t.push(("validation accuracy".into(), pct(Some(v))));
            }
            t.push(("test loss".into(), g("test_loss").map_or("-".into(), |v| format!("{v:.4}"))));
            t.push(("parameters".into(), count(m.and_then(|m| m["params"].as_u64()))));
            t.push(("FLOPs per image".into(), count(m.and_then(|m| m["flops"].as_u64()))));
            t.push(("training time".into(), g("train_seconds").map_or("-".into(), |s| format!("{s:.1} s"))));
            t.push(("epochs".into(), format!("{} of {}", f.epochs.len(), f.config["train"]["epochs"])));
            o.push_str(&tiles(&t));
            if m.is_none() {
                o.push_str("<p class=\"warn\">no metrics.json yet: the training has not finished (`cellnas test --run` tests its latest checkpoint)</p>\n");
            }
            if let Ok(spec) = serde_json::from_value::<Spec>(f.config["spec"].clone()) {
                let _ = write!(o, "<h3>Architecture</h3>\n{}<p class=\"mono\">{}</p>\n", arch_drawings(&spec.arch, "spec"), draw::esc(&spec.arch.text()));
            }
        }
        RunKind::Rank => {
            let s = f.rank.as_ref().map(|r| &r["stats"]);
            t.push(("architectures".into(), f.config["archs"].as_u64().zip(f.config["top"].as_u64()).map_or("-".into(), |(a, b)| format!("{a} uniform + {b} top"))));
            t.push(("Kendall tau".into(), s.and_then(|s| s["kendall_tau"].as_f64()).map_or("-".into(), |v| format!("{v:.3}"))));
            t.push(("trainings finished".into(), f.rank_trainings.iter().filter(|r| r.metrics.is_some()).count().to_string()));
            t.push(("search run".into(), f.config["search_run"].as_str().unwrap_or("-").to_string()));
            o.push_str(&tiles(&t));
            if f.rank.is_none() {
                o.push_str("<p class=\"warn\">no rank.json yet: the rank has not finished</p>\n");
            }
        }
        _ => o.push_str("<p>A run folder without results this report knows how to show yet.</p>\n"),
    }
    o
}

fn epoch_points(epochs: &[crate::report::Epoch], y: impl Fn(&crate::report::Epoch) -> f64) -> Vec<Pt> {
    epochs.iter().map(|e| Pt { attrs: vec![("epoch", e.epoch.to_string())], ..Pt::new((e.epoch + 1) as f64, y(e)) }).collect()
}

fn training(f: &RunFiles) -> String {
    let series = |name: &str, pts: Vec<Pt>| vec![Series { name: name.into(), style: Style::Line, colour: COLOURS[0], points: pts }];
    let loss = Plot { id: "train-loss".into(), title: "Training loss".into(), x_label: "epoch".into(), y_label: "loss".into(), x_format: Format::Number, y_format: Format::Number, x_scale: Scale::Linear, series: series("loss", epoch_points(&f.epochs, |e| e.loss)) };
    let acc = Plot { id: "train-accuracy".into(), title: "Training accuracy".into(), y_label: "accuracy (augmented training batches)".into(), y_format: Format::Percent, series: series("accuracy", epoch_points(&f.epochs, |e| e.accuracy)), ..loss.clone() };
    let mut o = format!("<div class=\"plots\">{}{}</div>\n", loss.svg(), acc.svg());
    let rows: Vec<(Option<String>, Vec<Td>)> = f
        .epochs
        .iter()
        .map(|e| {
            let opt = |v: Option<f64>, p: usize| v.map_or(Td::Text("-".into()), |v| Td::Num(v, format!("{v:.p$}")));
            (None, vec![Td::Num((e.epoch + 1) as f64, (e.epoch + 1).to_string()), Td::Num(e.loss, format!("{:.4}", e.loss)), Td::Num(e.accuracy, format!("{:.2}%", 100.0 * e.accuracy)), opt(e.lr_end, 5), opt(e.images_per_s, 1), opt(e.seconds, 1)])
        })
        .collect();
    let _ = write!(o, "<details><summary>every epoch</summary>\n{}</details>\n", table("epochs", &["epoch", "loss", "accuracy", "lr at end", "images/s", "seconds"], &rows));
    o
}

fn cand_pt(c: &Candidate, x: f64, y: f64) -> Pt {
    Pt { attrs: vec![("id", c.id.to_string())], tip: format!("candidate {}: {:.2}%", c.id, 100.0 * c.accuracy), ..Pt::new(x, y) }
}

/// Per entry the best accuracy so far (NaN scores never win).
fn best_so_far(h: &[Candidate]) -> Vec<f64> {
    let mut best = f64::NEG_INFINITY;
    h.iter().map(|c| {
        if c.accuracy > best {
            best = c.accuracy;
        }
        best
    }).collect()
}

fn progress(f: &RunFiles) -> String {
    let h = &f.history;
    let best = best_so_far(h);
    let y_label = if f.kind == RunKind::Morphism { "validation accuracy (fine-tuned)" } else { "inherited validation accuracy" };
    let by = |x: &dyn Fn(&Candidate) -> Option<f64>, id: &str, label: &str| {
        let scored: Vec<Pt> = h.iter().filter_map(|c| Some(cand_pt(c, x(c)?, c.accuracy))).collect();
        let run: Vec<Pt> = h.iter().zip(&best).filter_map(|(c, &b)| Some(Pt { tip: format!("best after candidate {}: {:.2}%", c.id, 100.0 * b), ..cand_pt(c, x(c)?, b) })).collect();
        Plot {
            id: id.into(),
            title: format!("Validation accuracy against {label}"),
            x_label: label.into(),
            y_label: y_label.into(),
            x_format: Format::Number,
            y_format: Format::Percent,
            x_scale: Scale::Linear,
            series: vec![
                Series { name: "candidate".into(), style: Style::Points, colour: COLOURS[0], points: scored },
                Series { name: "best so far".into(), style: Style::Step, colour: COLOURS[1], points: run },
            ],
        }
        .svg()
    };
    let mut o = format!("<div class=\"plots\">{}", by(&|c| Some(c.id as f64), "progress-candidates", "candidates evaluated"));
    if h.iter().any(|c| c.elapsed.is_some()) {
        o.push_str(&by(&|c| c.elapsed, "progress-time", "seconds of search"));
    }
    o.push_str("</div>\n");
    if f.kind == RunKind::Morphism {
        o.push_str("<p class=\"sub\">A morphism search's accuracies are of networks fine-tuned from their parents, not inherited from a supernet.</p>\n");
    }
    o
}

/// Each architecture once (its first entry), in history order.
fn unique(h: &[Candidate]) -> Vec<&Candidate> {
    let mut seen = std::collections::HashSet::new();
    h.iter().filter(|c| seen.insert(c.key.as_str())).collect()
}

/// Indices of `pts` (cost, accuracy) on the Pareto front: no other point costs at most as much
/// with at least the accuracy, one of them strictly. Sorted by cost.
pub fn pareto(pts: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pts.len()).filter(|&i| pts[i].0.is_finite() && pts[i].1.is_finite()).collect();
    order.sort_by(|&a, &b| pts[a].0.total_cmp(&pts[b].0).then(pts[b].1.total_cmp(&pts[a].1)));
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        if pts[i].1 > best {
            best = pts[i].1;
            front.push(i);
        }
    }
    front
}

/// Accuracy against a cost with its Pareto front.
fn cost_plot(id: &str, label: &str, items: &[(f64, f64, String, String)]) -> String {
    let pts: Vec<(f64, f64)> = items.iter().map(|i| (i.0, i.1)).collect();
    let pt = |i: usize| Pt { attrs: vec![("id", items[i].2.clone())], tip: items[i].3.clone(), ..Pt::new(items[i].0, items[i].1) };
    let front = pareto(&pts);
    Plot {
        id: id.into(),
        title: format!("Accuracy against {label}"),
        x_label: label.into(),
        y_label: "accuracy".into(),
        x_format: Format::Number,
        y_format: Format::Percent,
        x_scale: auto_scale(pts.iter().map(|p| p.0)),
        series: vec![
            Series { name: "architecture".into(), style: Style::Points, colour: COLOURS[0], points: (0..items.len()).map(pt).collect() },
            Series { name: "Pareto front".into(), style: Style::Step, colour: COLOURS[1], points: front.into_iter().map(pt).collect() },
        ],
    }
    .svg()
}

fn cost(f: &RunFiles) -> String {
    let u = unique(&f.history);
    let item = |c: &Candidate, x: Option<f64>| x.map(|x| (x, c.accuracy, c.id.to_string(), format!("candidate {}: {:.2}%, {} parameters, {} FLOPs", c.id, 100.0 * c.accuracy, count(c.params), count(c.flops))));
    let mut o = String::from("<div class=\"plots\">");
    let params: Vec<_> = u.iter().filter_map(|c| item(c, c.params.map(|p| p as f64))).collect();
    let flops: Vec<_> = u.iter().filter_map(|c| item(c, c.flops.map(|p| p as f64))).collect();
    let latency: Vec<_> = u.iter().filter_map(|c| item(c, c.latency_ms)).collect();
    o.push_str(&cost_plot("acc-params", "parameters", &params));
    o.push_str(&cost_plot("acc-flops", "FLOPs per image", &flops));
    if !latency.is_empty() {
        o.push_str(&cost_plot("acc-latency", "latency (ms)", &latency));
    }
    o.push_str("</div>\n<p class=\"sub\">Each architecture once; the front joins those no other beats on both accuracy and size.</p>\n");
    o
}

fn top_table(f: &RunFiles, top: usize) -> String {
    let mut u = unique(&f.history);
    // Best first; on ties the smaller, then the earlier (as the search's own top list).
    let score = |a: f64| if a.is_nan() { f64::NEG_INFINITY } else { a };
    u.sort_by(|a, b| score(b.accuracy).total_cmp(&score(a.accuracy)).then(a.params.cmp(&b.params)).then(a.id.cmp(&b.id)));
    let rows: Vec<(Option<String>, Vec<Td>)> = u
        .iter()
        .take(top)
        .enumerate()
        .map(|(i, c)| {
            let num = |v: Option<u64>| v.map_or(Td::Text("-".into()), |v| Td::Num(v as f64, count(Some(v))));
            let arch = format!("{}<details><summary>text</summary><span class=\"mono\">{}</span></details>", drawings(&c.arch, &format!("top{}", c.id)), draw::esc(&c.arch));
            (
                Some(c.id.to_string()),
                vec![
                    Td::Num((i + 1) as f64, (i + 1).to_string()),
                    Td::Num(c.id as f64, c.id.to_string()),
                    Td::Num(c.accuracy, pct(Some(c.accuracy))),
                    c.loss.map_or(Td::Text("-".into()), |l| Td::Num(l, format!("{l:.4}"))),
                    num(c.params),
                    num(c.flops),
                    Td::Html(arch),
                ],
            )
        })
        .collect();
    format!("<p class=\"sub\">The {} best of {} distinct architectures.</p>\n{}", rows.len(), u.len(), table("top", &["#", "candidate", "val accuracy", "val loss", "params", "FLOPs", "architecture"], &rows))
}

fn ranking(f: &RunFiles, rank: &Value) -> String {
    let s = &rank["stats"];
    let g = |k: &str| s[k].as_f64();
    let three = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let ci = s["kendall_tau_90"].as_array().and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?))).map_or(String::new(), |(a, b)| format!(" (90% interval {a:.2}..{b:.2})"));
    let mut rows = vec![
        ("architectures".to_string(), s["n"].to_string()),
        ("Kendall tau".into(), format!("{}{ci}", three(g("kendall_tau")))),
        ("Spearman rho".into(), three(g("spearman_rho"))),
        ("Pearson r".into(), three(g("pearson_r"))),
        (format!("precision@{}", s["precision_k"]), three(g("precision_at_k"))),
        ("regret of the inherited pick".into(), g("regret").map_or("-".into(), |r| format!("{:.2} points", 100.0 * r))),
        ("uniform sample, stand-alone median".into(), pct(g("uniform_median"))),
        ("uniform sample, 75th percentile".into(), pct(g("uniform_p75"))),
        ("share of the uniform sample each top architecture beats".into(), s["top_percentiles"].as_array().map_or("-".into(), |a| a.iter().filter_map(Value::as_f64).map(|v| format!("{:.0}%", 100.0 * v)).collect::<Vec<_>>().join(", "))),
    ];
    // With --early-stop the figures above take a stopped training's predicted final in its place.
    if let Some(e) = rank["early_stop"].as_object() {
        let t = &rank["stats_trained"];
        rows.push((
            "stopped early (learning curve)".into(),
            format!("{} of {}, {} of {} epochs trained; the figures above use a stopped one's predicted final validation accuracy", e["stopped"], s["n"], e["epochs_trained"], e["epochs_full"]),
        ));
        rows.push(("Kendall tau, fully trained only".into(), format!("{} over {}", three(t["kendall_tau"].as_f64()), t["n"])));
    }
    let mut o = String::from("<table class=\"stats\"><tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(o, "<tr><td>{}</td><td class=\"mono\">{}</td></tr>", draw::esc(&k), draw::esc(&v));
    }
    o.push_str("</tbody></table>\n");
    let archs = rank["archs"].as_array().cloned().unwrap_or_default();
    let by_source = |src: &str, colour| Series {
        name: src.into(),
        style: Style::Points,
        colour,
        points: archs
            .iter()
            .filter(|a| a["source"].as_str() == Some(src))
            .filter_map(|a| {
                let (x, y) = (a["inherited_accuracy"].as_f64()?, a["standalone_test_accuracy"].as_f64()?);
                Some(Pt { attrs: vec![("id", a["id"].to_string())], tip: format!("architecture {} ({src}): inherited {:.2}%, stand-alone {:.2}%", a["id"], 100.0 * x, 100.0 * y), ..Pt::new(x, y) })
            })
            .collect(),
    };
    let scatter = Plot {
        id: "rank-scatter".into(),
        title: "Stand-alone against inherited accuracy".into(),
        x_label: "inherited validation accuracy (supernet)".into(),
        y_label: "stand-alone test accuracy".into(),
        x_format: Format::Percent,
        y_format: Format::Percent,
        x_scale: Scale::Linear,
        series: vec![by_source("uniform", COLOURS[0]), by_source("top", COLOURS[1])],
    };
    let flops_of = |id: u64| f.rank_trainings.iter().find(|r| r.id as u64 == id).and_then(|r| r.metrics.as_ref()?["flops"].as_u64());
    let sized: Vec<(f64, f64, String, String)> = archs
        .iter()
        .filter_map(|a| Some((a["params"].as_u64()? as f64, a["standalone_test_accuracy"].as_f64()?, a["id"].to_string(), format!("architecture {}: {:.2}%", a["id"], 100.0 * a["standalone_test_accuracy"].as_f64()?))))
        .collect();
    let flopped: Vec<(f64, f64, String, String)> = archs
        .iter()
        .filter_map(|a| Some((flops_of(a["id"].as_u64()?)? as f64, a["standalone_test_accuracy"].as_f64()?, a["id"].to_string(), format!("architecture {}", a["id"]))))
        .collect();
    let _ = write!(o, "<div class=\"plots\">{}{}{}</div>\n", scatter.svg(), cost_plot("rank-params", "parameters", &sized), cost_plot("rank-flops", "FLOPs per image", &flopped));
    let rows: Vec<(Option<String>, Vec<Td>)> = archs
        .iter()
        .map(|a| {
            let n = |k: &str| a[k].as_f64().map_or(Td::Text("-".into()), |v| Td::Num(v, pct(Some(v))));
            let id = a["id"].as_u64().unwrap_or(0);
            let text = a["genotype"].as_str().unwrap_or("");
            (
                Some(id.to_string()),
                vec![
                    Td::Num(id as f64, id.to_string()),
                    Td::Text(a["source"].as_str().unwrap_or("-").into()),
                    n("inherited_accuracy"),
                    match a["early_stop"].as_object() {
                        Some(e) => Td::Text(format!("stopped at epoch {}, predicted {}", e["epochs"], pct(e["predicted"].as_f64()))),
                        None => n("standalone_test_accuracy"),
                    },
                    n("standalone_val_accuracy"),
                    a["params"].as_u64().map_or(Td::Text("-".into()), |p| Td::Num(p as f64, count(Some(p)))),
                    flops_of(id).map_or(Td::Text("-".into()), |p| Td::Num(p as f64, count(Some(p)))),
                    Td::Html(format!("<details><summary>drawing</summary>{}<span class=\"mono\">{}</span></details>", drawings(text, &format!("rank{id}")), draw::esc(text))),
                ],
            )
        })
        .collect();
    o.push_str(&table("ranked", &["id", "source", "inherited", "stand-alone test", "stand-alone val", "params", "FLOPs", "architecture"], &rows));
    o
}

fn rank_curves(f: &RunFiles) -> String {
    let series = |y: fn(&Epoch) -> f64| -> Vec<Series> {
        f.rank_trainings
            .iter()
            .map(|r| Series {
                name: format!("architecture {}", r.id),
                style: Style::Line,
                colour: COLOURS[r.id % COLOURS.len()],
                points: epoch_points(&r.epochs, y).into_iter().map(|p| Pt { attrs: vec![("id", r.id.to_string()), ("epoch", p.attrs[0].1.clone())], ..p }).collect(),
            })
            .collect()
    };
    let loss = Plot { id: "rank-loss".into(), title: "Training loss".into(), x_label: "epoch".into(), y_label: "loss".into(), x_format: Format::Number, y_format: Format::Number, x_scale: Scale::Linear, series: series(|e| e.loss) };
    let acc = Plot { id: "rank-accuracy".into(), title: "Training accuracy".into(), y_label: "accuracy".into(), y_format: Format::Percent, series: series(|e| e.accuracy), ..loss.clone() };
    format!("<div class=\"plots\">{}{}</div>\n", loss.svg(), acc.svg())
}

/// Parameters and FLOPs of history entries that do not record them, counted on the network the
/// run's config describes (stand-alone conventions, as a search's entries count), from
/// `nn::size`'s counting graph. Left empty, with a warning, where that cannot be done.
fn fill_sizes(f: &mut RunFiles) {
    if f.history.iter().all(|c| c.params.is_some() && c.flops.is_some()) {
        return;
    }
    let counted = (|| -> Result<Vec<(usize, u64, u64)>> {
        let mut net: crate::nn::darts::NetConfig = serde_json::from_value(f.config["net"].clone()).map_err(|e| Error::Invalid(format!("config.json \"net\": {e}")))?;
        net.supernet = false;
        let data: crate::pipeline::data::DataConfig = serde_json::from_value(f.config["data"].clone()).map_err(|e| Error::Invalid(format!("config.json \"data\": {e}")))?;
        let splits = match &data.path {
            Some(p) => crate::data::load_dir(p)?,
            None => crate::data::embedded()?,
        };
        let (h, w) = (splits.train.h, splits.train.w);
        let mut out = Vec::new();
        for (i, c) in f.history.iter().enumerate().filter(|(_, c)| c.params.is_none() || c.flops.is_none()) {
            let arch = Spec::from_text(&c.arch)?.arch;
            let (p, fl) = crate::nn::size(&net, &arch, h, w)?;
            out.push((i, p, fl));
        }
        Ok(out)
    })();
    match counted {
        Ok(v) => {
            for (i, p, fl) in v {
                let c = &mut f.history[i];
                c.params.get_or_insert(p);
                c.flops.get_or_insert(fl);
            }
        }
        Err(e) => f.warnings.push(format!("history.jsonl does not record every candidate's parameters and FLOPs, and counting them failed: {e}")),
    }
}
