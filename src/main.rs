//! The `cellnas` command line.

mod cli;

use anyhow::Result;
use cellnas::gpu::{self, AdapterOptions, Gpu};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "cellnas", version, about = "Neural architecture search on any GPU (WGSL through wgpu)")]
struct Cli {
    #[command(flatten)]
    adapter: AdapterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct AdapterArgs {
    /// Backend to use: vulkan, metal, dx12 or gl (default: WGPU_BACKEND, else all).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Pick the adapter whose name contains this text (default: WGPU_ADAPTER_NAME, else the
    /// first real GPU, else a software adapter).
    #[arg(long, global = true)]
    adapter: Option<String>,
}

impl AdapterArgs {
    fn options(&self) -> AdapterOptions {
        AdapterOptions { backend: self.backend.clone(), adapter: self.adapter.clone(), ..Default::default() }
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter with the limits that matter to cellnas.
    Devices {
        /// One JSON object per adapter and line.
        #[arg(long)]
        json: bool,
    },
    /// Time every kernel (forward, backward to input, backward to weights) on the chosen adapter,
    /// or with --net a whole network's training and evaluation steps.
    Bench(BenchArgs),
    /// Train a supernet once, score candidates with inherited weights, write the best cell.
    Search(Box<cli::jobs::SearchArgs>),
    /// Compare search strategies over many seeds on a table of scores (a grid search's run).
    BenchSearch(cli::bench_search::BenchSearchArgs),
    /// Inherited-weight score of one spec on a search run's supernet.
    Eval(cli::jobs::EvalArgs),
    /// Train the stand-alone network of a spec from scratch and report test accuracy.
    Train(Box<cli::jobs::TrainCmdArgs>),
    /// Test accuracy of a `cellnas train` run: its final weights, or its latest checkpoint.
    Test(cli::jobs::TestArgs),
    /// How well a search run's inherited scores rank architectures: K of them also trained
    /// stand-alone, with Kendall tau, Spearman, Pearson, precision@k and regret.
    Rank(Box<cli::rank::RankArgs>),
    /// Tune the hyperparameters of a spec's stand-alone training: random, Bayesian (TPE) or
    /// Hyperband over a hyperparameter file, each trial a `cellnas train` run folder.
    Tune(Box<cli::tune::TuneArgs>),
    /// Time the kernel variants a network uses on this adapter and cache the fastest per shape class.
    Autotune(Box<cli::autotune::AutotuneArgs>),
    /// Logits, probabilities and predicted class of a trained network on images (CSV or JSON).
    Predict(Box<cli::export::PredictArgs>),
    /// A trained network as ONNX, or as one safetensors file with its spec and normalisation.
    Export(cli::export::ExportArgs),
    /// Convert between DARTS genotype text and spec JSON (the other form is printed).
    Genotype {
        /// A spec JSON file or a file with DARTS text; `-` reads standard input.
        file: PathBuf,
    },
    /// SVG drawings (and graphviz DOT text) of an architecture's cells, or its macro network.
    Draw(cli::draw::DrawArgs),
    /// One self-contained HTML page of a search, train or rank run: config, curves, plots, top cells.
    Report(cli::report::ReportArgs),
    /// Join the shards of a search (`search --resume RUN --shard I/N`) into its history, best
    /// architecture and report, or of a rank into rank.json (every shard must have finished).
    Merge(cli::shard::MergeArgs),
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only kernels whose family name contains this text (e.g. conv2d), and with FAMILY/SHAPE only cases whose shape contains SHAPE (e.g. 'conv2d/k1x1 s1').
    #[arg(long, default_value = "", conflicts_with = "net")]
    filter: String,
    /// Untimed runs before measuring each pass (with --net: untimed steps; default 2).
    #[arg(long)]
    warmup: Option<usize>,
    /// Timed runs per pass, the median is reported (default 7; with --net: repeats of
    /// --steps steps, default 3).
    #[arg(long)]
    reps: Option<usize>,
    /// Time a whole network instead of single kernels: training steps and evaluation forwards.
    #[arg(long)]
    net: bool,
    /// With --net: the cell (spec JSON, a search's best.json, or DARTS genotype text; default:
    /// the reference genotype built in, docs/PERFORMANCE.md).
    #[arg(long, requires = "net")]
    spec: Option<PathBuf>,
    /// With --net: channels of the first cells.
    #[arg(long, default_value_t = 16, requires = "net")]
    channels: usize,
    /// With --net: cells.
    #[arg(long, default_value_t = 5, requires = "net")]
    layers: usize,
    /// With --net: images per step.
    #[arg(long, default_value_t = 64, requires = "net")]
    batch_size: usize,
    /// With --net: timed steps per repeat.
    #[arg(long, default_value_t = 10, requires = "net")]
    steps: usize,
    /// With --net: supernet conventions (BN without affine, BN after pools), as a search
    /// trains one path.
    #[arg(long, requires = "net")]
    supernet: bool,
}

fn main() {
    // SAFETY: the first statement of main: no other thread exists yet.
    unsafe { gpu::silence_mesa() };
    // Rust ignores SIGPIPE, so printing into a closed pipe (`cellnas genotype F | head`) panicked;
    // the default action ends the process quietly, as Unix tools do. SAFETY: no thread exists yet.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { json } => devices(&cli.adapter.options(), json),
        Command::Bench(args) => bench(&cli.adapter.options(), &args),
        Command::Search(args) => with_gpu(&cli.adapter, |gpu| cli::jobs::search(gpu, &args, &cli.adapter.options())),
        Command::BenchSearch(args) => cli::bench_search::bench_search(&args),
        Command::Eval(args) => with_gpu(&cli.adapter, |gpu| cli::jobs::eval(gpu, &args)),
        Command::Train(args) => with_gpu(&cli.adapter, |gpu| cli::jobs::train(gpu, &args)),
        Command::Test(args) => with_gpu(&cli.adapter, |gpu| cli::jobs::test(gpu, &args)),
        Command::Rank(args) => with_gpu(&cli.adapter, |gpu| cli::rank::rank(gpu, &args)),
        Command::Tune(args) => with_gpu(&cli.adapter, |gpu| cli::tune::tune(gpu, &args)),
        Command::Autotune(args) => with_gpu(&cli.adapter, |gpu| cli::autotune::autotune(gpu, &args)),
        Command::Predict(args) => with_gpu(&cli.adapter, |gpu| cli::export::predict(gpu, &args)),
        Command::Export(args) => cli::export::export(&args),
        Command::Genotype { file } => genotype(&file),
        Command::Draw(args) => cli::draw::draw(&args),
        Command::Report(args) => cli::report::report(&args),
        Command::Merge(args) => cli::shard::merge(&args, &cli.adapter.options()),
    }
}

/// Open the adapter, run a job, and print the per-kernel profile if CELLNAS_PROFILE is set.
fn with_gpu(a: &AdapterArgs, job: impl FnOnce(&std::sync::Arc<Gpu>) -> Result<()>) -> Result<()> {
    let gpu = Gpu::new(&a.options())?;
    let r = job(&gpu);
    if let Some(report) = gpu.profile_report() {
        eprint!("{report}");
    }
    r
}

fn genotype(file: &std::path::Path) -> Result<()> {
    let text = if file == std::path::Path::new("-") {
        cellnas::space::spec_text_from(std::io::stdin().lock(), std::path::Path::new("<stdin>"))?
    } else {
        cellnas::space::read_spec_text(file)?
    };
    let spec = cli::parse_spec(&text, file)?;
    if text.trim_start().starts_with('{') {
        println!("{}", spec.arch.text());
    } else {
        println!("{}", spec.to_json_pretty());
    }
    Ok(())
}

fn devices(opts: &AdapterOptions, json: bool) -> Result<()> {
    let list = gpu::list_adapters(opts)?;
    if list.is_empty() {
        return Err(cellnas::Error::NoAdapter { filter: String::new() }.into());
    }
    for (i, a) in list.iter().enumerate() {
        if json {
            println!("{}", serde_json::to_string(a)?);
            continue;
        }
        println!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        println!("    driver:                      {} {}", a.driver, a.driver_info);
        println!("    storage buffers per stage:   {}", a.max_storage_buffers_per_stage);
        println!("    workgroup storage:           {} bytes", a.max_workgroup_storage_bytes);
        println!("    invocations per workgroup:   {} (x up to {})", a.max_invocations_per_workgroup, a.max_workgroup_size_x);
        println!("    workgroups per dimension:    {}", a.max_workgroups_per_dimension);
        println!("    max storage binding:         {} MiB", a.max_storage_binding_bytes >> 20);
        println!("    max buffer:                  {} MiB", a.max_buffer_bytes >> 20);
        println!("    subgroup size:               {}..{}", a.subgroup_min_size, a.subgroup_max_size);
        println!("    timestamp queries:           {}", if a.timestamps { "yes" } else { "no" });
    }
    Ok(())
}

fn bench(opts: &AdapterOptions, args: &BenchArgs) -> Result<()> {
    let gpu = Gpu::new(opts)?;
    if args.net {
        let r = cli::bench_net(&gpu, args);
        if let Some(report) = gpu.profile_report() {
            eprint!("{report}");
        }
        return r;
    }
    let (warmup, reps) = (args.warmup.unwrap_or(2), args.reps.unwrap_or(7));
    let cases = cellnas::bench::cases(&args.filter);
    if cases.is_empty() {
        anyhow::bail!("no kernel family matches '{}'", args.filter);
    }
    if !args.json {
        println!("adapter: {} ({}), timing: {}", gpu.info.name, gpu.info.backend, if gpu.timestamps { "GPU timestamps" } else { "host clock" });
        println!("{:<22} {:<16} {:<34} {:>10} {:>9} {:>9} {:>9}", "kernel", "pass", "shape", "ms", "min ms", "GFLOP/s", "GB/s");
    }
    for case in cases {
        let prepared = cellnas::bench::Prepared::new(&gpu, case)?;
        for pass in prepared.passes() {
            let row = prepared.measure(&gpu, pass, warmup, reps)?;
            if args.json {
                let mut v = serde_json::to_value(&row)?;
                v["adapter"] = gpu.info.name.clone().into();
                v["backend"] = gpu.info.backend.clone().into();
                println!("{v}");
            } else {
                println!("{:<22} {:<16} {:<34} {:>10.3} {:>9.3} {:>9.2} {:>9.2}", row.kernel, row.pass, row.shape, row.ms, row.min_ms, row.gflops, row.gbps);
            }
        }
    }
    Ok(())
}
