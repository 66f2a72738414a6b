//! `cellnas predict` and `cellnas export`: a trained network's predictions on images, and the
//! network as ONNX or as one safetensors file.

use anyhow::{bail, Result};
use cellnas::export::images::{read_inputs, test_split};
use cellnas::export::table::{accuracy, csv, json, predictions, Format};
use cellnas::export::{onnx, predict, TrainedNet};
use cellnas::gpu::Gpu;
use cellnas::run::write_atomic;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A `cellnas train` run folder (its final weights, else its latest checkpoint) or a model
    /// file from `cellnas export --format safetensors`.
    #[arg(long)]
    pub run: PathBuf,
    /// Images: a dataset folder (its test split, with labels), an IDX images file (labels from
    /// the labels file beside it, if any), PNG / JPEG files or a folder of them; several may
    /// follow [default: the test split of the run's own dataset].
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Write the predictions here, atomically (CSV, or JSON for a .json name) [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// csv or json [by --out's extension, else csv].
    #[arg(long)]
    pub format: Option<String>,
    /// Scale images of another size to the network's (bilinear); without it they are refused.
    #[arg(long)]
    pub resize: bool,
    /// Images per forward pass, 1-65536.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch_size: u32,
}

pub fn predict(gpu: &Arc<Gpu>, a: &PredictArgs) -> Result<()> {
    let format = match a.format.as_deref() {
        None => a.out.as_deref().map_or(Format::Csv, Format::from_path),
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(other) => bail!("--format {other}: expected csv or json"),
    };
    let model = TrainedNet::load(&a.run, true)?;
    if a.run.is_dir() {
        // The kernels the run trained with (variants round differently).
        cellnas::pipeline::kernels::apply_recorded(gpu, &a.run)?;
    }
    if let Some(note) = &model.checkpoint {
        eprintln!("note: {}: {note}", model.weights.display());
    }
    let classes = model.net.classes;
    let inputs = match (&a.data[..], &model.data) {
        ([], Some(data)) => test_split(data, &model.input, classes)?,
        ([], None) => bail!("{} is a model file, which holds no dataset: name the images with --data", a.run.display()),
        (paths, _) => read_inputs(paths, &model.input, classes, a.resize)?,
    };
    if inputs.converted > 0 {
        let want = if model.input.channels == 1 { "grayscale" } else { "RGB" };
        eprintln!("note: {} image(s) converted to {want}, as the network expects", inputs.converted);
    }
    if inputs.resized > 0 {
        eprintln!("note: {} image(s) resized to {}x{} (--resize)", inputs.resized, model.input.width, model.input.height);
    }
    let (logits, probs) = predict::logits_and_probabilities(gpu, &model, &inputs.data, a.batch_size as usize)?;
    let preds = predictions(&model, &inputs, &logits, &probs);
    let text = match format {
        Format::Csv => csv(&model, &preds),
        Format::Json => json(&model, &preds),
    };
    match &a.out {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    let acc = accuracy(&preds).map(|(acc, n)| format!("; accuracy {:.2}% on the {n} labelled", 100.0 * acc)).unwrap_or_default();
    let to = a.out.as_ref().map(|p| format!(" -> {}", p.display())).unwrap_or_default();
    eprintln!("predicted {} image(s) with {}{acc}{to}", preds.len(), model.weights.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A finished `cellnas train` run folder (its final weights) or a model file from
    /// `cellnas export --format safetensors`.
    #[arg(long)]
    pub run: PathBuf,
    /// onnx (the eval-mode network, opset 17, normalisation included) or safetensors (weights
    /// with spec, network, normalisation and class names in the metadata) [by --out's extension].
    #[arg(long)]
    pub format: Option<String>,
    /// The file to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export(a: &ExportArgs) -> Result<()> {
    let ext = a.out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let format = match (a.format.as_deref(), ext.as_deref()) {
        (Some(f @ ("onnx" | "safetensors")), _) => f.to_string(),
        (Some(other), _) => bail!("--format {other}: expected onnx or safetensors"),
        (None, Some(e @ ("onnx" | "safetensors"))) => e.to_string(),
        (None, _) => bail!("--out {}: name the format with --format onnx or --format safetensors (or end the name in .onnx or .safetensors)", a.out.display()),
    };
    let model = TrainedNet::load(&a.run, false)?;
    if format == "onnx" {
        write_atomic(&a.out, &onnx::to_onnx(&model)?)?;
    } else {
        model.save(&a.out)?;
    }
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!("wrote {} ({format}, {} bytes): {} network {} of {}", a.out.display(), bytes, model.spec.arch.space(), model.spec.arch.text(), model.weights.display());
    Ok(())
}
