//! The part of a report only a `tune` run has: every trial's validation curve (rungs of one
//! trial continue one line, as promoted trials continue their training) and the trials as a
//! table with their hyperparameters, Hyperband bracket and rung, and early stops.

use super::html::{table, Td};
use super::plot::{Format, Plot, Pt, Scale, Series, Style, COLOURS};
use crate::tune::TrialRecord;
use std::collections::BTreeMap;
use std::path::Path;

pub fn section(dir: &Path) -> Option<String> {
    let (records, _) = crate::run::read_jsonl::<TrialRecord>(&dir.join("trials.jsonl")).ok()?;
    if records.is_empty() {
        return None;
    }
    // A promoted trial has one record per rung, each with its whole curve: the last one counts.
    let mut last: BTreeMap<usize, &TrialRecord> = BTreeMap::new();
    for r in &records {
        last.insert(r.job.trial, r);
    }
    let series = last
        .values()
        .enumerate()
        .map(|(k, r)| Series {
            name: format!("trial {}", r.job.trial),
            style: Style::Line,
            colour: COLOURS[k % COLOURS.len()],
            points: r.curve.iter().enumerate().map(|(e, &v)| Pt { attrs: vec![("id", r.job.trial.to_string())], tip: format!("trial {} epoch {}: {:.2}%", r.job.trial, e + 1, 100.0 * v), ..Pt::new((e + 1) as f64, v) }).collect(),
        })
        .collect();
    let plot = Plot { id: "tune-curves".into(), title: "Validation accuracy of every trial".into(), x_label: "epoch".into(), y_label: "validation accuracy".into(), x_format: Format::Number, y_format: Format::Percent, x_scale: Scale::Linear, series };
    let rows: Vec<(Option<String>, Vec<Td>)> = records
        .iter()
        .map(|r| {
            let opt = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
            (
                Some(r.job.trial.to_string()),
                vec![
                    Td::Num(r.job.trial as f64, r.job.trial.to_string()),
                    Td::Text(format!("{} / {}", opt(r.job.bracket), opt(r.job.rung))),
                    Td::Num(r.job.epochs as f64, format!("{} of {}", r.job.epochs, r.job.budget)),
                    Td::Num(r.val_accuracy, format!("{:.2}%", 100.0 * r.val_accuracy)),
                    Td::Text(if r.stopped_early { format!("yes (P below {:.2})", r.prob_below.unwrap_or(f64::NAN)) } else { "no".into() }),
                    Td::Html(format!("<span class=\"mono\">{}</span>", crate::draw::esc(&serde_json::to_string(&r.job.hyperparameters).unwrap_or_default()))),
                ],
            )
        })
        .collect();
    let mut o = format!("<div class=\"plots\">{}</div>\n", plot.svg());
    o.push_str("<p>One row per job (a promoted trial has one per rung); its curve continues the trial's earlier rungs.</p>\n");
    o.push_str(&table("trials", &["trial", "bracket / rung", "epochs", "val accuracy", "stopped early", "hyperparameters"], &rows));
    Some(o)
}
