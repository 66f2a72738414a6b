//! Bayesian optimisation over the space's fixed-length encoding (`Space::encode`): a Gaussian
//! process surrogate with an exponential Hamming kernel, expected improvement (or UCB) as the
//! acquisition, batches by the kriging believer.
//!
//! Why a GP and this kernel, not TPE: encodings are one-hot op choices and 0/1 skip bits, so the
//! natural distance between two architectures is how many entries differ (the L1 distance of
//! the encodings, twice the number of changed ops). k(x, x') = exp(-|x - x'|_1 / l) is a product
//! of one Laplacian kernel per entry, hence positive definite, and says "architectures a few
//! edits apart score alike", which is what evolution's mutations also bet on. A GP models how
//! decisions interact (the same op on two edges can matter together); TPE models each dimension
//! on its own. Its cost, O(n^3) per fit, is nothing at NAS budgets (tens to hundreds of
//! inherited-weight evaluations); past `MAX_POINTS` observations the GP keeps the best half and
//! the most recent half. EI rather than UCB by default: it needs no exploration weight tuned
//! to the accuracy scale (UCB's beta is a setting).
//!
//! The procedure, deterministic for the seed (f64 on the CPU, fixed orders):
//! 1. The first `initial` proposals are uniform samples without repeats (the random baseline).
//! 2. Then each ask: fit the GP to the observations (accuracy standardised; a diverged, NaN
//!    score counts as the worst seen), choosing the length scale and noise from a small grid
//!    by marginal likelihood; draw a pool of candidates not proposed before (`pool` uniform
//!    samples and 10 mutations of each of the 10 best observed), score each by the acquisition,
//!    propose the best; for a batch, pretend it scored its predicted mean (kriging believer),
//!    update the GP and pick the next from the same pool.
//!
//! The GP is a surrogate of search scores on the CPU, not network math: training and
//! evaluation stay in the WGSL kernels.

use super::random::sample_unseen;
use super::{score, Observation, Strategy};
use crate::space::{Arch, Space};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Observations the GP fits at most (see the module docs).
pub const MAX_POINTS: usize = 256;

/// What scores a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acquisition {
    /// Expected improvement over the best observation.
    Ei,
    /// Upper confidence bound, mean + beta * sd.
    Ucb,
}

impl std::str::FromStr for Acquisition {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Acquisition> {
        match s {
            "ei" => Ok(Acquisition::Ei),
            "ucb" => Ok(Acquisition::Ucb),
            _ => Err(crate::Error::Invalid(format!("--acquisition {s}: expected ei or ucb"))),
        }
    }
}

/// See the module docs.
pub struct BayesOpt {
    space: Arc<dyn Space>,
    rng: ChaCha8Rng,
    initial: usize,
    acquisition: Acquisition,
    beta: f64,
    pool: usize,
    seen: HashSet<String>,
    proposed: usize,
    /// Observations in tell order: encoding, accuracy, the architecture (for mutation).
    observed: Vec<(Vec<f64>, f64, Arch)>,
}

impl BayesOpt {
    pub fn new(space: Arc<dyn Space>, seed: u64, initial: usize, acquisition: Acquisition, beta: f64, pool: usize) -> BayesOpt {
        BayesOpt {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
            initial: initial.max(1),
            acquisition,
            beta,
            pool: pool.max(1),
            seen: HashSet::new(),
            proposed: 0,
            observed: Vec::new(),
        }
    }

    /// Candidates not proposed before: `pool` uniform samples, then mutations of the best.
    fn candidates(&mut self) -> Vec<Arch> {
        let mut out = Vec::new();
        let mut keys = HashSet::new();
        for _ in 0..self.pool {
            let a = self.space.sample(&mut self.rng);
            if !self.seen.contains(&a.key()) && keys.insert(a.key()) {
                out.push(a);
            }
        }
        let mut order: Vec<usize> = (0..self.observed.len()).collect();
        order.sort_by(|&a, &b| score(self.observed[b].1).total_cmp(&score(self.observed[a].1)).then(a.cmp(&b)));
        for &i in order.iter().take(10) {
            for _ in 0..10 {
                let a = self.space.mutate(&self.observed[i].2, &mut self.rng);
                if !self.seen.contains(&a.key()) && keys.insert(a.key()) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// The observations the GP fits: all, or the best and the most recent halves of `MAX_POINTS`.
    fn points(&self) -> (Vec<Vec<f64>>, Vec<f64>) {
        let n = self.observed.len();
        let mut idx: Vec<usize> = (0..n).collect();
        if n > MAX_POINTS {
            let mut best = idx.clone();
            best.sort_by(|&a, &b| score(self.observed[b].1).total_cmp(&score(self.observed[a].1)).then(a.cmp(&b)));
            let mut keep: Vec<usize> = best[..MAX_POINTS / 2].to_vec();
            let recent: Vec<usize> = (0..n).rev().filter(|i| !keep.contains(i)).take(MAX_POINTS - MAX_POINTS / 2).collect();
            keep.extend(recent);
            keep.sort_unstable();
            idx = keep;
        }
        let finite: Vec<f64> = self.observed.iter().map(|o| o.1).filter(|y| y.is_finite()).collect();
        let worst = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let worst = if worst.is_finite() { worst } else { 0.0 };
        let x = idx.iter().map(|&i| self.observed[i].0.clone()).collect();
        let y = idx.iter().map(|&i| if self.observed[i].1.is_finite() { self.observed[i].1 } else { worst }).collect();
        (x, y)
    }
}

impl Strategy for BayesOpt {
    fn name(&self) -> &'static str {
        "bayes"
    }

    fn random_proposals(&self) -> usize {
        self.initial
    }

    fn ask(&mut self, n: usize) -> Vec<Arch> {
        let mut out = Vec::with_capacity(n);
        // The random start, also whenever nothing has been observed yet.
        while out.len() < n && (self.proposed < self.initial || self.observed.is_empty()) {
            match sample_unseen(self.space.as_ref(), &mut self.rng, &mut self.seen) {
                Some(a) => {
                    self.proposed += 1;
                    out.push(a);
                }
                None => return out,
            }
        }
        if out.len() == n {
            return out;
        }
        let (x, y) = self.points();
        let mut gp = Gp::fit(x, y, self.space.decisions().len() as f64);
        let pool = self.candidates();
        let encoded: Vec<Vec<f64>> = pool.iter().map(|a| encode(self.space.as_ref(), a)).collect();
        let mut alive: Vec<bool> = vec![true; pool.len()];
        while out.len() < n {
            let best = gp.best();
            let mut pick: Option<(usize, f64, f64, Vec<f64>)> = None;
            for (i, x) in encoded.iter().enumerate().filter(|(i, _)| alive[*i]) {
                let (mean, var, v) = gp.predict(x);
                let sd = var.max(0.0).sqrt();
                let value = match self.acquisition {
                    Acquisition::Ei => expected_improvement(mean, sd, best),
                    Acquisition::Ucb => mean + self.beta * sd,
                };
                if pick.as_ref().is_none_or(|p| value > p.1) {
                    pick = Some((i, value, mean, v));
                }
            }
            let Some((i, _, mean, v)) = pick else { break };
            alive[i] = false;
            gp.believe(encoded[i].clone(), mean, v);
            let a = pool[i].clone();
            self.seen.insert(a.key());
            self.proposed += 1;
            out.push(a);
        }
        out
    }

    fn tell(&mut self, results: &[(Arch, Observation)]) {
        for (a, o) in results {
            self.observed.push((encode(self.space.as_ref(), a), o.accuracy, a.clone()));
        }
    }
}

fn encode(space: &dyn Space, a: &Arch) -> Vec<f64> {
    space.encode(a).expect("strategies propose only architectures of their space").into_iter().map(f64::from).collect()
}

/// EI of a maximisation with mean `m` and sd `s` over the incumbent `best` (standardised units).
fn expected_improvement(m: f64, s: f64, best: f64) -> f64 {
    const XI: f64 = 0.01;
    let d = m - best - XI;
    if s <= 1e-12 {
        return d.max(0.0);
    }
    let z = d / s;
    d * normal_cdf(z) + s * (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function, Numerical Recipes' `erfcc` (relative error < 1.2e-7, enough
/// to rank candidates).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96 + t * (0.096_784_18 + t * (-0.186_288_06 + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// A zero-mean GP on standardised targets with k(x, x') = exp(-|x - x'|_1 / l) + noise on the
/// diagonal; Cholesky factor kept so a believed point is one more row.
struct Gp {
    x: Vec<Vec<f64>>,
    /// Standardised targets.
    y: Vec<f64>,
    l: f64,
    noise: f64,
    /// Lower Cholesky factor of K + noise I, row-major rows of growing length.
    chol: Vec<Vec<f64>>,
    alpha: Vec<f64>,
}

impl Gp {
    /// Fits to `x`, `y` (raw accuracies), choosing the length scale from `decisions` times
    /// {1/8, 1/4, 1/2, 1, 2} (encodings of D decisions differ by at most about 2D) and the noise
    /// from {1e-3, 1e-2, 1e-1} by log marginal likelihood; ties go to the first.
    fn fit(x: Vec<Vec<f64>>, y: Vec<f64>, decisions: f64) -> Gp {
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let sd = (y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let sd = if sd > 1e-12 { sd } else { 1.0 };
        let ys: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
        let dist: Vec<Vec<f64>> = x.iter().map(|a| x.iter().map(|b| l1(a, b)).collect()).collect();
        let mut best: Option<(f64, Gp)> = None;
        for l in [0.125, 0.25, 0.5, 1.0, 2.0].map(|f| f * decisions.max(1.0)) {
            for noise in [1e-3, 1e-2, 1e-1] {
                let k: Vec<Vec<f64>> = dist.iter().enumerate().map(|(i, r)| r.iter().enumerate().map(|(j, d)| (-d / l).exp() + if i == j { noise } else { 0.0 }).collect()).collect();
                let Some(chol) = cholesky(&k) else { continue };
                let alpha = solve(&chol, &ys);
                let fit: f64 = ys.iter().zip(&alpha).map(|(a, b)| a * b).sum();
                let logdet: f64 = chol.iter().enumerate().map(|(i, r)| r[i].ln()).sum();
                let lml = -0.5 * fit - logdet;
                if best.as_ref().is_none_or(|b| lml > b.0) {
                    best = Some((lml, Gp { x: x.clone(), y: ys.clone(), l, noise, chol, alpha }));
                }
            }
        }
        best.expect("noise 0.1 on the diagonal keeps K positive definite").1
    }

    /// The incumbent: the best standardised target (believed points included).
    fn best(&self) -> f64 {
        self.y.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// (mean, variance of the latent function, L^-1 k(X, x)).
    fn predict(&self, x: &[f64]) -> (f64, f64, Vec<f64>) {
        let k: Vec<f64> = self.x.iter().map(|a| (-l1(a, x) / self.l).exp()).collect();
        let mean = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, &k);
        (mean, 1.0 - v.iter().map(|a| a * a).sum::<f64>(), v)
    }

    /// Adds `x` with target `y` (standardised); `v` is `predict(x)`'s third value.
    fn believe(&mut self, x: Vec<f64>, y: f64, v: Vec<f64>) {
        let d = (1.0 + self.noise - v.iter().map(|a| a * a).sum::<f64>()).max(self.noise).sqrt();
        let mut row = v;
        row.push(d);
        self.chol.push(row);
        self.x.push(x);
        self.y.push(y);
        self.alpha = solve(&self.chol, &self.y);
    }
}

fn l1(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

/// Lower Cholesky factor (rows of length i + 1), or None when not positive definite.
fn cholesky(k: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = k.len();
    let mut l: Vec<Vec<f64>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut row = vec![0.0; i + 1];
        for j in 0..=i {
            let s: f64 = if i == j { row[..j].iter().map(|v| v * v).sum() } else { (0..j).map(|m| row[m] * l[j][m]).sum() };
            if i == j {
                let d = k[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                row[j] = d.sqrt();
            } else {
                row[j] = (k[i][j] - s) / l[j][j];
            }
        }
        l.push(row);
    }
    Some(l)
}

/// L^-1 b.
#[allow(clippy::needless_range_loop)] // triangular solve: index form is the clear one
fn forward(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; b.len()];
    for i in 0..b.len() {
        let s: f64 = (0..i).map(|j| l[i][j] * x[j]).sum();
        x[i] = (b[i] - s) / l[i][i];
    }
    x
}

/// (L L^T)^-1 b.
fn solve(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let z = forward(l, b);
    let n = z.len();
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| l[j][i] * x[j]).sum();
        x[i] = (z[i] - s) / l[i][i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_interpolates_and_is_unsure_far_away() {
        let x = vec![vec![0.0, 0.0], vec![1.0, 0.0], vec![1.0, 1.0]];
        let gp = Gp::fit(x, vec![0.1, 0.5, 0.9], 2.0);
        let (m0, v0, _) = gp.predict(&[1.0, 1.0]);
        assert!(m0 > 0.8 && v0 < 0.2, "{m0} {v0}");
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7 && (normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!(expected_improvement(0.0, 1.0, 0.0) > expected_improvement(0.0, 0.1, 0.0));
    }
}
