//! The closing table of a search.

use cellnas::search::HistoryEntry;

#[allow(dead_code)] // kept for callers outside the search job
pub fn print_top(top: &[HistoryEntry], k: usize) {
    println!("{:<5} {:<6} {:>9} {:>9} {:>10} {:>10}", "rank", "id", "val acc", "val loss", "params", "MFLOPs");
    for (i, e) in top.iter().take(k).enumerate() {
        println!("{:<5} {:<6} {:>8.2}% {:>9.4} {:>10} {:>10.1}", i + 1, e.id, 100.0 * e.accuracy, e.loss, e.params, e.flops as f64 / 1e6);
    }
    for (i, e) in top.iter().take(k).enumerate() {
        println!("#{} {}", i + 1, e.genotype);
    }
}

/// `print_top` with a column marking the Pareto members: P (accuracy vs params), F (vs FLOPs),
/// L (vs latency), and the fronts' sizes below.
pub fn print_top_pareto(top: &[HistoryEntry], k: usize, pareto: &cellnas::search::Pareto) {
    println!("{:<5} {:<6} {:>9} {:>9} {:>10} {:>10} {:>10} {:<6}", "rank", "id", "val acc", "val loss", "params", "MFLOPs", "ms", "pareto");
    for (i, e) in top.iter().take(k).enumerate() {
        let ms = e.latency_ms.map_or("-".to_string(), |m| format!("{m:.3}"));
        println!(
            "{:<5} {:<6} {:>8.2}% {:>9.4} {:>10} {:>10.1} {:>10} {:<6}",
            i + 1,
            e.id,
            100.0 * e.accuracy,
            e.loss,
            e.params,
            e.flops as f64 / 1e6,
            ms,
            pareto.marks(e.id)
        );
    }
    for (i, e) in top.iter().take(k).enumerate() {
        println!("#{} {}", i + 1, e.genotype);
    }
    println!(
        "Pareto fronts (pareto.json): {} architectures on accuracy vs params (P), {} vs FLOPs (F){}",
        pareto.params.len(),
        pareto.flops.len(),
        if pareto.latency_ms.is_empty() { String::new() } else { format!(", {} vs latency (L)", pareto.latency_ms.len()) }
    );
}
