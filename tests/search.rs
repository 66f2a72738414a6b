//! Search strategies and the history file, without a GPU: a synthetic objective stands in for
//! inherited-weight evaluation.

use cellnas::search::{
    replay, rfc3339, strategy_from_name, top_k, EvolutionConfig, History, HistoryEntry, Observation, RandomSearch,
    RegularizedEvolution, Strategy,
};
use cellnas::space::{Genotype, Op, SearchSpace};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Fraction of edges that are sep_conv_3x3, plus up to 0.01 of noise fixed by the architecture
/// (so equal architectures score equally, as inherited-weight evaluation does). The noise also
/// makes accuracies arbitrary f64s, which tests the history's exact float round trip.
fn objective(g: &Genotype) -> Observation {
    let edges: Vec<Op> = g.cells().iter().flat_map(|(_, c)| c.edges().map(|(_, e)| e.op)).collect();
    let sep = edges.iter().filter(|&&op| op == Op::SepConv3x3).count() as f64 / edges.len() as f64;
    // FNV-1a of the key: deterministic across runs and platforms.
    let hash = g.key().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let noise = (hash % 10_007) as f64 / 10_007.0 * 0.01;
    Observation { accuracy: sep * 0.99 + noise, loss: 1.0 - sep + noise }
}

/// Proposes and observes `n` times (fewer if the strategy runs out); returns what was proposed.
fn run(strategy: &mut dyn Strategy, n: usize) -> Vec<Genotype> {
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(a) = strategy.propose() else { break };
        let g = a.darts().unwrap().clone();
        strategy.observe(&a, &objective(&g));
        out.push(g);
    }
    out
}

fn entry(id: usize, g: &Genotype) -> HistoryEntry {
    let obs = objective(g);
    HistoryEntry {
        id,
        genotype: g.to_darts(),
        key: g.key(),
        accuracy: obs.accuracy,
        loss: obs.loss,
        params: 1000 + id as u64,
        flops: 7 * id as u64,
        latency_ms: None,
        adapter: None,
        eval_ms: 12.5 + id as f64 / 3.0,
        time: rfc3339(SystemTime::now()),
    }
}

/// A fresh, empty directory under target/tmp for one test.
/// `e` as history.jsonl holds it (checksummed), without the newline.
fn line(e: &HistoryEntry) -> String {
    let bytes = cellnas::run::jsonl_line(std::path::Path::new("history.jsonl"), e).unwrap();
    String::from_utf8(bytes).unwrap().trim_end().to_string()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("search-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keys(gs: &[Genotype]) -> Vec<String> {
    gs.iter().map(Genotype::key).collect()
}

/// Edges (both cells, stored order) at which `a` and `b` differ in op or input.
fn edges_changed(a: &Genotype, b: &Genotype) -> usize {
    let flat = |g: &Genotype| g.cells().iter().flat_map(|(_, c)| c.edges().map(|(_, e)| e)).collect::<Vec<_>>();
    flat(a).iter().zip(flat(b)).filter(|(x, y)| **x != *y).count()
}

fn evolution(space: SearchSpace, seed: u64, p: usize, s: usize) -> RegularizedEvolution {
    RegularizedEvolution::new(space, seed, p, s).unwrap()
}

#[test]
fn random_search_is_deterministic_for_a_seed_and_differs_across_seeds() {
    let a = run(&mut RandomSearch::new(SearchSpace::default(), 7), 50);
    let b = run(&mut RandomSearch::new(SearchSpace::default(), 7), 50);
    let c = run(&mut RandomSearch::new(SearchSpace::default(), 8), 50);
    assert_eq!(a, b);
    assert_eq!(a.len(), 50);
    assert!(a.iter().zip(&c).all(|(x, y)| x != y), "seeds 7 and 8 share a proposal");
}

#[test]
fn random_search_never_repeats_and_stops_when_the_space_is_exhausted() {
    // 1 node, 2 ops: a cell is one unordered input pair {0, 1} with an op on each edge, 4
    // architectures; a genotype is two cells, 16 architectures.
    let space = SearchSpace::new(vec![Op::SepConv3x3, Op::MaxPool3x3], 1).unwrap();
    let mut rs = RandomSearch::new(space, 3);
    let all = run(&mut rs, 100);
    assert_eq!(all.len(), 16);
    assert_eq!(keys(&all).into_iter().collect::<HashSet<_>>().len(), 16);
    assert_eq!(rs.propose(), None);

    let many = run(&mut RandomSearch::new(SearchSpace::default(), 3), 500);
    assert_eq!(keys(&many).into_iter().collect::<HashSet<_>>().len(), 500);
}

#[test]
fn proposals_stay_in_the_space() {
    let restricted = SearchSpace::new(vec![Op::SepConv5x5, Op::AvgPool3x3, Op::SkipConnect], 3).unwrap();
    for space in [SearchSpace::default(), restricted] {
        let strategies: Vec<Box<dyn Strategy>> =
            vec![Box::new(RandomSearch::new(space.clone(), 1)), Box::new(evolution(space.clone(), 1, 10, 3))];
        for mut s in strategies {
            let proposals = run(s.as_mut(), 200);
            assert_eq!(proposals.len(), 200);
            for g in &proposals {
                space.contains(g).unwrap_or_else(|e| panic!("{} proposed {}: {e}", s.name(), g.to_darts()));
            }
        }
    }
}

/// Evolution must use the observations: at equal budget it finds far more sep_conv_3x3 edges
/// than random search does.
#[test]
fn evolution_beats_random_search_on_a_synthetic_objective() {
    let budget = 300;
    let best = |s: &mut dyn Strategy| {
        run(s, budget).iter().map(|g| objective(g).accuracy).fold(f64::NEG_INFINITY, f64::max)
    };
    let seeds = [1u64, 2, 3, 4];
    let (mut random, mut evo) = (0.0, 0.0);
    for &seed in &seeds {
        random += best(strategy_from_name("random", SearchSpace::default().into(), seed, budget).unwrap().as_mut());
        evo += best(strategy_from_name("evolution", SearchSpace::default().into(), seed, budget).unwrap().as_mut());
    }
    let (random, evo) = (random / seeds.len() as f64, evo / seeds.len() as f64);
    eprintln!("mean best accuracy over {} seeds at budget {budget}: random {random:.3}, evolution {evo:.3}", seeds.len());
    assert!(evo > random + 0.15, "evolution {evo:.3} does not clearly beat random {random:.3}");
}

#[test]
fn evolution_starts_random_then_mutates_and_ages_out_the_oldest() {
    let (p, s) = (5, 2);
    let mut evo = evolution(SearchSpace::default(), 11, p, s);
    let mut observed = Vec::new();
    for n in 0..40 {
        let a = evo.propose().unwrap();
        let g = a.darts().unwrap().clone();
        if n >= p {
            // A child is one mutation of a current member: exactly one edge differs.
            assert!(
                evo.population().iter().any(|m| edges_changed(m.arch.darts().unwrap(), &g) == 1),
                "proposal {n} is not a one-edge mutation of any population member"
            );
        }
        let obs = objective(&g);
        evo.observe(&a, &obs);
        observed.push((g, obs.accuracy));

        let pop = evo.population();
        assert!(pop.len() <= p);
        assert_eq!(pop.len(), observed.len().min(p));
        // Exactly the most recent P observations, oldest first.
        let recent = &observed[observed.len() - pop.len()..];
        for (k, (m, (g, acc))) in pop.iter().zip(recent).enumerate() {
            assert_eq!(m.born, observed.len() - pop.len() + k);
            assert_eq!((m.arch.darts().unwrap(), m.accuracy), (g, *acc));
        }
    }
}

#[test]
fn evolution_parent_is_the_best_of_the_sample() {
    // With S = 64 draws from 4 members the best is in the sample (miss chance (3/4)^64 ~ 1e-8),
    // so every child must be one mutation of the best member, which gets a far higher score.
    let mut evo = evolution(SearchSpace::default(), 5, 4, 64);
    let initial: Vec<Genotype> = (0..4).map(|_| evo.propose().unwrap().darts().unwrap().clone()).collect();
    for (k, g) in initial.iter().enumerate() {
        let accuracy = if k == 2 { 0.9 } else { 0.1 };
        evo.observe(&g.clone().into(), &Observation { accuracy, loss: 1.0 });
    }
    let child = evo.propose().unwrap().darts().unwrap().clone();
    assert_eq!(edges_changed(&initial[2], &child), 1);
    for k in [0, 1, 3] {
        assert_ne!(edges_changed(&initial[k], &child), 1, "child looks like a mutation of member {k} too");
    }
}

#[test]
fn evolution_config_scales_with_the_budget() {
    assert_eq!(EvolutionConfig::for_budget(100_000), (100, 25));
    assert_eq!(EvolutionConfig::for_budget(400), (100, 25));
    assert_eq!(EvolutionConfig::for_budget(300), (75, 18));
    assert_eq!(EvolutionConfig::for_budget(40), (10, 2));
    assert_eq!(EvolutionConfig::for_budget(0), (2, 2));
    assert!(RegularizedEvolution::new(SearchSpace::default(), 0, 0, 1).is_err());
    assert!(RegularizedEvolution::new(SearchSpace::default(), 0, 3, 0).is_err());
}

/// A search killed after `cut` evaluations and resumed from its history file proposes exactly
/// what the uninterrupted search proposes.
#[test]
fn replay_resumes_exactly_where_the_search_stopped() {
    let dir = tmp_dir("replay");
    let total = 80;
    type Build = fn() -> Box<dyn Strategy>;
    let builders: [(&str, Build); 2] = [
        ("random", || Box::new(RandomSearch::new(SearchSpace::default(), 42))),
        ("evolution", || Box::new(evolution(SearchSpace::default(), 42, 10, 3))),
    ];
    for (name, build) in builders {
        let full = run(build().as_mut(), total);
        // Cuts inside the random initial population, at its end, and well into evolution.
        for cut in [0, 4, 10, 37] {
            let path = dir.join(format!("{name}-{cut}.jsonl"));
            let mut history = History::open(&path).unwrap();
            for (id, g) in full[..cut].iter().enumerate() {
                history.append(&entry(id, g)).unwrap();
            }
            drop(history);

            let history = History::open(&path).unwrap();
            assert_eq!(history.entries().len(), cut);
            let mut resumed = build();
            replay(resumed.as_mut(), history.entries()).unwrap();
            let rest = run(resumed.as_mut(), total - cut);
            assert_eq!(keys(&rest), keys(&full[cut..]), "{name} resumed after {cut} diverges");
            assert_eq!(rest, full[cut..].to_vec());
        }
    }
}

#[test]
fn replay_of_a_mismatching_history_is_a_clear_error() {
    let full = run(&mut evolution(SearchSpace::default(), 1, 10, 3), 20);
    let mut entries: Vec<HistoryEntry> = full.iter().enumerate().map(|(id, g)| entry(id, g)).collect();

    // Another seed disagrees at once.
    let e = replay(&mut evolution(SearchSpace::default(), 2, 10, 3), &entries).unwrap_err().to_string();
    assert!(e.contains("history entry 0 does not match this strategy/seed/space"), "{e}");
    assert!(e.contains("evolution strategy proposes"), "{e}");

    // A tampered entry is named.
    entries[13].key = full[12].key();
    let e = replay(&mut evolution(SearchSpace::default(), 1, 10, 3), &entries).unwrap_err().to_string();
    assert!(e.contains("history entry 13 does not match"), "{e}");

    // A history longer than the strategy can propose (16-architecture space).
    let tiny = SearchSpace::new(vec![Op::SepConv3x3, Op::MaxPool3x3], 1).unwrap();
    let all = run(&mut RandomSearch::new(tiny.clone(), 3), 100);
    let mut entries: Vec<HistoryEntry> = all.iter().enumerate().map(|(id, g)| entry(id, g)).collect();
    entries.push(entry(16, &all[0]));
    let e = replay(&mut RandomSearch::new(tiny, 3), &entries).unwrap_err().to_string();
    assert!(e.contains("history entry 16: the random strategy has nothing more to propose"), "{e}");
}

#[test]
fn history_round_trips_exactly() {
    let path = tmp_dir("round-trip").join("history.jsonl");
    let gs = run(&mut RandomSearch::new(SearchSpace::default(), 9), 5);
    let mut written: Vec<HistoryEntry> = gs.iter().enumerate().map(|(id, g)| entry(id, g)).collect();
    // Values JSON cannot hold natively, and floats whose shortest form needs 17 digits.
    written[1].loss = f64::NAN;
    written[2].loss = f64::INFINITY;
    written[3].eval_ms = f64::NEG_INFINITY;
    written[4].accuracy = 0.1 + 0.2;
    written[4].loss = 1.0 / 3.0;

    let mut history = History::open(&path).unwrap();
    assert!(history.entries().is_empty());
    for e in &written {
        history.append(e).unwrap();
    }
    assert_eq!(history.entries().len(), 5);
    drop(history);

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.ends_with('\n'));
    let history = History::open(&path).unwrap();
    assert!(history.warnings().is_empty(), "{:?}", history.warnings());
    let read = history.entries();
    assert!(read[1].loss.is_nan());
    for (r, w) in read.iter().zip(&written) {
        assert_eq!(r.accuracy.to_bits(), w.accuracy.to_bits());
        assert_eq!(r.loss.to_bits(), w.loss.to_bits());
        assert_eq!(r.eval_ms.to_bits(), w.eval_ms.to_bits());
        assert_eq!((&r.genotype, &r.key, r.id, r.params, r.flops, &r.time), (&w.genotype, &w.key, w.id, w.params, w.flops, &w.time));
        assert_eq!(Genotype::from_darts(&r.genotype).unwrap().key(), r.key);
    }
}

#[test]
fn history_drops_a_truncated_last_line_and_carries_on() {
    let path = tmp_dir("truncated").join("history.jsonl");
    let gs = run(&mut RandomSearch::new(SearchSpace::default(), 4), 3);
    let lines: Vec<String> = gs.iter().enumerate().map(|(id, g)| line(&entry(id, g))).collect();
    // Killed in the middle of writing the third line.
    let partial = &lines[2][..lines[2].len() / 2];
    std::fs::write(&path, format!("{}\n{}\n{partial}", lines[0], lines[1])).unwrap();

    let mut history = History::open(&path).unwrap();
    assert_eq!(history.entries().len(), 2);
    let warning = history.warnings().join("\n");
    assert!(warning.contains("line 3") && warning.contains("incomplete last line"), "{warning}");

    // The partial line is gone from the file, so the redone evaluation lands on a clean line.
    history.append(&entry(2, &gs[2])).unwrap();
    drop(history);
    let history = History::open(&path).unwrap();
    assert!(history.warnings().is_empty(), "{:?}", history.warnings());
    assert_eq!(history.entries().len(), 3);
    assert_eq!(history.entries()[2].key, gs[2].key());

    // A complete last entry that only lacks its newline is kept, and the next append still works.
    let path = path.with_file_name("no-newline.jsonl");
    std::fs::write(&path, format!("{}\n{}", lines[0], lines[1])).unwrap();
    let mut history = History::open(&path).unwrap();
    assert_eq!(history.entries().len(), 2);
    history.append(&entry(2, &gs[2])).unwrap();
    drop(history);
    assert_eq!(History::open(&path).unwrap().entries().len(), 3);
}

#[test]
fn history_with_a_corrupt_line_is_an_error_naming_the_line() {
    let dir = tmp_dir("corrupt");
    let gs = run(&mut RandomSearch::new(SearchSpace::default(), 4), 3);
    let lines: Vec<String> = gs.iter().enumerate().map(|(id, g)| line(&entry(id, g))).collect();

    let path = dir.join("middle.jsonl");
    std::fs::write(&path, format!("{}\n{{\"id\": 1, \"genotype\n{}\n", lines[0], lines[2])).unwrap();
    let e = History::open(&path).err().expect("a corrupt middle line is an error").to_string();
    assert!(e.contains("middle.jsonl, line 2:"), "{e}");

    // A complete (newline-terminated) bad last line is corruption too, not a kill mid-write.
    let path = dir.join("last.jsonl");
    std::fs::write(&path, format!("{}\n{}\n{{\"id\": \"two\"}}\n", lines[0], lines[1])).unwrap();
    let e = History::open(&path).err().expect("a corrupt complete last line is an error").to_string();
    assert!(e.contains("last.jsonl, line 3:"), "{e}");
    // Nothing was cut off the file.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);

    // A hand-edited number still parses, but no longer matches the line's checksum.
    let path = dir.join("history.jsonl");
    let edited = lines[1].replace("\"params\":", "\"params\":1");
    std::fs::write(&path, format!("{}\n{edited}\n{}\n", lines[0], lines[2])).unwrap();
    let e = History::open(&path).err().expect("an edited line is an error").to_string();
    assert!(e.contains("history.jsonl, line 2: checksum mismatch"), "{e}");
}

#[test]
fn strategies_by_name() {
    for name in ["random", "evolution"] {
        let s = strategy_from_name(name, SearchSpace::default().into(), 0, 100).unwrap();
        assert_eq!(s.name(), name);
    }
    let e = strategy_from_name("bayesian", SearchSpace::default().into(), 0, 100).err().unwrap().to_string();
    assert!(e.contains("unknown search strategy 'bayesian'") && e.contains("random, evolution"), "{e}");
}

#[test]
fn top_k_orders_by_accuracy_then_params_then_id() {
    let g = run(&mut RandomSearch::new(SearchSpace::default(), 0), 1).remove(0);
    let make = |id, accuracy, params| HistoryEntry { accuracy, params, ..entry(id, &g) };
    let entries =
        vec![make(0, 0.5, 10), make(1, 0.9, 30), make(2, f64::NAN, 1), make(3, 0.9, 20), make(4, 0.9, 20), make(5, 0.7, 5)];
    let ids: Vec<usize> = top_k(&entries, 4).iter().map(|e| e.id).collect();
    assert_eq!(ids, [3, 4, 1, 5]);
    assert_eq!(top_k(&entries, 100).last().unwrap().id, 2);
    assert!(top_k(&entries, 0).is_empty());
}

#[test]
fn rfc3339_formats_utc() {
    let at = |secs: u64, millis: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis));
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
    assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    let now = rfc3339(SystemTime::now());
    assert_eq!((now.len(), &now[10..11], &now[23..]), (24, "T", "Z"));
}
