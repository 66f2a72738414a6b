//! `cellnas draw`.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DrawArgs {
    /// The architecture: spec JSON, a search's best.json, or a space's text form (DARTS
    /// genotype text, NB201 arch string, macro text).
    pub spec: PathBuf,
    /// Folder for the drawings (created if needed): normal.svg/.dot and reduce.svg/.dot for a
    /// DARTS genotype, cell.* for NB201, network.* for a macro architecture.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn draw(a: &DrawArgs) -> Result<()> {
    let spec = super::read_spec(&a.spec)?;
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {}: is a file; expected a folder for the drawings", a.out.display());
    }
    for path in cellnas::draw::write(&spec.arch, &a.out)? {
        println!("{}", path.display());
    }
    Ok(())
}
