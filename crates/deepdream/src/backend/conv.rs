//! Convolution on the fastest path there is for it: the Winograd kernel for 3x3 stride-1
//! convolutions ([`conv3x3`](crate::backend::conv3x3)), the depthwise kernel for depthwise ones
//! ([`depthwise`](crate::backend::depthwise)), matrix products on a padded copy for every other
//! ungrouped one ([`conv_gemm`](crate::backend::conv_gemm)), burn's own convolution for grouped ones
//! and on GPU devices.

use burn::backend::ops::ConvOptions;
use burn::tensor::Tensor;

use crate::backend::{conv_gemm, conv3x3, depthwise};

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
