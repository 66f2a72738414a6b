//! `cellnas bench-search`: strategies compared on a table of scores (src/search/bench.rs), over
//! many seeds in seconds. The table is a grid search's run folder: every architecture of a
//! finite space scored with inherited weights on that run's supernet.

use anyhow::{bail, Context, Result};
use cellnas::pipeline::search::SearchConfig;
use cellnas::search::bench::{best_curve, mean_sd, ScoreTable};
use cellnas::search::{HistoryEntry, StrategyConfig};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchSearchArgs {
    /// A search run folder whose history scores every architecture of its (finite) space, e.g.
    /// from `cellnas search --space nb201 --strategy grid --budget 15625`.
    #[arg(long)]
    pub table: PathBuf,
    /// Strategies to compare, comma-separated [random,evolution,bayes,reinforce].
    #[arg(long, value_delimiter = ',')]
    pub strategies: Option<Vec<String>>,
    /// Runs per strategy, seeds 1 to N, 2-10000 [10].
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Proposals per run, 1 to the table's size [100].
    #[arg(long, default_value_t = 100)]
    pub budget: usize,
    /// Proposals per ask [1].
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Proposal counts to report, comma-separated, each 1 to --budget [10,20,50,100].
    #[arg(long, value_delimiter = ',')]
    pub at: Option<Vec<usize>>,
}

pub fn bench_search(a: &BenchSearchArgs) -> Result<()> {
    let cfg: SearchConfig = super::jobs::read_config(&a.table, "search")?;
    let space = cfg.space.space();
    let path = a.table.join("history.jsonl");
    let (entries, _) = cellnas::run::read_jsonl::<HistoryEntry>(&path).with_context(|| format!("--table {}", a.table.display()))?;
    let table = ScoreTable::from_history(space.as_ref(), &entries).with_context(|| format!("--table {}", a.table.display()))?;
    if !(2..=10_000).contains(&a.seeds) {
        bail!("--seeds {}: expected 2 to 10000 (a spread needs two runs)", a.seeds);
    }
    if a.budget == 0 || a.budget > table.len() {
        bail!("--budget {}: expected 1 to the table's {} architectures", a.budget, table.len());
    }
    if a.batch == 0 || a.batch > a.budget {
        bail!("--batch {}: expected 1 to --budget {}", a.batch, a.budget);
    }
    let at = a.at.clone().unwrap_or_else(|| [10, 20, 50, 100].into_iter().filter(|&n| n <= a.budget).collect());
    if let Some(bad) = at.iter().find(|&&n| n == 0 || n > a.budget) {
        bail!("--at {bad}: expected 1 to --budget {}", a.budget);
    }
    let names = a.strategies.clone().unwrap_or_else(|| ["random", "evolution", "bayes", "reinforce"].map(String::from).to_vec());
    let strategies = names.iter().map(|n| StrategyConfig::from_name(n.trim())).collect::<cellnas::Result<Vec<_>>>()?;

    println!(
        "table: {} architectures of the {} space ({}), best {:.2}%; {} seeds, budget {}, batch {}",
        table.len(),
        cfg.space.name(),
        a.table.display(),
        100.0 * table.best(),
        a.seeds,
        a.budget,
        a.batch
    );
    let head: Vec<String> = at.iter().map(|n| format!("best after {n}")).collect();
    println!("| strategy | {} | top % of the table at {} | seconds |", head.join(" | "), a.budget);
    println!("|---|{}---|---|", "---|".repeat(at.len()));
    for s in &strategies {
        let t0 = Instant::now();
        let curves = (1..=a.seeds).map(|seed| best_curve(&space, &table, s, seed, a.budget, a.batch)).collect::<cellnas::Result<Vec<_>>>()?;
        let secs = t0.elapsed().as_secs_f64();
        let cell = |n: usize| {
            let v: Vec<f64> = curves.iter().map(|c| c[(n - 1).min(c.len() - 1)]).collect();
            let (m, sd) = mean_sd(&v);
            format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * sd)
        };
        let top: Vec<f64> = curves.iter().map(|c| 100.0 * table.fraction_above(*c.last().expect("a proposal"))).collect();
        let (tm, tsd) = mean_sd(&top);
        println!("| {} | {} | {tm:.2} ± {tsd:.2} | {secs:.1} |", s.name(), at.iter().map(|&n| cell(n)).collect::<Vec<_>>().join(" | "));
    }
    println!("(best validation accuracy found, %, mean ± sd over seeds; a strategy that ran out reports its last best)");
    Ok(())
}
