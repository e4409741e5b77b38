//! Convolution on the fastest path there is for it: the Winograd kernel for 3x3 stride-1
//! convolutions ([`conv3x3`](crate::backend::conv3x3)), the depthwise kernel for depthwise ones
//! ([`depthwise`](crate::backend::depthwise)), matrix products on a padded copy for every other
//! ungrouped one ([`conv_gemm`](crate::backend::conv_gemm)), burn's own convolution for grouped ones
//! and on GPU devices.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use crate::backend::geometry::ConvGeometry;
use crate::backend::tracked::{InputGradient, unary_op};
use crate::backend::{conv_gemm, conv3x3, depthwise};

/// The CPU kernels that compute a convolution and its input gradient on plain values, under
/// one backend extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuConv {
    /// Matrix products on a padded copy ([`conv_gemm`]).
    Gemm,
    /// One channel per group ([`depthwise`]).
    Depthwise,
}

/// A convolution through one of the [`CpuConv`] kernels, as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait CpuConvBackend: Backend {
    /// `x` (`[N, C, H, W]`) convolved with `weight` plus `bias` by `kernel`, giving
    /// `out_height` x `out_width` outputs.
    fn cpu_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        kernel: CpuConv,
        geometry: ConvGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Self::cpu_conv`] with respect to its `in_height` x `in_width`
    /// input, from the gradient of its output.
    fn cpu_conv_input_grad(
        output_grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        kernel: CpuConv,
        geometry: ConvGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FloatTensor<Self>;
}

impl CpuConvBackend for Flex {
    fn cpu_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        kernel: CpuConv,
        geometry: ConvGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FlexTensor {
        let size = [out_height, out_width];
        match kernel {
            CpuConv::Gemm => conv_gemm::conv(x, weight, bias, geometry, size),
            CpuConv::Depthwise => depthwise::conv(x, weight, bias, geometry, size),
        }
    }

    fn cpu_conv_input_grad(
        output_grad: FlexTensor,
        weight: FlexTensor,
        kernel: CpuConv,
        geometry: ConvGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FlexTensor {
        let size = [in_height, in_width];
        match kernel {
            CpuConv::Gemm => conv_gemm::conv_input_grad(output_grad, weight, geometry, size),
            CpuConv::Depthwise => depthwise::conv_input_grad(output_grad, weight, geometry, size),
        }
    }
}

/// What a convolution keeps for its input gradient.
#[derive(Clone, Debug)]
struct ConvGradient<B: Backend> {
    weight: B::FloatTensorPrimitive,
    kernel: CpuConv,
    geometry: ConvGeometry,
    input: [usize; 2],
}

impl<B: Backend + CpuConvBackend> InputGradient<B> for ConvGradient<B> {
    fn input_gradient(self, grad: B::FloatTensorPrimitive) -> B::FloatTensorPrimitive {
        let [height, width] = self.input;
        B::cpu_conv_input_grad(grad, self.weight, self.kernel, self.geometry, height, width)
    }
}

impl<B: Backend + CpuConvBackend, C: CheckpointStrategy> CpuConvBackend for Autodiff<B, C> {
    fn cpu_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        kernel: CpuConv,
        geometry: ConvGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self> {
        let [_, _, in_height, in_width] = x.shape().dims();
        let (weight, bias) = (weight.into_primitive(), bias.into_primitive());
        unary_op::<B, C, _>(x, |x| {
            let state = ConvGradient::<B> {
                weight: weight.clone(),
                kernel,
                geometry,
                input: [in_height, in_width],
            };
            let output = B::cpu_conv(x, weight, bias, kernel, geometry, out_height, out_width);
            (output, state)
        })
    }

    fn cpu_conv_input_grad(
        output_grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        kernel: CpuConv,
        geometry: ConvGeometry,
        in_height: usize,
        in_width: usize,
    ) -> FloatTensor<Self> {
        // Only reached through the backward pass above, which runs on the inner backend.
        let grad = B::cpu_conv_input_grad(
            output_grad.into_primitive(),
            weight.into_primitive(),
            kernel,
            geometry,
            in_height,
            in_width,
        );
        <Self as AutodiffBackend>::from_inner(grad)
    }
}

/// A convolution through `kernel`; `size` from its module's `output_size`.
pub fn cpu_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    kernel: CpuConv,
    options: &ConvOptions<2>,
    [out_height, out_width]: [usize; 2],
) -> Tensor<4> {
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    let output = <burn::backend::Dispatch as CpuConvBackend>::cpu_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        kernel,
        ConvGeometry::of(options),
        out_height,
        out_width,
    );
    Tensor::from_dispatch(output)
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
        return cpu_conv(x, weight, bias, CpuConv::Depthwise, &options, size);
    }
    if let Some(size) = conv_gemm::output_size(&x, &weight, bias.as_ref(), &options) {
        return cpu_conv(x, weight, bias, CpuConv::Gemm, &options, size);
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}
