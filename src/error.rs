//! One error type for the library. Every variant says what was wrong and, where it helps,
//! what was expected, so the CLI can print it as-is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found{filter}. Install a GPU driver, or Mesa's software Vulkan \
         (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`), then run `cellnas devices`"
    )]
    NoAdapter { filter: String },

    #[error("adapter '{adapter}' cannot run cellnas: {what} is {have}, need at least {need}")]
    AdapterTooSmall { adapter: String, what: &'static str, have: u64, need: u64 },

    #[error("unknown backend '{0}': expected one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),

    #[error("could not open a device on adapter '{adapter}': {message}")]
    RequestDevice { adapter: String, message: String },

    #[error("GPU validation error in {context}: {message}")]
    Gpu { context: String, message: String },

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error("shape mismatch in {op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("invalid argument: {0}")]
    Invalid(String),

    /// An architecture (op name, genotype, DARTS text, JSON spec, search space) that cellnas
    /// cannot accept; the message names the place and what was expected.
    #[error("architecture spec: {0}")]
    Spec(String),

    // The reason is in the message and deliberately not a `source`: anyhow's `{:#}` would
    // print it twice.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },

    /// A dataset file (or directory) that is missing, truncated or not in the expected format.
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },

    /// A line of a search history (history.jsonl) that cannot be read; `line` counts from 1.
    #[error("{path}, line {line}: {message}")]
    History { path: PathBuf, line: usize, message: String },

    /// A search that cannot go on as asked, e.g. resuming from a history that this
    /// strategy, seed and space would not have produced.
    #[error("search: {0}")]
    Search(String),

    /// A weights or checkpoint file that is missing, truncated, corrupt, holds a tensor cellnas
    /// cannot read, or does not match the state that names it.
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// A run folder cellnas will not write into, or a resume whose config differs from the
    /// stored one (the message lists each differing field).
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A run folder that another process is writing (its lock file names the holder), or
    /// whose lock cannot be taken.
    #[error("{path}: {message}")]
    Locked { path: PathBuf, message: String },

    /// A JSON Lines file with a line that is not a valid record (lines count from 1).
    #[error("{path}, line {line}: {message}")]
    Jsonl { path: PathBuf, line: usize, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), reason: source }
    }
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data { path: path.into(), message: message.into() }
    }
}
