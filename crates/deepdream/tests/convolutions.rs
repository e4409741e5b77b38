//! The depthwise kernel and the padded-copy matrix-product convolution (`conv_gemm`)
//! against burn's convolution: outputs and input gradients on random shapes, including odd
//! sizes, asymmetric and zero padding, 1-pixel images, strides 1 and 2, square and 1xN/Nx1
//! kernels, few and many channels.

mod common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use deepdream::{backend::conv, backend::conv_gemm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One convolution: batch, channels, height, width, kernel, stride, padding (top, bottom,
/// left, right); depthwise (one group per channel, as many outputs) or with `outputs`
/// output channels and no groups.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 4],
    outputs: Option<usize>,
}

impl Case {
    fn options(&self) -> ConvOptions<2> {
        let [top, bottom, left, right] = self.padding;
        ConvOptions::new_with_padding(
            [self.stride; 2],
            [(top, bottom), (left, right)],
            [1, 1],
            if self.outputs.is_some() {
                1
            } else {
                self.channels
            },
        )
    }

    fn out_channels(&self) -> usize {
        self.outputs.unwrap_or(self.channels)
    }

    fn weight_shape(&self) -> [usize; 4] {
        let per_group = if self.outputs.is_some() {
            self.channels
        } else {
            1
        };
        [
            self.out_channels(),
            per_group,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    fn output_size(&self) -> Option<[usize; 2]> {
        let [top, bottom, left, right] = self.padding;
        let out = |size: usize, pad: usize, kernel: usize| {
            (size + pad)
                .checked_sub(kernel)
                .map(|v| v / self.stride + 1)
        };
        Some([
            out(self.height, top + bottom, self.kernel[0])?,
            out(self.width, left + right, self.kernel[1])?,
        ])
    }
}

/// Largest differences, relative to burn's largest value, of the output and input gradient,
/// on values drawn by `rng`.
fn errors(case: &Case, rng: &mut ChaCha8Rng) -> (f32, f32) {
    let device = Device::flex().autodiff();
    let x = common::uniform(
        rng,
        [case.batch, case.channels, case.height, case.width],
        1.0,
        &device,
    );
    let weight = common::uniform(rng, case.weight_shape(), 0.5, &device);
    let bias = common::uniform(rng, [case.out_channels()], 1.0, &device);
    let [oh, ow] = case.output_size().expect("a valid case");
    let probe = common::uniform(rng, [case.batch, case.out_channels(), oh, ow], 1.0, &device);
    let conv = |fast: bool| {
        let (weight, bias) = (weight.clone(), bias.clone());
        move |x: Tensor<4>| {
            let (w, b) = (weight.clone(), Some(bias.clone()));
            if fast && case.outputs.is_some() {
                // Straight to the matrix-product kernel, which `conv2d` leaves 3x3 stride-1
                // convolutions to Winograd.
                let size = conv_gemm::output_size(&x, &w, b.as_ref(), &case.options())
                    .expect("the kernel applies");
                conv::cpu_conv(x, w, b, conv::CpuConv::Gemm, &case.options(), size)
            } else if fast {
                conv::conv2d(x, w, b, case.options())
            } else {
                burn::tensor::module::conv2d(x, w, b, case.options())
            }
        }
    };
    common::relative_errors(&x, &probe, conv(true), conv(false))
}

fn check(case: Case, rng: &mut ChaCha8Rng) {
    let (output, gradient) = errors(&case, rng);
    assert!(output < 1e-5, "{case:?}: output relative error {output:e}");
    assert!(
        gradient < 1e-5,
        "{case:?}: gradient relative error {gradient:e}"
    );
}

#[test]
fn depthwise_matches_burn_on_chosen_shapes() {
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
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (batch, channels, height, width, kernel, stride, padding) in cases {
        check(
            Case {
                batch,
                channels,
                height,
                width,
                kernel: [kernel; 2],
                stride,
                padding,
                outputs: None,
            },
            &mut rng,
        );
    }
}

#[test]
fn depthwise_matches_burn_on_random_shapes() {
    check_random_cases(9, |rng| {
        let kernel = if rng.random_bool(0.5) { 3 } else { 5 };
        ([kernel; 2], None)
    });
}

#[test]
fn matrix_product_convolution_matches_burn_on_chosen_shapes() {
    let cases = [
        // The first layer: three channels (the gathered path), stride 2, no padding.
        (1, 3, 29, 31, [3, 3], 2, [0, 0, 0, 0], 8),
        // 1x1: the input itself, then with stride 2 and with padding.
        (2, 20, 7, 9, [1, 1], 1, [0, 0, 0, 0], 12),
        (1, 18, 9, 8, [1, 1], 2, [0, 0, 0, 0], 5),
        (1, 17, 5, 6, [1, 1], 1, [1, 0, 0, 1], 4),
        // Inception's 1x7 and 7x1, 5x5 and 3x3 stride 2.
        (1, 16, 9, 9, [1, 7], 1, [0, 0, 3, 3], 24),
        (1, 16, 9, 9, [7, 1], 1, [3, 3, 0, 0], 24),
        (1, 20, 11, 11, [5, 5], 1, [2, 2, 2, 2], 8),
        (1, 24, 15, 15, [3, 3], 2, [0, 0, 0, 0], 16),
        // 1-pixel images; padding wider than the kernel's reach; TensorFlow SAME.
        (1, 16, 1, 1, [3, 3], 1, [1, 1, 1, 1], 6),
        (1, 2, 1, 1, [5, 5], 2, [2, 2, 2, 2], 3),
        (1, 19, 6, 7, [3, 3], 1, [3, 0, 0, 3], 5),
        (1, 3, 16, 16, [3, 3], 2, [0, 1, 0, 1], 32),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (batch, channels, height, width, kernel, stride, padding, outputs) in cases {
        check(
            Case {
                batch,
                channels,
                height,
                width,
                kernel,
                stride,
                padding,
                outputs: Some(outputs),
            },
            &mut rng,
        );
    }
}

#[test]
fn matrix_product_convolution_matches_burn_on_random_shapes() {
    check_random_cases(10, |rng| {
        let kernels = [[1, 1], [3, 3], [5, 5], [1, 7], [7, 1], [2, 2]];
        (
            kernels[rng.random_range(0..kernels.len())],
            Some(rng.random_range(1..=24)),
        )
    });
}

/// Checks 40 random cases, with kernels and output channels from `pick`.
fn check_random_cases(seed: u64, pick: impl Fn(&mut ChaCha8Rng) -> ([usize; 2], Option<usize>)) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut checked = 0;
    while checked < 40 {
        let (kernel, outputs) = pick(&mut rng);
        let reach = kernel[0].max(kernel[1]) / 2 + 1;
        let case = Case {
            batch: rng.random_range(1..=2),
            channels: rng.random_range(2..=20),
            height: rng.random_range(1..=23),
            width: rng.random_range(1..=23),
            kernel,
            stride: rng.random_range(1..=2),
            padding: [(); 4].map(|_| rng.random_range(0..=reach)),
            outputs,
        };
        if case.output_size().is_none_or(|[h, w]| h == 0 || w == 0) {
            continue;
        }
        check(case, &mut rng);
        checked += 1;
    }
}

#[test]
fn a_weight_that_needs_a_gradient_gets_one() {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([1, 4, 6, 6], Distribution::Uniform(-1.0, 1.0), &device);
    for (shape, groups) in [([4, 1, 3, 3], 4), ([3, 4, 1, 7], 1)] {
        let weight =
            Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device).require_grad();
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], groups);
        let grads = conv::conv2d(x.clone(), weight.clone(), None, options)
            .sum()
            .backward();
        assert!(weight.grad(&grads).is_some());
    }
}
