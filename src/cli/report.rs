//! `cellnas report`, and the report `search` and `train` write at their end.

use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run folder of `search`, `train` or `rank`.
    pub run: PathBuf,
    /// The HTML file to write [default: RUN/report.html].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Candidates shown with their drawings in the top table [5].
    #[arg(long, default_value_t = cellnas::report::DEFAULT_TOP)]
    pub top: usize,
}

pub fn report(a: &ReportArgs) -> Result<()> {
    if a.top == 0 {
        bail!("--top 0: give at least 1 candidate to show");
    }
    let out = a.out.clone().unwrap_or_else(|| cellnas::report::default_path(&a.run));
    if out.is_dir() {
        bail!("--out {}: is a folder; expected the path of the HTML file to write", out.display());
    }
    cellnas::report::write(&a.run, &out, a.top)?;
    println!("report: {}", out.display());
    Ok(())
}

/// The end of a `search` or `train`: its report in the run folder, unless `--no-report`. A
/// report that cannot be written is a warning: the run itself has succeeded.
pub fn after_job(run: &Path, no_report: bool) {
    if no_report {
        return;
    }
    let out = cellnas::report::default_path(run);
    match cellnas::report::write(run, &out, cellnas::report::DEFAULT_TOP) {
        Ok(()) => println!("report: {}", out.display()),
        Err(e) => eprintln!("warning: the run finished, but its report could not be written: {e}"),
    }
}
