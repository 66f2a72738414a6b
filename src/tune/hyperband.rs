//! Hyperband's brackets (Li et al. 2018, Algorithm 1) in integer arithmetic. With maximum
//! resource R epochs and factor eta: s_max = floor(log_eta R); bracket s (s_max down to 0)
//! starts n = ceil((s_max + 1) eta^s / (s + 1)) configurations at r = R eta^-s epochs; rung i
//! keeps floor(n / eta^i) of them, trained to R eta^(i-s) epochs (at least 1), the last rung
//! to R. A promoted trial continues from its checkpoint (pipeline::tune), so rung i+1 costs
//! only the epochs between the rungs.

/// One bracket: (configurations, epochs) per rung.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bracket {
    pub s: usize,
    pub rungs: Vec<(usize, usize)>,
}

/// Largest s with eta^s <= r.
pub fn s_max(r: usize, eta: usize) -> usize {
    let (mut s, mut p) = (0usize, eta);
    while eta >= 2 && p <= r {
        s += 1;
        p = match p.checked_mul(eta) {
            Some(v) => v,
            None => break,
        };
    }
    s
}

/// The brackets of one Hyperband iteration, most aggressive first.
pub fn brackets(r: usize, eta: usize) -> Vec<Bracket> {
    let sm = s_max(r, eta);
    (0..=sm)
        .rev()
        .map(|s| {
            let pow = |k: usize| eta.pow(k as u32);
            // ceil((s_max + 1) * eta^s / (s + 1))
            let n = ((sm + 1) * pow(s)).div_ceil(s + 1);
            let rungs = (0..=s).map(|i| (n / pow(i), (r / pow(s - i)).max(1))).collect();
            Bracket { s, rungs }
        })
        .collect()
}

/// Epochs one iteration trains when promoted trials continue (sum over trials of their last
/// rung's epochs), and when they restart (Keras Tuner).
pub fn epochs_total(bs: &[Bracket]) -> (usize, usize) {
    let mut cont = 0;
    let mut restart = 0;
    for b in bs {
        let mut prev = 0;
        for &(n, e) in &b.rungs {
            cont += n * (e - prev);
            restart += n * e;
            prev = e;
        }
    }
    (cont, restart)
}
