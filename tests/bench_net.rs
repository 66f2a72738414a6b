//! The whole-network benchmark: it runs the real training and evaluation paths, counts what
//! it should, and its command line prints a parseable report.

use cellnas::bench::net::{reference_genotype, NetBench};
use cellnas::gpu::test_gpu;
use std::process::Command;

fn tiny(supernet: bool) -> NetBench {
    NetBench { genotype: reference_genotype(), channels: 4, layers: 3, batch: 4, steps: 2, warmup: 2, reps: 2, supernet, image: [1, 12, 12], classes: 10 }
}

#[test]
fn net_bench_reports_steady_state_steps() {
    let gpu = test_gpu();
    for supernet in [false, true] {
        let r = tiny(supernet).run(&gpu).unwrap();
        for (phase, p) in [("train", &r.train), ("eval", &r.eval)] {
            assert_eq!(p.runs.len(), 2, "{phase}");
            assert!(p.images_per_s > 0.0 && p.step_ms > 0.0, "{phase}: {p:?}");
            assert!(p.dispatches_per_step > 10.0, "{phase}: a whole network is many dispatches, got {}", p.dispatches_per_step);
            assert_eq!(p.device_ms.is_some(), gpu.timestamps, "{phase}: device time exactly where timestamps exist");
            assert_eq!(p.buffers_created_per_step, 0.0, "{phase}: warm steps allocate nothing");
        }
        // A training step is one submit; evaluation puts several batches in one.
        assert_eq!(r.train.submits_per_step, 1.0);
        assert!(r.eval.submits_per_step <= 1.0);
        assert!(r.train.dispatches_per_step > 2.0 * r.eval.dispatches_per_step, "backward and update add dispatches");
        assert!(r.params > 0 && r.device_mib > 0.0);
    }
}

#[test]
fn net_bench_rejects_zero_steps() {
    let gpu = test_gpu();
    let err = NetBench { steps: 0, ..tiny(false) }.run(&gpu).unwrap_err().to_string();
    assert!(err.contains("steps"), "{err}");
}

#[test]
fn bench_net_command_prints_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_cellnas"))
        .args(["bench", "--net", "--json", "--channels", "4", "--layers", "3", "--batch-size", "4", "--steps", "1", "--reps", "1", "--warmup", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["channels"], 4);
    assert!(v["train"]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["eval"]["dispatches_per_step"].as_f64().unwrap() > 0.0);
    assert!(v["genotype"].as_str().unwrap().starts_with("Genotype("));
}

#[test]
fn a_batch_too_large_for_the_adapter_is_refused_before_allocation() {
    let gpu = test_gpu();
    let before = gpu.buffers_created();
    for batch in [10_000_000, usize::MAX] {
        let err = NetBench { batch, ..tiny(false) }.run(&gpu).unwrap_err().to_string();
        assert!(err.contains(&format!("batch size {batch} does not fit")), "{err}");
        assert!(err.contains("max_storage_buffer_binding_size") && err.contains("largest batch that fits"), "{err}");
    }
    assert_eq!(gpu.buffers_created(), before, "nothing allocated");
}

#[test]
fn bench_net_refuses_a_kernel_filter() {
    let out = Command::new(env!("CARGO_BIN_EXE_cellnas")).args(["bench", "--net", "--filter", "conv2d"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--filter") && err.contains("--net"), "{err}");
}
