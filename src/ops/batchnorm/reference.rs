//! Plain f64 loops over NCHW, for tests.

fn index(s: [usize; 4], n: usize, c: usize, i: usize) -> usize {
    (n * s[1] + c) * s[2] * s[3] + i
}

/// Per-channel mean and biased variance over N, H, W (two-pass).
pub fn batch_stats(x: &[f64], s: [usize; 4]) -> (Vec<f64>, Vec<f64>) {
    let m = (s[0] * s[2] * s[3]) as f64;
    let mut mean = vec![0.0; s[1]];
    let mut var = vec![0.0; s[1]];
    for c in 0..s[1] {
        for n in 0..s[0] {
            for i in 0..s[2] * s[3] {
                mean[c] += x[index(s, n, c, i)];
            }
        }
        mean[c] /= m;
        for n in 0..s[0] {
            for i in 0..s[2] * s[3] {
                var[c] += (x[index(s, n, c, i)] - mean[c]).powi(2);
            }
        }
        var[c] /= m;
    }
    (mean, var)
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given per-channel statistics.
pub fn normalize(x: &[f64], s: [usize; 4], mean: &[f64], var: &[f64], gamma: Option<&[f64]>, beta: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for n in 0..s[0] {
        for c in 0..s[1] {
            let g = gamma.map_or(1.0, |g| g[c]);
            let b = beta.map_or(0.0, |b| b[c]);
            for i in 0..s[2] * s[3] {
                let k = index(s, n, c, i);
                y[k] = (x[k] - mean[c]) / (var[c] + eps).sqrt() * g + b;
            }
        }
    }
    y
}

pub fn forward_train(x: &[f64], s: [usize; 4], gamma: Option<&[f64]>, beta: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let (mean, var) = batch_stats(x, s);
    normalize(x, s, &mean, &var, gamma, beta, eps)
}

/// The running statistics after one training forward on x.
pub fn update_running(x: &[f64], s: [usize; 4], running_mean: &mut [f64], running_var: &mut [f64], momentum: f64) {
    let m = (s[0] * s[2] * s[3]) as f64;
    let (mean, var) = batch_stats(x, s);
    for c in 0..s[1] {
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c];
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * m / (m - 1.0);
    }
}

/// Training-mode gradients (dx, dgamma, dbeta); dgamma/dbeta are those of an affine layer
/// (gamma None means gamma = 1).
pub fn backward_train(x: &[f64], s: [usize; 4], dy: &[f64], gamma: Option<&[f64]>, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (s[0] * s[2] * s[3]) as f64;
    let (mean, var) = batch_stats(x, s);
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; s[1]];
    let mut dbeta = vec![0.0; s[1]];
    for c in 0..s[1] {
        let inv_std = 1.0 / (var[c] + eps).sqrt();
        let xhat = |k: usize| (x[k] - mean[c]) * inv_std;
        for n in 0..s[0] {
            for i in 0..s[2] * s[3] {
                let k = index(s, n, c, i);
                dbeta[c] += dy[k];
                dgamma[c] += dy[k] * xhat(k);
            }
        }
        let g = gamma.map_or(1.0, |g| g[c]);
        for n in 0..s[0] {
            for i in 0..s[2] * s[3] {
                let k = index(s, n, c, i);
                dx[k] = g * inv_std / m * (m * dy[k] - dbeta[c] - xhat(k) * dgamma[c]);
            }
        }
    }
    (dx, dgamma, dbeta)
}
