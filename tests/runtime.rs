//! The execution model: cached pipelines, pooled buffers, one submit per step, and errors
//! (bad shaders, bad dispatches, missing adapters) returned as values, never panics.

use cellnas::gpu::{test_gpu, AdapterOptions, Gpu, Kernel};
use cellnas::ops::elementwise;
use cellnas::{tensor, Error, Tensor};

#[test]
fn pipelines_are_compiled_once() {
    // A private device: other tests in this binary compile pipelines on the shared one.
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let x = Tensor::from_slice(&gpu, &[5], &[1.0, -2.0, 3.0, -4.0, 5.0]).unwrap();
    let y = Tensor::empty(&gpu, &[5]);
    let mut step = gpu.step();
    elementwise::relu(&mut step, &x, &y).unwrap();
    step.submit().unwrap();
    let before = gpu.pipelines_compiled();
    for _ in 0..3 {
        let mut step = gpu.step();
        elementwise::relu(&mut step, &x, &y).unwrap();
        let aliased = elementwise::relu(&mut step, &y, &y.clone()).unwrap_err();
        assert!(aliased.to_string().contains("same buffer"), "{aliased}");
        step.submit().unwrap();
    }
    assert_eq!(gpu.pipelines_compiled(), before);
    assert_eq!(y.to_vec(&gpu).unwrap(), vec![1.0, 0.0, 3.0, 0.0, 5.0]);
}

#[test]
fn buffers_are_reused_across_steps() {
    // A private device so other tests' allocations do not interfere with the count.
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let run = || {
        let a = Tensor::from_slice(&gpu, &[3, 7], &[0.5; 21]).unwrap();
        let b = Tensor::empty(&gpu, &[3, 7]);
        let mut step = gpu.step();
        elementwise::scale(&mut step, &a, 2.0, &b).unwrap();
        let h = step.read(&b.buf, 0, 84);
        step.submit().unwrap().f32s(h)
    };
    assert_eq!(run(), vec![1.0; 21]);
    let created = gpu.buffers_created();
    for _ in 0..5 {
        assert_eq!(run(), vec![1.0; 21]);
    }
    assert_eq!(gpu.buffers_created(), created, "steady-state steps must not create buffers");
}

#[test]
fn one_step_many_dispatches_reads_back_only_what_is_asked() {
    let gpu = test_gpu();
    let n = 100_003; // not a multiple of any workgroup size
    let x = Tensor::from_slice(&gpu, &[n], &vec![1.0; n]).unwrap();
    let acc = Tensor::empty(&gpu, &[n]);
    let mut step = gpu.step();
    elementwise::fill(&mut step, &acc, 0.0).unwrap();
    for _ in 0..10 {
        elementwise::accumulate(&mut step, &x, &acc).unwrap();
    }
    assert_eq!(step.dispatches(), 11);
    let h = step.read(&acc.buf, 4 * (n as u64 - 2), 8);
    let out = step.submit().unwrap();
    assert_eq!(out.f32s(h), vec![10.0, 10.0]);
}

#[test]
fn large_grids_fold_into_two_dimensions() {
    let gpu = test_gpu();
    let wg = 1;
    let n = gpu.limits.max_compute_workgroups_per_dimension + 7;
    let g = gpu.grid(n, wg);
    assert!(g[0] <= gpu.limits.max_compute_workgroups_per_dimension && g[1] >= 2);
    assert!((g[0] as u64 * g[1] as u64) >= n as u64);
}

const BROKEN: Kernel = Kernel { shader: "broken.wgsl", source: "fn oops( {", entry: "main", bindings: &[] };

#[test]
fn shader_errors_are_errors_not_panics() {
    let gpu = test_gpu();
    let mut step = gpu.step();
    let err = step.dispatch(&BROKEN, &[], &0u32, &[], [1, 1, 1]).unwrap_err();
    match err {
        Error::Gpu { context, .. } => assert!(context.contains("broken.wgsl"), "{context}"),
        other => panic!("expected a GPU error, got {other}"),
    }
}

#[test]
fn wrong_buffer_count_is_an_error() {
    let gpu = test_gpu();
    let x = Tensor::empty(&gpu, &[4]);
    let k = cellnas::kernel!("elementwise.wgsl", "relu_forward", [1: Read, 2: ReadWrite]);
    let err = gpu.step().dispatch(&k, &[], &[4u32, 0u32], &[&x.buf], [1, 1, 1]).unwrap_err();
    assert!(err.to_string().contains("takes 2 buffers"), "{err}");
}

#[test]
fn shape_mismatch_is_an_error() {
    let gpu = test_gpu();
    let a = Tensor::empty(&gpu, &[4]);
    let b = Tensor::empty(&gpu, &[5]);
    let err = elementwise::add(&mut gpu.step(), &a, &a, &b).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "add", .. }), "{err}");
}

#[test]
fn missing_adapter_says_how_to_get_one() {
    let err = Gpu::new(&AdapterOptions { backend: None, adapter: Some("no-such-gpu-xyz".into()), ..Default::default() }).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("no-such-gpu-xyz") && msg.contains("mesa-vulkan-drivers"), "{msg}");
    let err = Gpu::new(&AdapterOptions { backend: Some("cuda".into()), adapter: None, ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("unknown backend 'cuda'"), "{err}");
}

#[test]
fn zero_byte_reads_are_empty() {
    let gpu = test_gpu();
    let t = Tensor::empty(&gpu, &[3]);
    let mut step = gpu.step();
    let h = step.read(&t.buf, 0, 0);
    assert!(step.submit().unwrap().bytes(h).is_empty());
}

/// A read is taken where it is recorded: a buffer freed after `read` and handed out again by
/// the pool later in the same step must not change the value read (this once corrupted the
/// training loss when gradient clipping reused the loss buffer).
#[test]
fn reads_are_ordered_with_later_reuse_of_the_buffer() {
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let mut step = gpu.step();
    let a = Tensor::empty(&gpu, &[1]);
    elementwise::fill(&mut step, &a, 7.0).unwrap();
    let h = step.read(&a.buf, 0, 4);
    drop(a);
    let b = Tensor::empty(&gpu, &[1]); // the pool hands back a's buffer
    elementwise::fill(&mut step, &b, -1.0).unwrap();
    let h2 = step.read(&b.buf, 0, 4);
    let out = step.submit().unwrap();
    assert_eq!(out.f32s(h), vec![7.0]);
    assert_eq!(out.f32s(h2), vec![-1.0]);
}

/// A timed step with several compute passes (copies split them) times all of them.
#[test]
fn timed_step_with_three_passes() {
    let gpu = test_gpu();
    let (a, b) = (Tensor::empty(&gpu, &[64]), Tensor::empty(&gpu, &[64]));
    let mut step = gpu.step().timed();
    for _ in 0..3 {
        elementwise::fill(&mut step, &a, 1.0).unwrap();
        step.copy(&a.buf, 0, &b.buf, 0, 256);
    }
    let out = step.submit().unwrap();
    assert!(!gpu.timestamps || out.gpu_ms.is_some());
}

/// A write is taken where it is recorded: a buffer written, used, freed, handed out again by
/// the pool and written with other data in the same step keeps its first value for its first
/// user. A queue write (`Tensor::write`, `from_slice`, `upload_u32`) would land before the
/// whole step, so both users saw the second data; they are refused while a step records.
#[test]
fn writes_are_ordered_with_later_reuse_of_the_buffer() {
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let mut step = gpu.step();
    let a = Tensor::from_slice_in(&mut step, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let raw = a.buf.raw().clone();
    let y1 = Tensor::empty(&gpu, &[4]);
    elementwise::scale(&mut step, &a, 2.0, &y1).unwrap();
    let h1 = step.read(&y1.buf, 0, 16);
    drop(a);
    let b = Tensor::empty(&gpu, &[4]);
    assert!(b.buf.raw() == &raw, "the pool hands a's buffer back within the step");
    for refused in [b.write(&gpu, &[9.0; 4]), Tensor::from_slice(&gpu, &[4], &[9.0; 4]).map(drop), tensor::upload_u32(&gpu, &[9; 4]).map(drop)] {
        let e = refused.unwrap_err();
        assert!(e.to_string().contains("Step::upload"), "{e}");
    }
    // Another thread records no step: its queue writes are fine meanwhile.
    std::thread::scope(|s| s.spawn(|| Tensor::from_slice(&gpu, &[2], &[1.0, 2.0]).unwrap()).join().unwrap());
    b.write_in(&mut step, &[10.0, 20.0, 30.0, 40.0]).unwrap();
    let y2 = Tensor::empty(&gpu, &[4]);
    elementwise::scale(&mut step, &b, 2.0, &y2).unwrap();
    let h2 = step.read(&y2.buf, 0, 16);
    let out = step.submit().unwrap();
    assert_eq!(out.f32s(h1), vec![2.0, 4.0, 6.0, 8.0]);
    assert_eq!(out.f32s(h2), vec![20.0, 40.0, 60.0, 80.0]);
    // Between steps a queue write is ordered after everything submitted.
    b.write(&gpu, &[1.0; 4]).unwrap();
    assert_eq!(b.to_vec(&gpu).unwrap(), vec![1.0; 4]);
    // A step dropped unsubmitted ends its recording too.
    drop(gpu.step());
    b.write(&gpu, &[2.0; 4]).unwrap();
}

/// Buffers freed on a thread that has exited go back to everyone: a worker thread's buffers
/// (freed during its step, after it, or in a step it dropped) serve the main thread's
/// allocations of the same sizes without creating any.
#[test]
fn buffers_freed_by_an_exited_thread_are_reused() {
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let shapes: [&[usize]; 4] = [&[5], &[64], &[3, 1000], &[7]];
    std::thread::scope(|s| {
        s.spawn(|| {
            let ts: Vec<Tensor> = shapes[..3].iter().map(|sh| Tensor::empty(&gpu, sh)).collect();
            let mut step = gpu.step();
            for t in &ts {
                elementwise::fill(&mut step, t, 1.0).unwrap();
            }
            drop(ts); // held for this step until its submit
            step.submit().unwrap();
            let mut abandoned = gpu.step();
            let t = Tensor::empty(&gpu, shapes[3]);
            elementwise::fill(&mut abandoned, &t, 1.0).unwrap();
            drop(t);
        })
        .join()
        .unwrap()
    });
    assert_eq!(gpu.pool_free_buffers(), 4);
    let before = gpu.counters();
    let again: Vec<Tensor> = shapes.iter().map(|sh| Tensor::empty(&gpu, sh)).collect();
    assert_eq!((gpu.counters().buffers_created, gpu.pool_bytes()), (before.buffers_created, before.buffer_bytes), "the exited thread's buffers were stranded");
    assert_eq!(gpu.pool_free_buffers(), 0);
    drop(again);
}

/// What per-thread free lists used to protect: a buffer freed while its thread records a step
/// may still be used by that step, so no other thread gets it until the step is submitted.
#[test]
fn a_buffer_freed_during_a_recording_waits_for_its_submit() {
    let gpu = Gpu::new(&AdapterOptions::default()).unwrap();
    let (freed_tx, freed_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let gpu = &gpu;
        let worker = s.spawn(move || {
            let t = Tensor::empty(gpu, &[16]);
            let mut step = gpu.step();
            elementwise::fill(&mut step, &t, 3.0).unwrap();
            let raw = t.buf.raw().clone();
            drop(t);
            freed_tx.send(raw).unwrap();
            go_rx.recv().unwrap();
            step.submit().unwrap();
        });
        let raw = freed_rx.recv().unwrap();
        let other = Tensor::empty(gpu, &[16]);
        assert!(other.buf.raw() != &raw, "another thread got a buffer the worker's unsubmitted step uses");
        drop(other);
        go_tx.send(()).unwrap();
        worker.join().unwrap();
    });
    let created = gpu.buffers_created();
    let both = (Tensor::empty(&gpu, &[16]), Tensor::empty(&gpu, &[16]));
    assert_eq!(gpu.buffers_created(), created, "after the submit the held buffer is free for all");
    drop(both);
}
