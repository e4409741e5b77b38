//! The arithmetic of sliding windows shared by the kernels and the networks: where a kernel
//! sits, how large its output is, and when the CPU kernels may compute a convolution.

use burn::backend::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use crate::backend::cpu::on_cpu;

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

/// Output size of a sliding window along one dimension (`None` if empty), with ONNX's rule
/// that in ceil mode the last window must start inside the input or its leading padding.
pub fn window_output(
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: (usize, usize),
    ceil: bool,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = size + pad.0 + pad.1;
    if padded < span {
        return None;
    }
    let mut out = if ceil {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    if ceil && (out - 1) * stride >= size + pad.0 {
        out -= 1;
    }
    (out > 0).then_some(out)
}
/// ONNX/TensorFlow `SAME` padding for one dimension: the output is `ceil(size / stride)`;
/// the odd pixel goes at the end (`upper`) or the start.
pub fn same_padding(
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    upper: bool,
) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let needed =
        (out.saturating_sub(1) * stride + (kernel - 1) * dilation + 1).saturating_sub(size);
    let (small, large) = (needed / 2, needed - needed / 2);
    if upper {
        (small, large)
    } else {
        (large, small)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_end() {
        assert_eq!(same_padding(224, 3, 2, 1, true), (0, 1));
        assert_eq!(same_padding(224, 3, 2, 1, false), (1, 0));
        assert_eq!(same_padding(7, 5, 1, 1, true), (2, 2));
    }
}
