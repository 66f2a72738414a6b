//! `cellnas autotune`: time the kernel variants of a network's choice points on this adapter
//! and merge the winners into the autotune cache (crate::autotune).

use anyhow::{bail, Context, Result};
use cellnas::autotune::{self, AdapterEntries, AdapterKey, CacheFile, CacheSource};
use cellnas::gpu::Gpu;
use cellnas::nn::darts::NetConfig;
use cellnas::space::{Genotype, Op};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// The network timed without `--spec`: DARTS V2 (Liu et al. 2019), a typical stand-alone cell.
const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

#[derive(Args, Debug)]
pub struct AutotuneArgs {
    /// The network's cell: a spec JSON file or DARTS genotype text [default: DARTS V2].
    #[arg(long, conflicts_with = "supernet")]
    pub spec: Option<PathBuf>,
    /// Time every op of the search space on every edge (what a search's supernet runs).
    #[arg(long)]
    pub supernet: bool,
    /// Channels of the first cells [supernet: 8, else 16].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells [supernet: 5, else 8].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Intermediate nodes per cell of --supernet [4].
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Images per step [64].
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Image shape CxHxW [1x28x28, Fashion-MNIST; 3x32x32 for CIFAR-10].
    #[arg(long, default_value = "1x28x28")]
    pub image: String,
    /// Cache file to merge into [CELLNAS_AUTOTUNE, else $XDG_CACHE_HOME/cellnas/autotune.json, else ~/.cache/cellnas/autotune.json].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Untimed runs of each variant before timing.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed runs of each variant (alternating); the median decides.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print this adapter's new entries as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_image(s: &str) -> Result<[usize; 3]> {
    let parts: Vec<usize> = s.split('x').map(|p| p.trim().parse::<usize>()).collect::<std::result::Result<_, _>>().with_context(|| format!("--image '{s}': expected CxHxW, e.g. 3x32x32"))?;
    match parts[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => bail!("--image '{s}': expected three positive sizes CxHxW, e.g. 3x32x32"),
    }
}

pub fn autotune(gpu: &Arc<Gpu>, a: &AutotuneArgs) -> Result<()> {
    if a.batch_size == 0 || a.reps == 0 {
        bail!("--batch-size and --reps must be at least 1");
    }
    let image = parse_image(&a.image)?;
    let path = match &a.cache {
        Some(p) => p.clone(),
        None => match CacheSource::Env.path() {
            Some(p) => p,
            None => bail!("no cache file to write: CELLNAS_AUTOTUNE is 'off', or neither XDG_CACHE_HOME nor HOME is set; pass --cache FILE"),
        },
    };
    // Read first: a cache that cannot be merged into is reported before minutes of timing.
    let mut file = CacheFile::read(&path).with_context(|| format!("cannot merge into {} (fix or delete it, or pass --cache elsewhere)", path.display()))?;
    let (genotypes, nodes) = if a.supernet {
        (autotune::supernet_genotypes(&Op::SEARCHABLE, a.nodes), a.nodes)
    } else {
        let g = match &a.spec {
            Some(p) => super::read_spec(p)?.darts("autotune")?.clone(),
            None => Genotype::from_darts(DARTS_V2)?,
        };
        let n = g.normal.nodes.len();
        (vec![g], n)
    };
    let (c0, l0) = if a.supernet { (8, 5) } else { (16, 8) };
    let net = NetConfig { in_channels: image[0], classes: 10, channels: a.channels.unwrap_or(c0), layers: a.layers.unwrap_or(l0), nodes, supernet: a.supernet, supernet_affine: false, gated: vec![], kind: Default::default() };
    net.validate()?;
    let points = autotune::network_points(&net, &genotypes, a.batch_size, image)?;
    for var in ["CELLNAS_CONV_GENERIC", "CELLNAS_POOL_GENERIC"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("warning: {var} is set: the general kernels win over any choice, so the fast variants of that op are not timed");
        }
    }
    if !a.json {
        println!(
            "adapter: {} ({}, {} {}), timing: {}; {} choice points",
            gpu.info.name,
            gpu.info.backend,
            gpu.info.driver,
            gpu.info.driver_info,
            if gpu.timestamps { "GPU timestamps" } else { "host clock" },
            points.len()
        );
        println!("{:<60} {:<8} {:>10} {:>10}  shape", "choice point", "chosen", "default ms", "other ms");
    }
    let (timed, timing) = autotune::tune(gpu, &points, a.warmup, a.reps, |t| {
        if a.json {
            return;
        }
        let ms = |v: &str| t.entry.ms.get(v).map_or("-".to_string(), |m| format!("{m:.3}"));
        println!("{:<60} {:<8} {:>10} {:>10}  {}", t.point.key, t.entry.variant, ms(t.point.variants[0]), ms(t.point.variants[1]), t.entry.shape);
    })?;
    let changed = timed.iter().filter(|t| t.entry.variant != t.point.variants[0]).count();
    let new = AdapterEntries {
        adapter: AdapterKey::of(&gpu.info),
        timing: timing.to_string(),
        entries: timed.into_iter().map(|t| (t.point.key, t.entry)).collect(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&new)?);
    }
    file.merge(new);
    file.write(&path)?;
    if !a.json {
        println!("{changed} choice points differ from the defaults; cache {}", path.display());
    }
    Ok(())
}
