//! A rank's stand-alone trainings in shards, the way a search's candidates are (shard.rs):
//! `rank ... --out R --phase inherited` fixes the architectures and scores them on the
//! supernet, `rank --resume R --shard I/N` trains the architectures with id mod N = I (each in
//! its own `train/NN/` run, resumable and locked on its own), `cellnas merge R` writes
//! rank.json from the finished trainings, the same a single process writes. `--early-stop`
//! is not sharded: its incumbent is the trainings finished before, in order.

use super::rank::{finished_metrics, RankConfig};
use super::shard::{claim_plan, host, shard_dir, Done, Plan, Shard, DONE, FORMAT};
use super::standalone::run_train;
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::{write_json_atomic, RunDir};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Trains shard `shard`'s architectures of the rank in `dir`; returns how many it holds.
pub fn run_rank_shard(gpu: &Arc<Gpu>, cfg: &RankConfig, dir: &Path, shard: Shard, job: &JobOptions) -> Result<usize> {
    let t0 = Instant::now();
    cfg.validate()?;
    if cfg.early_stop.is_some() {
        return Err(Error::Invalid(
            "--early-stop cannot be sharded: whether a training stops depends on the trainings finished before it; rank in one process".into(),
        ));
    }
    super::shard::same_config(dir, cfg, "rank")?;
    let run = RunDir::verified(dir)?;
    let run_id = run.run_id().unwrap_or_default().to_string();
    for f in ["archs.json", "inherited.json"] {
        if !dir.join(f).is_file() {
            return Err(Error::Config { path: dir.to_path_buf(), message: format!("has no {f} yet: run `cellnas rank ... --phase inherited` (or resume it) first") });
        }
    }
    let archs: Vec<super::rank::Arch> = read_json(&dir.join("archs.json"))?;
    let search = super::rank::read_search_config(&cfg.search_run)?;
    let space = search.space.space();
    super::kernels::apply_recorded(gpu, dir)?;

    let own = shard_dir(dir, shard.index);
    std::fs::create_dir_all(&own).map_err(|e| Error::io(&own, e))?;
    let _lock = crate::run::lock::acquire(&own)?;
    claim_plan(dir, &Plan { format: FORMAT.into(), run_id: run_id.clone(), shards: shard.count, image_hw: [0, 0] })?;
    let mine: Vec<&super::rank::Arch> = archs.iter().filter(|a| shard.owns(a.id)).collect();
    for (k, arch) in mine.iter().enumerate() {
        let scfg = cfg.standalone(&space.parse(&arch.genotype)?);
        let sub = dir.join("train").join(format!("{:02}", arch.id));
        if finished_metrics(&sub, &scfg)?.is_some() {
            continue;
        }
        let resume = sub.join("config.json").is_file();
        let s = run_train(gpu, &scfg, &sub, &JobOptions { resume, quiet: true, checkpoint_every: job.checkpoint_every, ..Default::default() })?;
        if !job.quiet {
            eprintln!("shard {}/{}: [{}/{}] architecture {} stand-alone test {:.2}%", shard.index, shard.count, k + 1, mine.len(), arch.id, 100.0 * s.test_accuracy);
        }
    }
    let done = Done { run: run_id, shard: shard.index, shards: shard.count, scored: mine.len(), adapter: format!("{} ({})", gpu.info.name, gpu.info.backend), host: host(), seconds: t0.elapsed().as_secs_f64() };
    write_json_atomic(&own.join(DONE), &done)?;
    Ok(mine.len())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: path.to_path_buf(), message: format!("not what cellnas wrote there: {e}") })
}

/// `cellnas merge` of a rank: once every shard has finished, the rank run as a resume that
/// finds every training done, which writes rank.json.
pub fn merge_rank(gpu: &Arc<Gpu>, dir: &Path) -> Result<super::rank::RankReport> {
    let cfg: RankConfig = read_json(&dir.join("config.json"))?;
    let run = RunDir::verified(dir)?;
    super::merge::finished_shards(dir, run.run_id().unwrap_or_default())?;
    drop(run);
    super::rank::run_rank(gpu, &cfg, dir, &JobOptions { resume: true, quiet: true, merging: true, ..Default::default() }, &[])
}
