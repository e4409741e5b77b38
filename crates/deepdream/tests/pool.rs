//! Average pooling through the depthwise kernel against burn's `avg_pool2d`: outputs and
//! input gradients, padding counted or not, strides 1 and 2, asymmetric padding.

mod common;

use burn::tensor::module::avg_pool2d as burn_avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Distribution, Tensor};
use deepdream::pool::avg_pool2d;

#[test]
fn matches_burn_forward_and_backward() {
    let device = Device::flex().autodiff();
    // (channels, height, width, kernel, stride, padding (top, bottom, left, right), count pad)
    let cases = [
        (8, 17, 17, 3, 1, [1, 1, 1, 1], false), // Inception v3's branch pool
        (8, 17, 17, 3, 1, [1, 1, 1, 1], true),
        (5, 9, 12, 3, 2, [0, 1, 0, 1], false),
        (3, 7, 6, 5, 2, [2, 2, 1, 2], true),
        (4, 1, 1, 3, 1, [1, 1, 1, 1], false),
        (6, 8, 8, 2, 2, [0, 0, 0, 0], false),
        (1, 10, 10, 3, 1, [1, 1, 1, 1], false),
    ];
    for (channels, height, width, kernel, stride, [t, b, l, r], count_include_pad) in cases {
        let options = AvgPoolOptions {
            kernel_size: [kernel; 2],
            stride: [stride; 2],
            padding: [(t, b), (l, r)],
            count_include_pad,
            ceil_mode: false,
        };
        let x = Tensor::<4>::random(
            [2, channels, height, width],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let pool = |fast: bool, x: Tensor<4>| {
            if fast {
                avg_pool2d(x, options.clone())
            } else {
                burn_avg_pool2d(x, options.clone())
            }
        };
        let dims = pool(false, x.clone()).dims();
        let probe = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
        let (fast_y, fast_grad) = common::output_and_input_grad(&x, &probe, |x| pool(true, x));
        let (ref_y, ref_grad) = common::output_and_input_grad(&x, &probe, |x| pool(false, x));
        let error = |a: &[f32], b: &[f32]| common::max_error_relative_to_largest(a, b);
        let case = (
            channels,
            height,
            width,
            kernel,
            stride,
            [t, b, l, r],
            count_include_pad,
        );
        assert!(error(&fast_y, &ref_y) < 1e-5, "{case:?}: output");
        assert!(error(&fast_grad, &ref_grad) < 1e-5, "{case:?}: gradient");
    }
}
