//! The Winograd 3x3 convolution against burn's own convolution: outputs and input gradients
//! on random shapes, including odd sizes, asymmetric and zero padding, 1-pixel images,
//! channel counts that are not multiples of the SIMD width and images split into blocks.

mod common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use deepdream::backend::conv;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One convolution: batch, input channels, output channels, height, width, padding
/// (top, bottom, left, right).
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    ins: usize,
    outs: usize,
    height: usize,
    width: usize,
    padding: [usize; 4],
}

fn options(case: &Case) -> ConvOptions<2> {
    let [top, bottom, left, right] = case.padding;
    let mut options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    options.padding = [(top, bottom), (left, right)];
    options
}

/// Largest difference between the Winograd and burn's results, relative to the largest
/// value of burn's, for the output and for the input gradient, on values drawn by `rng`.
fn errors(case: &Case, rng: &mut ChaCha8Rng) -> (f32, f32) {
    let device = Device::flex().autodiff();
    let x = common::uniform(
        rng,
        [case.batch, case.ins, case.height, case.width],
        1.0,
        &device,
    );
    let weight = common::uniform(rng, [case.outs, case.ins, 3, 3], 0.5, &device);
    let bias = common::uniform(rng, [case.outs], 1.0, &device);
    // A random linear function of the output, so every output position has its own weight.
    let [top, bottom, left, right] = case.padding;
    let out_size = [
        case.batch,
        case.outs,
        case.height + top + bottom - 2,
        case.width + left + right - 2,
    ];
    let probe = common::uniform(rng, out_size, 1.0, &device);
    let conv = |fast: bool| {
        let (weight, bias) = (weight.clone(), bias.clone());
        move |x: Tensor<4>| {
            let (w, b) = (weight.clone(), Some(bias.clone()));
            if fast {
                conv::conv2d(x, w, b, options(case))
            } else {
                burn::tensor::module::conv2d(x, w, b, options(case))
            }
        }
    };
    common::relative_errors(&x, &probe, conv(true), conv(false))
}

/// Winograd F(4x4, 3x3)'s transforms lose a few bits against a direct sum: over 300 draws of
/// the largest case here (96 to 80 channels) the error reached 1.2e-5 of the largest value,
/// for the output and the gradient alike.
const TOLERANCE: f32 = 3e-5;

fn check(case: Case, rng: &mut ChaCha8Rng) {
    let (output, gradient) = errors(&case, rng);
    assert!(
        output < TOLERANCE,
        "{case:?}: output relative error {output:e}"
    );
    assert!(
        gradient < TOLERANCE,
        "{case:?}: gradient relative error {gradient:e}"
    );
}

#[test]
fn matches_burn_on_chosen_shapes() {
    let cases = [
        // 1-pixel images: every tap but the centre is padding.
        (1, 5, 7, 1, 1, [1, 1, 1, 1]),
        (2, 16, 9, 1, 1, [1, 1, 1, 1]),
        // The smallest image without padding.
        (1, 3, 4, 3, 3, [0, 0, 0, 0]),
        // Odd sizes, partial last tiles, channel counts off the SIMD width.
        (1, 3, 64, 13, 17, [1, 1, 1, 1]),
        (2, 9, 11, 6, 23, [1, 1, 1, 1]),
        (1, 17, 33, 10, 9, [0, 0, 0, 0]),
        // Asymmetric padding (TensorFlow SAME on odd kernels is symmetric; these are not).
        (1, 8, 8, 7, 8, [0, 2, 1, 0]),
        (1, 4, 12, 9, 5, [2, 0, 0, 2]),
        (1, 6, 5, 5, 6, [2, 2, 2, 2]),
        // Wide enough for several blocks of tile rows, and many channels.
        (1, 16, 24, 300, 201, [1, 1, 1, 1]),
        (1, 96, 80, 31, 29, [1, 1, 1, 1]),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (batch, ins, outs, height, width, padding) in cases {
        check(
            Case {
                batch,
                ins,
                outs,
                height,
                width,
                padding,
            },
            &mut rng,
        );
    }
}

#[test]
fn matches_burn_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..40 {
        let padding = std::array::from_fn(|_| rng.random_range(0..=2));
        let case = Case {
            batch: rng.random_range(1..=2),
            ins: rng.random_range(1..=24),
            outs: rng.random_range(1..=24),
            height: rng.random_range(1..=21),
            width: rng.random_range(1..=21),
            padding,
        };
        let [top, bottom, left, right] = case.padding;
        if case.height + top + bottom < 3 || case.width + left + right < 3 {
            continue;
        }
        check(case, &mut rng);
    }
}

#[test]
fn new_weights_are_not_mistaken_for_cached_ones() {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 8, 12, 12], Distribution::Uniform(-1.0, 1.0), &device);
    let weight = Tensor::<4>::random([8, 8, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let once = conv::conv2d(x.clone(), weight.clone(), None, options.clone());
    // Scaling may reuse the weight's storage in place when nothing else holds it.
    let twice = conv::conv2d(x, weight.mul_scalar(2.0), None, options);
    let difference: f32 = (twice - once.mul_scalar(2.0)).abs().max().into_scalar();
    assert!(difference < 1e-4, "difference {difference}");
}

#[test]
fn weights_that_need_a_gradient_still_get_one() {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([1, 4, 9, 9], Distribution::Uniform(-1.0, 1.0), &device);
    let weight =
        Tensor::<4>::random([5, 4, 3, 3], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let grads = conv::conv2d(x, weight.clone(), None, options)
        .sum()
        .backward();
    let grad: f32 = weight.grad(&grads).unwrap().abs().sum().into_scalar();
    assert!(grad > 0.0, "weight gradient {grad}");
}
