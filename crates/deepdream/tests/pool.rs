//! Average pooling through the depthwise kernel against burn's `avg_pool2d` (padding counted
//! or not), and the max-pool kernel against burn's `max_pool2d`: outputs and input gradients,
//! strides 1 and 2, asymmetric padding, ceil mode, 1-pixel images, ties and NaN.

mod common;

use burn::tensor::module::{avg_pool2d as burn_avg_pool2d, max_pool2d as burn_max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use deepdream::backend::pool::{avg_pool2d, max_pool2d};

/// Outputs and input gradients of `fast` and of burn's `reference` on a random input of
/// `shape`, against the same random probe: `[fast y, fast gradient, burn's y, burn's
/// gradient]`.
fn compare(
    shape: [usize; 4],
    fast: impl Fn(Tensor<4>) -> Tensor<4>,
    reference: impl Fn(Tensor<4>) -> Tensor<4>,
) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
    let dims = reference(x.clone()).dims();
    let probe = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
    common::fast_and_reference(&x, &probe, fast, reference)
}

#[test]
fn matches_burn_forward_and_backward() {
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
        let [fast_y, fast_grad, ref_y, ref_grad] = compare(
            [2, channels, height, width],
            |x| avg_pool2d(x, options.clone()),
            |x| burn_avg_pool2d(x, options.clone()),
        );
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

#[test]
fn max_pool_matches_burn_forward_and_backward() {
    // (channels, height, width, kernel, stride, padding (top, bottom, left, right), ceil)
    let cases = [
        (8, 29, 29, 3, 2, [0, 0, 0, 0], false), // Inception v3's stem and reductions
        (6, 16, 16, 2, 2, [0, 0, 0, 0], false), // VGG16
        (5, 9, 12, 3, 2, [1, 1, 1, 1], false),
        (3, 7, 6, 3, 2, [0, 0, 0, 0], true),
        (4, 10, 9, 3, 1, [1, 1, 1, 1], false),
        (2, 1, 1, 3, 2, [1, 1, 1, 1], false),
        (3, 8, 5, 2, 1, [0, 1, 1, 0], false),
    ];
    for (channels, height, width, kernel, stride, [t, b, l, r], ceil_mode) in cases {
        let options = MaxPoolOptions {
            kernel_size: [kernel; 2],
            stride: [stride; 2],
            padding: [(t, b), (l, r)],
            dilation: [1, 1],
            ceil_mode,
        };
        let [fast_y, fast_grad, ref_y, ref_grad] = compare(
            [2, channels, height, width],
            |x| max_pool2d(x, options.clone()),
            |x| burn_max_pool2d(x, options.clone()),
        );
        let case = (
            channels,
            height,
            width,
            kernel,
            stride,
            [t, b, l, r],
            ceil_mode,
        );
        assert_eq!(fast_y, ref_y, "{case:?}: output");
        assert_eq!(fast_grad, ref_grad, "{case:?}: gradient");
    }
}

/// Ties send the gradient to the first maximum (row by row), as PyTorch and burn do; a NaN
/// wins its window.
#[test]
fn max_pool_ties_and_nan() {
    let device = Device::flex().autodiff();
    let options = MaxPoolOptions {
        kernel_size: [2, 2],
        stride: [2, 2],
        padding: [(0, 0); 2],
        dilation: [1, 1],
        ceil_mode: false,
    };
    let values = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, f32::NAN, 2.0];
    let x = Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 1, 2, 4]), &device);
    let probe = Tensor::<4>::ones([1, 1, 1, 2], &device);
    let (y, grad) = common::output_and_input_grad(&x, &probe, |x| max_pool2d(x, options.clone()));
    assert_eq!(y[0], 1.0);
    assert!(y[1].is_nan());
    assert_eq!(grad, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

/// 3x3 windows full of ties (values from {0, 1, 2}, as ReLU outputs tie at 0): each
/// gradient goes where burn sends it, the first maximum row by row, inside the image and at
/// its edges, strides 1 and 2.
#[test]
fn max_pool_3x3_ties_match_burn() {
    let device = Device::flex().autodiff();
    let (height, width) = (11, 12);
    let values: Vec<f32> = (0..2 * height * width)
        .map(|i| ((i * 7 + i / 5) % 3) as f32)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 2, height, width]), &device);
    for (stride, pad) in [(2, 0), (1, 1), (2, 1)] {
        let options = MaxPoolOptions {
            kernel_size: [3, 3],
            stride: [stride; 2],
            padding: [(pad, pad); 2],
            dilation: [1, 1],
            ceil_mode: false,
        };
        let dims = burn_max_pool2d(x.clone(), options.clone()).dims();
        let probe = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
        let [fast_y, fast_grad, ref_y, ref_grad] = common::fast_and_reference(
            &x,
            &probe,
            |x| max_pool2d(x, options.clone()),
            |x| burn_max_pool2d(x, options.clone()),
        );
        assert_eq!(fast_y, ref_y, "stride {stride}, padding {pad}: output");
        assert_eq!(
            fast_grad, ref_grad,
            "stride {stride}, padding {pad}: gradient"
        );
    }
}
