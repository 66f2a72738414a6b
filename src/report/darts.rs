//! The part of a report only a DARTS search has: the genotype alpha described after each epoch
//! and the mean weight of each op over the normal cell's edges, so a drift toward
//! parameter-free ops (the collapse DARTS is known for) shows epoch by epoch.

use super::html::{table, Td};
use crate::draw::esc;
use crate::pipeline::darts::DartsEpoch;
use crate::space::Op;
use std::fmt::Write;
use std::path::Path;

pub fn section(dir: &Path) -> Option<String> {
    let (epochs, _) = crate::run::read_jsonl::<DartsEpoch>(&dir.join("metrics.jsonl")).ok()?;
    let first = epochs.first()?;
    let mut o = String::from("<p>softmax(alpha) of the normal cell, averaged over its edges per op, after each epoch; parameter-free ops in italics. The derived genotype keeps each node's two strongest inputs by their strongest op other than none.</p>\n");
    let mut heads: Vec<String> = vec!["epoch".into(), "train loss".into(), "arch loss".into(), "normal skips".into()];
    heads.extend(first.ops.iter().cloned());
    heads.push("genotype".into());
    let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    let rows: Vec<(Option<String>, Vec<Td>)> = epochs
        .iter()
        .map(|e| {
            let mut cells = vec![Td::Num((e.epoch + 1) as f64, (e.epoch + 1).to_string()), Td::Num(e.loss, format!("{:.4}", e.loss)), Td::Num(e.arch_loss, format!("{:.4}", e.arch_loss)), Td::Num(e.normal_skips as f64, e.normal_skips.to_string())];
            for k in 0..e.ops.len() {
                let mean = e.normal.iter().map(|r| r.get(k).copied().unwrap_or(f32::NAN) as f64).sum::<f64>() / e.normal.len().max(1) as f64;
                let free = Op::from_name(&e.ops[k]).is_ok_and(|o| matches!(o, Op::None | Op::SkipConnect | Op::MaxPool3x3 | Op::AvgPool3x3));
                let text = format!("{:.3}", mean);
                cells.push(if free { Td::Html(format!("<i>{}</i>", esc(&text))) } else { Td::Num(mean, text) });
            }
            cells.push(Td::Html(format!("<span class=\"mono\">{}</span>", esc(&e.genotype))));
            (Some(format!("epoch{}", e.epoch)), cells)
        })
        .collect();
    let _ = write!(o, "{}", table("darts", &heads, &rows));
    Some(o)
}
