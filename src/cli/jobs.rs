//! Flags -> resolved configs -> the library's jobs. Every flag is optional: a fresh run starts
//! from the defaults, `--resume` from the run's stored config, and the flags given override
//! it (a resume whose flags change the config is refused, listing the differences).

use anyhow::{bail, Context, Result};
use cellnas::data::Augment;
use cellnas::gpu::Gpu;
use cellnas::nn::darts::{NetConfig, NetKind};
use cellnas::pipeline::data::DataConfig;
use cellnas::pipeline::JobOptions;
use cellnas::pipeline::search::{run_search, SearchConfig};
use cellnas::pipeline::standalone::{init_source, run_train, InitFrom, StandaloneConfig};
use cellnas::space::SpaceConfig;
use cellnas::train::TrainConfig;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Default)]
pub struct DataArgs {
    /// Folder with IDX (MNIST, Fashion-MNIST, KMNIST) or CIFAR-10 binary files [default: the embedded Fashion-MNIST subset].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training images held out for validation [search: 300, train: 0].
    #[arg(long)]
    pub val: Option<usize>,
    /// Train on only the first N training images, 0 = all [search: 2000, train: 0].
    #[arg(long)]
    pub train_limit: Option<usize>,
}

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Training epochs, 0-100000 [search: 2, train: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step, 1-65536 and what the adapter holds [64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate, cosine-annealed to --lr-min [0.05].
    #[arg(long, value_parser = super::finite_f32)]
    pub lr: Option<f32>,
    /// Epochs of linear learning-rate warm-up before the cosine schedule, fractions allowed [0].
    #[arg(long, value_parser = super::finite_f32)]
    pub warmup_epochs: Option<f32>,
    /// Final learning rate of the cosine schedule [search: 0.001, train: 0].
    #[arg(long, value_parser = super::finite_f32)]
    pub lr_min: Option<f32>,
    /// SGD momentum [0.9].
    #[arg(long, value_parser = super::finite_f32)]
    pub momentum: Option<f32>,
    /// L2 weight decay [3e-4].
    #[arg(long, value_parser = super::finite_f32)]
    pub weight_decay: Option<f32>,
    /// Global gradient-norm clip, 0 = off [5].
    #[arg(long, value_parser = super::finite_f32)]
    pub grad_clip: Option<f32>,
    /// Seed of every random choice: split, init, batches, paths, augmentation, search [1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Random-crop padding in pixels, 0 = off, at most 65536 [2].
    #[arg(long)]
    pub crop: Option<u32>,
    /// Random horizontal flips [true for data known to keep its classes when mirrored
    /// (Fashion-MNIST, CIFAR-10), false otherwise (MNIST, KMNIST, EMNIST, unrecognised data)].
    #[arg(long)]
    pub flip: Option<bool>,
    /// Cutout square side, 0 = off, at most 65536 [0].
    #[arg(long)]
    pub cutout: Option<u32>,
}

#[derive(Args, Debug, Default)]
pub struct NetArgs {
    /// Channels of the first cells, doubled at each reduction; even, 2-4096 [search: 8, train: 16].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells; reductions at layers/3 and 2*layers/3; 3-1000 [search: 5, train: 8].
    #[arg(long)]
    pub layers: Option<usize>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Search space: darts (DARTS normal and reduction cells), nb201 (NAS-Bench-201 cells;
    /// --layers is then the cells per stage [1]) or macro (ENAS whole-network chain: an op and
    /// skip connections per layer; --layers is then its depth, 3-256 [12]) [darts].
    #[arg(long)]
    pub space: Option<String>,
    /// Intermediate nodes per cell, 1-64 [4] (DARTS only; refused for nb201 and macro).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Candidate ops, comma-separated names of the space's ops (DARTS: e.g. sep_conv_3x3,max_pool_3x3,skip_connect [all 7]; NB201: e.g. nor_conv_3x3,skip_connect [all 5]; macro: conv_3x3,conv_5x5,sep_conv_3x3,sep_conv_5x5,max_pool_3x3,avg_pool_3x3 [all 6]).
    #[arg(long, value_delimiter = ',')]
    pub ops: Option<Vec<String>>,
    /// Path sampling while training the supernet: uniform (SPOS) or fair (FairNAS) [uniform].
    #[arg(long)]
    pub sampling: Option<String>,
    /// Supernet BN layers with a learnable scale and shift shared by all paths [off: none, as
    /// in DARTS and SPOS].
    #[arg(long)]
    pub supernet_affine: bool,
    /// Search strategy: random, evolution, grid, bayes or reinforce (docs/ARCHITECTURE.md)
    /// [evolution; bayes was ahead or level on every NB201 table measured, docs/RESULTS.md].
    #[arg(long)]
    pub strategy: Option<String>,
    #[command(flatten)]
    pub strategy_opts: super::strategy::StrategyArgs,
    /// Candidates to evaluate, 1-1000000 [20].
    #[arg(long)]
    pub budget: Option<usize>,
    /// Training batches (of 100) used to recalibrate BN before a candidate is scored, at most
    /// one pass over the training split [2].
    #[arg(long)]
    pub recalibration_batches: Option<usize>,
    /// Run folder [default: runs/search-<seed>, or .2, .3, ... if that exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint and history.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// No progress bars or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Minutes of training between mid-epoch checkpoints, 0 = only after each epoch [10].
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Do not write report.html into the run folder at the end (`cellnas report` writes it later).
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub morph: super::morph::MorphArgs,
    #[command(flatten)]
    pub darts: super::darts::DartsArgs,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// The defaults of a search with no arguments (the library's, one place).
pub fn default_search() -> SearchConfig {
    cellnas::pipeline::search::default_search()
}

/// `base`, or `base.2`, `base.3`, ... : the first that does not exist yet, so running the same
/// command twice without `--out` starts a second run instead of failing.
pub(crate) fn fresh_dir(base: &str) -> PathBuf {
    let first = PathBuf::from(base);
    if !first.exists() {
        return first;
    }
    (2..).map(|i| PathBuf::from(format!("{base}.{i}"))).find(|p| !p.exists()).expect("some name is free")
}

pub(crate) fn apply_train(t: &mut TrainConfig, a: &TrainArgs) {
    macro_rules! set {
        ($($f:ident => $g:expr),*) => { $(if let Some(v) = a.$f { $g = v; })* };
    }
    set!(epochs => t.epochs, batch_size => t.batch_size, lr => t.lr, lr_min => t.lr_min, momentum => t.momentum,
         weight_decay => t.weight_decay, grad_clip => t.grad_clip, seed => t.seed, crop => t.augment.crop_padding,
         flip => t.augment.flip, cutout => t.augment.cutout, warmup_epochs => t.warmup_epochs);
}

/// The config stored in a run folder that is being resumed.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(dir: &std::path::Path, kind: &str) -> Result<T> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot resume: {} is not a cellnas run (no readable config.json)", dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a {kind} config", path.display()))
}

/// Size flags.
pub(crate) fn apply_net(net: &mut NetConfig, a: &NetArgs) {
    if let Some(c) = a.channels {
        net.channels = c;
    }
    if let Some(l) = a.layers {
        net.layers = l;
    }
}

/// What a new run takes from its data: the network's input channels and classes, and the flip
/// default from which dataset it is (unless `--flip` was given), saying which and why.
pub(crate) fn fit_to_data(net: &mut NetConfig, train: &mut TrainConfig, a: &TrainArgs, data: &DataConfig, quiet: bool) -> Result<()> {
    let splits = match &data.path {
        Some(p) => cellnas::data::load_dir(p)?,
        None => cellnas::data::embedded()?,
    };
    (net.in_channels, net.classes) = (splits.train.c, splits.train.classes);
    if a.flip.is_some() {
        return Ok(());
    }
    let known = cellnas::data::identify(&splits, data.path.as_deref());
    train.augment.flip = known.as_ref().is_some_and(|k| k.flip);
    if !quiet {
        match known {
            Some(k) => eprintln!(
                "data: {} (recognised by {}): horizontal flips {} (--flip {} to change)",
                k.name,
                k.how,
                if k.flip { "on" } else { "off, they change its classes" },
                !k.flip
            ),
            None => eprintln!("data: not a dataset cellnas recognises, so no horizontal flips (--flip true if mirrored images keep their class)"),
        }
    }
    Ok(())
}

pub(crate) fn apply_data(d: &mut DataConfig, a: &DataArgs) {
    if let Some(p) = &a.data {
        d.path = Some(p.clone());
    }
    if let Some(v) = a.val {
        d.val_count = v;
    }
    if let Some(v) = a.train_limit {
        d.train_limit = v;
    }
}

pub fn search(gpu: &Arc<Gpu>, a: &SearchArgs, adapter_opts: &cellnas::gpu::AdapterOptions) -> Result<()> {
    let method = super::morph::method(a)?;
    if method != "darts" {
        super::darts::refuse_elsewhere(a, method)?;
    }
    if method != "supernet" {
        super::shard::refuse_elsewhere(&a.shard, method)?;
    }
    match method {
        "morphism" => return super::morph::search(gpu, a),
        "darts" => return super::darts::search(gpu, a),
        _ => {}
    }
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => {
            let cfg: SearchConfig = read_config(dir, "search")?;
            (cfg, dir.clone(), true)
        }
        None => (default_search(), PathBuf::new(), false),
    };
    apply_data(&mut cfg.data, &a.data);
    apply_train(&mut cfg.train, &a.train);
    apply_net(&mut cfg.net, &a.net);
    if !resume {
        fit_to_data(&mut cfg.net, &mut cfg.train, &a.train, &cfg.data, a.quiet)?;
    }
    if let Some(name) = a.space.as_deref().filter(|&n| resume && n != cfg.space.name()) {
        bail!("--space {name}: the run resumed is a search of the {} space", cfg.space.name());
    }
    // A macro space's depth is --layers, so that flag reaches the space (and a resume that
    // changes it is refused as a config difference).
    let macro_layers = cfg.space.macro_space().is_some() && a.net.layers.is_some();
    if a.space.is_some() || a.nodes.is_some() || a.ops.is_some() || macro_layers {
        let name = a.space.as_deref().unwrap_or(cfg.space.name());
        // Flags not given keep the current space's settings when it is the same space.
        let same = name == cfg.space.name();
        let ops: Option<Vec<String>> = a.ops.clone().or_else(|| same.then(|| cfg.space.op_names().iter().map(|s| s.to_string()).collect()));
        let nodes = a.nodes.or_else(|| cfg.space.darts().filter(|_| same).map(|s| s.nodes()));
        let layers = a.net.layers.or_else(|| cfg.space.macro_space().filter(|_| same).map(|s| s.layers()));
        cfg.space = cellnas::space::space_from_name(name, ops.as_deref(), nodes, layers)?;
        match &cfg.space {
            SpaceConfig::Darts(s) => (cfg.net.kind, cfg.net.nodes) = (NetKind::Darts, s.nodes()),
            SpaceConfig::Nb201(_) => {
                (cfg.net.kind, cfg.net.nodes) = (NetKind::Nb201, cellnas::space::NB201_NODES);
                if !resume && a.net.layers.is_none() {
                    // One cell per stage: a search that, like the DARTS default, takes minutes.
                    cfg.net.layers = 1;
                }
            }
            SpaceConfig::Macro(s) => (cfg.net.kind, cfg.net.nodes, cfg.net.layers) = (NetKind::Macro, 0, s.layers()),
        }
    }
    if let Some(s) = &a.sampling {
        cfg.sampling = s.parse()?;
    }
    if a.supernet_affine {
        cfg.net.supernet_affine = true;
    }
    super::strategy::apply(&mut cfg, a.strategy.as_deref(), &a.strategy_opts)?;
    if let Some(b) = a.budget {
        cfg.budget = b;
    }
    if let Some(r) = a.recalibration_batches {
        cfg.eval.recalibration_batches = r;
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| fresh_dir(&format!("runs/search-{}", cfg.train.seed))) };
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "backend": gpu.info.backend, "out": out });
    if !a.quiet {
        let shape = match cfg.net.kind {
            NetKind::Macro => format!("{} layers x {} channels", cfg.net.layers, cfg.net.channels),
            _ => format!("{} cells x {} channels, {} nodes", cfg.net.layers, cfg.net.channels, cfg.net.nodes),
        };
        eprintln!(
            "cellnas search: {shape}, ops {}, {} epochs, {} candidates ({}), adapter {} ({}), run folder {}",
            cfg.space.op_names().join(","),
            cfg.train.epochs,
            cfg.budget,
            cfg.strategy,
            gpu.info.name,
            gpu.info.backend,
            out.display()
        );
    }
    for w in cellnas::pipeline::warnings::search_warnings(&cfg) {
        eprintln!("warning: {w}");
    }
    if let Some(shard) = a.shard.shard {
        if !resume {
            bail!("--shard {}/{} scores the run given by --resume RUN, whose supernet `--phase supernet` trained", shard.index, shard.count);
        }
        return super::shard::score_shard(gpu, &cfg, &out, shard, &a.shard, a.quiet);
    }
    let first_phase_only = a.shard.phase.is_some();
    if first_phase_only && a.shard.adapters.is_some() {
        bail!("--adapters scores candidates, which --phase supernet does not");
    }
    let scorers = super::shard::open_adapters(&a.shard, adapter_opts, a.quiet)?;
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: checkpoint_every(a.checkpoint_minutes)?, first_phase_only, scorers, ..Default::default() };
    let summary = run_search(gpu, &cfg, &out, &job)?;
    if first_phase_only {
        return super::shard::after_supernet(&summary, &out);
    }
    println!(
        "supernet: {} epochs in {:.1}s; search: {} candidates ({} evaluated in this run, repeats reuse their score) in {:.1}s",
        summary.epochs.len(),
        summary.train_seconds,
        summary.candidates,
        summary.evaluated,
        summary.search_seconds
    );
    super::table::print_top_pareto(&summary.top, 5, &summary.pareto);
    if summary.rejected > 0 {
        println!("cost constraints refused {} proposals (redrawn by the strategy)", summary.rejected);
    }
    // The three numbers that say whether the search was worth it, side by side.
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    println!(
        "supernet train accuracy (last epoch, random paths) {} | best candidate {} | median of the {} random candidates {} (inherited val accuracy)",
        pct(summary.epochs.last().map(|m| m.accuracy)),
        pct(summary.top.first().map(|e| e.accuracy)),
        summary.random_candidates,
        pct(summary.random_median)
    );
    println!("best cell: {}", out.join("best.genotype.txt").display());
    super::report::after_job(&out, a.no_report);
    Ok(())
}

#[derive(Args, Debug)]
pub struct TrainCmdArgs {
    /// The architecture: a spec JSON file (docs/spec.md), a search's best.json, or a file with DARTS genotype text, an NB201 arch string or macro text (required unless --resume).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Training batches forwarded after training to re-estimate BN statistics before the test
    /// (precise BN; no weight updates), at most one pass over the training split, 0 = off [32].
    #[arg(long)]
    pub precise_bn: Option<usize>,
    /// Output folder [default: runs/train-<seed>, or .2, .3, ... if that exists].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the training run in this folder from its last checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Grow the network from this search run's supernet (the spec's weights and recalibrated BN
    /// statistics, docs/ARCHITECTURE.md) instead of random weights; the search's network size,
    /// data and seed become the defaults; --channels a multiple of the supernet's widens it
    /// (Net2WiderNet) and --layers above the supernet's adds gated residual cells that start as
    /// the identity, so the grown network computes what the candidate did. With --epochs 0 it
    /// scores the grown network.
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// No progress bars or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Minutes of training between mid-epoch checkpoints, 0 = only after each epoch [10].
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Do not write report.html into the run folder at the end (`cellnas report` writes it later).
    #[arg(long)]
    pub no_report: bool,
}

/// Mid-epoch checkpoint interval from a flag in minutes (0 = none).
pub(crate) fn checkpoint_every(minutes: f64) -> Result<Option<std::time::Duration>> {
    if !(minutes >= 0.0 && minutes.is_finite()) {
        bail!("--checkpoint-minutes must be a number >= 0, got {minutes}");
    }
    Ok((minutes > 0.0).then(|| std::time::Duration::from_secs_f64(minutes * 60.0)))
}

/// A new `cellnas train` run's config for a spec before flags (also `cellnas tune`'s base).
pub(crate) fn default_standalone(spec: cellnas::space::Spec) -> StandaloneConfig {
    // DARTS: 8 cells of 16 channels; NB201: its benchmark's 5 cells per stage, 16 channels;
    // macro: the architecture's layers, 16 channels.
    let (layers, nodes, kind) = match &spec.arch {
        cellnas::space::Arch::Darts(g) => (8, g.normal.nodes.len(), NetKind::Darts),
        cellnas::space::Arch::Nb201(_) => (5, cellnas::space::NB201_NODES, NetKind::Nb201),
        // The macro chain's depth is the architecture's own.
        cellnas::space::Arch::Macro(m) => (m.len(), 0, NetKind::Macro),
    };
    let net = NetConfig { in_channels: 1, classes: 10, channels: 16, layers, nodes, supernet: false, supernet_affine: false, gated: vec![], kind };
    let data = DataConfig { path: None, val_count: 0, train_limit: 0 };
    let train = TrainConfig {
        epochs: 10,
        batch_size: 64,
        lr: 0.05,
        lr_min: 0.0,
        momentum: 0.9,
        weight_decay: 3e-4,
        grad_clip: 5.0,
        seed: 1,
        augment: Augment { crop_padding: 2, flip: true, cutout: 0 },
        warmup_epochs: 0.0,
    };
    StandaloneConfig { spec, data, net, train, eval_batch_size: 200, precise_bn: 32, init_from: None, resume_ignore: json!({}) }
}

pub fn train(gpu: &Arc<Gpu>, a: &TrainCmdArgs) -> Result<()> {
    let spec = a.spec.as_ref().map(|p| super::read_spec(p)).transpose()?;
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => {
            let cfg: StandaloneConfig = read_config(dir, "training")?;
            (cfg, dir.clone(), true)
        }
        None => {
            let Some(spec) = spec.clone() else { bail!("--spec FILE is required (or --resume DIR to continue a training run)") };
            let mut cfg = default_standalone(spec);
            if let Some(dir) = &a.init_from {
                // Grown from a search: its network, data and seed, unless flags say otherwise.
                let init = InitFrom { run: dir.clone(), run_id: None };
                let (run, search) = init_source(&init)?;
                search.darts_space()?;
                cfg.net = cellnas::morph::grown_net(&search);
                cfg.data = search.data.clone();
                cfg.train.seed = search.train.seed;
                cfg.init_from = Some(InitFrom { run_id: run.run_id().map(str::to_string), ..init });
            }
            (cfg, PathBuf::new(), false)
        }
    };
    // On a resume, flags that are given must agree with the stored config (RunDir::resume
    // lists any difference).
    if let Some(s) = spec {
        cfg.spec = s;
    }
    apply_data(&mut cfg.data, &a.data);
    apply_train(&mut cfg.train, &a.train);
    apply_net(&mut cfg.net, &a.net);
    if let Some(n) = a.precise_bn {
        cfg.precise_bn = n;
    }
    if !resume {
        fit_to_data(&mut cfg.net, &mut cfg.train, &a.train, &cfg.data, a.quiet)?;
        if let Some(init) = &cfg.init_from {
            // Extra cells asked for become gated cells (the only exact way to add them).
            let (_, search) = init_source(init)?;
            cfg.net = cellnas::morph::target_net(&search, &cfg.net).map_err(|m| anyhow::anyhow!("--init-from {}: {m}", init.run.display()))?;
        }
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| fresh_dir(&format!("runs/train-{}", cfg.train.seed))) };
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "out": out });
    if !a.quiet {
        let depth = if cfg.net.kind == NetKind::Macro { "layers" } else { "cells" };
        eprintln!("cellnas train: {} {depth} x {} channels, {} epochs, adapter {}, output {}", cfg.net.cells(), cfg.net.channels, cfg.train.epochs, gpu.info.name, out.display());
    }
    for w in cellnas::pipeline::warnings::train_warnings(&cfg) {
        eprintln!("warning: {w}");
    }
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: checkpoint_every(a.checkpoint_minutes)?, ..Default::default() };
    let s = run_train(gpu, &cfg, &out, &job)?;
    if let Some(r) = s.running_bn {
        println!(
            "with the BN statistics training left: test accuracy {:.2}% (loss {:.4}); re-estimated over {} training batches (precise BN):",
            100.0 * r.test_accuracy,
            r.test_loss,
            s.precise_bn_batches
        );
    }
    println!(
        "test accuracy {:.2}% (loss {:.4}); {} parameters, {:.1} MFLOPs per image; trained in {:.1}s; weights {}",
        100.0 * s.test_accuracy,
        s.test_loss,
        s.params,
        s.flops as f64 / 1e6,
        s.train_seconds,
        out.join("weights.safetensors").display()
    );
    if let Some(init) = &cfg.init_from {
        grown_report(init, &cfg, &s)?;
    }
    super::report::after_job(&out, a.no_report);
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The architecture to score: spec JSON, a search's best.json, or the space's text form.
    #[arg(long)]
    pub spec: PathBuf,
    /// A search run folder (its trained supernet and config are used).
    #[arg(long)]
    pub run: PathBuf,
}

pub fn eval(gpu: &Arc<Gpu>, a: &EvalArgs) -> Result<()> {
    let spec = super::read_spec(&a.spec)?;
    let path = a.run.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{} is not a search run (no readable config.json)", a.run.display()))?;
    let cfg: SearchConfig = serde_json::from_str(&text).with_context(|| format!("{}: not a search config", path.display()))?;
    cfg.space.space().contains(&spec.arch).context("the spec is outside the run's search space")?;
    let run = cellnas::run::RunDir::verified(&a.run)?;
    cellnas::pipeline::kernels::apply_recorded(gpu, &a.run)?;
    let Some((tensors, state)) = cellnas::run::load_checkpoint(&run)? else {
        bail!("{} has no supernet checkpoint yet (train it with `cellnas search`)", a.run.display());
    };
    let data = cellnas::pipeline::data::load(gpu, &cfg.data, cfg.train.seed)?;
    let mut model = cellnas::train::Model::new(gpu, cfg.net.clone(), cfg.train.seed)?;
    model.restore(&tensors)?;
    let val = data.val.as_ref().context("the run has no validation split")?;
    let s = cellnas::supernet::score(&mut model, &spec.arch, &data.train, val, &cfg.eval, cfg.train.seed)?;
    println!(
        "inherited-weight val accuracy {:.2}% (loss {:.4}) after {} supernet epochs; stand-alone network: {} parameters, {:.1} MFLOPs per image; {:.0} ms",
        100.0 * s.accuracy,
        s.loss,
        state["epoch"],
        s.params,
        s.flops as f64 / 1e6,
        s.eval_ms
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// A `cellnas train` run folder: its final weights, or its latest checkpoint while it trains.
    #[arg(long)]
    pub run: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn test(gpu: &Arc<Gpu>, a: &TestArgs) -> Result<()> {
    let r = cellnas::pipeline::standalone::test_run(gpu, &a.run)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let trained = match (r.finished, r.step) {
        (true, _) => format!("final weights after {} epochs", r.epoch),
        (false, Some(s)) => format!("checkpoint after {} epochs and {s} steps of the next", r.epoch),
        (false, None) => format!("checkpoint after {} epochs (training unfinished)", r.epoch),
    };
    let val = r.val_accuracy.map(|v| format!("; val accuracy {:.2}%", 100.0 * v)).unwrap_or_default();
    if let Some(b) = r.running_bn {
        println!("with the checkpoint's BN running statistics: test accuracy {:.2}% (loss {:.4}); with precise BN:", 100.0 * b.test_accuracy, b.test_loss);
    }
    println!("test accuracy {:.2}% (loss {:.4}){val}; {trained}: {}", 100.0 * r.test_accuracy, r.test_loss, r.weights.display());
    Ok(())
}

/// For a network grown from a search run: its validation accuracy before precise BN (the
/// search's recalibrated statistics, after any training) beside the candidate's inherited score.
fn grown_report(init: &InitFrom, cfg: &StandaloneConfig, s: &cellnas::pipeline::standalone::TrainSummary) -> Result<()> {
    let (history, _) = cellnas::run::read_jsonl::<cellnas::search::HistoryEntry>(&init.run.join("history.jsonl"))?;
    let key = cfg.spec.arch.key();
    let inherited = history.iter().find(|e| e.key == key).map(|e| format!("{:.2}%", 100.0 * e.accuracy));
    let val = s.running_bn.as_ref().map_or(s.val_accuracy, |r| r.val_accuracy);
    println!(
        "grown from {}: validation accuracy {} after {} epochs (BN statistics before precise BN); the candidate's inherited score in the search: {}",
        init.run.display(),
        val.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v)),
        cfg.train.epochs,
        inherited.unwrap_or_else(|| "not in its history".into())
    );
    Ok(())
}
