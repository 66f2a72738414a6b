//! The user-facing jobs (search, eval, train) as library functions, so tests run exactly what
//! the CLI runs. Each job takes a fully resolved config, which is also what `config.json`
//! records.

pub mod darts;
pub mod adapters;
pub mod cost;
pub mod data;
pub mod fit;
pub mod kernels;
pub mod morphism;
pub mod rank;
pub mod rank_shard;
pub mod rank_stop;
pub mod search;
pub mod merge;
pub mod shard;
mod rounds;
pub mod standalone;
pub mod tune;
pub mod tune_shard;
pub mod warnings;

/// Progress bars on stderr (hidden automatically when stderr is not a terminal).
pub(crate) fn bar(len: u64, prefix: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// How a job runs, as opposed to what it computes (that is the config): none of this changes a
/// result, so it may differ between a run and its resume.
#[derive(Clone, Default)]
pub struct JobOptions {
    /// Continue the run in the output folder instead of starting one.
    pub resume: bool,
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
    /// Wall time between mid-epoch checkpoints (`None`: only after each epoch).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Stop after the job's first phase (`--phase`): a search once its supernet is trained, a
    /// rank once its architectures are chosen and scored on the supernet. The rest then runs
    /// in shards (pipeline::shard, rank_shard) joined by `cellnas merge`.
    pub first_phase_only: bool,
    /// `cellnas merge` finishing a job whose shards are done (a rank reads their trainings back).
    pub merging: bool,
    /// Devices that score a search's candidates in parallel (`--adapters`); empty: the job's
    /// own device scores them.
    pub scorers: Vec<std::sync::Arc<crate::gpu::Gpu>>,
}
