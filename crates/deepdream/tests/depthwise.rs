//! The depthwise convolution kernel against burn's grouped convolution: outputs and input
//! gradients on random shapes, including odd sizes, asymmetric and zero padding, 1-pixel
//! images, strides 1 and 2 and kernels of 3 and 5.

mod common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use deepdream::conv;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One depthwise convolution: batch, channels, height, width, kernel, stride, padding
/// (top, bottom, left, right).
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    padding: [usize; 4],
}

impl Case {
    fn options(&self) -> ConvOptions<2> {
        let [top, bottom, left, right] = self.padding;
        ConvOptions::new_with_padding(
            [self.stride; 2],
            [(top, bottom), (left, right)],
            [1, 1],
            self.channels,
        )
    }

    fn output_size(&self) -> Option<[usize; 2]> {
        let [top, bottom, left, right] = self.padding;
        let out = |size: usize, pad: usize| {
            (size + pad)
                .checked_sub(self.kernel)
                .map(|v| v / self.stride + 1)
        };
        Some([
            out(self.height, top + bottom)?,
            out(self.width, left + right)?,
        ])
    }
}

/// Largest differences, relative to burn's largest value, of the output and input gradient.
fn errors(case: &Case) -> (f32, f32) {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random(
        [case.batch, case.channels, case.height, case.width],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let weight = Tensor::<4>::random(
        [case.channels, 1, case.kernel, case.kernel],
        Distribution::Uniform(-0.5, 0.5),
        &device,
    );
    let bias = Tensor::<1>::random([case.channels], Distribution::Uniform(-1.0, 1.0), &device);
    let [oh, ow] = case.output_size().expect("a valid case");
    let probe = Tensor::<4>::random(
        [case.batch, case.channels, oh, ow],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let conv = |fast: bool| {
        let (weight, bias) = (weight.clone(), bias.clone());
        move |x: Tensor<4>| {
            let (w, b) = (weight.clone(), Some(bias.clone()));
            if fast {
                conv::conv2d(x, w, b, case.options())
            } else {
                burn::tensor::module::conv2d(x, w, b, case.options())
            }
        }
    };
    let (fast_y, fast_grad) = common::output_and_input_grad(&x, &probe, conv(true));
    let (ref_y, ref_grad) = common::output_and_input_grad(&x, &probe, conv(false));
    (
        common::max_error_relative_to_largest(&fast_y, &ref_y),
        common::max_error_relative_to_largest(&fast_grad, &ref_grad),
    )
}

fn check(case: Case) {
    let (output, gradient) = errors(&case);
    assert!(output < 1e-5, "{case:?}: output relative error {output:e}");
    assert!(
        gradient < 1e-5,
        "{case:?}: gradient relative error {gradient:e}"
    );
}

#[test]
fn matches_burn_on_chosen_shapes() {
    let cases = [
        // 1-pixel images: every tap but the centre is padding.
        (1, 4, 1, 1, 3, 1, [1, 1, 1, 1]),
        (2, 3, 1, 1, 5, 2, [2, 2, 2, 2]),
        // No padding, the smallest image.
        (1, 5, 3, 3, 3, 1, [0, 0, 0, 0]),
        (1, 5, 5, 5, 5, 2, [0, 0, 0, 0]),
        // TensorFlow SAME at stride 2: the odd pixel at the end.
        (1, 16, 112, 112, 3, 2, [0, 1, 0, 1]),
        (1, 24, 28, 28, 5, 2, [1, 2, 1, 2]),
        // Odd sizes, other asymmetric paddings, a padding wider than the kernel's reach.
        (2, 7, 13, 17, 3, 1, [1, 1, 1, 1]),
        (1, 9, 11, 6, 5, 1, [2, 2, 2, 2]),
        (1, 6, 9, 10, 3, 2, [2, 0, 0, 2]),
        (1, 3, 8, 7, 5, 2, [4, 0, 1, 3]),
    ];
    for (batch, channels, height, width, kernel, stride, padding) in cases {
        check(Case {
            batch,
            channels,
            height,
            width,
            kernel,
            stride,
            padding,
        });
    }
}

#[test]
fn matches_burn_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut checked = 0;
    while checked < 40 {
        let kernel = if rng.random_bool(0.5) { 3 } else { 5 };
        let case = Case {
            batch: rng.random_range(1..=2),
            channels: rng.random_range(2..=20),
            height: rng.random_range(1..=23),
            width: rng.random_range(1..=23),
            kernel,
            stride: rng.random_range(1..=2),
            padding: [(); 4].map(|_| rng.random_range(0..=kernel / 2 + 1)),
        };
        if case.output_size().is_none_or(|[h, w]| h == 0 || w == 0) {
            continue;
        }
        check(case);
        checked += 1;
    }
}

#[test]
fn a_weight_that_needs_a_gradient_gets_one() {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([1, 4, 6, 6], Distribution::Uniform(-1.0, 1.0), &device);
    let weight =
        Tensor::<4>::random([4, 1, 3, 3], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 4);
    let grads = conv::conv2d(x, weight.clone(), None, options)
        .sum()
        .backward();
    assert!(weight.grad(&grads).is_some());
}
