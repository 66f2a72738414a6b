//! Criterion benches for every registered kernel family and pass, at supernet shapes.
//! Compute-bound kernels report throughput as elements/s where one element is one FLOP
//! (so "Gelem/s" reads as GFLOP/s); memory-bound ones report bytes/s.
//! Filter like any criterion bench: `cargo bench --bench kernels -- conv2d`.
//! Times are GPU timestamps where the adapter has them, else host time around submit + wait.

use cellnas::bench::{cases, Prepared};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

fn kernels(c: &mut Criterion) {
    let gpu = cellnas::gpu::test_gpu();
    for case in cases("") {
        let name = case.name();
        let prepared = Prepared::new(&gpu, case).expect("prepare bench case");
        for pass in prepared.passes() {
            let mut group = c.benchmark_group(format!("{name}/{}", pass.as_str()));
            group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
            let (flops, bytes) = (prepared.case.flops(pass), prepared.case.bytes(pass));
            // Arithmetic intensity decides which throughput is meaningful.
            if flops > 4.0 * bytes {
                group.throughput(Throughput::Elements(flops as u64));
            } else {
                group.throughput(Throughput::Bytes(bytes as u64));
            }
            group.bench_function(BenchmarkId::from_parameter(prepared.case.shape()), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let step = prepared.record(&gpu, pass, gpu.timestamps).expect("record");
                        let t0 = Instant::now();
                        let out = step.submit().expect("submit");
                        gpu.wait().expect("wait");
                        total += match out.gpu_ms {
                            Some(ms) if ms > 0.0 => Duration::from_secs_f64(ms / 1e3),
                            _ => t0.elapsed(),
                        };
                    }
                    total
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
