//! A trained stand-alone network with everything needed to run it away from its run folder:
//! architecture, network sizes, the image shape and input normalisation it was trained with,
//! class names, weights. Read from a `cellnas train` run folder or from a one-file model
//! (safetensors whose metadata holds the rest; written by `cellnas export --format
//! safetensors`).

use crate::data::{class_names, identify};
use crate::error::{Error, Result};
use crate::nn::darts::{self, NetConfig};
use crate::pipeline::data::{normalisation, read_splits, split, DataConfig};
use crate::pipeline::standalone::StandaloneConfig;
use crate::run::{load_checkpoint, load_tensors, save_tensors, NamedTensor, RunDir};
use crate::space::Spec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `format` metadata value of a one-file model, and its version.
pub const FORMAT: &str = "cellnas-model";
pub const FORMAT_VERSION: u32 = 1;

/// What a network's input is: [C, H, W] images of bytes, scaled to 0..1, then
/// (x - mean[c]) / std[c] per channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Input {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct TrainedNet {
    pub spec: Spec,
    pub net: NetConfig,
    pub input: Input,
    /// Class names in label order, where the dataset is known.
    pub classes: Option<Vec<String>>,
    /// The dataset it was trained on (its usual name where known, else the loader's).
    pub dataset: String,
    /// Parameters and "bn:<layer>.mean" / ".var", no momentum.
    pub tensors: Vec<NamedTensor>,
    /// The file the weights came from.
    pub weights: PathBuf,
    /// None for final weights; for a checkpoint of a run still training, what it holds.
    pub checkpoint: Option<String>,
    pub run_id: Option<String>,
    /// The run's data (None for a one-file model): `predict` without images reads its test split.
    pub data: Option<DataConfig>,
}

impl TrainedNet {
    /// A `cellnas train` run folder or a one-file model. A run without final weights is an
    /// error naming the file unless `checkpoint_ok`, when its latest checkpoint is read.
    pub fn load(path: &Path, checkpoint_ok: bool) -> Result<TrainedNet> {
        if path.is_dir() {
            TrainedNet::from_run(path, checkpoint_ok)
        } else {
            TrainedNet::from_file(path)
        }
    }

    /// A `cellnas train` run: its config, its final weights (or latest checkpoint when
    /// `checkpoint_ok`), and the normalisation its training part gives (the dataset is read
    /// again for it: runs do not store it).
    pub fn from_run(dir: &Path, checkpoint_ok: bool) -> Result<TrainedNet> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let cfg: StandaloneConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Config { path: config_path.clone(), message: format!("not the config of a `cellnas train` run ({e})") })?;
        let run = RunDir::verified(dir)?.with_checkpoint_file("checkpoint.safetensors");
        let final_path = dir.join("weights.safetensors");
        let (tensors, weights, checkpoint) = if final_path.exists() {
            (load_tensors(&final_path)?.0, final_path, None)
        } else if !checkpoint_ok {
            return Err(Error::Checkpoint { path: final_path, message: "missing: the run has no final weights (still training, or stopped before the end; `cellnas train --resume` finishes it)".into() });
        } else {
            let Some((tensors, state)) = load_checkpoint(&run)? else {
                return Err(Error::Checkpoint { path: final_path, message: "missing, and the run has no checkpoint either: nothing trained yet".into() });
            };
            let epoch = state["epoch"].as_u64().unwrap_or(0);
            let note = format!("checkpoint after {epoch} of {} epochs (training unfinished; BN running statistics as training left them)", cfg.train.epochs);
            (tensors, run.checkpoint_path(), Some(note))
        };
        let tensors: Vec<NamedTensor> = tensors.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
        let splits = read_splits(&cfg.data)?;
        let (train, _) = split(&splits, &cfg.data, cfg.train.seed)?;
        let (mean, std) = normalisation(&splits, &cfg.data, &train)?;
        let known = identify(&splits, cfg.data.path.as_deref());
        let classes = known.as_ref().and_then(|k| class_names(k.name)).filter(|n| n.len() == cfg.net.classes).map(|n| n.iter().map(|s| s.to_string()).collect());
        let input = Input { channels: train.c, height: train.h, width: train.w, mean, std };
        let net = TrainedNet {
            spec: cfg.spec,
            net: cfg.net,
            input,
            classes,
            dataset: known.map_or(splits.name.clone(), |k| k.name.to_string()),
            tensors,
            weights,
            checkpoint,
            run_id: run.run_id().map(str::to_string),
            data: Some(cfg.data),
        };
        net.check()?;
        Ok(net)
    }

    /// A one-file model (see the module docs).
    pub fn from_file(path: &Path) -> Result<TrainedNet> {
        let (tensors, meta) = load_tensors(path)?;
        let bad = |message: String| Error::Checkpoint { path: path.to_path_buf(), message };
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a cellnas model: its metadata has no \"format\": \"{FORMAT}\" (expected a `cellnas train` run folder, or a file from `cellnas export --format safetensors`)"
            )));
        }
        let version = meta.get("format_version").map(String::as_str).unwrap_or("?");
        if version != FORMAT_VERSION.to_string() {
            return Err(bad(format!("model format version {version}; this cellnas reads version {FORMAT_VERSION}")));
        }
        let field = |key: &str| meta.get(key).ok_or_else(|| bad(format!("metadata lacks \"{key}\"")));
        let json = |key: &str, e: serde_json::Error| bad(format!("metadata \"{key}\": {e}"));
        let spec = Spec::from_json(field("spec")?).map_err(|e| bad(format!("metadata \"spec\": {e}")))?;
        let net: NetConfig = serde_json::from_str(field("network")?).map_err(|e| json("network", e))?;
        let input: Input = serde_json::from_str(field("input")?).map_err(|e| json("input", e))?;
        let classes: Option<Vec<String>> = match meta.get("classes") {
            Some(c) => Some(serde_json::from_str(c).map_err(|e| json("classes", e))?),
            None => None,
        };
        let model = TrainedNet {
            spec,
            net,
            input,
            classes,
            dataset: meta.get("dataset").cloned().unwrap_or_default(),
            tensors,
            weights: path.to_path_buf(),
            checkpoint: None,
            run_id: meta.get("cellnas.run_id").cloned(),
            data: None,
        };
        model.check()?;
        Ok(model)
    }

    /// Everything agrees: a valid network of the architecture's family, the input's sizes, and
    /// exactly the network's tensors; errors name the weights file.
    pub fn check(&self) -> Result<()> {
        let bad = |message: String| Error::Checkpoint { path: self.weights.clone(), message };
        self.net.validate().map_err(|e| bad(e.to_string()))?;
        let i = &self.input;
        if i.channels != self.net.in_channels || i.mean.len() != i.channels || i.std.len() != i.channels || i.height == 0 || i.width == 0 {
            return Err(bad(format!("input {}x{}x{} with {} means and {} stds does not fit a network of {} input channels", i.channels, i.height, i.width, i.mean.len(), i.std.len(), self.net.in_channels)));
        }
        if i.mean.iter().any(|m| !m.is_finite()) || i.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad(format!("normalisation mean {:?} / std {:?}: expected finite values and positive stds", i.mean, i.std)));
        }
        if let Some(c) = self.classes.as_ref().filter(|c| c.len() != self.net.classes) {
            return Err(bad(format!("{} class names for a network of {} classes", c.len(), self.net.classes)));
        }
        let expected = crate::nn::expected_tensors(&self.net, &self.spec.arch, i.height, i.width)?;
        darts::check_tensors(&expected, &self.tensors, &self.weights)
    }

    /// The label (and name, where known) of class `k`.
    pub fn class_name(&self, k: usize) -> Option<&str> {
        self.classes.as_ref().and_then(|c| c.get(k)).map(String::as_str)
    }

    /// The one-file model's metadata (see `from_file`).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("format_version".into(), FORMAT_VERSION.to_string());
        meta.insert("spec".into(), serde_json::to_string(&self.spec).expect("a spec serializes"));
        meta.insert("genotype".into(), self.spec.arch.text());
        meta.insert("network".into(), serde_json::to_string(&self.net).expect("a network config serializes"));
        meta.insert("input".into(), serde_json::to_string(&self.input).expect("an input serializes"));
        if let Some(c) = &self.classes {
            meta.insert("classes".into(), serde_json::to_string(c).expect("names serialize"));
        }
        meta.insert("dataset".into(), self.dataset.clone());
        if let Some(id) = &self.run_id {
            meta.insert("cellnas.run_id".into(), id.clone());
        }
        meta
    }

    /// Writes the one-file model to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_tensors(path, &self.tensors, &self.metadata())
    }
}
