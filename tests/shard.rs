//! A search in phases and shards (`--phase supernet`, `--resume RUN --shard I/N`, `cellnas
//! merge`), as a user runs it with separate processes: the merged run equals a single-process
//! run with the same seed, a killed shard continues where it stopped, and bad input is a
//! one-line error that leaves the run as it was.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const TINY: &[&str] = &[
    "--train-limit", "96", "--batch-size", "32", "--epochs", "1", "--channels", "4", "--layers", "3",
    "--val", "48", "--recalibration-batches", "1", "--quiet", "--seed", "5", "--no-report",
];

mod common;
use common::{fails, ok, run};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellnas"))
}

fn spawn(args: &[&str]) -> Child {
    bin().args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("spawn cellnas")
}

fn tmp(name: &str) -> PathBuf {
    common::tmp(&format!("shard-{name}"))
}

/// A usage error from the flag parser: exit 2, no panic, the message names the flag.
fn usage(o: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected a usage error, got {:?}\n{err}", o.status);
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}':\n{err}");
    }
}

fn args<'a>(head: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = head.to_vec();
    v.extend_from_slice(TINY);
    v.extend_from_slice(extra);
    v
}

/// history.jsonl without what differs between any two runs: the wall-clock fields (`time`,
/// `eval_ms`) and the line checksum that covers them.
fn history(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["time", "eval_ms", "crc32"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The single-process run in `single` and the same search in phases and `n` concurrent
/// shards in `sharded`, merged.
fn single_and_sharded(single: &Path, sharded: &Path, n: usize, extra: &[&str]) {
    ok(run(&args(&["search", "--out", single.to_str().unwrap()], extra)));
    let s = sharded.to_str().unwrap();
    ok(run(&args(&["search", "--out", s, "--phase", "supernet"], extra)));
    let ids: Vec<String> = (0..n).map(|i| format!("{i}/{n}")).collect();
    let children: Vec<Child> = ids.iter().map(|id| spawn(&["search", "--resume", s, "--shard", id, "--quiet"])).collect();
    for c in children {
        ok(c.wait_with_output().unwrap());
    }
    ok(run(&["merge", s, "--no-report"]));
}

fn assert_same_run(single: &Path, sharded: &Path) {
    assert_eq!(history(single), history(sharded));
    for f in ["best.json", "best.genotype.txt", "pareto.json"] {
        assert_eq!(std::fs::read(single.join(f)).unwrap(), std::fs::read(sharded.join(f)).unwrap(), "{f} differs");
    }
}

/// The reports of two runs, split into tags, differ only in the run's folder name and id and
/// in timings: table cells that are numbers, the plot against seconds of search, and when the
/// report was written.
fn assert_same_report(a: &Path, b: &Path) {
    ok(run(&["report", a.to_str().unwrap()]));
    ok(run(&["report", b.to_str().unwrap()]));
    let id = |d: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap()["run_id"].as_str().unwrap().to_string();
    let text = |d: &Path| {
        let mut t = std::fs::read_to_string(d.join("report.html")).unwrap().replace(&d.display().to_string(), "RUN").replace(d.file_name().unwrap().to_str().unwrap(), "RUN").replace(&id(d), "ID");
        let at = t.find("data-plot=\"progress-time\"").expect("a plot against time");
        let (start, end) = (t[..at].rfind("<svg").unwrap(), at + t[at..].find("</svg>").unwrap());
        t.replace_range(start..end, "");
        t
    };
    let (ta, tb) = (text(a), text(b));
    let (ta, tb): (Vec<&str>, Vec<&str>) = (ta.split('>').collect(), tb.split('>').collect());
    assert_eq!(ta.len(), tb.len());
    let number = |t: &str| {
        let t = t.trim_end_matches("</td").trim_start_matches("<td class=\"n\" data-v=\"").trim_end_matches('"');
        t.parse::<f64>().is_ok()
    };
    for (x, y) in ta.iter().zip(&tb) {
        let footer = |t: &str| t.contains("report of RUN, written ");
        assert!(x == y || (number(x) && number(y)) || (footer(x) && footer(y)), "reports differ beyond timings: {x:?} vs {y:?}");
    }
}

#[test]
fn random_and_grid_shards_merge_into_the_single_process_run() {
    let (a, b) = (tmp("random-single"), tmp("random-sharded"));
    single_and_sharded(&a, &b, 3, &["--nodes", "2", "--strategy", "random", "--budget", "12"]);
    assert_same_run(&a, &b);
    assert_same_report(&a, &b);
    // Each shard wrote only its own folder, and scored only its own positions.
    for i in 0..3 {
        let scores = std::fs::read_to_string(b.join(format!("shards/{i}/scores.jsonl"))).unwrap();
        assert_eq!(scores.lines().count(), 4);
        assert!(scores.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["entry"]["id"].as_u64().unwrap() % 3 == i));
        assert!(b.join(format!("shards/{i}/done.json")).is_file() && !b.join(format!("shards/{i}/lock")).exists());
    }
    // A merge is a pure function of the shards: again, the same bytes.
    let before = snapshot(&b);
    ok(run(&["merge", b.to_str().unwrap(), "--no-report"]));
    assert!(before == snapshot(&b), "a second merge changed the run");

    let (c, d) = (tmp("grid-single"), tmp("grid-sharded"));
    single_and_sharded(&c, &d, 2, &["--space", "nb201", "--ops", "nor_conv_3x3,skip_connect", "--strategy", "grid", "--budget", "9"]);
    assert_same_run(&c, &d);
    for dir in [a, b, c, d] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn adaptive_strategies_go_in_rounds_and_merge_into_the_single_process_run() {
    let (a, b) = (tmp("evo-single"), tmp("evo-sharded"));
    // A round is one --batch; the single-process run with the same --batch is the reference.
    single_and_sharded(&a, &b, 3, &["--nodes", "2", "--strategy", "evolution", "--population", "4", "--batch", "4", "--budget", "14"]);
    assert_same_run(&a, &b);
    let (c, d) = (tmp("bayes-single"), tmp("bayes-sharded"));
    single_and_sharded(&c, &d, 2, &["--nodes", "2", "--strategy", "bayes", "--initial", "4", "--batch", "3", "--budget", "10", "--pool", "20"]);
    assert_same_run(&c, &d);
    for dir in [a, b, c, d] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

#[test]
fn a_killed_shard_continues_where_it_stopped() {
    let (a, b) = (tmp("kill-single"), tmp("kill-sharded"));
    let extra = ["--nodes", "2", "--strategy", "random", "--budget", "10"];
    ok(run(&args(&["search", "--out", a.to_str().unwrap()], &extra)));
    let s = b.to_str().unwrap();
    ok(run(&args(&["search", "--out", s, "--phase", "supernet"], &extra)));
    let scores = b.join("shards/0/scores.jsonl");
    let mut child = spawn(&["search", "--resume", s, "--shard", "0/2", "--quiet"]);
    let t0 = Instant::now();
    while lines(&scores) < 2 && t0.elapsed() < Duration::from_secs(120) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let scored = lines(&scores);
    assert!(scored < 5, "the shard finished before it was killed");
    // A kill mid-write leaves part of a line: the restarted shard cuts it off.
    std::fs::OpenOptions::new().append(true).open(&scores).and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"run\": \"x")).unwrap();
    fails(run(&["merge", s, "--no-report"]), &["2 of its 2 shards have not finished", ": 0, 1;", "--shard I/2"]);
    ok(run(&["search", "--resume", s, "--shard", "1/2", "--quiet"]));
    ok(run(&["search", "--resume", s, "--shard", "0/2", "--quiet"]));
    assert_eq!(lines(&scores), 5);
    ok(run(&["merge", s, "--no-report"]));
    assert_same_run(&a, &b);
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn bad_shard_input_is_a_clear_error_and_loses_nothing() {
    let a = tmp("bad");
    let s = a.to_str().unwrap();
    let extra = ["--nodes", "2", "--strategy", "random", "--budget", "6"];
    ok(run(&args(&["search", "--out", s, "--phase", "supernet"], &extra)));
    usage(run(&["search", "--resume", s, "--shard", "2/2"]), &["--shard", "out of range", "0 to 1"]);
    usage(run(&["search", "--resume", s, "--shard", "1"]), &["--shard", "I/N"]);
    fails(run(&["merge", s]), &["no shards to merge"]);
    // Another process holding shard 0 (a live process: this test's child).
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.id())).unwrap();
    let ticks: u64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    std::fs::create_dir_all(a.join("shards/0")).unwrap();
    let holder = serde_json::json!({"pid": sleeper.id(), "start_ticks": ticks, "since_unix": 0, "host": host, "command": "cellnas search --shard 0/2"});
    std::fs::write(a.join("shards/0/lock"), holder.to_string()).unwrap();
    fails(run(&["search", "--resume", s, "--shard", "0/2"]), &["another cellnas process", "--shard 0/2"]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    ok(run(&["search", "--resume", s, "--shard", "0/2", "--quiet"]));
    let before = snapshot(&a);
    fails(run(&["search", "--resume", s, "--shard", "0/3"]), &["plan.json", "scored in 2 shards, not 3"]);
    fails(run(&["merge", s]), &["1 of its 2 shards have not finished", ": 1;"]);
    fails(run(&["search", "--resume", s]), &["being scored in shards", "cellnas merge"]);
    assert!(before == snapshot(&a), "a refused command changed the run");
    ok(run(&["search", "--resume", s, "--shard", "1/2", "--quiet"]));

    // Shards of another run copied in.
    let other = tmp("bad-other");
    let o = other.to_str().unwrap();
    ok(run(&args(&["search", "--out", o, "--phase", "supernet"], &extra)));
    std::fs::create_dir_all(other.join("shards")).unwrap();
    for f in ["plan.json", "0/scores.jsonl", "0/done.json", "1/scores.jsonl", "1/done.json"] {
        std::fs::create_dir_all(other.join("shards").join(f).parent().unwrap()).unwrap();
        std::fs::copy(a.join("shards").join(f), other.join("shards").join(f)).unwrap();
    }
    fails(run(&["merge", o]), &["another run"]);
    assert!(!other.join("history.jsonl").exists() || lines(&other.join("history.jsonl")) == 0);

    // Flags that cannot be sharded.
    let evo = tmp("bad-evo");
    let e = evo.to_str().unwrap();
    ok(run(&args(&["search", "--out", e, "--phase", "supernet"], &["--nodes", "2", "--strategy", "evolution", "--batch", "2", "--budget", "6"])));
    fails(run(&["search", "--resume", e, "--shard", "0/3"]), &["--batch 2", "--batch 3 or more"]);
    let lat = tmp("bad-latency");
    let l = lat.to_str().unwrap();
    ok(run(&args(&["search", "--out", l, "--phase", "supernet"], &["--nodes", "2", "--budget", "4", "--max-latency-ms", "1000"])));
    fails(run(&["search", "--resume", l, "--shard", "0/2"]), &["--max-latency-ms cannot be sharded"]);
    fails(run(&["search", "--out", &format!("{s}-x"), "--shard", "0/2"]), &["--shard", "--resume"]);
    fails(run(&["search", "--method", "darts", "--shard", "0/2", "--resume", s]), &["supernet"]);

    // A run scored by one process is not sharded afterwards.
    let single = tmp("bad-single");
    ok(run(&args(&["search", "--out", single.to_str().unwrap()], &extra)));
    fails(run(&["search", "--resume", single.to_str().unwrap(), "--shard", "0/2"]), &["unsharded search"]);

    ok(run(&["merge", s, "--no-report"]));
    for dir in [a, other, evo, lat, single] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn several_adapters_score_as_one_and_record_which_scored_what() {
    let vulkan = |args: &[&str]| bin().args(args).env("WGPU_BACKEND", "vulkan").output().unwrap();
    let strip = |d: &Path| -> Vec<serde_json::Value> {
        history(d).into_iter().map(|mut v| {
            v.as_object_mut().unwrap().remove("adapter");
            v
        }).collect()
    };
    for (name, extra) in [
        ("random", vec!["--nodes", "2", "--strategy", "random", "--budget", "10"]),
        ("evolution", vec!["--nodes", "2", "--strategy", "evolution", "--population", "4", "--batch", "4", "--budget", "10"]),
    ] {
        let (a, b) = (tmp(&format!("{name}-one")), tmp(&format!("{name}-two")));
        ok(vulkan(&args(&["search", "--out", a.to_str().unwrap()], &extra)));
        // Two devices on the one Vulkan adapter: each candidate scored on one of them, bit for bit.
        ok(vulkan(&args(&["search", "--out", b.to_str().unwrap(), "--adapters", "llvmpipe,llvmpipe"], &extra)));
        assert_eq!(history(&a), strip(&b), "{name}");
        assert!(history(&a).iter().all(|v| v.get("adapter").is_none()), "a one-adapter run records no adapter");
        assert!(history(&b).iter().all(|v| v["adapter"].as_str().is_some_and(|s| s.contains("(vulkan)"))), "{name}");
        for f in ["best.json", "best.genotype.txt", "pareto.json"] {
            assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{name}: {f}");
        }
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
    }
    let c = tmp("adapters-bad");
    let cs = c.to_str().unwrap();
    fails(vulkan(&args(&["search", "--out", cs, "--adapters", "no-such-adapter"], &["--nodes", "2", "--budget", "2"])), &["no-such-adapter"]);
    fails(vulkan(&args(&["search", "--out", cs, "--adapters", "all", "--phase", "supernet"], &["--nodes", "2", "--budget", "2"])), &["--adapters", "--phase supernet"]);
    usage(vulkan(&["search", "--resume", cs, "--adapters", "all", "--shard", "0/2"]), &["--adapters", "--shard"]);
    fails(vulkan(&["search", "--method", "darts", "--adapters", "all"]), &["--adapters", "supernet"]);
    let _ = std::fs::remove_dir_all(c);
}
