//! Where a job's images come from: the embedded Fashion-MNIST subset or a folder, split into
//! training, validation (held out from the training split by seed) and test, and uploaded.

use crate::data::{embedded, load_dir, Dataset, DeviceData, Splits};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataConfig {
    /// Folder with IDX or CIFAR-10 files; None = the embedded Fashion-MNIST subset.
    pub path: Option<PathBuf>,
    /// Images held out of the training split for validation (search scores, never trained on).
    pub val_count: usize,
    /// Use only the first N training images after the split (0 = all): for quick runs.
    pub train_limit: usize,
}

pub struct Loaded {
    pub name: String,
    pub train: DeviceData,
    /// None when `val_count` is 0 (stand-alone training on the whole training split).
    pub val: Option<DeviceData>,
    pub test: DeviceData,
    pub classes: usize,
    pub channels: usize,
}

pub fn load(gpu: &Arc<Gpu>, cfg: &DataConfig, seed: u64) -> Result<Loaded> {
    let splits = read_splits(cfg)?;
    let (train, val) = split(&splits, cfg, seed)?;
    let (mean, std) = normalisation(&splits, cfg, &train)?;
    Ok(Loaded {
        name: splits.name.clone(),
        classes: splits.train.classes,
        channels: train.c,
        train: DeviceData::upload(gpu, &train, &mean, &std)?,
        val: val.map(|v| DeviceData::upload(gpu, &v, &mean, &std)).transpose()?,
        test: DeviceData::upload(gpu, &splits.test, &mean, &std)?,
    })
}

/// The dataset `cfg` names, on the host.
pub fn read_splits(cfg: &DataConfig) -> Result<Splits> {
    match &cfg.path {
        Some(p) => load_dir(p),
        None => embedded(),
    }
}

/// The training part a job with `cfg` and `seed` trains on (validation held out by seed, then
/// the limit applied), and the validation split.
pub fn split(splits: &Splits, cfg: &DataConfig, seed: u64) -> Result<(Dataset, Option<Dataset>)> {
    if cfg.val_count >= splits.train.n {
        return Err(Error::Invalid(format!(
            "validation count {} must be at most {} (the training split of {} has {} images)",
            cfg.val_count,
            splits.train.n.saturating_sub(1),
            splits.name,
            splits.train.n
        )));
    }
    let (mut train, val) = if cfg.val_count > 0 {
        let (t, v) = splits.train.split(cfg.val_count, seed);
        (t, Some(v))
    } else {
        (splits.train.clone(), None)
    };
    if cfg.train_limit > 0 && cfg.train_limit < train.n {
        train = train.subset(&(0..cfg.train_limit).collect::<Vec<_>>());
    }
    Ok((train, val))
}

/// Per-channel mean and std every split is normalised with: the training part's only.
pub fn normalisation(splits: &Splits, cfg: &DataConfig, train: &Dataset) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mean, std) = train.channel_stats();
    if let Some((ch, _)) = std.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
        let source = cfg.path.as_ref().map_or(splits.name.clone(), |p| p.display().to_string());
        return Err(Error::Invalid(format!(
            "{source}: every pixel of channel {ch} in the {} training images is {:.0} (of 255): blank images cannot be normalised; \
             check the image files",
            train.n,
            mean[ch] * 255.0
        )));
    }
    Ok((mean, std))
}

/// Refuses a data config whose training part (after the validation split and the limit) holds
/// fewer images than one batch, naming the flags that decide it.
pub fn check_batches(cfg: &DataConfig, batch_size: usize) -> Result<()> {
    let splits = match &cfg.path {
        Some(p) => load_dir(p)?,
        None => embedded()?,
    };
    let mut n = splits.train.n.saturating_sub(cfg.val_count);
    if cfg.train_limit > 0 {
        n = n.min(cfg.train_limit);
    }
    if n < batch_size.max(1) {
        return Err(Error::Invalid(format!(
            "{n} training images (--train-limit {}, --val {} of {}'s {}) make no batch of {batch_size} (--batch-size): nothing to train on",
            cfg.train_limit, cfg.val_count, splits.name, splits.train.n
        )));
    }
    Ok(())
}
