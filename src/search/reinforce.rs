//! REINFORCE (Williams 1992) as NAS (Zoph & Le 2017) and ENAS (Pham et al. 2018) use it: a
//! controller samples one choice per decision of the space (`Space::decisions`), the sampled
//! architecture is scored with inherited weights, and the score is the reward.
//!
//! The controller is independent softmax logits per decision, no LSTM: NAS and ENAS need an
//! RNN to emit a variable-length description, but every cellnas space is a fixed list of
//! categorical decisions, and at budgets of tens to hundreds of rewards a policy with a few
//! dozen logits learns where an LSTM's thousands of weights would not. It runs on the CPU in
//! f64: a few dozen numbers per update, not network math (training and evaluation stay in the
//! WGSL kernels).
//!
//! Per batch of B told rewards R_b (accuracy; a diverged NaN counts as 0):
//!   theta += lr * (1/B) * sum_b (R_b - baseline) * grad log pi(a_b) + lr * entropy * grad H(pi)
//! with grad log pi = onehot(a) - p per decision, grad H = -p (log p + H), and then the baseline,
//! an exponential moving average of rewards, moves towards each reward in turn:
//! baseline = decay * baseline + (1 - decay) * R (ENAS's; the first reward starts it). Every
//! draw comes from one seeded generator and the updates are in tell order, so the controller is
//! deterministic and replays exactly.
//!
//! A draw that repeats an earlier proposal is redrawn (up to `MAX_DRAWS` times, as random
//! search does): a repeat would cost a budget slot and tell nothing new. Until the first tell
//! the policy is uniform, so those proposals are the random baseline.

use super::random::MAX_DRAWS;
use super::{Observation, Strategy};
use crate::space::{Arch, Space};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::sync::Arc;

/// See the module docs.
pub struct Reinforce {
    space: Arc<dyn Space>,
    rng: ChaCha8Rng,
    lr: f64,
    entropy: f64,
    decay: f64,
    /// One row of logits per decision.
    logits: Vec<Vec<f64>>,
    baseline: Option<f64>,
    seen: HashSet<String>,
    proposed: usize,
    /// Proposals made before the first tell: uniform samples.
    blind: Option<usize>,
}

impl Reinforce {
    pub fn new(space: Arc<dyn Space>, seed: u64, lr: f64, entropy: f64, decay: f64) -> Reinforce {
        let logits = space.decisions().iter().map(|&k| vec![0.0; k]).collect();
        Reinforce { space, rng: ChaCha8Rng::seed_from_u64(seed), lr, entropy, decay, logits, baseline: None, seen: HashSet::new(), proposed: 0, blind: None }
    }

    /// The policy's probabilities, one row per decision.
    pub fn probabilities(&self) -> Vec<Vec<f64>> {
        self.logits.iter().map(|l| softmax(l)).collect()
    }

    /// The baseline (None before the first reward).
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    fn draw(&mut self) -> Arch {
        let probs = self.probabilities();
        let choices: Vec<usize> = probs
            .iter()
            .map(|p| {
                let u: f64 = self.rng.random();
                let mut acc = 0.0;
                p.iter().position(|&q| {
                    acc += q;
                    u < acc
                })
                .unwrap_or(p.len() - 1)
            })
            .collect();
        self.space.from_decisions(&choices).expect("choices within the decisions")
    }
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

impl Strategy for Reinforce {
    fn name(&self) -> &'static str {
        "reinforce"
    }

    fn random_proposals(&self) -> usize {
        self.blind.unwrap_or(self.proposed)
    }

    fn ask(&mut self, n: usize) -> Vec<Arch> {
        (0..n)
            .map(|_| {
                let mut a = self.draw();
                for _ in 1..MAX_DRAWS {
                    if !self.seen.contains(&a.key()) {
                        break;
                    }
                    a = self.draw();
                }
                self.seen.insert(a.key());
                self.proposed += 1;
                a
            })
            .collect()
    }

    fn tell(&mut self, results: &[(Arch, Observation)]) {
        if results.is_empty() {
            return;
        }
        self.blind.get_or_insert(self.proposed - results.len());
        let probs = self.probabilities();
        let rewards: Vec<f64> = results.iter().map(|(_, o)| if o.accuracy.is_finite() { o.accuracy } else { 0.0 }).collect();
        let baseline = self.baseline.unwrap_or(rewards[0]);
        let mut grad: Vec<Vec<f64>> = probs.iter().map(|p| vec![0.0; p.len()]).collect();
        let b = results.len() as f64;
        for ((arch, _), r) in results.iter().zip(&rewards) {
            let choices = self.space.to_decisions(arch).expect("strategies propose only architectures of their space");
            let adv = (r - baseline) / b;
            for ((g, p), &c) in grad.iter_mut().zip(&probs).zip(&choices) {
                for (k, (gk, pk)) in g.iter_mut().zip(p).enumerate() {
                    *gk += adv * (f64::from(u8::from(k == c)) - pk);
                }
            }
        }
        for (g, p) in grad.iter_mut().zip(&probs) {
            let h: f64 = -p.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>();
            for (gk, &pk) in g.iter_mut().zip(p) {
                if pk > 0.0 {
                    *gk += self.entropy * -pk * (pk.ln() + h);
                }
            }
        }
        for (l, g) in self.logits.iter_mut().zip(&grad) {
            for (lk, gk) in l.iter_mut().zip(g) {
                *lk += self.lr * gk;
            }
        }
        let mut base = baseline;
        for r in rewards {
            base = self.decay * base + (1.0 - self.decay) * r;
        }
        self.baseline = Some(base);
    }
}
