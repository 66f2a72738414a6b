//! The closing table of a search.

use cellnas::search::HistoryEntry;

pub fn print_top(top: &[HistoryEntry], k: usize) {
    println!("{:<5} {:<6} {:>9} {:>9} {:>10} {:>10}", "rank", "id", "val acc", "val loss", "params", "MFLOPs");
    for (i, e) in top.iter().take(k).enumerate() {
        println!("{:<5} {:<6} {:>8.2}% {:>9.4} {:>10} {:>10.1}", i + 1, e.id, 100.0 * e.accuracy, e.loss, e.params, e.flops as f64 / 1e6);
    }
    for (i, e) in top.iter().take(k).enumerate() {
        println!("#{} {}", i + 1, e.genotype);
    }
}
