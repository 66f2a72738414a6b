//! The user-facing jobs (search, eval, train) as library functions, so tests run exactly what
//! the CLI runs. Each job takes a fully resolved config, which is also what `config.json`
//! records.

pub mod data;
pub mod search;
pub mod standalone;

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
