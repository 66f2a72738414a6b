//! The strategy of a search as its config.json records it: `{"kind": "evolution", ...}` with
//! that strategy's own settings as typed fields. Runs written before strategies had settings
//! stored the bare name ("evolution"); `deserialize_compat` still reads that, as the name with
//! its default settings, which is what those runs used.

use super::bayes::{Acquisition, BayesOpt};
use super::grid::{GridSearch, GRID_LIMIT};
use super::reinforce::Reinforce;
use super::{EvolutionConfig, RandomSearch, RegularizedEvolution, Strategy, STRATEGIES};
use crate::error::{Error, Result};
use crate::space::Space;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A strategy and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StrategyConfig {
    /// Uniform samples without repeats.
    Random,
    /// Regularized (aging) evolution.
    Evolution(EvolutionSettings),
    /// Every architecture of a finite space in grid order.
    Grid(GridSettings),
    /// Bayesian optimisation: a GP over the encoding, EI or UCB.
    Bayes(BayesSettings),
    /// A REINFORCE controller over the space's decisions.
    Reinforce(ReinforceSettings),
}

/// Settings of `BayesOpt` (src/search/bayes.rs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesSettings {
    /// Uniform samples before the GP proposes; None: budget/4, 2 to 10.
    #[serde(default)]
    pub initial: Option<usize>,
    pub acquisition: Acquisition,
    /// UCB's weight on the standard deviation (standardised accuracy units).
    pub beta: f64,
    /// Uniform candidates scored per ask (plus mutations of the 10 best).
    pub pool: usize,
}

impl Default for BayesSettings {
    fn default() -> BayesSettings {
        BayesSettings { initial: None, acquisition: Acquisition::Ei, beta: 2.0, pool: 200 }
    }
}

/// Settings of `Reinforce` (src/search/reinforce.rs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReinforceSettings {
    /// Step size on the logits.
    pub lr: f64,
    /// Weight of the entropy bonus.
    pub entropy: f64,
    /// Moving-average decay of the reward baseline, in [0, 1).
    pub baseline_decay: f64,
}

impl Default for ReinforceSettings {
    fn default() -> ReinforceSettings {
        ReinforceSettings { lr: 5.0, entropy: 1e-3, baseline_decay: 0.9 }
    }
}

/// The largest space grid search enumerates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSettings {
    pub limit: u64,
}

impl Default for GridSettings {
    fn default() -> GridSettings {
        GridSettings { limit: GRID_LIMIT }
    }
}

/// P and S of regularized evolution; None: `EvolutionConfig::for_budget` of the search's budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvolutionSettings {
    #[serde(default)]
    pub population: Option<usize>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

impl Default for StrategyConfig {
    fn default() -> StrategyConfig {
        StrategyConfig::Evolution(EvolutionSettings::default())
    }
}

impl StrategyConfig {
    /// The strategy `name` with its default settings.
    pub fn from_name(name: &str) -> Result<StrategyConfig> {
        match name {
            "random" => Ok(StrategyConfig::Random),
            "evolution" => Ok(StrategyConfig::Evolution(EvolutionSettings::default())),
            "grid" => Ok(StrategyConfig::Grid(GridSettings::default())),
            "bayes" => Ok(StrategyConfig::Bayes(BayesSettings::default())),
            "reinforce" => Ok(StrategyConfig::Reinforce(ReinforceSettings::default())),
            _ => Err(Error::Invalid(format!("unknown search strategy '{name}'; available: {}", STRATEGIES.join(", ")))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StrategyConfig::Random => "random",
            StrategyConfig::Evolution(_) => "evolution",
            StrategyConfig::Grid(_) => "grid",
            StrategyConfig::Bayes(_) => "bayes",
            StrategyConfig::Reinforce(_) => "reinforce",
        }
    }

    /// The strategy over `space`, seeded, for a search of `budget` proposals. Errors name the
    /// setting that is out of range.
    pub fn build(&self, space: Arc<dyn Space>, seed: u64, budget: usize) -> Result<Box<dyn Strategy>> {
        match self {
            StrategyConfig::Random => Ok(Box::new(RandomSearch::new(space, seed))),
            StrategyConfig::Evolution(s) => {
                let (p, k) = EvolutionConfig::for_budget(budget);
                let population = s.population.unwrap_or(p);
                let sample_size = s.sample_size.unwrap_or(k.min(population));
                if population == 0 || sample_size == 0 {
                    return Err(Error::Invalid(format!(
                        "--population and --sample-size must be at least 1, got {population} and {sample_size}"
                    )));
                }
                Ok(Box::new(RegularizedEvolution::new(space, seed, population, sample_size)?))
            }
            StrategyConfig::Grid(s) => Ok(Box::new(GridSearch::new(space, s.limit)?)),
            StrategyConfig::Bayes(s) => {
                let initial = s.initial.unwrap_or((budget / 4).clamp(2, 10));
                if initial == 0 || s.pool == 0 || !(s.beta.is_finite() && s.beta >= 0.0) {
                    return Err(Error::Invalid(format!(
                        "--initial and --pool must be at least 1 and --ucb-beta finite and >= 0, got {initial}, {} and {}",
                        s.pool, s.beta
                    )));
                }
                Ok(Box::new(BayesOpt::new(space, seed, initial, s.acquisition, s.beta, s.pool)))
            }
            StrategyConfig::Reinforce(s) => {
                if !(s.lr.is_finite() && s.lr > 0.0) {
                    return Err(Error::Invalid(format!("--controller-lr must be finite and > 0, got {}", s.lr)));
                }
                if !(s.entropy.is_finite() && s.entropy >= 0.0) {
                    return Err(Error::Invalid(format!("--entropy-weight must be finite and >= 0, got {}", s.entropy)));
                }
                if !(0.0..1.0).contains(&s.baseline_decay) {
                    return Err(Error::Invalid(format!("--baseline-decay must be in [0, 1), got {}", s.baseline_decay)));
                }
                Ok(Box::new(Reinforce::new(space, seed, s.lr, s.entropy, s.baseline_decay)))
            }
        }
    }

    /// Reads the tagged form, or a bare strategy name as runs before settings stored it.
    pub fn deserialize_compat<'de, D: serde::Deserializer<'de>>(de: D) -> std::result::Result<StrategyConfig, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(de)?;
        match value {
            serde_json::Value::String(name) => StrategyConfig::from_name(&name).map_err(D::Error::custom),
            other => StrategyConfig::deserialize(other).map_err(D::Error::custom),
        }
    }
}

impl std::fmt::Display for StrategyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
