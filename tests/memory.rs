//! Host memory is checked before allocating (issue 11): a dataset file, its decompressed size
//! and a CPU adapter's network are refused with the sizes and the file or batch named, not
//! killed by the kernel or aborted by the allocator. CELLNAS_HOST_MEMORY_BYTES stands in for a
//! small machine.

mod common;
use common::{fails, tmp};
use std::process::Command;

fn cellnas(mem: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellnas")).env("CELLNAS_HOST_MEMORY_BYTES", mem).args(args).output().unwrap()
}

#[test]
fn datasets_and_networks_larger_than_host_memory_are_refused_before_allocation() {
    let out = tmp("memory");
    let o = out.to_str().unwrap();
    // The full Fashion-MNIST: 26 MB of gzip training images expand to 47 MB.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/fashion-mnist");
    fails(cellnas("30000000", &["search", "--data", data, "--out", o, "--epochs", "1", "--quiet"]), &["train-images-idx3-ubyte", "decompressing this file", "MiB available"]);
    let _ = std::fs::remove_dir_all(&out);
    fails(cellnas("1000", &["search", "--data", data, "--out", o, "--epochs", "1", "--quiet"]), &["train-images-idx3-ubyte", "-byte file", "MiB available"]);
    // The embedded subset fits in 20 MB, a network of 64 channels at batch 64 does not. Only a
    // CPU adapter's memory is the host's (lavapipe and llvmpipe, which CI and tests run on).
    let _ = std::fs::remove_dir_all(&out);
    if String::from_utf8_lossy(&cellnas("1", &["devices"]).stdout).contains(", Cpu)") {
        fails(
            cellnas("20000000", &["search", "--out", o, "--channels", "64", "--batch-size", "64", "--epochs", "1", "--quiet"]),
            &["batch size 64", "host memory", "largest batch that could fit"],
        );
    }
}
