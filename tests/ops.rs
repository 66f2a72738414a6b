//! Every registered op, forward and backward, against its CPU reference and finite differences
//! (see src/ops/check.rs). A new op's test is one line here.

use cellnas::ops::check::check_family;

#[test]
fn relu() {
    check_family("relu");
}
#[test]
fn crop() {
    check_family("crop");
}
#[test]
fn zero() {
    check_family("zero");
}
#[test]
fn add_and_accumulate() {
    check_family("add");
}
#[test]
fn conv2d() {
    check_family("conv2d");
}
#[test]
fn conv2d_fused() {
    check_family("conv2d_fused");
}
#[test]
fn linear() {
    check_family("linear");
}
#[test]
fn softmax_cross_entropy() {
    check_family("softmax_cross_entropy");
}
#[test]
fn sgd() {
    check_family("sgd");
}
#[test]
fn sgd_multi() {
    check_family("sgd_multi");
}
#[test]
fn adam() {
    check_family("adam");
}
#[test]
fn grad_norm() {
    check_family("grad_norm");
}
#[test]
fn max_pool() {
    check_family("max_pool");
}
#[test]
fn avg_pool() {
    check_family("avg_pool");
}
#[test]
fn global_avg_pool() {
    check_family("global_avg_pool");
}
#[test]
fn concat() {
    check_family("concat");
}
#[test]
fn batch_norm() {
    check_family("batch_norm");
}
#[test]
fn batch_norm_eval() {
    check_family("batch_norm_eval");
}

/// The elementwise test shapes cover both paths; the supernet's shapes take the vec4 one.
#[test]
fn elementwise_path_choice() {
    use cellnas::ops::elementwise::uses_vec4;
    assert!(!uses_vec4(3 * 49) && !uses_vec4(10) && !uses_vec4(1));
    assert!(uses_vec4(2 * 4 * 16) && uses_vec4(36) && uses_vec4(64 * 64 * 49));
}

/// Which concat parts take the vec4 path (block, batch stride, offset in values).
#[test]
fn concat_path_choice() {
    use cellnas::ops::concat::part_uses_vec4;
    // Supernet cell output: four 16-channel 28x28 parts, and 7x7 parts of 64 channels.
    assert!(part_uses_vec4(16 * 784, 64 * 784, 16 * 784) && part_uses_vec4(64 * 49, 256 * 49, 192 * 49));
    // 3-channel 7x7 parts are not whole vec4s; 2x3 planes at an odd channel offset neither.
    assert!(!part_uses_vec4(3 * 49, 9 * 49, 0) && !part_uses_vec4(2 * 6, 5 * 6, 6));
}

/// Crop sides of a multiple of 4 values take the flat path (the supernet's all do).
#[test]
fn crop_path_choice() {
    use cellnas::ops::crop::uses_flat;
    assert!(uses_flat(64 * 16 * 27 * 27) && uses_flat(64 * 64 * 7 * 7) && uses_flat(36));
    assert!(!uses_flat(10) && !uses_flat(147) && !uses_flat(935));
}

#[test]
fn every_family_has_a_test_line() {
    let this = include_str!("ops.rs");
    for f in cellnas::ops::FAMILIES {
        assert!(this.contains(&format!("check_family(\"{}\")", f.name)), "tests/ops.rs does not check family '{}'", f.name);
    }
}

/// The checker itself must catch a kernel that leaves an element unwritten (poisoning) or
/// computes a wrong gradient.
mod checker_catches {
    use cellnas::error::Result;
    use cellnas::gpu::Step;
    use cellnas::ops::{check::check_case, elementwise, OpCase, Pass};
    use cellnas::Tensor;

    struct Broken {
        skip_last: bool,
    }
    impl OpCase for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn shape(&self) -> String {
            "[1,3,5,5]".into()
        }
        fn inputs(&self) -> Vec<Vec<usize>> {
            vec![vec![1, 3, 5, 5]]
        }
        fn output(&self) -> Vec<usize> {
            vec![1, 3, 5, 5]
        }
        fn forward_ref(&self, x: &[Vec<f64>]) -> Vec<f64> {
            elementwise::reference::relu(&x[0])
        }
        fn backward_ref(&self, x: &[Vec<f64>], dy: &[f64]) -> Vec<Vec<f64>> {
            vec![elementwise::reference::relu_backward(&x[0], dy)]
        }
        fn forward(&self, step: &mut Step, x: &[Tensor], y: &Tensor) -> Result<Vec<Tensor>> {
            let n = if self.skip_last { y.numel() - 1 } else { y.numel() };
            let part = |t: &Tensor| Tensor { buf: t.buf.clone(), shape: vec![n] };
            elementwise::relu(step, &part(&x[0]), &part(y))?;
            Ok(vec![])
        }
        fn backward(&self, step: &mut Step, _x: &[Tensor], _y: &Tensor, _s: &[Tensor], dy: &Tensor, _w: usize, dx: &Tensor) -> Result<()> {
            // Wrong on purpose: passes dy through without the ReLU mask.
            elementwise::scale(step, dy, 1.0, dx)
        }
        fn flops(&self, _p: Pass) -> f64 {
            0.0
        }
        fn bytes(&self, _p: Pass) -> f64 {
            0.0
        }
    }

    #[test]
    fn unwritten_output_element() {
        let gpu = cellnas::gpu::test_gpu();
        let err = check_case(&gpu, &Broken { skip_last: true }).unwrap_err();
        assert!(err.contains("forward") && err.contains("element 74"), "{err}");
    }

    #[test]
    fn wrong_gradient() {
        let gpu = cellnas::gpu::test_gpu();
        let err = check_case(&gpu, &Broken { skip_last: false }).unwrap_err();
        assert!(err.contains("gradient of input 0"), "{err}");
    }
}
#[test]
fn mix() {
    check_family("mix");
}
#[test]
fn softmax_rows() {
    check_family("softmax_rows");
}
