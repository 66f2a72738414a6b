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
    /// Bayes: uniform samples before the surrogate proposes [budget/4, 2 to 10].
    #[arg(long)]
    pub initial: Option<usize>,
    /// Bayes: acquisition, ei (expected improvement) or ucb [ei].
    #[arg(long)]
    pub acquisition: Option<String>,
    /// Bayes: UCB's weight on the predicted standard deviation [2].
    #[arg(long, value_parser = finite_f64)]
    pub ucb_beta: Option<f64>,
    /// Bayes: uniform candidates scored per proposal, besides mutations of the 10 best [200].
    #[arg(long)]
    pub pool: Option<usize>,
    /// Reinforce: controller step size on its logits [5].
    #[arg(long, value_parser = finite_f64)]
    pub controller_lr: Option<f64>,
    /// Reinforce: weight of the entropy bonus [0.001].
    #[arg(long, value_parser = finite_f64)]
    pub entropy_weight: Option<f64>,
    /// Reinforce: decay of the moving-average reward baseline, in [0, 1) [0.9].
    #[arg(long, value_parser = finite_f64)]
    pub baseline_decay: Option<f64>,
    /// Refuse proposals whose stand-alone network has more parameters [no limit].
    #[arg(long)]
    pub max_params: Option<u64>,
    /// Refuse proposals of more forward FLOPs per image [no limit].
    #[arg(long)]
    pub max_flops: Option<u64>,
    /// Refuse proposals slower than this, measured on the chosen adapter per forward pass of
    /// --latency-batch images, cached per architecture in the run folder [no limit].
    #[arg(long, value_parser = finite_f64)]
    pub max_latency_ms: Option<f64>,
    /// Images per timed forward pass for --max-latency-ms [1].
    #[arg(long)]
    pub latency_batch: Option<usize>,
}

fn finite_f64(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() { Ok(v) } else { Err(format!("expected a finite number, got {s}")) }
}

impl StrategyArgs {
    /// The first settings flag given, for jobs that take none.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("--batch", self.batch.is_some()),
            ("--population", self.population.is_some()),
            ("--sample-size", self.sample_size.is_some()),
            ("--grid-limit", self.grid_limit.is_some()),
            ("--initial", self.initial.is_some()),
            ("--acquisition", self.acquisition.is_some()),
            ("--ucb-beta", self.ucb_beta.is_some()),
            ("--pool", self.pool.is_some()),
            ("--controller-lr", self.controller_lr.is_some()),
            ("--entropy-weight", self.entropy_weight.is_some()),
            ("--baseline-decay", self.baseline_decay.is_some()),
            ("--max-params", self.max_params.is_some()),
            ("--max-flops", self.max_flops.is_some()),
            ("--max-latency-ms", self.max_latency_ms.is_some()),
            ("--latency-batch", self.latency_batch.is_some()),
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
    let c = &mut cfg.constraints;
    c.max_params = a.max_params.or(c.max_params);
    c.max_flops = a.max_flops.or(c.max_flops);
    c.max_latency_ms = a.max_latency_ms.or(c.max_latency_ms);
    c.latency_batch = a.latency_batch.unwrap_or(c.latency_batch);
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
    if !matches!(cfg.strategy, StrategyConfig::Bayes(_)) {
        for (flag, given) in [("--initial", a.initial.is_some()), ("--acquisition", a.acquisition.is_some()), ("--ucb-beta", a.ucb_beta.is_some()), ("--pool", a.pool.is_some())] {
            if given {
                wrong(flag, "bayes")?;
            }
        }
    }
    if !matches!(cfg.strategy, StrategyConfig::Reinforce(_)) {
        for (flag, given) in [("--controller-lr", a.controller_lr.is_some()), ("--entropy-weight", a.entropy_weight.is_some()), ("--baseline-decay", a.baseline_decay.is_some())] {
            if given {
                wrong(flag, "reinforce")?;
            }
        }
    }
    match &mut cfg.strategy {
        StrategyConfig::Evolution(s) => {
            s.population = a.population.or(s.population);
            s.sample_size = a.sample_size.or(s.sample_size);
        }
        StrategyConfig::Grid(s) => s.limit = a.grid_limit.unwrap_or(s.limit),
        StrategyConfig::Bayes(s) => {
            s.initial = a.initial.or(s.initial);
            if let Some(acq) = &a.acquisition {
                s.acquisition = acq.parse()?;
            }
            s.beta = a.ucb_beta.unwrap_or(s.beta);
            s.pool = a.pool.unwrap_or(s.pool);
        }
        StrategyConfig::Reinforce(s) => {
            s.lr = a.controller_lr.unwrap_or(s.lr);
            s.entropy = a.entropy_weight.unwrap_or(s.entropy);
            s.baseline_decay = a.baseline_decay.unwrap_or(s.baseline_decay);
        }
        StrategyConfig::Random => {}
    }
    Ok(())
}
