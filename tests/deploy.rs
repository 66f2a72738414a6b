//! deploy/: the Kubernetes manifests parse and their shard pods, and the Slurm array's tasks,
//! run `cellnas search --resume RUN --shard I/N` for every I in 0..N exactly once. The
//! commands are run for real by `sh`/`bash` with `cellnas`, `srun` and `sbatch` replaced by
//! stubs that record their arguments.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A folder with stub `cellnas`, `srun` and `sbatch`: cellnas appends its arguments (one line,
/// tab-separated) to `calls`, srun runs its command, sbatch records and prints a job id.
fn stubs(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellnas-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let write = |n: &str, body: &str| {
        let p = d.join(n);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    };
    let calls = d.join("calls");
    write("cellnas", &format!("(IFS=\"$(printf '\\t')\"; echo \"$*\") >> {}", calls.display()));
    write("srun", "exec \"$@\"");
    write("sbatch", &format!("n=$(( $( [ -f {0} ] && wc -l < {0} || echo 0) + 100 )); (IFS=\"$(printf '\\t')\"; echo \"sbatch\t$*\") >> {0}; echo \"$n;cluster\"", calls.display()));
    d
}

fn calls(stubs: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(stubs.join("calls")).unwrap_or_default().lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

fn path_with(stubs: &Path) -> String {
    format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap())
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).map(|i| args[i + 1].as_str())
}

/// The container of a Job's pod, run as its pod `index` would: `command` + `args` with the
/// container's env and JOB_COMPLETION_INDEX. Returns the cellnas calls it made.
fn run_pod(job: &Value, index: Option<usize>, name: &str) -> Vec<Vec<String>> {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let s = stubs(name);
    let strs = |v: &Value| v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>()).unwrap_or_default();
    let mut argv = strs(&c["command"]);
    argv.extend(strs(&c["args"]));
    if argv.is_empty() || c["command"].is_null() {
        argv.insert(0, "cellnas".into()); // the image's entrypoint
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env("PATH", path_with(&s));
    for e in c["env"].as_array().into_iter().flatten() {
        cmd.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
    }
    if let Some(i) = index {
        cmd.env("JOB_COMPLETION_INDEX", i.to_string());
    }
    let st = cmd.status().unwrap();
    assert!(st.success(), "{name}: {argv:?} failed");
    let out = calls(&s);
    let _ = std::fs::remove_dir_all(s);
    out
}

fn claim_names(job: &Value) -> BTreeSet<String> {
    job["spec"]["template"]["spec"]["volumes"].as_array().unwrap().iter().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(str::to_string)).collect()
}

#[test]
fn kubernetes_shard_pods_cover_every_shard_once() {
    let pvc = yaml("deploy/kubernetes/pvc.yaml");
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany");
    let runs = pvc["metadata"]["name"].as_str().unwrap().to_string();
    for (file, gpu) in [("deploy/kubernetes/shards-job.yaml", true), ("deploy/kubernetes/shards-job-cpu.yaml", false)] {
        let job = yaml(file);
        assert_eq!(job["kind"], "Job", "{file}");
        assert_eq!(job["spec"]["completionMode"], "Indexed", "{file}");
        let n = job["spec"]["completions"].as_u64().unwrap() as usize;
        assert_eq!(job["spec"]["parallelism"].as_u64(), Some(n as u64), "{file}: rounds need every shard running at once");
        let limits = &job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
        assert_eq!(!limits["nvidia.com/gpu"].is_null(), gpu, "{file}");
        assert!(claim_names(&job).contains(&runs), "{file} does not mount {runs}");
        let mut seen = BTreeSet::new();
        for i in 0..n {
            let calls = run_pod(&job, Some(i), &format!("k8s-{gpu}-{i}"));
            assert_eq!(calls.len(), 1, "{file} pod {i}: {calls:?}");
            let args = &calls[0];
            assert_eq!(args[0], "search");
            assert!(after(args, "--resume").is_some(), "{args:?}");
            let shard = after(args, "--shard").unwrap();
            assert_eq!(shard, format!("{i}/{n}"), "{file} pod {i}");
            assert!(seen.insert(shard.to_string()));
        }
        assert_eq!(seen.len(), n);
    }
    // The phases around the shards: the supernet (fresh and retried) and the merge, on the same run.
    let supernet = yaml("deploy/kubernetes/supernet-job.yaml");
    let calls = run_pod(&supernet, None, "k8s-supernet");
    assert_eq!(after(&calls[0], "--phase"), Some("supernet"));
    let run = after(&calls[0], "--out").unwrap().to_string();
    let shards = yaml("deploy/kubernetes/shards-job.yaml");
    let env = shards["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "RUN" && e["value"] == run.as_str()), "the shards score another run than {run}");
    let merge = yaml("deploy/kubernetes/merge-job.yaml");
    let calls = run_pod(&merge, None, "k8s-merge");
    assert_eq!(calls, vec![vec!["merge".to_string(), run]]);
}

/// `#SBATCH --array=A-B` of a script: (A, B).
fn array_range(script: &str) -> (usize, usize) {
    let line = script.lines().find_map(|l| l.strip_prefix("#SBATCH --array=")).expect("an --array line");
    let range = line.split('%').next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn slurm_array_tasks_cover_every_shard_once_and_the_phases_chain() {
    let dir = root().join("deploy/slurm");
    let script = std::fs::read_to_string(dir.join("shard.sbatch")).unwrap();
    let (first, last) = array_range(&script);
    assert_eq!(first, 0);
    let n = last + 1;
    let mut seen = BTreeSet::new();
    for i in first..=last {
        let s = stubs(&format!("slurm-{i}"));
        let st = Command::new("bash")
            .arg(dir.join("shard.sbatch"))
            .env("PATH", path_with(&s))
            .env("RUN", "/scratch/run")
            .env("SLURM_ARRAY_TASK_ID", i.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", n.to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let c = calls(&s);
        assert_eq!(c.len(), 1);
        assert_eq!(after(&c[0], "--resume"), Some("/scratch/run"));
        assert!(seen.insert(after(&c[0], "--shard").unwrap().to_string()));
        let _ = std::fs::remove_dir_all(s);
    }
    assert_eq!(seen, (0..n).map(|i| format!("{i}/{n}")).collect());

    // submit.sh: supernet, then the array after it, then the merge after the whole array.
    let s = stubs("slurm-submit");
    let st = Command::new("bash").arg(dir.join("submit.sh")).env("PATH", path_with(&s)).env("RUN", "/scratch/run").status().unwrap();
    assert!(st.success());
    let c = calls(&s);
    assert_eq!(c.len(), 3, "{c:?}");
    let script_of = |k: usize| Path::new(c[k].last().unwrap()).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!((script_of(0), script_of(1), script_of(2)), ("supernet.sbatch".into(), "shard.sbatch".into(), "merge.sbatch".into()));
    let dep = |k: usize| c[k].iter().find_map(|a| a.strip_prefix("--dependency=")).map(str::to_string);
    assert_eq!(dep(0), None);
    assert_eq!(dep(1).as_deref(), Some("afterok:100"));
    assert_eq!(dep(2).as_deref(), Some("afterok:101"));
    let _ = std::fs::remove_dir_all(s);

    // The supernet and merge scripts run the phases of the same run.
    for (file, want) in [("supernet.sbatch", "search"), ("merge.sbatch", "merge")] {
        let s = stubs(&format!("slurm-{file}"));
        let st = Command::new("bash").arg(dir.join(file)).env("PATH", path_with(&s)).env("RUN", "/scratch/run").status().unwrap();
        assert!(st.success(), "{file}");
        let c = calls(&s);
        assert_eq!(c[0][0], want);
        assert!(c[0].iter().any(|a| a == "/scratch/run"), "{file}: {c:?}");
        if want == "search" {
            assert_eq!(after(&c[0], "--phase"), Some("supernet"));
        }
        let _ = std::fs::remove_dir_all(s);
    }
}
