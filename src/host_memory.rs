//! How much host memory the machine can still give (Linux `MemAvailable`), so a dataset or a
//! network too large for it is refused with a message before allocation, instead of the kernel
//! killing the process or the allocator aborting it. None where it cannot be read: the checks
//! then pass (documented in docs/RELIABILITY.md).

/// `MemAvailable` from /proc/meminfo, in bytes; `CELLNAS_HOST_MEMORY_BYTES` overrides it (tests,
/// or a machine shared with other jobs).
pub fn available_bytes() -> Option<u64> {
    if let Some(v) = std::env::var("CELLNAS_HOST_MEMORY_BYTES").ok().and_then(|v| v.trim().parse().ok()) {
        return Some(v);
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The message for `what` needing `need` bytes of host memory when only `available` are free.
pub fn too_big(what: &str, need: u64, available: u64) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    format!("{what} needs {:.0} MiB of host memory, the machine has {:.0} MiB available", mib(need), mib(available))
}
