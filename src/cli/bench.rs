//! `cellnas bench --net`: the whole-network benchmark's command line and its table.

use crate::BenchArgs;
use anyhow::Result;
use cellnas::bench::net::{reference_genotype, NetBench};
use cellnas::gpu::Gpu;
use std::sync::Arc;

pub fn bench_net(gpu: &Arc<Gpu>, a: &BenchArgs) -> Result<()> {
    let genotype = match &a.spec {
        Some(path) => super::read_spec(path)?.darts("bench --net")?.clone(),
        None => reference_genotype(),
    };
    let bench = NetBench {
        genotype,
        channels: a.channels,
        layers: a.layers,
        batch: a.batch_size,
        steps: a.steps,
        warmup: a.warmup.unwrap_or(2),
        reps: a.reps.unwrap_or(3),
        supernet: a.supernet,
        image: [1, 28, 28],
        classes: 10,
    };
    if !a.json {
        eprintln!("adapter: {} ({}); {} repeats of {} steps after {} warm-up steps", gpu.info.name, gpu.info.backend, bench.reps, bench.steps, bench.warmup);
    }
    let r = bench.run(gpu)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let kind = if r.supernet { "supernet path" } else { "stand-alone" };
    println!("network: {kind}, {} channels, {} cells, batch {}, {} parameters, {:.1} MFLOPs per image", r.channels, r.layers, r.batch, r.params, r.mflops_per_image);
    println!("{:<6} {:>10} {:>9} {:>10} {:>9} {:>11} {:>9} {:>12}", "phase", "images/s", "step ms", "device ms", "host ms", "dispatches", "submits", "new buffers");
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (name, p) in [("train", &r.train), ("eval", &r.eval)] {
        println!(
            "{:<6} {:>10.1} {:>9.1} {:>10} {:>9} {:>11.0} {:>9.2} {:>12.1}",
            name, p.images_per_s, p.step_ms, opt(p.device_ms), opt(p.host_ms), p.dispatches_per_step, p.submits_per_step, p.buffers_created_per_step
        );
    }
    println!("host time to record and submit a training step: {} ms (overlaps the device's work on earlier steps)", opt(r.train.record_ms));
    println!("per repeat images/s: train {:?}, eval {:?}", r.train.runs.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(), r.eval.runs.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>());
    println!("memory: peak host RSS {} MiB, RSS growth over the training repeats {} MiB, device (pooled buffers) {:.1} MiB", opt(r.peak_rss_mib), opt(r.rss_growth_mib), r.device_mib);
    Ok(())
}
