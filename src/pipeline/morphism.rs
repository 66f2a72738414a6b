//! `cellnas search --method morphism`: search by network morphism (NASH, Elsken et al. 2017),
//! beside the supernet search. A small network is trained from scratch; each round, every
//! child is the round's parent changed by a few function-preserving morphs (crate::morph:
//! widen, deepen, grow a kernel), so it starts computing what its parent computes, inherits its
//! weights, is fine-tuned for a short budget and scored on the validation split; the best child
//! becomes the next parent (hill climbing).
//!
//! Every network is a run folder `nets/NNNN` (its own checkpoints, metrics and final weights),
//! and `history.jsonl` records one line per scored network. Morphs are drawn from (seed, round,
//! child) and training is deterministic, so a killed search resumes where it stopped: scored
//! networks are read back, a network being trained continues from its checkpoint, and the
//! result equals an uninterrupted run.

use super::data::{load, DataConfig, Loaded};
use super::fit::{fit, FitOptions};
use super::JobOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::morph::{draw, Limits, Morph};
use crate::nn::darts::{self, NetConfig};
use crate::nn::params::name_seed;
use crate::run::{load_tensors, read_jsonl, save_tensors, append_jsonl, NamedTensor, RunDir};
use crate::search::rfc3339;
use crate::space::{Arch, Genotype, Spec};
use crate::supernet::EvalConfig;
use crate::train::{evaluate, Model, TrainConfig};
use rand::SeedableRng;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MorphSearchConfig {
    /// Always "morphism": tells this config from a supernet search's.
    pub method: String,
    pub data: DataConfig,
    /// The first network (stand-alone conventions, affine BN).
    pub net: NetConfig,
    /// Its cell.
    pub start: Genotype,
    /// Training of the first network; also batch size, momentum, weight decay, clip,
    /// augmentation and seed of every fine-tuning.
    pub train: TrainConfig,
    /// Fine-tuning of each child: epochs and peak learning rate (cosine to train.lr_min).
    pub child_epochs: usize,
    pub child_lr: f32,
    pub rounds: usize,
    pub children: usize,
    /// Morphs per child: 1 to this many.
    pub morphs: usize,
    pub limits: Limits,
    /// BN statistics re-estimated over this many training batches before a network is scored.
    pub eval: EvalConfig,
    pub resume_ignore: serde_json::Value,
}

/// Largest --rounds x --children accepted.
pub const MAX_NETWORKS: usize = 100_000;

impl MorphSearchConfig {
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        self.train.validate()?;
        self.child_train().validate()?;
        self.start.validate()?;
        if self.net.supernet || !self.net.gated.is_empty() {
            return Err(Error::Invalid("a morphism search starts from a plain stand-alone network".into()));
        }
        if self.net.nodes != self.start.normal.nodes.len() {
            return Err(Error::Invalid(format!("network has {} nodes per cell, the start cell {}", self.net.nodes, self.start.normal.nodes.len())));
        }
        let n = self.rounds.checked_mul(self.children).filter(|&n| n >= 1 && n <= MAX_NETWORKS);
        if n.is_none() {
            return Err(Error::Invalid(format!("--rounds x --children must be 1 to {MAX_NETWORKS} networks, got {} x {}", self.rounds, self.children)));
        }
        if self.morphs == 0 || self.morphs > 16 {
            return Err(Error::Invalid(format!("--morphs must be 1 to 16 per child, got {}", self.morphs)));
        }
        if self.limits.max_channels < self.net.channels || self.limits.max_cells < self.net.cells() {
            return Err(Error::Invalid(format!(
                "--max-channels {} and --max-cells {} must hold the first network ({} channels, {} cells)",
                self.limits.max_channels,
                self.limits.max_cells,
                self.net.channels,
                self.net.cells()
            )));
        }
        if self.eval.batch_size == 0 || self.eval.recalibration_batches == 0 {
            return Err(Error::Invalid("evaluation needs a batch size and recalibration batches of at least 1".into()));
        }
        if self.data.val_count == 0 {
            return Err(Error::Invalid("a search needs a validation split (--val >= 1): networks are scored on it".into()));
        }
        Ok(())
    }

    fn child_train(&self) -> TrainConfig {
        TrainConfig { epochs: self.child_epochs, lr: self.child_lr, warmup_epochs: 0.0, ..self.train.clone() }
    }
}

/// One scored network.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MorphEntry {
    pub id: usize,
    /// 0 for the first network.
    pub round: usize,
    pub parent: Option<usize>,
    pub morphs: Vec<Morph>,
    /// DARTS text of the cell.
    pub genotype: String,
    pub net: NetConfig,
    pub accuracy: f64,
    pub loss: f64,
    /// A child's validation accuracy before fine-tuning, with the weights and BN statistics
    /// the morphs carried over: its parent's accuracy, since morphs keep the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_accuracy: Option<f64>,
    pub params: u64,
    pub flops: u64,
    /// Training time of this network alone (its fine-tuning, or the first network's training).
    pub train_seconds: f64,
    pub time: String,
}

pub struct MorphSummary {
    pub entries: Vec<MorphEntry>,
    pub best: MorphEntry,
    pub best_test_accuracy: f64,
    /// Networks trained in this invocation (a resumed run reads the others back).
    pub trained: usize,
    pub seconds: f64,
}

/// A network to train: where it starts from and what it is.
struct Plan {
    id: usize,
    round: usize,
    parent: Option<usize>,
    /// The parent's network and cell, which `morphs` change into `net` and `genotype`.
    from: Option<(NetConfig, Genotype)>,
    morphs: Vec<Morph>,
    net: NetConfig,
    genotype: Genotype,
}

pub fn run_morph_search(gpu: &Arc<Gpu>, cfg: &MorphSearchConfig, out: &Path, job: &JobOptions) -> Result<MorphSummary> {
    cfg.validate()?;
    let cfg_json = serde_json::to_value(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
    let run = if job.resume { RunDir::resume(out, &cfg_json)? } else { RunDir::create(out, &cfg_json)? };
    super::kernels::pin(gpu, &run, job.resume)?;
    let data = load(gpu, &cfg.data, cfg.train.seed)?;
    let [_, h, w] = data.train.image_shape();
    let (mut entries, warnings) = read_jsonl::<MorphEntry>(&run.history_path())?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let started = std::time::Instant::now();
    let mut trained = 0;
    let total = 1 + cfg.rounds * cfg.children;
    for id in 0..total {
        let plan = plan(cfg, id, &entries)?;
        if let Some(e) = entries.get(id) {
            // Read back: it must be the network this config makes at this point.
            if e.morphs != plan.morphs || e.parent != plan.parent || e.genotype != plan.genotype.to_darts() {
                return Err(Error::Search(format!("history entry {id} does not match this search's config (another seed or settings?): it records {:?} from {:?}", e.morphs, e.parent)));
            }
            continue;
        }
        let entry = train_one(gpu, cfg, &run, &data, &plan, [h, w], job)?;
        trained += 1;
        if !job.quiet {
            let from = plan.parent.map_or("scratch".to_string(), |p| format!("net {p}"));
            let morphs: Vec<String> = plan.morphs.iter().map(|m| m.to_string()).collect();
            eprintln!(
                "net {id} (round {}, from {from}{}{}): {} channels, {} cells, {} params: val accuracy {:.2}%{} ({:.0}s)",
                plan.round,
                if morphs.is_empty() { "" } else { ": " },
                morphs.join(", "),
                entry.net.channels,
                entry.net.cells(),
                entry.params,
                100.0 * entry.accuracy,
                entry.inherited_accuracy.map_or(String::new(), |a| format!(", {:.2}% before fine-tuning", 100.0 * a)),
                entry.train_seconds
            );
        }
        append_jsonl(&run.history_path(), &entry)?;
        entries.push(entry);
    }
    let best = best_of(&entries, 0..entries.len()).expect("at least the first network").clone();
    let genotype = Genotype::from_darts(&best.genotype)?;
    let weights_path = net_dir(&run, best.id).join("weights.safetensors");
    let (tensors, _) = load_tensors(&weights_path)?;
    let mut model = Model::new(gpu, best.net.clone(), cfg.train.seed)?;
    model.restore(&tensors)?;
    let (test_accuracy, test_loss) = evaluate(&best.net, &mut model.store, &mut model.bn, &Arch::Darts(genotype.clone()), &data.test, cfg.eval.batch_size)?;
    let spec = Spec { name: Some(format!("cellnas morphism search, network {}", best.id)), ..Spec::new(genotype) };
    let best_json = json!({
        "spec": serde_json::from_str::<serde_json::Value>(&spec.to_json_pretty()).expect("spec JSON"),
        "net": best.net,
        "metrics": { "val_accuracy": best.accuracy, "val_loss": best.loss, "test_accuracy": test_accuracy, "test_loss": test_loss,
                     "params": best.params, "flops": best.flops, "candidate": best.id },
        "weights": "best.safetensors",
        "baseline": { "first_network_val_accuracy": entries[0].accuracy },
    });
    let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    run.write_recorded("best.safetensors", &bytes)?;
    run.write_json_recorded("best.json", &best_json)?;
    run.write_recorded("best.genotype.txt", format!("{}\n", best.genotype).as_bytes())?;
    Ok(MorphSummary { entries, best, best_test_accuracy: test_accuracy, trained, seconds: started.elapsed().as_secs_f64() })
}

/// The best (highest validation accuracy, then earliest) of `entries[range]`.
fn best_of(entries: &[MorphEntry], range: std::ops::Range<usize>) -> Option<&MorphEntry> {
    entries[range].iter().reduce(|a, b| if crate::search::better(b.accuracy, a.accuracy) { b } else { a })
}

fn net_dir(run: &RunDir, id: usize) -> std::path::PathBuf {
    run.dir().join("nets").join(format!("{id:04}"))
}

/// What network `id` is: the first network, or a child of the previous round's best.
fn plan(cfg: &MorphSearchConfig, id: usize, entries: &[MorphEntry]) -> Result<Plan> {
    if id == 0 {
        return Ok(Plan { id, round: 0, parent: None, from: None, morphs: vec![], net: cfg.net.clone(), genotype: cfg.start.clone() });
    }
    let (round, child) = ((id - 1) / cfg.children + 1, (id - 1) % cfg.children);
    let prev = if round == 1 { 0..1 } else { 1 + (round - 2) * cfg.children..1 + (round - 1) * cfg.children };
    let parent = best_of(entries, prev).ok_or_else(|| Error::Search(format!("network {id}: its parent round is not scored yet")))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name_seed(cfg.train.seed, &format!("morph/{round}/{child}")));
    let genotype = Genotype::from_darts(&parent.genotype)?;
    let morphs = draw(&parent.net, &genotype, &cfg.limits, cfg.morphs, &mut rng);
    // Shapes only here; the tensors follow the same morphs in `train_one`.
    let (mut net, mut g) = (parent.net.clone(), genotype.clone());
    for m in &morphs {
        (net, g) = m.shape(&net, &g);
    }
    Ok(Plan { id, round, parent: Some(parent.id), from: Some((parent.net.clone(), genotype)), morphs, net, genotype: g })
}

/// Trains (or resumes) network `plan.id` in its run folder and scores it.
fn train_one(gpu: &Arc<Gpu>, cfg: &MorphSearchConfig, run: &RunDir, data: &Loaded, plan: &Plan, image: [usize; 2], job: &JobOptions) -> Result<MorphEntry> {
    let seed = cfg.train.seed;
    let train = if plan.parent.is_none() { cfg.train.clone() } else { cfg.child_train() };
    let dir = net_dir(run, plan.id);
    let net_cfg = json!({ "id": plan.id, "parent": plan.parent, "morphs": plan.morphs, "net": plan.net, "genotype": plan.genotype.to_darts(), "train": train });
    let sub = if dir.join("config.json").exists() { RunDir::resume(&dir, &net_cfg)? } else { RunDir::create(&dir, &net_cfg)? };
    let sub = sub.with_checkpoint_file("checkpoint.safetensors");
    let mut model = Model::new(gpu, plan.net.clone(), seed)?;
    if let (Some(p), Some((net, g))) = (plan.parent, &plan.from) {
        // The parent's weights through the child's morphs; the optimizer starts afresh.
        let (tensors, _) = load_tensors(&net_dir(run, p).join("weights.safetensors"))?;
        let mut t: Vec<NamedTensor> = tensors.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
        let (mut net, mut g) = (net.clone(), g.clone());
        for m in &plan.morphs {
            (net, g, t) = m.apply(&net, &g, image, seed, t)?;
        }
        if net != plan.net || g != plan.genotype {
            return Err(Error::Search(format!("network {}: its morphs {:?} did not give the planned network", plan.id, plan.morphs)));
        }
        model.restore(&t)?;
    }
    let arch = Arch::Darts(plan.genotype.clone());
    let val = data.val.as_ref().expect("validated: val_count >= 1");
    let inherited_accuracy = match plan.parent {
        Some(_) => Some(evaluate(&plan.net, &mut model.store, &mut model.bn, &arch, val, cfg.eval.batch_size)?.0),
        None => None,
    };
    let [h, w] = image;
    let expect = darts::expected_tensors(&plan.net, &plan.genotype, h, w)?;
    for batch in [train.batch_size, cfg.eval.batch_size] {
        darts::check_batch_fits(gpu, &plan.net, &plan.genotype, batch, h, w)?;
    }
    let opts = FitOptions { run: &sub, checkpoint_every: job.checkpoint_every, quiet: true, expect: Some(&expect) };
    let epochs = fit(&mut model, &data.train, &train, &opts, &mut |_, _| vec![arch.clone()])?;
    model.bn = crate::supernet::recalibrate(&mut model, &arch, &data.train, &cfg.eval, seed)?;
    let (accuracy, loss) = evaluate(&plan.net, &mut model.store, &mut model.bn, &arch, val, cfg.eval.batch_size)?;
    let weights: Vec<_> = model.download()?.into_iter().filter(|(n, _, _)| !n.ends_with("#momentum")).collect();
    let mut meta = BTreeMap::new();
    meta.insert("genotype".to_string(), plan.genotype.to_darts());
    meta.insert("network".to_string(), serde_json::to_string(&plan.net).unwrap_or_default());
    if let Some(id) = sub.run_id() {
        meta.insert("cellnas.run_id".to_string(), id.to_string());
    }
    let path = dir.join("weights.safetensors");
    save_tensors(&path, &weights, &meta)?;
    sub.record("weights.safetensors", &std::fs::read(&path).map_err(|e| Error::io(&path, e))?)?;
    let (params, flops) = darts::size(&plan.net, &plan.genotype, h, w)?;
    Ok(MorphEntry {
        id: plan.id,
        round: plan.round,
        parent: plan.parent,
        morphs: plan.morphs.clone(),
        genotype: plan.genotype.to_darts(),
        net: plan.net.clone(),
        accuracy,
        loss,
        inherited_accuracy,
        params,
        flops,
        train_seconds: epochs.iter().map(|m| m.seconds).sum(),
        time: rfc3339(std::time::SystemTime::now()),
    })
}
