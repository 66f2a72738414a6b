//! The flags of a search run in phases and shards, and `cellnas merge` (pipeline::shard).

use anyhow::{bail, Result};
use cellnas::gpu::Gpu;
use cellnas::pipeline::search::{SearchConfig, SearchSummary};
use cellnas::pipeline::shard::{run_shard, Shard, ShardOptions};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Default)]
pub struct ShardArgs {
    /// Run one phase only: `supernet` trains the supernet and stops, for its candidates to be
    /// scored in shards (--shard) and joined by `cellnas merge`.
    #[arg(long, value_parser = ["supernet"])]
    pub phase: Option<String>,
    /// Score shard I of N (I counted from 0) of the run given by --resume, whose supernet is
    /// trained; every shard writes only shards/I/ (docs/ARCHITECTURE.md, "Sharded search").
    #[arg(long, value_name = "I/N", conflicts_with = "phase")]
    pub shard: Option<Shard>,
    /// Minutes a shard waits for the others to finish a round before it stops with an error
    /// naming them (evolution, bayes and reinforce go in rounds; random and grid never wait) [60].
    #[arg(long, requires = "shard")]
    pub shard_wait_minutes: Option<f64>,
    /// Score candidates on several adapters of this machine at once: `all` (every adapter of
    /// the chosen backends) or comma-separated names as --adapter takes them (a name twice:
    /// two devices on one adapter). The supernet trains on --adapter's; history.jsonl records
    /// which adapter scored each candidate [one: --adapter's].
    #[arg(long, value_delimiter = ',', conflicts_with = "shard")]
    pub adapters: Option<Vec<String>>,
}

/// The devices `--adapters` names (none without the flag).
pub fn open_adapters(a: &ShardArgs, opts: &cellnas::gpu::AdapterOptions, quiet: bool) -> Result<Vec<Arc<Gpu>>> {
    let Some(names) = &a.adapters else { return Ok(Vec::new()) };
    if names.iter().any(|n| n.trim().is_empty()) {
        bail!("--adapters: expected all or comma-separated adapter names, got an empty name");
    }
    let all = names.len() == 1 && names[0] == "all";
    let gpus = cellnas::gpu::Gpu::open_many(opts, (!all).then_some(names.as_slice()))?;
    if !quiet {
        let list: Vec<String> = gpus.iter().map(|g| format!("{} ({})", g.info.name, g.info.backend)).collect();
        eprintln!("scoring on {} adapters: {}", gpus.len(), list.join(", "));
    }
    Ok(gpus)
}

/// `--phase` and `--shard` belong to the supernet search (its candidates are independent
/// forward passes); the other methods train as they search.
pub fn refuse_elsewhere(a: &ShardArgs, method: &str) -> Result<()> {
    if a.phase.is_some() || a.shard.is_some() || a.adapters.is_some() {
        bail!("--phase, --shard and --adapters apply to supernet searches; a {method} search trains as it searches and runs on one adapter");
    }
    Ok(())
}

pub fn score_shard(gpu: &Arc<Gpu>, cfg: &SearchConfig, dir: &Path, shard: Shard, a: &ShardArgs, quiet: bool) -> Result<()> {
    let minutes = a.shard_wait_minutes.unwrap_or(60.0);
    if !(minutes.is_finite() && (0.0..=100_000.0).contains(&minutes)) {
        bail!("--shard-wait-minutes must be between 0 and 100000, got {minutes}");
    }
    let opts = ShardOptions { quiet, wait: Duration::from_secs_f64(minutes * 60.0) };
    let s = run_shard(gpu, cfg, dir, shard, &opts)?;
    println!(
        "shard {}/{}: {} candidates scored ({} in this process) in {:.1}s on {}; when every shard has finished: cellnas merge {}",
        shard.index,
        shard.count,
        s.scored,
        s.evaluated,
        s.seconds,
        gpu.info.name,
        dir.display()
    );
    Ok(())
}

pub fn after_supernet(s: &SearchSummary, dir: &Path) -> Result<()> {
    println!(
        "supernet: {} epochs in {:.1}s. Score its candidates in N shards, each `cellnas search --resume {} --shard I/N` \
         (I = 0..N-1, on any machines sharing the folder), then `cellnas merge {}`",
        s.epochs.len(),
        s.train_seconds,
        dir.display(),
        dir.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The search or rank folder whose shards have all finished.
    pub run: PathBuf,
    /// Do not write report.html into the run folder.
    #[arg(long)]
    pub no_report: bool,
}

pub fn merge(a: &MergeArgs, opts: &cellnas::gpu::AdapterOptions) -> Result<()> {
    // A tune's and a rank's merge finish through their own job, which opens an adapter.
    let config = std::fs::read(a.run.join("config.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if config.as_ref().is_some_and(|c| c.get("tuner").is_some()) {
        let gpu = Gpu::new(opts)?;
        let s = cellnas::pipeline::tune_shard::merge_tune(&gpu, &a.run)?;
        super::tune::print_summary(&s);
        return Ok(());
    }
    if a.run.join("archs.json").is_file() {
        let gpu = Gpu::new(opts)?;
        let report = cellnas::pipeline::rank_shard::merge_rank(&gpu, &a.run)?;
        super::rank::print_report(&report);
        println!("rank.json: {}", a.run.join("rank.json").display());
        return Ok(());
    }
    let s = cellnas::pipeline::merge::merge(&a.run)?;
    println!("merged: {} candidates ({} scored, repeats reuse their score) into {}", s.candidates, s.evaluated, a.run.join("history.jsonl").display());
    super::table::print_top_pareto(&s.top, 5, &s.pareto);
    if s.rejected > 0 {
        println!("cost constraints refused {} proposals (redrawn by the strategy)", s.rejected);
    }
    println!("best cell: {}", a.run.join("best.genotype.txt").display());
    super::report::after_job(&a.run, a.no_report);
    Ok(())
}
