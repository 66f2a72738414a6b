//! The process environment: the library never changes it (tests and embedders run threads that
//! read it, and a concurrent `setenv` is undefined behaviour); the binary silences Mesa's
//! XDG_RUNTIME_DIR warning itself, before any thread exists.

use std::process::Command;

const CHILD: &str = "CELLNAS_ENV_TEST_CHILD";

/// Opens the shared test device in a process without XDG_RUNTIME_DIR (the parent test below
/// runs this one as a child) and checks the variable is still unset.
#[test]
fn child_opening_the_test_gpu_leaves_the_environment_alone() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let _gpu = cellnas::gpu::test_gpu();
    assert_eq!(std::env::var_os("XDG_RUNTIME_DIR"), None, "the library set XDG_RUNTIME_DIR");
}

#[test]
fn the_library_does_not_change_the_environment() {
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_opening_the_test_gpu_leaves_the_environment_alone", "--test-threads", "1"])
        .env_remove("XDG_RUNTIME_DIR")
        .env(CHILD, "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("1 passed"), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_binary_silences_mesa_without_xdg_runtime_dir() {
    let o = Command::new(env!("CARGO_BIN_EXE_cellnas")).arg("devices").env_remove("XDG_RUNTIME_DIR").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}
