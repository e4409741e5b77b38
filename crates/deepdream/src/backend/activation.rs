//! Clamping activations (ReLU, ReLU6, ONNX `Clip`) for the CPU backend with a one-pass backward,
//! added to burn as a backend extension. burn's `clamp` computes its gradient with two
//! comparisons and two masked fills over the tensor; EfficientNet applies ReLU6 after nearly
//! every convolution, and that backward took over a quarter of its step (perf). Here the
//! gradient is `grad` where the output lies strictly between the bounds and 0 elsewhere (as
//! PyTorch's `hardtanh`), in a single pass over the output kept from the forward pass.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::cpu::{floats, on_cpu, with_simd};
use crate::backend::tracked::{InputGradient, unary_op};

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// Clamping as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait ClampBackend: Backend {
    /// `x` clamped to `min..=max`.
    fn clamp_activation(x: FloatTensor<Self>, min: f32, max: f32) -> FloatTensor<Self>;

    /// The gradient of [`Self::clamp_activation`] from its output `y` and the gradient of
    /// the output: `grad` where `min < y < max`, else 0.
    fn clamp_activation_grad(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        min: f32,
        max: f32,
    ) -> FloatTensor<Self>;
}

impl ClampBackend for Flex {
    fn clamp_activation(x: FlexTensor, min: f32, max: f32) -> FlexTensor {
        let mut x = owned(x);
        x.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .for_each(|chunk| {
                // Selects rather than `f32::clamp`, so that the loop vectorises; NaN passes.
                with_simd(
                    #[inline(always)]
                    || {
                        for v in chunk {
                            let low = if *v < min { min } else { *v };
                            *v = if low > max { max } else { low };
                        }
                    },
                )
            });
        x
    }

    fn clamp_activation_grad(y: FlexTensor, grad: FlexTensor, min: f32, max: f32) -> FlexTensor {
        let y = floats(&y);
        let mut grad = owned(grad);
        grad.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .for_each(|(grad, y)| {
                with_simd(
                    #[inline(always)]
                    || {
                        for (g, &y) in grad.iter_mut().zip(y) {
                            *g = if (y > min) & (y < max) { *g } else { 0.0 };
                        }
                    },
                )
            });
        grad
    }
}

/// `tensor` as a contiguous tensor that owns exactly its values, to change in place: itself
/// when it is one already (an activation's input usually is), else a copy.
fn owned(tensor: FlexTensor) -> FlexTensor {
    let count = tensor.shape().num_elements();
    let exact = tensor.is_unique()
        && tensor.as_slice::<f32>().is_some_and(|v| v.len() == count)
        && tensor.storage::<f32>().len() == count;
    if exact {
        return tensor;
    }
    let shape = tensor.shape();
    FlexTensor::from_data(TensorData::new(floats(&tensor).into_owned(), shape))
}

/// What the clamp keeps for its gradient: its output and bounds.
#[derive(Clone, Debug)]
struct ClampGradient<B: Backend> {
    output: B::FloatTensorPrimitive,
    bounds: [f32; 2],
}

impl<B: Backend + ClampBackend> InputGradient<B> for ClampGradient<B> {
    fn input_gradient(self, grad: B::FloatTensorPrimitive) -> B::FloatTensorPrimitive {
        let [min, max] = self.bounds;
        B::clamp_activation_grad(self.output, grad, min, max)
    }
}

impl<B: Backend + ClampBackend, C: CheckpointStrategy> ClampBackend for Autodiff<B, C> {
    fn clamp_activation(x: FloatTensor<Self>, min: f32, max: f32) -> FloatTensor<Self> {
        unary_op::<B, C, _>(x, |x| {
            let output = B::clamp_activation(x, min, max);
            let state = ClampGradient::<B> {
                output: output.clone(),
                bounds: [min, max],
            };
            (output, state)
        })
    }

    fn clamp_activation_grad(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        min: f32,
        max: f32,
    ) -> FloatTensor<Self> {
        // Only reached through the backward pass above, which runs on the inner backend.
        let grad = B::clamp_activation_grad(y.into_primitive(), grad.into_primitive(), min, max);
        <Self as AutodiffBackend>::from_inner(grad)
    }
}

/// `x.clamp(min, max)`, through the one-pass kernel on the CPU (`f32`), burn's elsewhere.
pub fn clamp<const D: usize>(x: Tensor<D>, min: f32, max: f32) -> Tensor<D> {
    if x.dtype() != DType::F32 || !on_cpu(&x.device()) {
        return x.clamp(min, max);
    }
    let output =
        <burn::backend::Dispatch as ClampBackend>::clamp_activation(x.into_dispatch(), min, max);
    Tensor::from_dispatch(output)
}

/// ReLU: `x` clamped to `0..`, through the same one-pass kernel (its gradient passes where
/// the output is positive and finite).
pub fn relu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    clamp(x, 0.0, f32::INFINITY)
}

/// Local response normalisation across channels (ONNX's `LRN`, GoogLeNet's):
/// `x / (bias + alpha · mean of x² over `size` neighbouring channels)^beta`, the window
/// zero-padded at the ends.
pub fn lrn(x: Tensor<4>, size: usize, alpha: f32, beta: f32, bias: f32) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    // The mean of squares over a window of channels, as an average pool over the channel
    // axis that counts the zero padding.
    let squares = x.clone().powi_scalar(2).reshape([n, 1, c, h * w]);
    let lo = (size - 1) / 2;
    let options = burn::tensor::ops::AvgPoolOptions {
        kernel_size: [size, 1],
        stride: [1, 1],
        padding: [(lo, size - 1 - lo), (0, 0)],
        count_include_pad: true,
        ceil_mode: false,
    };
    let mean = crate::backend::pool::avg_pool2d(squares, options).reshape([n, c, h, w]);
    x.div(mean.mul_scalar(alpha).add_scalar(bias).powf_scalar(beta))
}

/// ReLU6: `x` clamped to `0..=6`.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    clamp(x, 0.0, 6.0)
}
