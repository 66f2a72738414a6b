//! Predictions as CSV (one row per image) or JSON (the model, then one object per image).

use super::images::Inputs;
use super::model::TrainedNet;
use super::predict::argmax;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// By the output file's extension: .json is JSON, anything else CSV.
    pub fn from_path(path: &std::path::Path) -> Format {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) { Format::Json } else { Format::Csv }
    }
}

/// One image's prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub source: String,
    pub label: Option<usize>,
    pub predicted: usize,
    /// The predicted class's name, where the dataset is known.
    pub predicted_name: Option<String>,
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

/// Pairs each input with its row of `logits` and of `probs` (their softmax).
pub fn predictions(model: &TrainedNet, inputs: &Inputs, logits: &[f32], probs: &[f32]) -> Vec<Prediction> {
    let k = model.net.classes;
    (0..inputs.data.n)
        .map(|i| {
            let row = &logits[i * k..(i + 1) * k];
            let predicted = argmax(row);
            Prediction {
                source: inputs.names[i].clone(),
                label: inputs.labels[i],
                predicted,
                predicted_name: model.class_name(predicted).map(str::to_string),
                logits: row.to_vec(),
                probabilities: probs[i * k..(i + 1) * k].to_vec(),
            }
        })
        .collect()
}

/// Fraction of labelled images predicted right, and how many had labels.
pub fn accuracy(preds: &[Prediction]) -> Option<(f64, usize)> {
    let labelled: Vec<_> = preds.iter().filter_map(|p| p.label.map(|l| l == p.predicted)).collect();
    (!labelled.is_empty()).then(|| (labelled.iter().filter(|&&ok| ok).count() as f64 / labelled.len() as f64, labelled.len()))
}

/// A CSV field, quoted where it holds a comma, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Floats as Rust prints them: the shortest text that reads back to the same f32.
pub fn csv(model: &TrainedNet, preds: &[Prediction]) -> String {
    let k = model.net.classes;
    let mut head = vec!["index".to_string(), "source".into(), "label".into(), "predicted".into(), "predicted_name".into()];
    head.extend((0..k).map(|c| format!("logit_{c}")));
    head.extend((0..k).map(|c| format!("prob_{c}")));
    let mut out = head.join(",") + "\n";
    for (i, p) in preds.iter().enumerate() {
        let mut row = vec![i.to_string(), field(&p.source), p.label.map(|l| l.to_string()).unwrap_or_default(), p.predicted.to_string(), field(p.predicted_name.as_deref().unwrap_or(""))];
        row.extend(p.logits.iter().map(|v| v.to_string()));
        row.extend(p.probabilities.iter().map(|v| v.to_string()));
        out += &(row.join(",") + "\n");
    }
    out
}

pub fn json(model: &TrainedNet, preds: &[Prediction]) -> String {
    let acc = accuracy(preds).map(|(a, n)| json!({ "accuracy": a, "labelled": n }));
    let v = json!({
        "model": {
            "weights": model.weights,
            "run_id": model.run_id,
            "arch": model.spec.arch.text(),
            "space": model.spec.arch.space(),
            "dataset": model.dataset,
            "classes": model.classes,
            "checkpoint": model.checkpoint,
        },
        "accuracy": acc,
        "predictions": preds,
    });
    serde_json::to_string_pretty(&v).expect("predictions serialize") + "\n"
}
