//! Depthwise convolution for the CPU backend (each channel convolved with its own kernel,
//! as in EfficientNet and MobileNet), forward and gradient with respect to the input, added
//! to burn as a backend extension like [`conv3x3`](crate::conv3x3). burn's grouped
//! convolution runs a depthwise convolution as thousands of one-channel matrix products and
//! its gradient as a transposed convolution; here each channel's plane is one task, and each
//! kernel tap adds a shifted row of the input times the tap to the output row (a loop the
//! compiler vectorises for stride 1). Any kernel size, stride, and per-side padding.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::autodiff::{Autodiff, checkpoint::base::Checkpointer, grads::Gradients};
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::conv3x3::{floats, on_cpu};
use crate::layers::window_output;

/// Where the kernel sits: stride and the padding before the first row and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    /// Stride, both directions.
    pub stride: [usize; 2],
    /// Zero rows above and columns left of the input.
    pub pad: [usize; 2],
}

/// The depthwise convolution as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait DepthwiseBackend: Backend {
    /// `x` (`[N, C, H, W]`) convolved channel by channel with `weight` (`[C, 1, kh, kw]`)
    /// plus `bias` (`[C]`), giving `out_height` x `out_width` outputs.
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Self::depthwise_conv`] with respect to its `in_height` x `in_width`
    /// input, from the gradient of its output.
    fn depthwise_input_grad(
        output_grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FloatTensor<Self>;
}

/// The output columns `ox` whose input column `ox * stride + tap - pad` lies in `0..size`.
fn valid_outputs(
    tap: usize,
    stride: usize,
    pad: usize,
    size: usize,
    outputs: usize,
) -> std::ops::Range<usize> {
    let first = pad.saturating_sub(tap).div_ceil(stride);
    let last = (size + pad)
        .checked_sub(tap + 1)
        .map_or(0, |v| v / stride + 1);
    first..last.min(outputs)
}

/// Calls `f(oy, iy, tap, cols, first)` for every kernel tap and output row of one plane
/// whose input row `iy` lies inside the image: the tap's value, the output columns `cols` it
/// reaches there and the input column `first` of the first of them.
fn for_each_placement(
    taps: &[f32],
    [kh, kw]: [usize; 2],
    g: DepthwiseGeometry,
    [height, width]: [usize; 2],
    [out_h, out_w]: [usize; 2],
    mut f: impl FnMut(usize, usize, f32, std::ops::Range<usize>, usize),
) {
    for ky in 0..kh {
        for oy in valid_outputs(ky, g.stride[0], g.pad[0], height, out_h) {
            let iy = oy * g.stride[0] + ky - g.pad[0];
            for kx in 0..kw {
                let cols = valid_outputs(kx, g.stride[1], g.pad[1], width, out_w);
                if !cols.is_empty() {
                    let first = cols.start * g.stride[1] + kx - g.pad[1];
                    f(oy, iy, taps[ky * kw + kx], cols, first);
                }
            }
        }
    }
}

/// `out[i] += tap * input[i * stride]` (a loop the compiler vectorises for stride 1).
fn add_gathered(out: &mut [f32], input: &[f32], stride: usize, tap: f32) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(input) {
            *o += tap * v;
        }
    } else {
        for (o, &v) in out.iter_mut().zip(input.iter().step_by(stride)) {
            *o += tap * v;
        }
    }
}

/// `out[i * stride] += tap * input[i]`.
fn add_scattered(out: &mut [f32], input: &[f32], stride: usize, tap: f32) {
    if stride == 1 {
        for (o, &v) in out.iter_mut().zip(input) {
            *o += tap * v;
        }
    } else {
        for (o, &v) in out.iter_mut().step_by(stride).zip(input) {
            *o += tap * v;
        }
    }
}

/// Forward pass on `f32` slices (NCHW), bias added.
pub fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    [channels, height, width]: [usize; 3],
    kernel: [usize; 2],
    g: DepthwiseGeometry,
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let taps_per_channel = kernel[0] * kernel[1];
    let planes = x.len() / (height * width).max(1);
    let mut out = vec![0.0f32; planes * out_h * out_w];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(out_h * out_w)
        .enumerate()
        .for_each(|(plane, out)| {
            let c = plane % channels;
            let input = &x[plane * height * width..(plane + 1) * height * width];
            let taps = &weight[c * taps_per_channel..(c + 1) * taps_per_channel];
            out.fill(bias[c]);
            let sizes = ([height, width], [out_h, out_w]);
            for_each_placement(
                taps,
                kernel,
                g,
                sizes.0,
                sizes.1,
                |oy, iy, tap, cols, first| {
                    let out_row = &mut out[oy * out_w..(oy + 1) * out_w];
                    let row = &input[iy * width..(iy + 1) * width];
                    add_gathered(&mut out_row[cols], &row[first..], g.stride[1], tap);
                },
            );
        });
    out
}

/// Input gradient on `f32` slices: each output gradient spread back over the inputs it
/// read, times the taps.
pub fn input_grad(
    grad: &[f32],
    weight: &[f32],
    [channels, height, width]: [usize; 3],
    kernel: [usize; 2],
    g: DepthwiseGeometry,
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let taps_per_channel = kernel[0] * kernel[1];
    let planes = grad.len() / (out_h * out_w).max(1);
    let mut gin = vec![0.0f32; planes * height * width];
    if gin.is_empty() || out_h * out_w == 0 {
        return gin;
    }
    gin.par_chunks_mut(height * width)
        .enumerate()
        .for_each(|(plane, gin)| {
            let c = plane % channels;
            let grad = &grad[plane * out_h * out_w..(plane + 1) * out_h * out_w];
            let taps = &weight[c * taps_per_channel..(c + 1) * taps_per_channel];
            let sizes = ([height, width], [out_h, out_w]);
            for_each_placement(
                taps,
                kernel,
                g,
                sizes.0,
                sizes.1,
                |oy, iy, tap, cols, first| {
                    let grad_row = &grad[oy * out_w..(oy + 1) * out_w];
                    let row = &mut gin[iy * width..(iy + 1) * width];
                    add_scattered(&mut row[first..], &grad_row[cols], g.stride[1], tap);
                },
            );
        });
    gin
}

impl DepthwiseBackend for Flex {
    fn depthwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: DepthwiseGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FlexTensor {
        let [batch, channels, height, width] = x.shape().dims();
        let [_, _, kh, kw] = weight.shape().dims();
        let out = forward(
            &floats(&x),
            &floats(&weight),
            &floats(&bias),
            [channels, height, width],
            [kh, kw],
            geometry,
            [out_height, out_width],
        );
        let shape = Shape::from([batch, channels, out_height, out_width]);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn depthwise_input_grad(
        output_grad: FlexTensor,
        weight: FlexTensor,
        geometry: DepthwiseGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FlexTensor {
        let [batch, channels, out_height, out_width] = output_grad.shape().dims();
        let [_, _, kh, kw] = weight.shape().dims();
        let gin = input_grad(
            &floats(&output_grad),
            &floats(&weight),
            [channels, in_height, in_width],
            [kh, kw],
            geometry,
            [out_height, out_width],
        );
        let shape = Shape::from([batch, channels, in_height, in_width]);
        FlexTensor::from_data(TensorData::new(gin, shape))
    }
}

impl<B: Backend + DepthwiseBackend, C: CheckpointStrategy> DepthwiseBackend for Autodiff<B, C> {
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DepthwiseInputGrad;

        impl<B: Backend + DepthwiseBackend> Backward<B, 1> for DepthwiseInputGrad {
            /// The weight, the geometry and the input's size.
            type State = (B::FloatTensorPrimitive, DepthwiseGeometry, usize, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (weight, geometry, in_height, in_width) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::depthwise_input_grad(grad, weight, geometry, in_height, in_width)
                });
            }
        }

        let [_, _, in_height, in_width] = x.shape().dims();
        let (x, node) = x.into_parts();
        let weight = weight.into_primitive();
        let output = B::depthwise_conv(
            x,
            weight.clone(),
            bias.into_primitive(),
            geometry,
            out_height,
            out_width,
        );
        match DepthwiseInputGrad
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((weight, geometry, in_height, in_width), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn depthwise_input_grad(
        output_grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: DepthwiseGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FloatTensor<Self> {
        // Only reached through the backward pass above, which runs on the inner backend.
        let grad = B::depthwise_input_grad(
            output_grad.into_primitive(),
            weight.into_primitive(),
            geometry,
            in_height,
            in_width,
        );
        <Self as AutodiffBackend>::from_inner(grad)
    }
}

/// The output size when the depthwise kernel computes this convolution: one input channel
/// per group, one output per group, no dilation, `f32` on the CPU, weight and bias needing
/// no gradient; `None` otherwise.
pub fn output_size(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<[usize; 2]> {
    let [_, channels, height, width] = x.dims();
    let [out_channels, per_group, kh, kw] = weight.dims();
    let applies = options.groups == channels
        && out_channels == channels
        && per_group == 1
        && channels > 1
        && options.dilation == [1, 1]
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32 && !b.is_require_grad())
        && !weight.is_require_grad()
        && on_cpu(&x.device());
    if !applies {
        return None;
    }
    let [pad_y, pad_x] = options.padding;
    Some([
        window_output(height, kh, options.stride[0], 1, pad_y, false)?,
        window_output(width, kw, options.stride[1], 1, pad_x, false)?,
    ])
}

/// A depthwise convolution through this module's kernel; `size` from [`output_size`].
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
    [out_height, out_width]: [usize; 2],
) -> Tensor<4> {
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    let geometry = DepthwiseGeometry {
        stride: options.stride,
        pad: [options.padding[0].0, options.padding[1].0],
    };
    let output = <burn::backend::Dispatch as DepthwiseBackend>::depthwise_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
        out_height,
        out_width,
    );
    Tensor::from_dispatch(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_output_ranges_stay_inside_the_input() {
        // Width 5, stride 2, pad 1, 3 taps: outputs 0..3 read columns -1..5.
        assert_eq!(valid_outputs(0, 2, 1, 5, 3), 1..3);
        assert_eq!(valid_outputs(1, 2, 1, 5, 3), 0..3);
        assert_eq!(valid_outputs(2, 2, 1, 5, 3), 0..2);
        // A tap that never lands inside.
        assert_eq!(valid_outputs(9, 1, 0, 5, 3), 0..0);
    }
}
