//! The dream's update of the image after each gradient, in one pass on the CPU: the image
//! moves along the gradient (computed on the image rolled by the jitter) by a factor per
//! channel and is clamped to each channel's range. With burn's operations it took a roll,
//! three narrowed multiply-add-clamps, a concatenation and a roll back, each a
//! single-threaded pass over the image (about a tenth of an Inception v3 step at 512x512).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::cpu::{floats, on_cpu, with_simd};

/// How the image moves: for channel `c`, `image + factors[c] · gradient` clamped to
/// `ranges[c]`, the gradient read rolled back by `shift`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ascent {
    /// The roll (rows, columns) the gradient's input had: its pixel `(y, x)` is the image's
    /// pixel `(y − shift[0], x − shift[1])`, wrapping around.
    pub shift: [usize; 2],
    /// The step per channel, in the image's units per unit of gradient.
    pub factors: [f32; 3],
    /// The lowest and highest value of each channel.
    pub ranges: [(f32, f32); 3],
}

/// The 2015 dream's normalised gradient ascent: each step moves the image by `step_size`
/// pixel levels per mean absolute gradient (so every step moves it by about the same
/// amount), in each channel's units of one pixel level, then clamps it to the channel's range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormalisedAscent {
    /// The step, in pixel levels, per mean absolute gradient (the dream's step size).
    pub step_size: f32,
    /// Each channel's value of one pixel level.
    pub units: [f32; 3],
    /// Each channel's lowest and highest value.
    pub ranges: [(f32, f32); 3],
}

impl NormalisedAscent {
    /// Each channel's factor along a gradient of mean absolute value `mean_abs` (0 for a zero
    /// gradient); `None` when `mean_abs` is not finite.
    pub fn factors(&self, mean_abs: f32) -> Option<[f32; 3]> {
        mean_abs.is_finite().then(|| {
            let rate = if mean_abs > 0.0 {
                self.step_size / mean_abs
            } else {
                0.0
            };
            self.units.map(|unit| rate * unit)
        })
    }
}

/// The update as a backend operation (on autodiff tensors too, as a constant: the update is
/// never differentiated).
#[backend_extension(Flex, Autodiff)]
pub trait AscendBackend: Backend {
    /// `image` (`[N, 3, H, W]`) moved along `gradient` (same shape) as `ascent` says.
    fn ascend(
        image: FloatTensor<Self>,
        gradient: FloatTensor<Self>,
        ascent: Ascent,
    ) -> FloatTensor<Self>;
}

impl AscendBackend for Flex {
    fn ascend(image: FlexTensor, gradient: FlexTensor, ascent: Ascent) -> FlexTensor {
        let shape = image.shape();
        let [_, channels, height, width] = shape.dims();
        let (image, gradient) = (floats(&image), floats(&gradient));
        let [dy, dx] = [ascent.shift[0] % height, ascent.shift[1] % width];
        let mut out = vec![0.0f32; image.len()];
        out.par_chunks_mut(width)
            .zip(image.par_chunks(width))
            .enumerate()
            .for_each(|(row, (out, image))| {
                let (plane, y) = (row / height, row % height);
                let c = plane % channels;
                let source = (plane * height + (y + dy) % height) * width;
                let gradient = &gradient[source..source + width];
                let (factor, (low, high)) = (ascent.factors[c], ascent.ranges[c]);
                // Output column x reads gradient column (x + dx) mod width.
                let (left, right) = out.split_at_mut(width - dx);
                let (image_left, image_right) = image.split_at(width - dx);
                with_simd(
                    #[inline(always)]
                    || {
                        move_row(left, image_left, &gradient[dx..], factor, low, high);
                        move_row(right, image_right, &gradient[..dx], factor, low, high);
                    },
                );
            });
        FlexTensor::from_data(TensorData::new(out, shape))
    }
}

impl<B: Backend + AscendBackend, C: CheckpointStrategy> AscendBackend for Autodiff<B, C> {
    fn ascend(
        image: FloatTensor<Self>,
        gradient: FloatTensor<Self>,
        ascent: Ascent,
    ) -> FloatTensor<Self> {
        let moved = B::ascend(image.into_primitive(), gradient.into_primitive(), ascent);
        <Self as AutodiffBackend>::from_inner(moved)
    }
}

/// `out = clamp(image + gradient · factor)`, as burn's multiply, add and clamp round it.
#[inline(always)]
fn move_row(out: &mut [f32], image: &[f32], gradient: &[f32], factor: f32, low: f32, high: f32) {
    for ((out, &value), &g) in out.iter_mut().zip(image).zip(gradient) {
        let moved = value + g * factor;
        let above = if moved < low { low } else { moved };
        *out = if above > high { high } else { above };
    }
}

/// `image` moved along `gradient`, which was computed on `image` rolled by `shift` (rows,
/// columns, as [`Tensor::roll`] takes them): per channel `c`, `image + factors[c] ·
/// gradient` rolled back, clamped to `ranges[c]`. One pass on the CPU, burn's operations
/// elsewhere; the same values both ways.
pub fn ascend(
    image: Tensor<4>,
    gradient: Tensor<4>,
    shift: [i64; 2],
    factors: [f32; 3],
    ranges: [(f32, f32); 3],
) -> Tensor<4> {
    let [_, channels, height, width] = image.dims();
    if !on_cpu(&image.device()) || channels != 3 {
        return ascend_with_tensor_ops(image, gradient, shift, factors, ranges);
    }
    let wrap = |shift: i64, size: usize| shift.rem_euclid(size as i64) as usize;
    let ascent = Ascent {
        shift: [wrap(shift[0], height), wrap(shift[1], width)],
        factors,
        ranges,
    };
    let output = <burn::backend::Dispatch as AscendBackend>::ascend(
        image.into_dispatch(),
        gradient.into_dispatch(),
        ascent,
    );
    Tensor::from_dispatch(output)
}

/// [`ascend`] with burn's operations (what it does on other devices; the benchmark's
/// baseline).
pub fn ascend_with_tensor_ops(
    image: Tensor<4>,
    gradient: Tensor<4>,
    shift: [i64; 2],
    factors: [f32; 3],
    ranges: [(f32, f32); 3],
) -> Tensor<4> {
    let shifted = image.roll(&shift, &[2, 3]);
    let moved: Vec<Tensor<4>> = (0..shifted.dims()[1])
        .map(|c| {
            let step = gradient.clone().narrow(1, c, 1).mul_scalar(factors[c]);
            let (low, high) = ranges[c];
            shifted.clone().narrow(1, c, 1).add(step).clamp(low, high)
        })
        .collect();
    Tensor::cat(moved, 1).roll(&[-shift[0], -shift[1]], &[2, 3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// The one-pass update gives burn's operations' values bit for bit, whatever the roll
    /// (negative, larger than the image), on plain and on autodiff tensors.
    #[test]
    fn the_one_pass_update_equals_the_tensor_operations() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            one_pass_update_equals_tensor_operations_on(&device);
        }
    }

    fn one_pass_update_equals_tensor_operations_on(device: &Device) {
        let shape = [1, 3, 7, 9];
        let image = Tensor::<4>::random(shape, Distribution::Uniform(-150.0, 150.0), device);
        let gradient = Tensor::<4>::random(shape, Distribution::Normal(0.0, 3.0), device);
        let factors = [1.5, -0.25, 2.0];
        let ranges = [(-100.0, 120.0), (-90.0, 90.0), (-130.0, 110.0)];
        for shift in [[0, 0], [3, -4], [-8, 11], [20, -30]] {
            let fused = ascend(image.clone(), gradient.clone(), shift, factors, ranges);
            let expected =
                ascend_with_tensor_ops(image.clone(), gradient.clone(), shift, factors, ranges);
            let fused: Vec<f32> = fused.into_data().try_to_vec().unwrap();
            let expected: Vec<f32> = expected.into_data().try_to_vec().unwrap();
            assert_eq!(fused, expected, "shift {shift:?}");
        }
    }
}
