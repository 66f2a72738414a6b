//! The Bayesian tuner: a Tree-structured Parzen Estimator (Bergstra et al. 2011), chosen over
//! a Gaussian process because the hyperparameter files are tree-shaped and mixed: Choice and
//! Boolean parameters, and conditional ones that exist only under some parent values. TPE
//! models each parameter on its own from the trials where it was active, so inactive
//! dimensions need no imputation and categories no ad-hoc kernel; its cost is linear in the
//! trials (no matrix to factor), and it is what Hyperopt and Optuna default to.
//!
//! Observations (position u in [0, 1] per active parameter, validation accuracy) split into
//! the best ceil(gamma n) ("good") and the rest. Per parameter, l(u) is a Parzen density of the
//! good ones and g(u) of the rest: a mixture of Gaussians (bandwidth 0.25 n^-1/5, at least
//! 0.05) truncated to [0, 1] plus one uniform prior component; for categorical parameters the
//! counts plus one per category. `candidates` configurations are drawn from l (parents first,
//! so a child is drawn only when active), and the one maximising the sum over its active
//! parameters of log l - log g (expected improvement's maximiser under TPE) is proposed.

use super::space::{Assignment, HpSpace};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One parameter's density from the positions where it was active.
struct Parzen {
    points: Vec<f64>,
    sigma: f64,
    /// Categories (None: continuous on [0, 1]).
    cats: Option<usize>,
}

impl Parzen {
    fn new(points: Vec<f64>, cats: Option<usize>) -> Parzen {
        let n = points.len().max(1) as f64;
        Parzen { sigma: (0.25 * n.powf(-0.2)).max(0.05), points, cats }
    }

    fn cat(u: f64, k: usize) -> usize {
        ((u * k as f64) as usize).min(k - 1)
    }

    fn density(&self, u: f64) -> f64 {
        let w = 1.0 / (self.points.len() + 1) as f64;
        if let Some(k) = self.cats {
            let c = Parzen::cat(u, k);
            let hits = self.points.iter().filter(|&&p| Parzen::cat(p, k) == c).count() as f64;
            // Counts plus a uniform prior of weight one, as a probability of category c.
            return (hits + 1.0 / k as f64) * w * k as f64;
        }
        let s = self.sigma;
        let mass = |m: f64| 0.5 * (erf((1.0 - m) / (s * std::f64::consts::SQRT_2)) - erf(-m / (s * std::f64::consts::SQRT_2)));
        let pdf: f64 = self.points.iter().map(|&m| (-(u - m).powi(2) / (2.0 * s * s)).exp() / (s * (2.0 * std::f64::consts::PI).sqrt()) / mass(m).max(1e-12)).sum();
        (pdf + 1.0) * w
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let i = rng.random_range(0..=self.points.len());
        if i == self.points.len() {
            return rng.random::<f64>();
        }
        let m = self.points[i];
        if let Some(k) = self.cats {
            return (Parzen::cat(m, k) as f64 + 0.5) / k as f64;
        }
        // Truncated normal by rejection; the bound keeps it finite (the mean is inside).
        for _ in 0..64 {
            let z = normal(rng);
            let u = m + self.sigma * z;
            if (0.0..=1.0).contains(&u) {
                return u;
            }
        }
        m.clamp(0.0, 1.0)
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): enough for a truncation mass.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// TPE's proposal given (assignment, accuracy) observations.
pub fn propose(space: &HpSpace, observed: &[(Assignment, f64)], gamma: f64, candidates: usize, rng: &mut ChaCha8Rng) -> Assignment {
    let mut order: Vec<usize> = (0..observed.len()).collect();
    // Best first; ties by order of observation, so the split is deterministic.
    order.sort_by(|&i, &j| observed[j].1.total_cmp(&observed[i].1).then(i.cmp(&j)));
    let n_good = ((gamma * observed.len() as f64).ceil() as usize).clamp(1, observed.len().max(1));
    let (good, bad) = order.split_at(n_good.min(order.len()));
    let models: Vec<(Parzen, Parzen)> = space
        .params
        .iter()
        .map(|hp| {
            let cats = hp.categorical().then(|| hp.grid().map_or(1, |g| g.len()));
            let pos = |set: &[usize]| -> Vec<f64> { set.iter().filter_map(|&i| observed[i].0.get(&hp.name).and_then(|v| hp.position(v))).collect() };
            (Parzen::new(pos(good), cats), Parzen::new(pos(bad), cats))
        })
        .collect();
    let mut best: Option<(f64, Assignment)> = None;
    for _ in 0..candidates.max(1) {
        let us: Vec<f64> = models.iter().map(|(l, _)| l.sample(rng)).collect();
        let a = space.assign(|i| us[i]);
        let score: f64 = space
            .params
            .iter()
            .enumerate()
            .filter(|(_, hp)| a.contains_key(&hp.name))
            .map(|(i, _)| models[i].0.density(us[i]).ln() - models[i].1.density(us[i]).ln())
            .sum();
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, a));
        }
    }
    best.expect("at least one candidate").1
}
