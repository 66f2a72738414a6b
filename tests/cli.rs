//! The binary as a user runs it: `cellnas devices`, `cellnas bench [--json]`, and clear errors.

use std::process::Command;

fn cellnas(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellnas")).args(args).output().expect("run cellnas")
}

#[test]
fn devices_lists_limits() {
    let out = cellnas(&["devices"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for field in ["storage buffers per stage", "workgroup storage", "invocations per workgroup", "max storage binding", "subgroup size", "timestamp queries"] {
        assert!(text.contains(field), "missing '{field}' in:\n{text}");
    }
    let out = cellnas(&["devices", "--json"]);
    let line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("devices --json prints JSON");
    assert!(v["max_storage_buffers_per_stage"].as_u64().unwrap() >= 8);
}

#[test]
fn bench_json_has_one_object_per_pass() {
    let out = cellnas(&["bench", "--json", "--filter", "relu", "--reps", "1", "--warmup", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r["kernel"], "relu");
        assert!(["forward", "backward_input"].contains(&r["pass"].as_str().unwrap()), "{r}");
        assert!(r["ms"].as_f64().unwrap() > 0.0 && r["gflops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["shape"].is_string());
    }
    assert!(rows.iter().any(|r| r["pass"] == "backward_input"));
}

#[test]
fn bench_table() {
    let out = cellnas(&["bench", "--filter", "add", "--reps", "1", "--warmup", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GFLOP/s") && text.contains("backward_weight"), "{text}");
}

#[test]
fn bad_adapter_and_filter_fail_cleanly() {
    let out = cellnas(&["bench", "--adapter", "no-such-gpu-xyz"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no GPU adapter found matching 'no-such-gpu-xyz'") && !err.contains("panicked"), "{err}");
    let out = cellnas(&["bench", "--filter", "nonexistent-op"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kernel family matches"));
}

#[test]
#[cfg(unix)]
fn printing_into_a_closed_pipe_ends_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("cellnas-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cell = dir.join("cell.txt");
    std::fs::write(&cell, "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0)], normal_concat=[2], reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])").unwrap();
    // The reading end is closed before cellnas writes anything: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cellnas"))
        .args(["genotype", cell.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.signal(), Some(13), "ended by SIGPIPE, got {:?}\n{err}", o.status);
    let _ = std::fs::remove_dir_all(&dir);
}
