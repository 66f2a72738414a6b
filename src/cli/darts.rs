//! `cellnas search --method darts`: flags -> DartsSearchConfig -> the library's job.

use super::jobs::{apply_data, apply_net, apply_train, checkpoint_every, fit_to_data, fresh_dir, read_config, SearchArgs};
use anyhow::{bail, Result};
use cellnas::gpu::Gpu;
use cellnas::pipeline::darts::{default_darts_search, run_darts_search, DartsSearchConfig};
use cellnas::pipeline::JobOptions;
use cellnas::space::space_from_name;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Default)]
pub struct DartsArgs {
    /// darts: Adam learning rate of the architecture weights alpha [3e-4, as DARTS].
    #[arg(long, value_parser = super::finite_f32)]
    pub arch_lr: Option<f32>,
    /// darts: Adam weight decay (L2) of alpha [1e-3].
    #[arg(long, value_parser = super::finite_f32)]
    pub arch_weight_decay: Option<f32>,
    /// darts: beta-decay regularisation of alpha, lambda >= 0 (a collapse remedy) [0: off].
    #[arg(long, value_parser = super::finite_f32)]
    pub beta_decay: Option<f32>,
    /// darts: DARTS+ early stop after the epoch whose normal cell holds this many skip
    /// connections (a collapse remedy; DARTS+ uses 2) [0: off].
    #[arg(long)]
    pub stop_skips: Option<usize>,
    /// darts: leave the `none` op out of the mixture [in, as DARTS].
    #[arg(long)]
    pub no_none: bool,
}

impl DartsArgs {
    fn given(&self) -> Option<&'static str> {
        [("--arch-lr", self.arch_lr.is_some()), ("--arch-weight-decay", self.arch_weight_decay.is_some()), ("--beta-decay", self.beta_decay.is_some()), ("--stop-skips", self.stop_skips.is_some()), ("--no-none", self.no_none)]
            .into_iter()
            .find(|(_, g)| *g)
            .map(|(f, _)| f)
    }
}

/// Refuses DARTS-only flags on another method's search.
pub fn refuse_elsewhere(a: &SearchArgs, method: &str) -> Result<()> {
    if let Some(flag) = a.darts.given() {
        bail!("{flag} applies to --method darts, not to a {method} search");
    }
    Ok(())
}

pub fn search(gpu: &Arc<Gpu>, a: &SearchArgs) -> Result<()> {
    let m = &a.morph;
    let not_here = [
        ("--strategy", a.strategy.is_some()),
        ("--budget", a.budget.is_some()),
        ("--sampling", a.sampling.is_some()),
        ("--supernet-affine", a.supernet_affine),
        (a.strategy_opts.first_given().unwrap_or("--batch"), a.strategy_opts.first_given().is_some()),
        ("--spec", m.spec.is_some()),
        ("--rounds", m.rounds.is_some()),
        ("--children", m.children.is_some()),
        ("--morphs", m.morphs.is_some()),
        ("--child-epochs", m.child_epochs.is_some()),
        ("--child-lr", m.child_lr.is_some()),
        ("--max-channels", m.max_channels.is_some()),
        ("--max-cells", m.max_cells.is_some()),
    ];
    if let Some((flag, _)) = not_here.iter().find(|(_, given)| *given) {
        bail!("{flag} does not apply to --method darts: it trains one relaxed network and derives one cell from alpha");
    }
    let (mut cfg, out, resume) = match &a.resume {
        Some(dir) => (read_config::<DartsSearchConfig>(dir, "DARTS search")?, dir.clone(), true),
        None => (default_darts_search(), PathBuf::new(), false),
    };
    apply_data(&mut cfg.data, &a.data);
    apply_train(&mut cfg.train, &a.train);
    apply_net(&mut cfg.net, &a.net);
    if let Some(name) = a.space.as_deref().filter(|&s| s != "darts") {
        bail!("--space {name}: --method darts relaxes DARTS cells only so far");
    }
    if a.ops.is_some() || a.nodes.is_some() {
        let ops: Option<Vec<String>> = a.ops.clone().or_else(|| Some(cfg.space.op_names().iter().map(|s| s.to_string()).collect()));
        cfg.space = space_from_name("darts", ops.as_deref(), a.nodes.or(cfg.space.darts().map(|s| s.nodes())), None)?;
        cfg.net.nodes = cfg.space.darts().expect("a DARTS space").nodes();
    }
    let d = &a.darts;
    if let Some(v) = d.arch_lr {
        cfg.arch.lr = v;
    }
    if let Some(v) = d.arch_weight_decay {
        cfg.arch.weight_decay = v;
    }
    if let Some(v) = d.beta_decay {
        cfg.remedy.beta_decay = v;
    }
    if let Some(v) = d.stop_skips {
        cfg.remedy.stop_skips = v;
    }
    if d.no_none {
        cfg.none = false;
    }
    if let Some(r) = a.recalibration_batches {
        cfg.eval.recalibration_batches = r;
    }
    if !resume {
        fit_to_data(&mut cfg.net, &mut cfg.train, &a.train, &cfg.data, a.quiet)?;
    }
    let out = if resume { out } else { a.out.clone().unwrap_or_else(|| fresh_dir(&format!("runs/darts-{}", cfg.train.seed))) };
    cfg.resume_ignore = json!({ "adapter": gpu.info.name, "backend": gpu.info.backend, "out": out });
    if !a.quiet {
        let ops: Vec<&str> = cfg.ops().iter().map(|o| o.name()).collect();
        eprintln!(
            "cellnas search --method darts: {} cells x {} channels, {} nodes, ops {} mixed on every edge; {} epochs; alpha: Adam lr {}{}{}; adapter {} ({}), run folder {}",
            cfg.net.layers,
            cfg.net.channels,
            cfg.net.nodes,
            ops.join(","),
            cfg.train.epochs,
            cfg.arch.lr,
            if cfg.remedy.beta_decay > 0.0 { format!(", beta-decay {}", cfg.remedy.beta_decay) } else { String::new() },
            if cfg.remedy.stop_skips > 0 { format!(", stop at {} skips", cfg.remedy.stop_skips) } else { String::new() },
            gpu.info.name,
            gpu.info.backend,
            out.display()
        );
    }
    let job = JobOptions { resume, quiet: a.quiet, checkpoint_every: checkpoint_every(a.checkpoint_minutes)?, ..Default::default() };
    let s = run_darts_search(gpu, &cfg, &out, &job)?;
    println!("DARTS search: {} epochs in {:.1}s{}", s.epochs.len(), s.train_seconds, s.stopped_after.map_or(String::new(), |e| format!(" (stopped after epoch {e} by the DARTS+ rule)")));
    println!("{:>5} {:>8} {:>9} {:>9} {:>5}  genotype", "epoch", "loss", "train acc", "arch loss", "skips");
    for e in &s.epochs {
        println!("{:>5} {:>8.4} {:>8.2}% {:>9.4} {:>5}  {}", e.epoch + 1, e.loss, 100.0 * e.accuracy, e.arch_loss, e.normal_skips, e.genotype);
    }
    println!("derived cell: val accuracy {:.2}% with the relaxed network's weights (recalibrated BN), {} parameters stand-alone", 100.0 * s.val_accuracy, s.params);
    println!("best cell: {} (train it: cellnas train --spec {})", out.join("best.genotype.txt").display(), out.join("best.json").display());
    super::report::after_job(&out, a.no_report);
    Ok(())
}
