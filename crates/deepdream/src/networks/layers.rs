//! Building blocks shared by the networks: convolution with folded batch norm, TensorFlow
//! `SAME` padding, and the spatial arithmetic of chains of sliding windows.

use burn::tensor::{Device, Tensor};

use crate::backend::geometry::window_output;
use crate::backend::graph::{Graph, Operation, Padding};

/// Bytes of memory per float of activation that a gradient needs. Measured as the peak RSS of
/// a 1024x768 gradient minus a 512x512 one, divided by the extra activation floats: VGG16
/// `block4_conv3` 3.1 and Inception v3 `mixed_3`+`mixed_5` 3.7 bytes (burn frees gradients
/// as the backward pass goes, and the Winograd convolution keeps no input for it); 4.5
/// leaves a margin.
pub const BYTES_PER_FLOAT_KEPT: f32 = 4.5;

/// A square window (kernel, stride, symmetric padding) on a network's main path, for
/// working out strides, sizes and receptive fields of hand-written networks.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on each side; `None` for `SAME` padding.
    pub padding: Option<usize>,
    /// Extra reach on each side (at this window's input scale) that side branches add,
    /// e.g. 2 for a 5x5 convolution (padding 2) beside the main path's 1x1.
    pub context: usize,
}

impl Window {
    /// How far the window reaches beyond its output's stride cell on the farther side.
    pub fn reach(&self) -> usize {
        match self.padding {
            Some(p) => p.max((self.kernel - 1).saturating_sub(p)),
            None => self.kernel - 1,
        }
    }

    /// The output side for an input side, `None` if empty.
    pub fn apply(&self, size: usize) -> Option<usize> {
        match self.padding {
            Some(p) => window_output(size, self.kernel, self.stride, 1, (p, p), false),
            None => (size > 0).then(|| size.div_ceil(self.stride)),
        }
    }
}

/// The geometry of a chain of windows, as [`LayerInfo`](crate::LayerInfo) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Total stride.
    pub stride: usize,
    /// Smallest square input that leaves every window a non-empty output.
    pub min_input: usize,
    /// Upper bound of the receptive field's reach beyond a stride cell, in input pixels.
    pub halo: usize,
}

/// The geometry of a chain of windows.
pub fn chain_geometry(windows: &[Window]) -> Geometry {
    let fits = |side: usize| chain_output(windows, side).is_some();
    let min_input = (1..).find(|&side| fits(side)).expect("some input fits");
    let mut stride = 1;
    let mut halo = 0;
    for window in windows {
        halo += (window.reach() + window.context) * stride;
        stride *= window.stride;
    }
    Geometry {
        stride,
        min_input,
        halo,
    }
}

/// The output size `(height, width)` of a chain of windows, `None` if empty.
pub fn chain_size(windows: &[Window], height: usize, width: usize) -> Option<(usize, usize)> {
    Some((
        chain_output(windows, height)?,
        chain_output(windows, width)?,
    ))
}

/// The output side of a chain of windows for an input side, `None` if empty.
pub fn chain_output(windows: &[Window], side: usize) -> Option<usize> {
    windows
        .iter()
        .try_fold(side, |size, window| window.apply(size))
}

/// Batch-norm statistics: `y = gamma * (x - mean) / sqrt(var + epsilon) + beta`.
pub struct BatchNorm {
    /// Scale (`None` for a batch norm without one, i.e. 1).
    pub gamma: Option<Vec<f32>>,
    /// Shift.
    pub beta: Vec<f32>,
    /// Running mean.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// Added to the variance.
    pub epsilon: f32,
}

/// A convolution (no bias) followed by batch norm, folded into one convolution with bias.
pub struct ConvBn {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: Padding,
    groups: usize,
}

impl ConvBn {
    /// Folds `bn` into the convolution `weight` (`[out, in / groups, kh, kw]`, row-major).
    pub fn new(
        weight: Vec<f32>,
        shape: [usize; 4],
        bn: BatchNorm,
        stride: usize,
        padding: Padding,
        groups: usize,
        device: &Device,
    ) -> Self {
        let out = shape[0];
        let per_output = weight.len() / out;
        let scale: Vec<f32> = (0..out)
            .map(|o| bn.gamma.as_ref().map_or(1.0, |g| g[o]) / (bn.var[o] + bn.epsilon).sqrt())
            .collect();
        let folded: Vec<f32> = weight
            .iter()
            .enumerate()
            .map(|(i, w)| w * scale[i / per_output])
            .collect();
        let bias: Vec<f32> = (0..out)
            .map(|o| bn.beta[o] - bn.mean[o] * scale[o])
            .collect();
        ConvBn {
            weight: Tensor::<1>::from_floats(folded.as_slice(), device).reshape(shape),
            bias: Tensor::<1>::from_floats(bias.as_slice(), device),
            stride: [stride, stride],
            padding,
            groups,
        }
    }

    /// Adds the convolution (batch norm folded in, no activation) to `graph` after the value
    /// `input`; its output value.
    pub fn build(&self, graph: &mut Graph, input: usize) -> usize {
        let operation = Operation::Conv {
            weight: self.weight.clone(),
            bias: Some(self.bias.clone()),
            stride: self.stride,
            padding: self.padding,
            dilation: [1, 1],
            groups: self.groups,
        };
        graph.push(operation, vec![input])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_geometry_of_inception_stem() {
        let w = |kernel, stride, padding| Window {
            kernel,
            stride,
            padding: Some(padding),
            context: 0,
        };
        // conv s2, conv, conv p1, max-pool s2: Inception v3's stem up to pool0.
        let geometry = chain_geometry(&[w(3, 2, 0), w(3, 1, 0), w(3, 1, 1), w(3, 2, 0)]);
        assert_eq!((geometry.stride, geometry.min_input), (4, 11));
        // Reach 2 + 2*2 + 1*2 + 2*2 = 12 pixels beyond a cell (the 3x3 p1 conv reaches 1).
        assert_eq!(geometry.halo, 12);
    }

    #[test]
    fn folded_batch_norm_matches_conv_then_norm() {
        let device = Device::flex();
        let bn = BatchNorm {
            gamma: Some(vec![2.0]),
            beta: vec![0.5],
            mean: vec![1.0],
            var: vec![3.0],
            epsilon: 1.0,
        };
        let conv = ConvBn::new(
            vec![3.0],
            [1, 1, 1, 1],
            bn,
            1,
            Padding::Fixed([(0, 0); 2]),
            1,
            &device,
        );
        let mut graph = Graph::default();
        let output = conv.build(&mut graph, crate::backend::graph::INPUT);
        let x = Tensor::<1>::from_floats([2.0], &device).reshape([1, 1, 1, 1]);
        let y: f32 = graph.run(x, &[output]).unwrap().remove(0).into_scalar();
        // conv: 6; norm: 2 * (6 - 1) / sqrt(3 + 1) + 0.5 = 5.5
        assert!((y - 5.5).abs() < 1e-6, "{y}");
    }
}
