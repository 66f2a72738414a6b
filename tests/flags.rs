//! Float flags refuse NaN and infinities at parse time, naming the flag (issue 11): before,
//! a NaN learning rate failed later as "training diverged" and a NaN clip turned clipping off.

mod common;
use common::run;

#[test]
fn non_finite_float_flags_are_refused_by_name() {
    for cmd in ["search", "train", "rank"] {
        for flag in ["--lr", "--lr-min", "--momentum", "--weight-decay", "--grad-clip", "--warmup-epochs"] {
            if cmd == "rank" && flag != "--lr" {
                continue;
            }
            for v in ["NaN", "inf", "-inf"] {
                let arg = format!("{flag}={v}");
                let o = run(&[cmd, &arg, "--out", "/nonexistent/never-created"]);
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(o.status.code(), Some(2), "{cmd} {arg}: {err}");
                assert!(err.contains(flag) && err.contains("finite"), "{cmd} {arg}: {err}");
            }
        }
    }
}

#[test]
fn size_flags_have_bounds_checked_before_anything_is_allocated() {
    let out = common::tmp("size-flags");
    for (flag, v, needle) in [
        ("--channels", "2000000000", "channels must be at most 4096"),
        ("--channels", "18446744073709551614", "channels must be at most 4096"),
        ("--layers", "100000000", "layers must be at most 1000"),
        ("--nodes", "18446744073709551615", "nodes must be at most 64"),
        ("--epochs", "18446744073709551615", "epochs must be at most 100000"),
        ("--budget", "18446744073709551615", "budget must be between 1 and 1000000"),
        ("--batch-size", "18446744073709551615", "batch size must be between 1 and 65536"),
        ("--crop", "1000000", "at most 65536"),
    ] {
        let o = run(&["search", flag, v, "--out", out.to_str().unwrap()]);
        common::fails(o, &[needle]);
        assert!(!out.exists(), "{flag} {v} left a run folder");
    }
    common::fails(run(&["bench", "--net", "--layers", "100000000"]), &["layers must be at most 1000"]);
}
