//! The execution model: cached pipelines, pooled buffers, one submit per step, and errors
//! (bad shaders, bad dispatches, missing adapters) returned as values, never panics.

use cellnas::gpu::{test_gpu, AdapterOptions, Gpu, Kernel};
use cellnas::ops::elementwise;
use cellnas::{Error, Tensor};

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
