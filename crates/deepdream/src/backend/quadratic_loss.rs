//! The loss a device can make its own gradients of: a quadratic per channel over a window
//! of one layer output (DeepDream's objective is one), with guides' pulls (a guided dream's
//! objective), described once and computed on the device (the CUDA device's
//! `quadratic_seed` and `guide_seed` kernels) or, as the reference, on the host.

use std::ops::Range;

use burn::tensor::Tensor;

/// A loss of one layer output `a` (`[1, C, H, W]`) that is a quadratic per channel over a
/// window: `Σ ½·quadratic[c]·a² + linear[c]·a` over rows `rows` and columns `cols`, plus the
/// pull of each of `guides` there, so that its gradient is `quadratic[c]·a + linear[c] + Σ
/// weight·y` inside the window (`y` each guide's best match) and zero outside.
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
    /// Guides pulling the layer.
    pub guides: Vec<Guide>,
}

/// A guide image's pull on a layer (the guided dream of the 2015 notebook): at each position
/// the features are pulled towards the guide's feature they match best (the largest dot
/// product), `y`: the loss `weight·Σ a·y`, `y` held fixed, whose gradient is `weight·y`.
#[derive(Clone, Debug, PartialEq)]
pub struct Guide {
    /// The guide's features, `[C, positions]` row-major; zero at the channels it does not
    /// pull, which then neither match nor move.
    pub features: Vec<f32>,
    /// How many positions the guide has.
    pub positions: usize,
    /// The pull's weight.
    pub weight: f32,
}

impl QuadraticLoss {
    /// No loss on a `channels`-channel output, over `rows` and `cols`.
    pub fn zero(channels: usize, rows: Range<usize>, cols: Range<usize>) -> Self {
        QuadraticLoss {
            quadratic: vec![0.0; channels],
            linear: vec![0.0; channels],
            rows,
            cols,
            guides: Vec::new(),
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
        let pulls = self.guides.iter().map(|guide| {
            let features = Tensor::<1>::from_floats(guide.features.as_slice(), &device)
                .reshape([channels, guide.positions]);
            matched_guide(activation.clone(), &features).mul_scalar(guide.weight)
        });
        pulls
            .fold(
                activation
                    .clone()
                    .mul(per_channel(&self.quadratic))
                    .add(per_channel(&self.linear)),
                Tensor::add,
            )
            .mul(window)
    }
}

/// For each position of `activation` (`[1, C, H, W]`), the guide's feature (a column of
/// `guide`, `[C, P]`) with the largest dot product with the activation's features there (the
/// first of equals).
pub fn matched_guide(activation: Tensor<4>, guide: &Tensor<2>) -> Tensor<4> {
    let [n, c, h, w] = activation.dims();
    let x = activation.reshape([c, h * w]);
    let scores = x.transpose().matmul(guide.clone()); // [positions, guide positions]
    let best = scores.argmax(1).reshape([h * w]);
    guide.clone().select(1, best).reshape([n, c, h, w])
}
