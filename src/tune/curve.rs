//! Learning-curve extrapolation (Domhan et al. 2015, reduced to three models): a partial
//! validation-accuracy curve y_1..y_n (epochs 1..n) is fitted by least squares with
//!
//! - power law    y = a - b x^-c   (c > 0)
//! - exponential  y = a - b e^-cx  (c > 0)
//! - log-linear   y = a + b ln x
//!
//! For a fixed c the first two are linear in (a, b), so each fit is a closed-form 2x2 solve
//! inside a 1-D search over c (log grid, then golden section): no iterative optimiser to
//! diverge, and deterministic.
//!
//! The predictive distribution of the accuracy at epoch T is a residual bootstrap, mixed over
//! the models with Akaike weights (w ∝ exp(-AIC/2), AIC = n ln(SSE/n) + 2p): for each model,
//! `BOOT` curves y* = fitted + residuals drawn with replacement (by seed), each refitted and
//! extrapolated to T (clamped to [0, 1]), each sample weighing w / BOOT. P(final < x) is the
//! weight of the samples below x: wide where well-fitting models disagree, narrow where they
//! agree, and a model that fits the curve badly (a log-linear line on a saturating curve) has
//! little say. Residuals are inflated by sqrt(n / (n - p)) for the p parameters fitted, so an
//! exact fit of few points is not read as certainty beyond the models' disagreement.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bootstrap curves per model.
pub const BOOT: usize = 64;
/// Points a curve needs before it is extrapolated (three parameters per model).
pub const MIN_POINTS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    PowerLaw,
    Exponential,
    LogLinear,
}

pub const MODELS: [Model; 3] = [Model::PowerLaw, Model::Exponential, Model::LogLinear];

/// A fitted model: y = a + b * g_c(x).
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    pub model: Model,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub sse: f64,
}

impl Model {
    fn basis(self, x: f64, c: f64) -> f64 {
        match self {
            Model::PowerLaw => -x.powf(-c),
            Model::Exponential => -(-c * x).exp(),
            Model::LogLinear => x.ln(),
        }
    }
    fn params(self) -> usize {
        if self == Model::LogLinear {
            2
        } else {
            3
        }
    }
}

impl Fit {
    pub fn at(&self, x: f64) -> f64 {
        self.a + self.b * self.model.basis(x, self.c)
    }
}

/// Least squares of y on [1, g] for a fixed c: (a, b, sse), None when g is (nearly) constant.
fn linear(model: Model, ys: &[f64], c: f64) -> Option<(f64, f64, f64)> {
    let n = ys.len() as f64;
    let g: Vec<f64> = (1..=ys.len()).map(|x| model.basis(x as f64, c)).collect();
    let (sg, sy) = (g.iter().sum::<f64>(), ys.iter().sum::<f64>());
    let (mg, my) = (sg / n, sy / n);
    let sgg: f64 = g.iter().map(|v| (v - mg) * (v - mg)).sum();
    if sgg <= 1e-18 {
        return None;
    }
    let sgy: f64 = g.iter().zip(ys).map(|(v, y)| (v - mg) * (y - my)).sum();
    let b = sgy / sgg;
    let a = my - b * mg;
    let sse = g.iter().zip(ys).map(|(v, y)| (a + b * v - y).powi(2)).sum();
    Some((a, b, sse))
}

/// The least-squares fit of `model` to `ys` (epochs 1..=n).
pub fn fit(model: Model, ys: &[f64]) -> Option<Fit> {
    if ys.len() < model.params() {
        return None;
    }
    if model == Model::LogLinear {
        let (a, b, sse) = linear(model, ys, 0.0)?;
        return Some(Fit { model, a, b, c: 0.0, sse });
    }
    let (lo, hi) = (0.01f64.ln(), 5f64.ln());
    let sse_at = |lc: f64| linear(model, ys, lc.exp()).map_or(f64::INFINITY, |r| r.2);
    const GRID: usize = 40;
    let pts: Vec<f64> = (0..=GRID).map(|i| lo + (hi - lo) * i as f64 / GRID as f64).collect();
    let best = (0..=GRID).min_by(|&i, &j| sse_at(pts[i]).total_cmp(&sse_at(pts[j])))?;
    let (mut l, mut r) = (pts[best.saturating_sub(1)], pts[(best + 1).min(GRID)]);
    let phi = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..40 {
        let (m1, m2) = (r - phi * (r - l), l + phi * (r - l));
        if sse_at(m1) <= sse_at(m2) {
            r = m2;
        } else {
            l = m1;
        }
    }
    let c = (0.5 * (l + r)).exp();
    let (a, b, sse) = linear(model, ys, c)?;
    Some(Fit { model, a, b, c, sse })
}

/// Extrapolated accuracy at one epoch: a weighted sample (values sorted).
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The Akaike-weighted mean of the models' own fits at the target.
    pub mean: f64,
    /// (value, weight), weights summing to 1.
    pub samples: Vec<(f64, f64)>,
}

impl Prediction {
    /// Probability that the accuracy at the target is below `x`.
    pub fn prob_below(&self, x: f64) -> f64 {
        self.samples.iter().filter(|s| s.0 < x).map(|s| s.1).sum::<f64>().clamp(0.0, 1.0)
    }

    /// The smallest sampled value with at least `q` of the weight at or below it.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut acc = 0.0;
        for &(v, w) in &self.samples {
            acc += w;
            if acc >= q - 1e-12 {
                return v;
            }
        }
        self.samples.last().map_or(self.mean, |s| s.0)
    }
}

/// The accuracy `curve` (epochs 1..=n) is predicted to reach at epoch `target`; None with
/// fewer than [`MIN_POINTS`] points. Deterministic for a seed. `rank` or any caller with a
/// partial curve can use it.
pub fn predict(curve: &[f64], target: usize, seed: u64) -> Option<Prediction> {
    if curve.len() < MIN_POINTS || curve.iter().any(|y| !y.is_finite()) {
        return None;
    }
    let x = target.max(curve.len()) as f64;
    let n = curve.len();
    let fits: Vec<Fit> = MODELS.iter().filter_map(|&m| fit(m, curve)).collect();
    if fits.is_empty() {
        return None;
    }
    // Akaike weights, relative to the best (the floor keeps an exact fit finite).
    let aic: Vec<f64> = fits.iter().map(|f| n as f64 * (f.sse / n as f64 + 1e-12).ln() + 2.0 * f.model.params() as f64).collect();
    let lo = aic.iter().cloned().fold(f64::INFINITY, f64::min);
    let raw: Vec<f64> = aic.iter().map(|a| (-(a - lo) / 2.0).exp()).collect();
    let total: f64 = raw.iter().sum();
    let weights: Vec<f64> = raw.iter().map(|w| w / total).collect();
    let mean = fits.iter().zip(&weights).map(|(f, w)| w * f.at(x).clamp(0.0, 1.0)).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(crate::nn::params::name_seed(seed, &format!("curve{n}")));
    let mut samples = vec![];
    for (f, w) in fits.iter().zip(&weights) {
        let fitted: Vec<f64> = (1..=n).map(|i| f.at(i as f64)).collect();
        let dof = n.saturating_sub(f.model.params()).max(1) as f64;
        let inflate = (n as f64 / dof).sqrt();
        let resid: Vec<f64> = curve.iter().zip(&fitted).map(|(y, h)| (y - h) * inflate).collect();
        let mut model_samples = vec![];
        for _ in 0..BOOT {
            let ys: Vec<f64> = fitted.iter().map(|h| h + resid[rng.random_range(0..n)]).collect();
            if let Some(g) = self::fit(f.model, &ys) {
                model_samples.push(g.at(x).clamp(0.0, 1.0));
            }
        }
        let k = model_samples.len().max(1) as f64;
        samples.extend(model_samples.into_iter().map(|v| (v, w / k)));
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Prediction { mean, samples })
}

/// The early-stopping rule: stop when P(accuracy at `target` < `incumbent`) >= `probability`.
/// Returns (stop, the prediction's mean, that probability).
pub fn should_stop(curve: &[f64], target: usize, incumbent: f64, probability: f64, seed: u64) -> Option<(bool, f64, f64)> {
    let p = predict(curve, target, seed)?;
    let below = p.prob_below(incumbent);
    Some((below >= probability, p.mean, below))
}
