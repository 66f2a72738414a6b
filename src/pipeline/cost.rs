//! The search's cost check (src/search/cost.rs has the limits and fronts): parameters and FLOPs
//! from a counting graph, latency measured on the run's adapter and cached per architecture in
//! `latency.jsonl` in the run folder.
//!
//! Latency is the wall time of one eval-mode forward pass (batch assembly, the network, the
//! loss, read back) of `latency_batch` images through the architecture's path of the supernet
//! (its stand-alone network computes the same ops at the same shapes, save affine BN), the
//! median of 5 timed passes after 2 untimed ones. A wall-clock figure is not reproducible across
//! runs; the cache is what keeps one run's decisions the same after a resume (a measured
//! architecture is never measured again), and history.jsonl records each figure used.

use crate::data::{Dataset, DeviceData};
use crate::error::{Error, Result};
use crate::nn::darts::NetConfig;
use crate::nn::BnStats;
use crate::run::{append_jsonl, read_jsonl};
use crate::search::{Constraints, Violation};
use crate::space::{Arch, Space};
use crate::train::{evaluate, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Serialize, Deserialize)]
struct LatencyRecord {
    key: String,
    batch: usize,
    ms: f64,
}

/// Measured latencies of one run, by architecture key.
pub struct LatencyCache {
    path: PathBuf,
    batch: usize,
    map: HashMap<String, f64>,
    input: Option<DeviceData>,
}

impl LatencyCache {
    /// Reads `latency.jsonl` in `dir` (absent: empty); records of another batch size are ignored.
    pub fn open(dir: &Path, batch: usize) -> Result<LatencyCache> {
        let path = dir.join("latency.jsonl");
        let map = if path.exists() {
            let (records, _) = read_jsonl::<LatencyRecord>(&path)?;
            records.into_iter().filter(|r| r.batch == batch).map(|r| (r.key, r.ms)).collect()
        } else {
            HashMap::new()
        };
        Ok(LatencyCache { path, batch, map, input: None })
    }

    pub fn get(&self, arch: &Arch) -> Option<f64> {
        self.map.get(&arch.key()).copied()
    }

    /// The cached figure, or a measurement (appended to the cache before it is used).
    pub fn latency(&mut self, model: &mut Model, arch: &Arch, image: [usize; 3]) -> Result<f64> {
        if let Some(ms) = self.get(arch) {
            return Ok(ms);
        }
        let gpu = model.store.gpu().clone();
        let [c, h, w] = image;
        if self.input.is_none() {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let n = self.batch;
            let len = n.checked_mul(c * h * w).ok_or_else(|| Error::Invalid("--latency-batch: the batch size overflows".into()))?;
            let ds = Dataset { images: (0..len).map(|_| rng.random()).collect(), labels: vec![0; n], n, c, h, w, classes: model.net.classes };
            self.input = Some(DeviceData::upload(&gpu, &ds, &vec![0.5; c], &vec![0.25; c])?);
        }
        let input = self.input.as_ref().expect("just set");
        let mut times = Vec::new();
        for k in 0..7 {
            let mut bn = BnStats::new();
            let t0 = Instant::now();
            evaluate(&model.net, &mut model.store, &mut bn, arch, input, self.batch)?;
            if k >= 2 {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        append_jsonl(&self.path, &LatencyRecord { key: arch.key(), batch: self.batch, ms })?;
        self.map.insert(arch.key(), ms);
        Ok(ms)
    }
}

/// The stand-alone network's parameters and FLOPs per image.
pub fn size(net: &NetConfig, arch: &Arch, h: usize, w: usize) -> Result<(u64, u64)> {
    crate::nn::size(&NetConfig { supernet: false, ..net.clone() }, arch, h, w)
}

/// Architectures `feasible` looks at: every one of a space of at most this many, else this many
/// uniform samples.
pub const FEASIBILITY_SAMPLES: usize = 500;

/// Before training: an error naming the flag when no architecture of the space meets the
/// parameter and FLOP limits (checked exactly for a space of at most `FEASIBILITY_SAMPLES`
/// architectures, else on that many uniform samples and the cheapest of them is named). Latency
/// needs the trained supernet; a latency limit nothing meets ends the search after
/// `search::MAX_REJECTS` refusals in a row, naming --max-latency-ms.
pub fn feasible(space: &dyn Space, limits: &Constraints, net: &NetConfig, h: usize, w: usize) -> Result<()> {
    if limits.max_params.is_none() && limits.max_flops.is_none() {
        return Ok(());
    }
    let exhaustive = space.grid_len().is_some_and(|n| n <= FEASIBILITY_SAMPLES as u64);
    let archs: Vec<Arch> = match space.enumerate(FEASIBILITY_SAMPLES as u64) {
        Ok(all) if exhaustive => all.collect(),
        _ => {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            (0..FEASIBILITY_SAMPLES).map(|_| space.sample(&mut rng)).collect()
        }
    };
    let mut least = (u64::MAX, u64::MAX);
    for a in &archs {
        let (p, f) = size(net, a, h, w)?;
        if limits.check_size(p, f).is_none() {
            return Ok(());
        }
        least = (least.0.min(p), least.1.min(f));
    }
    let what = if exhaustive { format!("no architecture of the space ({})", archs.len()) } else { format!("none of {} sampled architectures", archs.len()) };
    Err(match (limits.max_params, limits.max_flops) {
        (Some(m), _) if least.0 > m => Error::Invalid(format!("--max-params {m}: {what} has so few parameters (the fewest: {})", least.0)),
        (_, Some(m)) if least.1 > m => Error::Invalid(format!("--max-flops {m}: {what} has so few FLOPs per image (the fewest: {})", least.1)),
        _ => Error::Invalid(format!("--max-params and --max-flops together: {what} meets both; loosen one")),
    })
}

/// The cost check `Driver` applies: size limits first (cheap), then latency (measured once per
/// architecture). Also returns nothing measured; the search reads latency back from the cache.
pub fn check(limits: &Constraints, model: &mut Model, cache: &mut LatencyCache, arch: &Arch, image: [usize; 3]) -> Result<Option<Violation>> {
    if limits.is_none() {
        return Ok(None);
    }
    let (p, f) = size(&model.net, arch, image[1], image[2])?;
    if let Some(v) = limits.check_size(p, f) {
        return Ok(Some(v));
    }
    if limits.max_latency_ms.is_some() {
        let ms = cache.latency(model, arch, image)?;
        return Ok(limits.check_latency(ms));
    }
    Ok(None)
}
