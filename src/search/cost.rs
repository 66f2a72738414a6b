//! Cost constraints on a search (`--max-params`, `--max-flops`, `--max-latency-ms`) and the
//! Pareto fronts of accuracy against each cost.
//!
//! Every strategy is restricted the same way, by `Driver`: a proposal over a limit is refused
//! before it is evaluated, the strategy hears `reject` and is asked for another, so a constrained
//! search is as deterministic as an unconstrained one. Parameters and FLOPs are those of the
//! stand-alone network (`nn::size`, a counting graph); latency is measured on the run's adapter
//! and cached per architecture in the run folder (src/pipeline/cost.rs), which is what makes a
//! resumed search refuse exactly what the interrupted one refused.

use super::{score, HistoryEntry};
use serde::{Deserialize, Serialize};

/// The limits of a search; all None: unconstrained (and left out of config.json, so runs from
/// before constraints existed resume).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    #[serde(default)]
    pub max_params: Option<u64>,
    /// Forward FLOPs per image (multiply-adds counted as 2).
    #[serde(default)]
    pub max_flops: Option<u64>,
    #[serde(default)]
    pub max_latency_ms: Option<f64>,
    /// Images per timed forward pass for latency.
    #[serde(default = "one")]
    pub latency_batch: usize,
}

fn one() -> usize {
    1
}

impl Default for Constraints {
    fn default() -> Constraints {
        Constraints { max_params: None, max_flops: None, max_latency_ms: None, latency_batch: 1 }
    }
}

impl Constraints {
    pub fn is_none(&self) -> bool {
        *self == Constraints::default()
    }

    /// The first violated limit among params and FLOPs (latency is checked by the caller that
    /// can measure it).
    pub fn check_size(&self, params: u64, flops: u64) -> Option<super::Violation> {
        if let Some(max) = self.max_params.filter(|&m| params > m) {
            return Some(super::Violation { flag: "--max-params", message: format!("{params} parameters, more than {max}") });
        }
        if let Some(max) = self.max_flops.filter(|&m| flops > m) {
            return Some(super::Violation { flag: "--max-flops", message: format!("{flops} FLOPs per image, more than {max}") });
        }
        None
    }

    pub fn check_latency(&self, ms: f64) -> Option<super::Violation> {
        self.max_latency_ms.filter(|&m| ms > m).map(|max| super::Violation {
            flag: "--max-latency-ms",
            message: format!("{ms:.3} ms per batch of {}, more than {max}", self.latency_batch),
        })
    }
}

/// One member of a front.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParetoPoint {
    pub id: usize,
    pub arch: String,
    pub accuracy: f64,
    pub cost: f64,
}

/// The entries no other entry beats on both accuracy (higher) and `cost` (lower), one per
/// architecture (its first entry), cheapest first. Entries without the cost are skipped; a NaN
/// accuracy never makes a front.
pub fn pareto_front(entries: &[HistoryEntry], cost: impl Fn(&HistoryEntry) -> Option<f64>) -> Vec<ParetoPoint> {
    let mut seen = std::collections::HashSet::new();
    let mut pts: Vec<ParetoPoint> = entries
        .iter()
        .filter(|e| seen.insert(e.key.clone()) && !e.accuracy.is_nan())
        .filter_map(|e| cost(e).map(|c| ParetoPoint { id: e.id, arch: e.genotype.clone(), accuracy: e.accuracy, cost: c }))
        .collect();
    // Cheapest first, then most accurate, then first found; keep each that beats every cheaper one.
    pts.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(score(b.accuracy).total_cmp(&score(a.accuracy))).then(a.id.cmp(&b.id)));
    let mut front: Vec<ParetoPoint> = Vec::new();
    for p in pts {
        if front.last().is_none_or(|l| score(p.accuracy) > score(l.accuracy)) {
            front.push(p);
        }
    }
    front
}

/// The fronts of a history against params, FLOPs and (where measured) latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pareto {
    pub params: Vec<ParetoPoint>,
    pub flops: Vec<ParetoPoint>,
    pub latency_ms: Vec<ParetoPoint>,
}

impl Pareto {
    pub fn of(entries: &[HistoryEntry]) -> Pareto {
        Pareto {
            params: pareto_front(entries, |e| Some(e.params as f64)),
            flops: pareto_front(entries, |e| Some(e.flops as f64)),
            latency_ms: pareto_front(entries, |e| e.latency_ms),
        }
    }

    /// "P", "F", "L" for each front entry `id` is on, e.g. "PF"; "" when none.
    pub fn marks(&self, id: usize) -> String {
        [("P", &self.params), ("F", &self.flops), ("L", &self.latency_ms)]
            .iter()
            .filter(|(_, f)| f.iter().any(|p| p.id == id))
            .map(|(m, _)| *m)
            .collect()
    }
}
