//! Rank statistics for comparing two scorings of the same architectures (inherited-weight
//! accuracy vs stand-alone accuracy in `cellnas rank`). Plain O(n^2) code: n is tens.
//! Each returns None where the statistic is undefined (fewer than two items, or a constant
//! side), rather than a NaN that would print as a number.

/// 1-based ranks in ascending order; tied values share the mean of their ranks.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) hold one value: ranks i+1..=j+1, mean (i+j)/2 + 1.
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Pearson's correlation coefficient.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "pearson of unequal lengths");
    let n = x.len();
    if n < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n as f64, y.iter().sum::<f64>() / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman's rho: Pearson's r of the (tie-averaged) ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's tau-b: (concordant - discordant) / sqrt((n0 - tx)(n0 - ty)), where n0 counts all
/// pairs and tx, ty the pairs tied in x, in y. Equals tau-a without ties.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "kendall_tau of unequal lengths");
    let n = x.len();
    let (mut s, mut tx, mut ty, mut n0) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            n0 += 1;
            let (a, b) = (x[i].total_cmp(&x[j]) as i64, y[i].total_cmp(&y[j]) as i64);
            tx += (a == 0) as i64;
            ty += (b == 0) as i64;
            s += a * b;
        }
    }
    let d = ((n0 - tx) as f64 * (n0 - ty) as f64).sqrt();
    (d > 0.0).then(|| s as f64 / d)
}

/// Indices of the `k` largest values, larger first; ties go to the earlier index.
pub fn top_indices(x: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Share of the top `k` by `x` that are also in the top `k` by `y` (ties broken by index).
pub fn precision_at_k(x: &[f64], y: &[f64], k: usize) -> Option<f64> {
    let k = k.min(x.len());
    if k == 0 {
        return None;
    }
    let ty = top_indices(y, k);
    Some(top_indices(x, k).iter().filter(|i| ty.contains(i)).count() as f64 / k as f64)
}

/// How much `y` is lost by picking the item `x` ranks first instead of the best by `y`.
pub fn regret(x: &[f64], y: &[f64]) -> Option<f64> {
    let pick = *top_indices(x, 1).first()?;
    let best = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(best - y[pick])
}

/// The `q`-quantile (0..=1) with linear interpolation between order statistics (numpy's
/// default, "type 7").
pub fn quantile(x: &[f64], q: f64) -> Option<f64> {
    if x.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let h = q * (s.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(s[lo] + (h - lo as f64) * (s[hi] - s[lo]))
}

/// A percentile bootstrap interval of `stat(x, y)`: `rounds` resamples of the pairs with
/// replacement (seeded, so the interval is reproducible), the `level` central share of the
/// defined results. With 20 architectures a Kendall tau is uncertain by about +-0.15; this says
/// how much.
pub fn bootstrap_interval(x: &[f64], y: &[f64], stat: fn(&[f64], &[f64]) -> Option<f64>, rounds: usize, level: f64, seed: u64) -> Option<[f64; 2]> {
    use rand::{Rng, SeedableRng};
    let n = x.len();
    if n < 2 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut xs, mut ys) = (vec![0.0; n], vec![0.0; n]);
    let mut found = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for i in 0..n {
            let j = rng.random_range(0..n);
            (xs[i], ys[i]) = (x[j], y[j]);
        }
        found.extend(stat(&xs, &ys));
    }
    let tail = (1.0 - level) / 2.0;
    Some([quantile(&found, tail)?, quantile(&found, 1.0 - tail)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("defined");
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn no_ties() {
        // Pairs: 5 concordant, 1 discordant (items 2 and 3); rank differences 0, 1, 1, 0.
        let (x, y) = ([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]);
        close(kendall_tau(&x, &y), 4.0 / 6.0);
        close(spearman(&x, &y), 1.0 - 6.0 * 2.0 / (4.0 * 15.0));
        close(pearson(&x, &y), 0.8);
    }

    #[test]
    fn ties_on_both_sides() {
        // 4 concordant pairs, 0 discordant, one pair tied in x, one in y: 4 / sqrt(5 * 5).
        let (x, y) = ([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 3.0]);
        assert_eq!(ranks(&x), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(ranks(&y), vec![1.0, 2.0, 3.5, 3.5]);
        close(kendall_tau(&x, &y), 0.8);
        // Centred ranks (-1.5, 0, 0, 1.5) and (-1.5, -0.5, 1, 1): 3.75 / sqrt(4.5 * 4.5).
        close(spearman(&x, &y), 3.75 / 4.5);
    }

    #[test]
    fn pearson_by_hand() {
        // Centred (-1, 0, 1) and (-7/3, -1/3, 8/3): 5 / sqrt(2 * 114/9).
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]), 5.0 / (2.0f64 * 114.0 / 9.0).sqrt());
        close(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
    }

    #[test]
    fn bootstrap_brackets_the_estimate() {
        let x: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + 6.0 * ((v * 1.7).sin())).collect();
        let tau = kendall_tau(&x, &y).unwrap();
        let [lo, hi] = bootstrap_interval(&x, &y, kendall_tau, 500, 0.9, 1).unwrap();
        assert!(lo < tau && tau < hi && hi - lo > 0.05, "{lo} {tau} {hi}");
        assert_eq!(bootstrap_interval(&x, &y, kendall_tau, 500, 0.9, 1), Some([lo, hi]), "seeded");
        // A perfect ranking stays perfect in every resample (where defined).
        assert_eq!(bootstrap_interval(&x, &x, kendall_tau, 200, 0.9, 2), Some([1.0, 1.0]));
    }

    #[test]
    fn undefined_cases() {
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(regret(&[], &[]), None);
        assert_eq!(precision_at_k(&[1.0], &[1.0], 0), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn top_k_overlap_regret_quantiles() {
        let (x, y) = ([0.9, 0.8, 0.7, 0.1], [0.1, 0.8, 0.9, 0.7]);
        assert_eq!(top_indices(&x, 2), vec![0, 1]);
        close(precision_at_k(&x, &y, 2), 0.5);
        close(precision_at_k(&x, &y, 4), 1.0);
        close(regret(&x, &y), 0.8);
        close(regret(&y, &y), 0.0);
        // Ties in the pick go to the first index.
        assert_eq!(top_indices(&[0.5, 0.7, 0.7], 1), vec![1]);
        close(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.5);
        close(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.75), 4.0);
        close(quantile(&[1.0, 2.0, 3.0, 4.0], 0.75), 3.25);
    }
}
