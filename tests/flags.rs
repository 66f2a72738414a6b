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
