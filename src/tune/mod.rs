//! Hyperparameter tuning of a spec's stand-alone training (`cellnas tune`): the hyperparameter
//! file (space.rs), the tuners (random, TPE in tpe.rs, Hyperband in hyperband.rs) and
//! learning-curve extrapolation (curve.rs). A tuner is a pure function of (config, seed, the
//! trials finished so far): [`next_job`] says what to train next, so a resumed tune replays
//! trials.jsonl and goes on exactly where it stopped. The training itself is
//! crate::pipeline::tune.

pub mod curve;
pub mod hyperband;
pub mod space;
pub mod tpe;

use crate::nn::params::name_seed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use space::{Assignment, HpSpace};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Tuner {
    /// `trials` configurations drawn uniformly (in each parameter's position).
    Random { trials: usize },
    /// `initial` random trials, then TPE (tpe.rs) with the best `gamma` share as "good" and
    /// `candidates` draws per proposal.
    Bayes { trials: usize, initial: usize, gamma: f64, candidates: usize },
    /// `iterations` rounds of Hyperband's brackets with this factor (eta) over max_epochs.
    Hyperband { factor: usize, iterations: usize },
}

impl Tuner {
    pub fn name(&self) -> &'static str {
        match self {
            Tuner::Random { .. } => "random",
            Tuner::Bayes { .. } => "bayes",
            Tuner::Hyperband { .. } => "hyperband",
        }
    }
}

/// Learning-curve early stopping (curve.rs): a trial stops once P(its accuracy at its target
/// epochs < the incumbent at the same target) >= `probability`, checked after every epoch from
/// the `min_epochs`-th on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlyStop {
    pub probability: f64,
    pub min_epochs: usize,
}

/// One training job: train trial `trial` (hyperparameters `hp`, learning-rate schedule over
/// `budget` epochs) up to epoch `epochs`, continuing from where its folder stands.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub trial: usize,
    pub hyperparameters: Assignment,
    pub epochs: usize,
    pub budget: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracket: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<usize>,
}

/// A finished job: one line of trials.jsonl.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrialRecord {
    #[serde(flatten)]
    pub job: Job,
    /// Validation accuracy after each epoch trained so far (epoch 1 first), earlier rungs included.
    pub curve: Vec<f64>,
    /// The last point of the curve.
    pub val_accuracy: f64,
    pub stopped_early: bool,
    /// The extrapolated accuracy at `epochs` when the curve was checked, and P(below incumbent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob_below: Option<f64>,
    /// Training seconds of this trial over all its jobs so far (not compared on resume).
    pub train_seconds: f64,
}

/// Hyperparameters of trial `i` drawn uniformly, by (seed, i).
pub fn random_assignment(space: &HpSpace, seed: u64, trial: usize) -> Assignment {
    let mut rng = ChaCha8Rng::seed_from_u64(name_seed(seed, &format!("tune.trial{trial}")));
    let us: Vec<f64> = space.params.iter().map(|_| rng.random::<f64>()).collect();
    space.assign(|i| us[i])
}

/// The budget (schedule length) a trial of these hyperparameters gets outside Hyperband.
fn budget_of(hp: &Assignment, max_epochs: usize) -> usize {
    hp.get("epochs").and_then(|v| v.as_u64()).map_or(max_epochs, |e| e as usize)
}

/// The next job after `done` (trials.jsonl in order), or None when the tune is over.
pub fn next_job(tuner: &Tuner, space: &HpSpace, seed: u64, max_epochs: usize, done: &[TrialRecord]) -> Option<Job> {
    match tuner {
        Tuner::Random { trials } => {
            let i = done.len();
            (i < *trials).then(|| {
                let hp = random_assignment(space, seed, i);
                let b = budget_of(&hp, max_epochs);
                Job { trial: i, hyperparameters: hp, epochs: b, budget: b, bracket: None, rung: None }
            })
        }
        Tuner::Bayes { trials, initial, gamma, candidates } => {
            let i = done.len();
            if i >= *trials {
                return None;
            }
            let hp = if i < *initial {
                random_assignment(space, seed, i)
            } else {
                let observed: Vec<(Assignment, f64)> = done.iter().map(|r| (r.job.hyperparameters.clone(), r.val_accuracy)).collect();
                let mut rng = ChaCha8Rng::seed_from_u64(name_seed(seed, &format!("tune.tpe{i}")));
                tpe::propose(space, &observed, *gamma, *candidates, &mut rng)
            };
            let b = budget_of(&hp, max_epochs);
            Some(Job { trial: i, hyperparameters: hp, epochs: b, budget: b, bracket: None, rung: None })
        }
        Tuner::Hyperband { factor, iterations } => hyperband_next(space, seed, max_epochs, *factor, *iterations, done),
    }
}

/// Walks the brackets in order: the first job of the plan without a record is next. A rung's
/// promotions are the best of the rung before by validation accuracy (ties: lower trial id),
/// never a trial stopped early.
fn hyperband_next(space: &HpSpace, seed: u64, r: usize, eta: usize, iterations: usize, done: &[TrialRecord]) -> Option<Job> {
    let plan = hyperband::brackets(r, eta);
    let mut base = 0;
    for it in 0..iterations {
        for (bi, b) in plan.iter().enumerate() {
            let bracket = it * plan.len() + bi;
            let mut alive: Vec<usize> = (base..base + b.rungs[0].0).collect();
            for (rung, &(n, epochs)) in b.rungs.iter().enumerate() {
                if rung > 0 {
                    let mut prev: Vec<&TrialRecord> = alive.iter().filter_map(|t| find(done, *t, rung - 1)).filter(|r| !r.stopped_early).collect();
                    prev.sort_by(|x, y| y.val_accuracy.total_cmp(&x.val_accuracy).then(x.job.trial.cmp(&y.job.trial)));
                    alive = prev.iter().take(n).map(|r| r.job.trial).collect();
                    alive.sort_unstable();
                }
                for &t in &alive {
                    if find(done, t, rung).is_none() {
                        return Some(Job { trial: t, hyperparameters: random_assignment(space, seed, t), epochs, budget: r, bracket: Some(bracket), rung: Some(rung) });
                    }
                }
            }
            base += b.rungs[0].0;
        }
    }
    None
}

fn find(done: &[TrialRecord], trial: usize, rung: usize) -> Option<&TrialRecord> {
    done.iter().find(|r| r.job.trial == trial && r.job.rung == Some(rung))
}

/// The incumbent a job's curve is compared with: the best validation accuracy among finished
/// jobs with the same target epochs, not stopped early.
pub fn incumbent(done: &[TrialRecord], epochs: usize) -> Option<f64> {
    done.iter().filter(|r| !r.stopped_early && r.job.epochs == epochs).map(|r| r.val_accuracy).max_by(f64::total_cmp)
}

/// The best finished job: highest validation accuracy among those not stopped early (for
/// Hyperband, among those at the largest budget reached); ties to the earlier trial.
pub fn best<'a>(tuner: &Tuner, done: &'a [TrialRecord]) -> Option<&'a TrialRecord> {
    let ok: Vec<&TrialRecord> = done.iter().filter(|r| !r.stopped_early).collect();
    let top = ok.iter().map(|r| r.job.epochs).max()?;
    ok.into_iter()
        .filter(|r| !matches!(tuner, Tuner::Hyperband { .. }) || r.job.epochs == top)
        .fold(None, |b: Option<&'a TrialRecord>, r| if b.is_none_or(|b| r.val_accuracy > b.val_accuracy) { Some(r) } else { b })
}
