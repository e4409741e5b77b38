//! Fast 3x3, stride-1 convolution for the CPU backend: Winograd F(4x4, 3x3) for the forward
//! pass and for the gradient with respect to the input, added to burn as a backend extension
//! (a custom operation on `Flex` with its own backward pass under `Autodiff`).
//!
//! [`crate::backend::conv::conv2d`], a drop-in for `burn::tensor::module::conv2d`, takes this path
//! ([`conv2d`]) for the convolutions it covers (3x3 kernel, stride 1, no dilation, no
//! groups, `f32`, CPU, weight and bias not requiring gradients). DeepDream changes the image, never the network, so the weight gradient — as
//! costly as the forward pass — is never computed.

pub mod winograd;

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::Bytes;
use burn::tensor::{Shape, Tensor, TensorData};
use burn_flex::{FlexTensor, Layout};

use crate::backend::cpu::floats;
use crate::backend::geometry::cpu_output_size;
use crate::backend::tracked::{InputGradient, unary_op};
use winograd::{Conv3x3Geometry, TransformedKernel};

/// The 3x3, stride-1 convolution as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait Conv3x3Backend: Backend {
    /// `x` (NCHW) convolved with `weight` (`[out][in][3][3]`) plus `bias`, padded by
    /// `pad_top` and `pad_left` (negative crops), giving `out_height` x `out_width` outputs.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_top: isize,
        pad_left: isize,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Self::conv3x3`] with respect to its input `in_height` x `in_width`,
    /// from the gradient of its output: the convolution of `output_grad` with the kernel
    /// rotated by 180° and its channels swapped, padded by `2 - pad`.
    fn conv3x3_input_grad(
        output_grad: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pad_top: isize,
        pad_left: isize,
        in_height: usize,
        in_width: usize,
    ) -> FloatTensor<Self> {
        let in_channels = weight.shape()[1];
        let zero_bias = Self::float_zeros(
            Shape::from([in_channels]),
            &weight.device(),
            weight.dtype().into(),
        );
        let rotated = Self::float_flip(Self::float_swap_dims(weight, 0, 1), &[2, 3]);
        Self::conv3x3(
            output_grad,
            rotated,
            zero_bias,
            2 - pad_top,
            2 - pad_left,
            in_height,
            in_width,
        )
    }
}

impl Conv3x3Backend for Flex {
    fn conv3x3(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        pad_top: isize,
        pad_left: isize,
        out_height: usize,
        out_width: usize,
    ) -> FlexTensor {
        let geometry = geometry(&x, &weight, pad_top, pad_left, out_height, out_width, false);
        let kernel = cached_kernel(&weight, Direction::Forward);
        let output = winograd::conv3x3(&floats(&x), &kernel, Some(&floats(&bias)), &geometry);
        flex_tensor(output, &geometry)
    }

    fn conv3x3_input_grad(
        output_grad: FlexTensor,
        weight: FlexTensor,
        pad_top: isize,
        pad_left: isize,
        in_height: usize,
        in_width: usize,
    ) -> FlexTensor {
        let geometry = geometry(
            &output_grad,
            &weight,
            2 - pad_top,
            2 - pad_left,
            in_height,
            in_width,
            true,
        );
        let kernel = cached_kernel(&weight, Direction::InputGradient);
        let grad = winograd::conv3x3(&floats(&output_grad), &kernel, None, &geometry);
        flex_tensor(grad, &geometry)
    }
}

/// The convolution's geometry; `transposed` when `weight` maps the tensor's channels back
/// (the input-gradient convolution).
fn geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    pad_top: isize,
    pad_left: isize,
    out_height: usize,
    out_width: usize,
    transposed: bool,
) -> Conv3x3Geometry {
    let [batch, in_channels, in_height, in_width] = x.shape().dims();
    let [w_out, w_in, _, _] = weight.shape().dims();
    Conv3x3Geometry {
        batch,
        in_channels,
        in_height,
        in_width,
        out_channels: if transposed { w_in } else { w_out },
        out_height,
        out_width,
        pad_top,
        pad_left,
    }
}

/// Which convolution a transformed kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    InputGradient,
}

/// A weight tensor's transformed kernel, kept while anything else holds the weight.
struct CachedKernel {
    /// Holding the weight's storage keeps it from being reused or changed in place (burn
    /// changes a tensor's storage in place only when nothing else shares it).
    storage: Arc<Bytes>,
    layout: Layout,
    direction: Direction,
    kernel: Arc<TransformedKernel>,
}

/// Transformed kernels of the weights in use: a dream runs every convolution with the same
/// weights hundreds of times, and transforming a 512x512 kernel takes about as long as a
/// small convolution.
static KERNELS: Mutex<Vec<CachedKernel>> = Mutex::new(Vec::new());

/// `weight`'s kernel transformed for `direction`, from [`KERNELS`] when it is there.
fn cached_kernel(weight: &FlexTensor, direction: Direction) -> Arc<TransformedKernel> {
    let storage = weight.data_arc();
    let found = |cache: &mut Vec<CachedKernel>| {
        // Weights that only the cache still holds are gone for good.
        cache.retain(|entry| Arc::strong_count(&entry.storage) > 1);
        cache
            .iter()
            .find(|entry| {
                Arc::ptr_eq(&entry.storage, &storage)
                    && entry.layout == *weight.layout()
                    && entry.direction == direction
            })
            .map(|entry| entry.kernel.clone())
    };
    if let Some(kernel) = found(&mut KERNELS.lock().expect("kernel cache")) {
        return kernel;
    }
    let [out_channels, in_channels] = [weight.shape()[0], weight.shape()[1]];
    let taps = floats(weight);
    let kernel = Arc::new(match direction {
        Direction::Forward => TransformedKernel::forward(&taps, out_channels, in_channels),
        Direction::InputGradient => {
            TransformedKernel::input_gradient(&taps, out_channels, in_channels)
        }
    });
    KERNELS.lock().expect("kernel cache").push(CachedKernel {
        storage,
        layout: weight.layout().clone(),
        direction,
        kernel: kernel.clone(),
    });
    kernel
}

fn flex_tensor(values: Vec<f32>, g: &Conv3x3Geometry) -> FlexTensor {
    let shape = [g.batch, g.out_channels, g.out_height, g.out_width];
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

/// What the 3x3 convolution keeps for its input gradient.
#[derive(Clone, Debug)]
struct Conv3x3Gradient<B: Backend> {
    weight: B::FloatTensorPrimitive,
    pad: [isize; 2],
    input: [usize; 2],
}

impl<B: Backend + Conv3x3Backend> InputGradient<B> for Conv3x3Gradient<B> {
    fn input_gradient(self, grad: B::FloatTensorPrimitive) -> B::FloatTensorPrimitive {
        let ([top, left], [height, width]) = (self.pad, self.input);
        B::conv3x3_input_grad(grad, self.weight, top, left, height, width)
    }
}

impl<B: Backend + Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_top: isize,
        pad_left: isize,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self> {
        let [_, _, in_height, in_width] = x.shape().dims();
        let (weight, bias) = (weight.into_primitive(), bias.into_primitive());
        unary_op::<B, C, _>(x, |x| {
            let state = Conv3x3Gradient::<B> {
                weight: weight.clone(),
                pad: [pad_top, pad_left],
                input: [in_height, in_width],
            };
            let output = B::conv3x3(x, weight, bias, pad_top, pad_left, out_height, out_width);
            (output, state)
        })
    }
}

/// A 3x3, stride-1 convolution through the Winograd kernel; `size` from [`output_size`]
/// ([`crate::backend::conv::conv2d`] chooses between the kernels).
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: &ConvOptions<2>,
    [out_height, out_width]: [usize; 2],
) -> Tensor<4> {
    let [(top, _), (left, _)] = options.padding;
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &weight.device()));
    let output = <burn::backend::Dispatch as Conv3x3Backend>::conv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        top as isize,
        left as isize,
        out_height,
        out_width,
    );
    Tensor::from_dispatch(output)
}

/// The output size (height, width) when the Winograd path computes this convolution: a
/// 3x3, stride-1, ungrouped, undilated `f32` convolution on the CPU whose weight and bias
/// need no gradient and whose output is not empty; `None` for burn's convolution.
pub fn output_size(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<[usize; 2]> {
    let [_, _, kh, kw] = weight.dims();
    let fits = [kh, kw] == [3, 3] && options.stride == [1, 1] && options.groups == 1;
    if !fits {
        return None;
    }
    cpu_output_size(x, weight, bias, options)
}
