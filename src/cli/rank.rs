//! `cellnas rank`: flags -> RankConfig -> pipeline::rank, and the printed table.

use anyhow::{bail, Result};
use cellnas::gpu::Gpu;
use cellnas::pipeline::rank::{read_search_config, run_rank, RankConfig, RankReport};
use cellnas::pipeline::JobOptions;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Defaults sized so that 20 uniform + 3 top architectures train in about an hour on a 2-core
/// CPU adapter (docs/RESULTS.md has the measured time).
#[derive(Args, Debug)]
pub struct RankArgs {
    /// The `cellnas search` run whose supernet is ranked (required unless --resume).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Architectures sampled uniformly from the run's space [20].
    #[arg(long)]
    pub archs: Option<usize>,
    /// Best architectures of the run's history added to the sample [3].
    #[arg(long)]
    pub top: Option<usize>,
    /// Seed of the uniform sample [the search run's seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stand-alone training epochs per architecture [2].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stand-alone training images per architecture, 0 = the run's whole training split [5000].
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Channels of the stand-alone networks [8].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells of the stand-alone networks [5].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Images per training step [64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (cosine to 0) [0.05].
    #[arg(long, value_parser = super::finite_f32)]
    pub lr: Option<f32>,
    /// Training batches for precise BN after each training, 0 = off [32].
    #[arg(long)]
    pub precise_bn: Option<usize>,
    /// k of precision@k [5].
    #[arg(long)]
    pub precision_k: Option<usize>,
    /// BN recalibration batches (of the search's eval batch size) for the inherited scores, at
    /// most one pass over the training split [the search run's own].
    #[arg(long)]
    pub recalibration_batches: Option<usize>,
    /// Take finished trainings of the same architecture and fidelity from this earlier rank
    /// folder instead of training again (repeatable); for comparing supernets on one sample.
    #[arg(long, conflicts_with = "early_stop")]
    pub reuse: Vec<PathBuf>,
    #[command(flatten)]
    pub stop: super::tune::EarlyStopArgs,
    /// Rank folder [default: runs/rank-<seed>, or .2, .3, ... if that exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the rank in this folder: finished trainings are kept, the one in flight resumes.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Only the final table.
    #[arg(long)]
    pub quiet: bool,
    /// Run one phase only: `inherited` chooses the architectures and scores them on the
    /// supernet, then stops, for their trainings to run in shards (--shard) joined by
    /// `cellnas merge`.
    #[arg(long, value_parser = ["inherited"])]
    pub phase: Option<String>,
    /// Train shard I of N (I from 0) of the rank given by --resume: the architectures with
    /// id mod N = I, each in its own train/NN/ folder.
    #[arg(long, value_name = "I/N", conflicts_with = "phase")]
    pub shard: Option<cellnas::pipeline::shard::Shard>,
    /// Minutes between mid-epoch checkpoints of each training, 0 = only after each epoch [10].
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
}

pub fn rank(gpu: &Arc<Gpu>, a: &RankArgs) -> Result<()> {
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => (super::jobs::read_config::<RankConfig>(dir, "rank")?, dir.clone(), true),
        None => {
            let Some(run) = &a.run else { bail!("--run SEARCH_RUN is required (or --resume DIR to continue a rank)") };
            let search = read_search_config(run)?;
            let mut data = search.data.clone();
            data.train_limit = 5000;
            let layers = if search.net.kind.is_darts() { 5 } else { search.net.layers };
            let net = cellnas::nn::darts::NetConfig { channels: 8, layers, supernet: false, supernet_affine: false, ..search.net.clone() };
            // A fixed recipe, not the search's (a supernet trained with another learning rate
            // must still be ranked against the same stand-alone trainings).
            let train = cellnas::train::TrainConfig {
                epochs: 2,
                batch_size: 64,
                lr: 0.05,
                lr_min: 0.0,
                momentum: 0.9,
                weight_decay: 3e-4,
                grad_clip: 5.0,
                seed: search.train.seed,
                augment: cellnas::data::Augment { crop_padding: 2, flip: search.train.augment.flip, cutout: 0 },
                warmup_epochs: 0.0,
            };
            let cfg = RankConfig {
                search_run: run.clone(),
                archs: 20,
                top: 3,
                sample_seed: search.train.seed,
                precision_k: 5,
                recalibration_batches: None,
                data,
                net,
                train,
                precise_bn: 32,
                eval_batch_size: 200,
                early_stop: None,
                resume_ignore: json!({}),
            };
            (cfg, PathBuf::new(), false)
        }
    };
    macro_rules! set {
        ($($f:ident => $g:expr),*) => { $(if let Some(v) = a.$f { $g = v; })* };
    }
    set!(archs => cfg.archs, top => cfg.top, seed => cfg.sample_seed, epochs => cfg.train.epochs, train_limit => cfg.data.train_limit,
         channels => cfg.net.channels, layers => cfg.net.layers, batch_size => cfg.train.batch_size, lr => cfg.train.lr,
         precise_bn => cfg.precise_bn, precision_k => cfg.precision_k);
    cfg.early_stop = a.stop.apply(cfg.early_stop.take());
    if a.recalibration_batches.is_some() {
        cfg.recalibration_batches = a.recalibration_batches;
    }
    if let (Some(run), true) = (&a.run, resume) {
        if *run != cfg.search_run {
            bail!("--run {} differs from the rank's search run {}", run.display(), cfg.search_run.display());
        }
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| super::jobs::fresh_dir(&format!("runs/rank-{}", cfg.sample_seed))) };
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "out": out });
    if !a.quiet {
        eprintln!(
            "cellnas rank: {} uniform + {} top architectures of {}, each trained stand-alone {} epochs on {} images at {} cells x {} channels; folder {}",
            cfg.archs,
            cfg.top,
            cfg.search_run.display(),
            cfg.train.epochs,
            if cfg.data.train_limit == 0 { "all".to_string() } else { cfg.data.train_limit.to_string() },
            cfg.net.layers,
            cfg.net.channels,
            out.display()
        );
    }
    let first_phase_only = a.phase.is_some();
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: super::jobs::checkpoint_every(a.checkpoint_minutes)?, first_phase_only, ..Default::default() };
    if let Some(shard) = a.shard {
        if !resume {
            bail!("--shard {}/{} trains part of the rank given by --resume RANK, which `--phase inherited` started", shard.index, shard.count);
        }
        let n = cellnas::pipeline::rank_shard::run_rank_shard(gpu, &cfg, &out, shard, &job)?;
        println!("shard {}/{}: {n} architectures trained; when every shard has finished: cellnas merge {}", shard.index, shard.count, out.display());
        return Ok(());
    }
    let report = run_rank(gpu, &cfg, &out, &job, &a.reuse)?;
    if first_phase_only {
        println!(
            "architectures chosen and scored on the supernet. Train them in N shards, each `cellnas rank --resume {} --shard I/N` (I = 0..N-1), then `cellnas merge {}`",
            out.display(),
            out.display()
        );
        return Ok(());
    }
    print_report(&report);
    println!("rank.json: {}", out.join("rank.json").display());
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn num(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{v:.3}"))
}

pub fn print_report(r: &RankReport) {
    println!("{:>3}  {:<7}  {:>9}  {:>11}  {:>9}", "id", "source", "inherited", "stand-alone", "params");
    let mut rows: Vec<_> = r.archs.iter().collect();
    rows.sort_by(|a, b| b.final_estimate().total_cmp(&a.final_estimate()));
    for x in rows {
        let sa = match &x.early_stop {
            Some(s) => format!("{} (stopped at epoch {}, predicted)", pct(Some(s.predicted)), s.epochs),
            None => pct(x.standalone_test_accuracy),
        };
        println!("{:>3}  {:<7}  {:>9}  {:>11}  {:>9}", x.arch.id, x.arch.source, pct(Some(x.inherited_accuracy)), sa, x.params);
    }
    if let Some(e) = &r.early_stop {
        println!(
            "early stop (P >= {}, from epoch {}): {} of {} stopped, {} of {} epochs trained; statistics below take a stopped one's predicted final validation accuracy",
            e.probability,
            e.min_epochs,
            e.stopped,
            r.archs.len(),
            e.epochs_trained,
            e.epochs_full
        );
    }
    print_stats(&r.stats, "");
    if let Some(t) = &r.stats_trained {
        print_stats(t, " (fully trained only)");
    }
}

fn print_stats(s: &cellnas::pipeline::rank::RankStats, what: &str) {
    println!(
        "{} architectures{what}: Kendall tau {} (90% bootstrap interval {}), Spearman rho {}, Pearson r {}, precision@{} {}, regret of the inherited pick {}",
        s.n,
        num(s.kendall_tau),
        s.kendall_tau_90.map_or("-".into(), |[a, b]| format!("{a:.2}..{b:.2}")),
        num(s.spearman_rho),
        num(s.pearson_r),
        s.precision_k,
        num(s.precision_at_k),
        s.regret.map_or("-".into(), |v| format!("{:.2} points", 100.0 * v))
    );
    if s.uniform_median.is_some() {
        let tops: Vec<String> = s.top_percentiles.iter().map(|p| format!("{:.0}%", 100.0 * p)).collect();
        println!(
            "random baseline (uniform sample, stand-alone test): median {}, 75th percentile {}; the search's top architectures beat {} of it",
            pct(s.uniform_median),
            pct(s.uniform_p75),
            if tops.is_empty() { "-".into() } else { tops.join(", ") }
        );
    }
}
