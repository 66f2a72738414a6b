//! Scoring candidates on several adapters of one machine at once (`search --adapters`): each
//! adapter gets its own device, a copy of the supernet's weights and of the data, and a
//! thread. A chunk's candidates go to scorer i mod K, a fixed rule, so the same adapters
//! always score the same candidates; history.jsonl records which adapter scored each one.

use super::data::{load, Loaded};
use super::search::SearchConfig;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::NamedTensor;
use crate::space::Arch;
use crate::supernet::{score, Score};
use crate::train::Model;
use std::sync::Arc;

pub struct Scorer {
    /// The adapter's name, as history.jsonl records it.
    pub name: String,
    model: Model,
    data: Loaded,
}

/// One scorer per device, each with the supernet's `weights` and the kernel choices of `main`
/// (so that, on one adapter kind, every scorer computes bit for bit what `main` would).
pub fn open(gpus: &[Arc<Gpu>], main: &Gpu, cfg: &SearchConfig, weights: &[NamedTensor]) -> Result<Vec<Scorer>> {
    let mut out = Vec::with_capacity(gpus.len());
    for gpu in gpus {
        gpu.set_kernel_choices(main.kernel_choices());
        let data = load(gpu, &cfg.data, cfg.train.seed)?;
        if data.val.is_none() {
            return Err(Error::Invalid("a search needs a validation split".into()));
        }
        let [_, h, w] = data.train.image_shape();
        let probe = cfg.space.space().sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0));
        crate::nn::check_batch_fits(gpu, &cfg.net, &probe, cfg.eval.batch_size, h, w).map_err(|e| Error::Invalid(format!("--adapters: {}: {e}", gpu.info.name)))?;
        let mut model = Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
        model.restore(weights)?;
        out.push(Scorer { name: format!("{} ({})", gpu.info.name, gpu.info.backend), model, data });
    }
    Ok(out)
}

/// Scores of `archs` in their order, with the index of the scorer that computed each:
/// architecture i on scorer i mod K, the K scorers in parallel threads.
pub fn score_all(scorers: &mut [Scorer], archs: &[Arch], cfg: &SearchConfig) -> Result<Vec<(Score, usize)>> {
    let k = scorers.len().max(1);
    let per: Vec<Result<Vec<(usize, Score)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = scorers
            .iter_mut()
            .enumerate()
            .map(|(j, sc)| {
                s.spawn(move || {
                    let val = sc.data.val.as_ref().expect("checked in open");
                    archs.iter().enumerate().filter(|(i, _)| i % k == j).map(|(i, a)| Ok((i, score(&mut sc.model, a, &sc.data.train, val, &cfg.eval, cfg.train.seed)?))).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Invalid("a scoring thread panicked".into())))).collect()
    });
    let mut out: Vec<Option<(Score, usize)>> = (0..archs.len()).map(|_| None).collect();
    for (j, r) in per.into_iter().enumerate() {
        for (i, sc) in r? {
            out[i] = Some((sc, j));
        }
    }
    Ok(out.into_iter().map(|o| o.expect("every index scored")).collect())
}
