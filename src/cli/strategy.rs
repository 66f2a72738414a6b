//! The search strategy's flags: `--strategy` picks one, the others set its typed settings
//! (StrategyConfig). A setting of another strategy than the one the search uses is an error
//! naming the flag, not silently ignored.

use anyhow::{bail, Result};
use cellnas::pipeline::search::SearchConfig;
use cellnas::search::StrategyConfig;
use clap::Args;

#[derive(Args, Debug, Default)]
pub struct StrategyArgs {
    /// Proposals per ask: the strategy proposes this many before it hears their scores (batch
    /// Bayesian optimisation, a controller's batch of samples), 1 to the budget [1].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Evolution: population P, whose first P members are random [budget/4, 2 to 100].
    #[arg(long)]
    pub population: Option<usize>,
    /// Evolution: tournament size S [P/4, at least 2].
    #[arg(long)]
    pub sample_size: Option<usize>,
    /// Grid: the most architectures a space may have to be enumerated [100000].
    #[arg(long)]
    pub grid_limit: Option<u64>,
}

impl StrategyArgs {
    /// The first settings flag given, for jobs that take none.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("--batch", self.batch.is_some()),
            ("--population", self.population.is_some()),
            ("--sample-size", self.sample_size.is_some()),
            ("--grid-limit", self.grid_limit.is_some()),
        ]
        .into_iter()
        .find_map(|(f, given)| given.then_some(f))
    }
}

/// Applies `--strategy` (when given) and the settings flags to `cfg`.
pub fn apply(cfg: &mut SearchConfig, strategy: Option<&str>, a: &StrategyArgs) -> Result<()> {
    if let Some(name) = strategy {
        let fresh = StrategyConfig::from_name(name)?;
        // A resume naming its own strategy keeps the stored settings.
        if fresh.name() != cfg.strategy.name() {
            cfg.strategy = fresh;
        }
    }
    if let Some(b) = a.batch {
        cfg.batch = b;
    }
    let used = cfg.strategy.name();
    let wrong = |flag: &str, owner: &str| -> Result<()> { bail!("{flag} applies to --strategy {owner}; this search uses {used}") };
    let evolution = matches!(cfg.strategy, StrategyConfig::Evolution(_));
    if !evolution {
        if a.population.is_some() {
            wrong("--population", "evolution")?;
        }
        if a.sample_size.is_some() {
            wrong("--sample-size", "evolution")?;
        }
    }
    if a.grid_limit.is_some() && !matches!(cfg.strategy, StrategyConfig::Grid(_)) {
        wrong("--grid-limit", "grid")?;
    }
    match &mut cfg.strategy {
        StrategyConfig::Evolution(s) => {
            s.population = a.population.or(s.population);
            s.sample_size = a.sample_size.or(s.sample_size);
        }
        StrategyConfig::Grid(s) => s.limit = a.grid_limit.unwrap_or(s.limit),
        _ => {}
    }
    Ok(())
}
