//! The loss a device can make its own gradients of: a quadratic per channel over a window
//! of one layer output (DeepDream's objective is one), described once and computed on the
//! device (the CUDA device's `quadratic_seed` kernel) or, as the reference, on the host.

use std::ops::Range;

use burn::tensor::Tensor;

/// A loss of one layer output `a` (`[1, C, H, W]`) that is a quadratic per channel over a
/// window: `Σ ½·quadratic[c]·a² + linear[c]·a` over rows `rows` and columns `cols`, so that
/// its gradient is `quadratic[c]·a + linear[c]` inside the window and zero outside.
#[derive(Clone, Debug, PartialEq)]
pub struct QuadraticLoss {
    /// Each channel's weight of ½a².
    pub quadratic: Vec<f32>,
    /// Each channel's weight of a.
    pub linear: Vec<f32>,
    /// The rows the loss covers.
    pub rows: Range<usize>,
    /// The columns the loss covers.
    pub cols: Range<usize>,
}

impl QuadraticLoss {
    /// No loss on a `channels`-channel output, over `rows` and `cols`.
    pub fn zero(channels: usize, rows: Range<usize>, cols: Range<usize>) -> Self {
        QuadraticLoss {
            quadratic: vec![0.0; channels],
            linear: vec![0.0; channels],
            rows,
            cols,
        }
    }

    /// The loss's gradient with respect to `activation`, computed on the host: what a
    /// device computes from this description.
    pub fn gradient(&self, activation: Tensor<4>) -> Tensor<4> {
        let [_, channels, height, width] = activation.dims();
        let device = activation.device();
        let per_channel =
            |values: &[f32]| Tensor::<1>::from_floats(values, &device).reshape([1, channels, 1, 1]);
        let inside = |range: &Range<usize>, size: usize| -> Vec<f32> {
            (0..size)
                .map(|i| f32::from(u8::from(range.contains(&i))))
                .collect()
        };
        let window = Tensor::<1>::from_floats(inside(&self.rows, height).as_slice(), &device)
            .reshape([1, 1, height, 1])
            .mul(
                Tensor::<1>::from_floats(inside(&self.cols, width).as_slice(), &device)
                    .reshape([1, 1, 1, width]),
            );
        activation
            .mul(per_channel(&self.quadratic))
            .add(per_channel(&self.linear))
            .mul(window)
    }
}
