//! Convolution on the fastest path there is for it: the Winograd kernel for 3x3 stride-1
//! convolutions ([`conv3x3`](crate::conv3x3)), the depthwise kernel for depthwise ones
//! ([`depthwise`](crate::depthwise)), matrix products on a padded copy for every other
//! ungrouped one ([`conv_gemm`](crate::conv_gemm)), burn's own convolution for grouped ones
//! and on GPU devices.

use burn::backend::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use crate::cpu::on_cpu;
use crate::layers::window_output;
use crate::{conv_gemm, conv3x3, depthwise};

/// Where a kernel sits: stride and the padding before the first row and column (the
/// padding after follows from the output size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Stride, rows then columns.
    pub stride: [usize; 2],
    /// Zero rows above and columns left of the input.
    pub pad: [usize; 2],
}

impl ConvGeometry {
    /// The geometry of burn's convolution options.
    pub fn of(options: &ConvOptions<2>) -> Self {
        ConvGeometry {
            stride: options.stride,
            pad: [options.padding[0].0, options.padding[1].0],
        }
    }
}

/// The output size (height, width) when one of the CPU kernels may compute this
/// convolution: no dilation, `f32` on the CPU, weight and bias needing no gradient, an
/// output that is not empty; `None` for burn's convolution. Each kernel adds its own
/// conditions on the kernel's shape, stride and groups.
pub(crate) fn cpu_output_size(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<[usize; 2]> {
    let applies = options.dilation == [1, 1]
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32 && !b.is_require_grad())
        && !weight.is_require_grad()
        && on_cpu(&x.device());
    if !applies {
        return None;
    }
    let [_, _, height, width] = x.dims();
    let [_, _, kh, kw] = weight.dims();
    let [pad_y, pad_x] = options.padding;
    Some([
        window_output(height, kh, options.stride[0], 1, pad_y, false)?,
        window_output(width, kw, options.stride[1], 1, pad_x, false)?,
    ])
}

/// A drop-in for `burn::tensor::module::conv2d`.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    if let Some(size) = conv3x3::output_size(&x, &weight, bias.as_ref(), &options) {
        return conv3x3::conv2d(x, weight, bias, &options, size);
    }
    if let Some(size) = depthwise::output_size(&x, &weight, bias.as_ref(), &options) {
        return depthwise::conv2d(x, weight, bias, &options, size);
    }
    if let Some(size) = conv_gemm::output_size(&x, &weight, bias.as_ref(), &options) {
        return conv_gemm::conv2d(x, weight, bias, &options, size);
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}
