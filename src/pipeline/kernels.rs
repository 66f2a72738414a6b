//! `kernels.json` in a run folder: the kernel choices (crate::autotune) a run started with.
//! Kernel variants may round differently, so a resumed run must keep the kernels it started
//! with even when the autotune cache changed since: a resume, `cellnas eval` and
//! `cellnas test` put these choices back on the Gpu instead of the cache's.

use crate::autotune::{AdapterKey, Choices};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::run::RunDir;
use std::path::{Path, PathBuf};

pub const FILE: &str = "kernels.json";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecord {
    /// The adapter the run started on (for the record: the choices are valid on any adapter).
    pub adapter: AdapterKey,
    /// Choice point -> variant; absent points run the documented defaults.
    pub choices: Choices,
    /// Whether CELLNAS_CONV_GENERIC / CELLNAS_POOL_GENERIC were set at the start: they win
    /// over the choices, so a resume without them would change kernels.
    pub conv_generic: bool,
    pub pool_generic: bool,
}

fn env_on(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The run's recorded choices, None for a run that has none (started before cellnas wrote
/// them: it ran the defaults). A file that cannot be read is an error naming it: resuming
/// with guessed kernels could silently break bitwise resume.
pub fn read(dir: &Path) -> Result<Option<KernelRecord>> {
    let p = path(dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&p, e)),
    };
    let record: KernelRecord =
        serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: p.clone(), message: format!("not a kernel choice record: {e}") })?;
    for (key, v) in &record.choices {
        let ok = crate::autotune::variants_of(key).is_some_and(|vs| vs.contains(&v.as_str()));
        if !ok {
            return Err(Error::Config { path: p.clone(), message: format!("'{key}': unknown choice point or variant '{v}'") });
        }
    }
    Ok(Some(record))
}

/// Fixes the kernels of a run in `run`: a new run records the Gpu's choices; a resumed one
/// puts back the recorded ones (the defaults for a run without a record, which is then
/// written). Warns when a generic-kernel env override differs from the start.
pub fn pin(gpu: &Gpu, run: &RunDir, resume: bool) -> Result<()> {
    let now = KernelRecord {
        adapter: AdapterKey::of(&gpu.info),
        choices: gpu.kernel_choices(),
        conv_generic: env_on("CELLNAS_CONV_GENERIC"),
        pool_generic: env_on("CELLNAS_POOL_GENERIC"),
    };
    if !resume {
        return run.write_json_recorded(FILE, &now);
    }
    match read(run.dir())? {
        Some(rec) => {
            warn_env(&rec, &now);
            gpu.set_kernel_choices(rec.choices);
        }
        None => {
            gpu.set_kernel_choices(Choices::new());
            run.write_json_recorded(FILE, &KernelRecord { choices: Choices::new(), ..now })?;
        }
    }
    Ok(())
}

/// For reading a run (`cellnas eval`, `cellnas test`): its recorded choices, when it has them,
/// replace the Gpu's. Nothing is written.
pub fn apply_recorded(gpu: &Gpu, dir: &Path) -> Result<()> {
    if let Some(rec) = read(dir)? {
        let now = KernelRecord { adapter: rec.adapter.clone(), choices: Choices::new(), conv_generic: env_on("CELLNAS_CONV_GENERIC"), pool_generic: env_on("CELLNAS_POOL_GENERIC") };
        warn_env(&rec, &now);
        gpu.set_kernel_choices(rec.choices);
    }
    Ok(())
}

fn warn_env(rec: &KernelRecord, now: &KernelRecord) {
    for (name, then, is) in [("CELLNAS_CONV_GENERIC", rec.conv_generic, now.conv_generic), ("CELLNAS_POOL_GENERIC", rec.pool_generic, now.pool_generic)] {
        if then != is {
            eprintln!(
                "warning: {name} is {} now but was {} when the run started: its kernels differ, so results may not match bit for bit",
                if is { "set" } else { "unset" },
                if then { "set" } else { "unset" }
            );
        }
    }
}
