//! `cellnas search --method morphism`: flags -> MorphSearchConfig -> the library's job.

use super::jobs::{apply_data, apply_net, apply_train, checkpoint_every, fit_to_data, fresh_dir, read_config, SearchArgs};
use anyhow::{bail, Result};
use cellnas::gpu::Gpu;
use cellnas::morph::Limits;
use cellnas::nn::darts::NetConfig;
use cellnas::nn::params::name_seed;
use cellnas::pipeline::morphism::{run_morph_search, MorphSearchConfig};
use cellnas::pipeline::search::default_search;
use cellnas::pipeline::JobOptions;
use cellnas::space::space_from_name;
use clap::Args;
use rand::SeedableRng;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Default)]
pub struct MorphArgs {
    /// supernet (train a supernet, score candidates with its weights), morphism (grow a
    /// trained network by function-preserving morphs, fine-tune and score each child) or darts
    /// (gradient-based: every op on every edge mixed by softmax(alpha), alpha learned) [supernet].
    #[arg(long)]
    pub method: Option<String>,
    /// morphism: first network's cell, a spec file or DARTS text [a uniform sample of the space
    /// by seed].
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// morphism: rounds of hill climbing [3].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// morphism: children per round [4].
    #[arg(long)]
    pub children: Option<usize>,
    /// morphism: morphs per child, 1 to this many [2].
    #[arg(long)]
    pub morphs: Option<usize>,
    /// morphism: fine-tuning epochs of each child [1].
    #[arg(long)]
    pub child_epochs: Option<usize>,
    /// morphism: peak learning rate of each child's fine-tuning [0.05].
    #[arg(long, value_parser = super::finite_f32)]
    pub child_lr: Option<f32>,
    /// morphism: most channels a network may grow to [4x the first network's].
    #[arg(long)]
    pub max_channels: Option<usize>,
    /// morphism: most cells (gated cells included) a network may grow to [the first network's + 3].
    #[arg(long)]
    pub max_cells: Option<usize>,
}

/// Which search this `search` is: by --method, or by the config of the run resumed.
pub fn method(a: &SearchArgs) -> Result<&'static str> {
    const METHODS: [&str; 3] = ["supernet", "morphism", "darts"];
    let stored = match &a.resume {
        Some(dir) => read_config::<serde_json::Value>(dir, "search")?.get("method").and_then(|m| m.as_str()).map(str::to_string),
        None => None,
    };
    let known = |m: &str| METHODS.iter().copied().find(|&k| k == m);
    match (a.morph.method.as_deref(), stored.as_deref()) {
        (Some(m), _) if known(m).is_none() => bail!("--method {m}: expected one of {}", METHODS.join(", ")),
        (None, None) => Ok("supernet"),
        (Some(m), None) => Ok(known(m).expect("checked")),
        (None, Some(s)) => known(s).ok_or_else(|| anyhow::anyhow!("the run resumed has \"method\": \"{s}\" in its config.json; this cellnas knows {} searches", METHODS.join(", "))),
        (Some(m), Some(s)) if m == s => Ok(known(m).expect("checked")),
        (Some(m), Some(s)) => bail!("--method {m}: the run resumed is a {s} search"),
    }
}

pub fn search(gpu: &Arc<Gpu>, a: &SearchArgs) -> Result<()> {
    let not_here = [
        ("--strategy", a.strategy.is_some()),
        ("--budget", a.budget.is_some()),
        ("--sampling", a.sampling.is_some()),
        ("--supernet-affine", a.supernet_affine),
        (a.strategy_opts.first_given().unwrap_or("--batch"), a.strategy_opts.first_given().is_some()),
    ];
    if let Some((flag, _)) = not_here.iter().find(|(_, given)| *given) {
        bail!("{flag} applies to supernet searches; a morphism search's size is --rounds x --children");
    }
    if let Some(s) = a.space.as_deref().filter(|&s| s != "darts") {
        bail!("--space {s}: the morphism search grows DARTS cell networks only so far");
    }
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => (read_config::<MorphSearchConfig>(dir, "morphism search")?, dir.clone(), true),
        None => (defaults(a)?, PathBuf::new(), false),
    };
    let m = &a.morph;
    apply_data(&mut cfg.data, &a.data);
    apply_train(&mut cfg.train, &a.train);
    apply_net(&mut cfg.net, &a.net);
    for (field, flag) in [(&mut cfg.rounds, m.rounds), (&mut cfg.children, m.children), (&mut cfg.morphs, m.morphs), (&mut cfg.child_epochs, m.child_epochs)] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    if let Some(lr) = m.child_lr {
        cfg.child_lr = lr;
    }
    if let Some(r) = a.recalibration_batches {
        cfg.eval.recalibration_batches = r;
    }
    if !resume {
        fit_to_data(&mut cfg.net, &mut cfg.train, &a.train, &cfg.data, a.quiet)?;
        cfg.limits = Limits { max_channels: m.max_channels.unwrap_or(4 * cfg.net.channels), max_cells: m.max_cells.unwrap_or(cfg.net.layers + 3) };
    } else {
        // Given on a resume: they must agree with the stored config, like every flag.
        cfg.limits = Limits { max_channels: m.max_channels.unwrap_or(cfg.limits.max_channels), max_cells: m.max_cells.unwrap_or(cfg.limits.max_cells) };
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| fresh_dir(&format!("runs/morph-{}", cfg.train.seed))) };
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "backend": gpu.info.backend, "out": out });
    if !a.quiet {
        eprintln!(
            "cellnas search --method morphism: first network {} cells x {} channels, {} epochs; {} rounds x {} children, 1-{} morphs each, {} fine-tuning epochs; at most {} channels and {} cells; adapter {}; run folder {}",
            cfg.net.layers,
            cfg.net.channels,
            cfg.train.epochs,
            cfg.rounds,
            cfg.children,
            cfg.morphs,
            cfg.child_epochs,
            cfg.limits.max_channels,
            cfg.limits.max_cells,
            gpu.info.name,
            out.display()
        );
        eprintln!("first cell: {}", cfg.start.to_darts());
    }
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: checkpoint_every(a.checkpoint_minutes)?, ..Default::default() };
    let s = run_morph_search(gpu, &cfg, &out, &job)?;
    println!("morphism search: {} networks ({} trained in this run) in {:.1}s", s.entries.len(), s.trained, s.seconds);
    println!("{:>4} {:>5} {:>6} {:>8} {:>5} {:>9} {:>8}  morphs", "net", "round", "parent", "channels", "cells", "params", "val acc");
    for e in &s.entries {
        let morphs: Vec<String> = e.morphs.iter().map(|m| m.to_string()).collect();
        println!(
            "{:>4} {:>5} {:>6} {:>8} {:>5} {:>9} {:>7.2}%  {}",
            e.id,
            e.round,
            e.parent.map_or("-".to_string(), |p| p.to_string()),
            e.net.channels,
            e.net.cells(),
            e.params,
            100.0 * e.accuracy,
            morphs.join(", ")
        );
    }
    println!(
        "first network val accuracy {:.2}% | best network {} val accuracy {:.2}%, test accuracy {:.2}% ({} channels, {} cells)",
        100.0 * s.entries[0].accuracy,
        s.best.id,
        100.0 * s.best.accuracy,
        100.0 * s.best_test_accuracy,
        s.best.net.channels,
        s.best.net.cells()
    );
    println!("best cell: {}; its network and weights: best.json, best.safetensors", out.join("best.genotype.txt").display());
    super::report::after_job(&out, a.no_report);
    Ok(())
}

/// A fresh morphism search's config before flags: the supernet search's data, sizes and
/// training, a stand-alone first network, its cell from --spec or sampled from the space.
fn defaults(a: &SearchArgs) -> Result<MorphSearchConfig> {
    let base = default_search();
    let seed = a.train.seed.unwrap_or(base.train.seed);
    let start = match &a.morph.spec {
        Some(p) => {
            if a.nodes.is_some() || a.ops.is_some() {
                bail!("--spec gives the first cell; --nodes and --ops only shape a sampled one");
            }
            super::read_spec(p)?.darts("the morphism search")?.clone()
        }
        None => {
            let space = space_from_name("darts", a.ops.as_deref(), a.nodes, None)?;
            let space = space.darts().expect("space_from_name(\"darts\") gives a DARTS space");
            space.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(seed, "morph/start")))
        }
    };
    let net = NetConfig { supernet: false, supernet_affine: false, nodes: start.normal.nodes.len(), ..base.net.clone() };
    Ok(MorphSearchConfig {
        method: "morphism".into(),
        data: base.data,
        net,
        start,
        train: base.train,
        child_epochs: 1,
        child_lr: 0.05,
        rounds: 3,
        children: 4,
        morphs: 2,
        limits: Limits { max_channels: 0, max_cells: 0 },
        eval: base.eval,
        resume_ignore: json!({}),
    })
}
