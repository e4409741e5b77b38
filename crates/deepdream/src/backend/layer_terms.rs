//! The terms of a loss at one layer output that a device can make its own gradients and
//! values of ([`LayerTerms`]): a quadratic per channel over a window (DeepDream's objective
//! is one), guides' pulls (a guided dream's) and matches to targets (style transfer's content
//! and style terms), described once and computed on the device (the CUDA device's kernels
//! and cuBLAS) or, as the reference, on the host.

use std::ops::Range;

use burn::tensor::{Device, Tensor};

/// The terms of a loss at one layer output `a` (`[1, C, H, W]`): a quadratic per channel,
/// `Σ ½·quadratic[c]·m·a² + linear[c]·a` over rows `rows` and columns `cols` (`m` the mask's
/// weight at each position), and the pull of each of `guides` there, whose gradient is
/// `quadratic[c]·m·a + linear[c] + Σ weight·y` inside that window (`y` each guide's best
/// match) and zero outside; and matches of the whole output to targets, `content` and
/// `style`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTerms {
    /// Each channel's weight of ½a².
    pub quadratic: Vec<f32>,
    /// Each channel's weight of a.
    pub linear: Vec<f32>,
    /// The rows the loss covers.
    pub rows: Range<usize>,
    /// The columns the loss covers.
    pub cols: Range<usize>,
    /// A weight per position of the output (`[H, W]` row-major) on the quadratic's square
    /// term (a region's mask); 1 everywhere when `None`.
    pub mask: Option<Vec<f32>>,
    /// Guides pulling the layer.
    pub guides: Vec<Guide>,
    /// Matches of the whole output itself to targets (style transfer's content terms).
    pub content: Vec<Match>,
    /// Matches of the whole output's Gram matrix to targets (style transfer's style terms).
    pub style: Vec<Match>,
}

/// A match of a layer output `a` (`[1, C, H, W]`, N values) to a target, with `weight`: a
/// content match is `weight·mean((a − target)²)`, `target` shaped as `a`; a style match is
/// `weight·mean((G − target)²)`, `G` the Gram matrix `F Fᵀ / N` of `a`'s `[C, H·W]` features
/// and `target` `[C, C]` (see [`gram`](crate::engine::objective::gram)); row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    /// The target's values.
    pub target: Vec<f32>,
    /// The match's weight.
    pub weight: f32,
}

/// The value of a [`LayerTerms`] at a layer output, by part: the quadratic's, the
/// content matches' and the style matches' (a guide's pull has none: what it pulls towards
/// moves with the output).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossValues {
    /// `Σ ½·quadratic[c]·a² + linear[c]·a` over the window.
    pub quadratic: f32,
    /// The content matches' values, summed.
    pub content: f32,
    /// The style matches' values, summed.
    pub style: f32,
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

impl LayerTerms {
    /// No loss on a `channels`-channel output, over `rows` and `cols`.
    pub fn zero(channels: usize, rows: Range<usize>, cols: Range<usize>) -> Self {
        LayerTerms {
            quadratic: vec![0.0; channels],
            linear: vec![0.0; channels],
            rows,
            cols,
            mask: None,
            guides: Vec::new(),
            content: Vec::new(),
            style: Vec::new(),
        }
    }

    /// The loss's gradient with respect to `activation`, computed on the host: what a
    /// device computes from this description.
    pub fn gradient(&self, activation: Tensor<4>) -> Tensor<4> {
        let [_, channels, height, width] = activation.dims();
        let device = activation.device();
        let pulls = self.guides.iter().map(|guide| {
            let features = Tensor::<1>::from_floats(guide.features.as_slice(), &device)
                .reshape([channels, guide.positions]);
            matched_guide(activation.clone(), &features).mul_scalar(guide.weight)
        });
        let inside = pulls
            .fold(
                self.masked(activation.clone())
                    .mul(per_channel(&self.quadratic, channels, &device))
                    .add(per_channel(&self.linear, channels, &device)),
                Tensor::add,
            )
            .mul(window(&self.rows, &self.cols, height, width, &device));
        let count = activation.shape().num_elements() as f32;
        let contents = self.content.iter().map(|content| {
            content_difference(&activation, content).mul_scalar(2.0 * content.weight / count)
        });
        let features = activation.clone().reshape([channels, height * width]);
        let styles = self.style.iter().map(|style| {
            let difference = gram_difference(&features, style, count);
            let scale = 4.0 * style.weight / (channels * channels) as f32 / count;
            difference
                .matmul(features.clone())
                .mul_scalar(scale)
                .reshape(activation.dims())
        });
        contents.chain(styles).fold(inside, Tensor::add)
    }

    /// The loss's value at `activation`, by part, computed on the host: what a device
    /// computes from this description.
    pub fn values(&self, activation: Tensor<4>) -> LossValues {
        let [_, channels, height, width] = activation.dims();
        let device = activation.device();
        let quadratic = self
            .masked(activation.clone().powi_scalar(2))
            .mul(per_channel(&self.quadratic, channels, &device))
            .mul_scalar(0.5)
            .add(
                activation
                    .clone()
                    .mul(per_channel(&self.linear, channels, &device)),
            )
            .mul(window(&self.rows, &self.cols, height, width, &device))
            .sum()
            .into_scalar();
        let count = activation.shape().num_elements() as f32;
        let content = self
            .content
            .iter()
            .map(|content| {
                let difference = content_difference(&activation, content);
                let squares: f32 = difference.powi_scalar(2).sum().into_scalar();
                content.weight * squares / count
            })
            .sum();
        let features = activation.reshape([channels, height * width]);
        let style = self
            .style
            .iter()
            .map(|style| {
                let difference = gram_difference(&features, style, count);
                let squares: f32 = difference.powi_scalar(2).sum().into_scalar();
                style.weight * squares / (channels * channels) as f32
            })
            .sum();
        LossValues {
            quadratic,
            content,
            style,
        }
    }

    /// `values` (`[1, C, H, W]`) weighted by the mask, where there is one.
    fn masked(&self, values: Tensor<4>) -> Tensor<4> {
        match &self.mask {
            Some(mask) => {
                let [_, _, height, width] = values.dims();
                let mask = Tensor::<1>::from_floats(mask.as_slice(), &values.device())
                    .reshape([1, 1, height, width]);
                values.mul(mask)
            }
            None => values,
        }
    }
}

/// `values` as `[1, C, 1, 1]`.
fn per_channel(values: &[f32], channels: usize, device: &Device) -> Tensor<4> {
    Tensor::<1>::from_floats(values, device).reshape([1, channels, 1, 1])
}

/// 1 inside the window of `rows` and `cols` and 0 outside, `[1, 1, height, width]`.
fn window(
    rows: &Range<usize>,
    cols: &Range<usize>,
    height: usize,
    width: usize,
    device: &Device,
) -> Tensor<4> {
    let inside = |range: &Range<usize>, size: usize| -> Vec<f32> {
        (0..size)
            .map(|i| f32::from(u8::from(range.contains(&i))))
            .collect()
    };
    Tensor::<1>::from_floats(inside(rows, height).as_slice(), device)
        .reshape([1, 1, height, 1])
        .mul(
            Tensor::<1>::from_floats(inside(cols, width).as_slice(), device)
                .reshape([1, 1, 1, width]),
        )
}

/// `activation` less `content`'s target.
fn content_difference(activation: &Tensor<4>, content: &Match) -> Tensor<4> {
    let target = Tensor::<1>::from_floats(content.target.as_slice(), &activation.device())
        .reshape(activation.dims());
    activation.clone().sub(target)
}

/// The Gram matrix of `features` (`[C, H·W]`, `count` values) less `style`'s target.
fn gram_difference(features: &Tensor<2>, style: &Match, count: f32) -> Tensor<2> {
    let [channels, _] = features.dims();
    let target = Tensor::<1>::from_floats(style.target.as_slice(), &features.device())
        .reshape([channels, channels]);
    features
        .clone()
        .matmul(features.clone().transpose())
        .div_scalar(count)
        .sub(target)
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
