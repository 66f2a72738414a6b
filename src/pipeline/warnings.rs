//! Settings that are legal but almost certainly not what was meant: the run goes ahead (a quick
//! smoke test may want exactly this), but its numbers would mislead, so the CLI prints each as a
//! `warning:` line before starting. Checked on the resolved config, so they also cover a resume.

use super::data::DataConfig;
use super::search::SearchConfig;
use super::standalone::StandaloneConfig;
use crate::train::TrainConfig;

/// Below this many validation images one image moves the accuracy by more than 1%.
pub const MIN_VAL: usize = 100;
/// Fewer optimizer steps per epoch than this barely trains, and BN statistics are noise.
pub const MIN_STEPS: usize = 4;

/// The warnings for a search (see the module docs), one sentence each, without "warning:".
pub fn search_warnings(cfg: &SearchConfig) -> Vec<String> {
    let mut w = Vec::new();
    if cfg.train.epochs == 0 {
        w.push(
            "--epochs 0: the supernet is not trained, so candidates are scored with untrained weights \
             and their accuracies say nothing about the architectures"
                .to_string(),
        );
    }
    if (1..MIN_VAL).contains(&cfg.data.val_count) {
        w.push(small_val(cfg.data.val_count, "candidates whose scores differ by less are tied in all but name"));
    }
    let distinct = cfg.space.space().size();
    if cfg.budget as f64 > distinct {
        let what = match cfg.strategy.name() {
            "random" => "random search stops when it finds no unevaluated one, after at most that many candidates",
            "grid" => "grid search stops at the end of the grid",
            _ => "the search fills the rest of the budget with repeats, which reuse their first score",
        };
        w.push(format!(
            "--budget {} is more than the {distinct} distinct architectures in this space ({}): {what}",
            cfg.budget,
            cfg.space
        ));
    }
    if let (crate::search::StrategyConfig::Grid(_), Some(n)) = (&cfg.strategy, cfg.space.space().grid_len()) {
        if (cfg.budget as u64) < n {
            w.push(format!(
                "--strategy grid with --budget {} evaluates only the first {} of the {n} architectures in grid order, \
                 which differ only in their last decisions (docs/ARCHITECTURE.md); restrict the space or raise the budget",
                cfg.budget, cfg.budget
            ));
        }
    }
    w.extend(few_steps(&cfg.train, &cfg.data));
    w
}

/// The warnings for a stand-alone training (see the module docs).
pub fn train_warnings(cfg: &StandaloneConfig) -> Vec<String> {
    let mut w = Vec::new();
    if cfg.train.epochs == 0 && cfg.init_from.is_none() {
        w.push("--epochs 0: the network is not trained, so the test accuracy is that of its initial weights".to_string());
    }
    if (1..MIN_VAL).contains(&cfg.data.val_count) {
        w.push(small_val(cfg.data.val_count, "the validation accuracy is a coarse estimate"));
    }
    w.extend(few_steps(&cfg.train, &cfg.data));
    w
}

fn small_val(n: usize, consequence: &str) -> String {
    format!(
        "--val {n}: a validation split of {n} images measures accuracy in steps of {:.2}% (one image is {:.2}% of {n}); \
         {consequence} (use at least {MIN_VAL})",
        100.0 / n as f64,
        100.0 / n as f64
    )
}

/// `--train-limit` (when set) leaves few steps per epoch. Without a limit the dataset decides,
/// which is only known once it is read; too small a dataset is caught there.
fn few_steps(train: &TrainConfig, data: &DataConfig) -> Option<String> {
    let steps = data.train_limit / train.batch_size.max(1);
    (data.train_limit > 0 && train.epochs > 0 && steps < MIN_STEPS).then(|| {
        format!(
            "--train-limit {} with --batch-size {} gives {steps} training step{} per epoch: the weights and BN statistics \
             will barely move from their initial values",
            data.train_limit,
            train.batch_size,
            if steps == 1 { "" } else { "s" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Op, SearchSpace};

    /// The CLI's default search.
    fn search() -> SearchConfig {
        crate::pipeline::search::default_search()
    }

    fn has(w: &[String], needle: &str) -> bool {
        w.iter().any(|s| s.contains(needle))
    }

    #[test]
    fn an_ordinary_search_has_no_warnings() {
        assert_eq!(search_warnings(&search()), Vec::<String>::new());
    }

    #[test]
    fn each_suspicious_setting_is_named() {
        let mut cfg = search();
        cfg.train.epochs = 0;
        assert!(has(&search_warnings(&cfg), "--epochs 0: the supernet is not trained"));

        let mut cfg = search();
        cfg.data.val_count = 50;
        assert!(has(&search_warnings(&cfg), "one image is 2.00% of 50"), "{:?}", search_warnings(&cfg));

        let mut cfg = search();
        cfg.space = crate::space::SpaceConfig::Darts(SearchSpace::new(vec![Op::SepConv3x3, Op::MaxPool3x3], 1).unwrap());
        cfg.budget = 17;
        assert!(has(&search_warnings(&cfg), "--budget 17 is more than the 16 distinct architectures"));
        cfg.budget = 16;
        assert!(search_warnings(&cfg).is_empty());

        let mut cfg = search();
        cfg.data.train_limit = 3 * cfg.train.batch_size + 1;
        assert!(has(&search_warnings(&cfg), "gives 3 training steps per epoch"));
        cfg.data.train_limit = 4 * cfg.train.batch_size;
        assert!(search_warnings(&cfg).is_empty());
    }
}
