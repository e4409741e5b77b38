//! Pooling on the CPU. Max pooling is a backend extension (forward, and a backward pass that
//! recomputes each window's maximum and adds the gradient there), several times faster than
//! burn's with indices (15 % of an Inception v3 step went there, perf).
//!
//! Average pooling on the CPU is a depthwise convolution with a kernel of ones, scaled by
//! the reciprocal of each window's count (all taps, or only those inside the image when
//! padding is not counted). Its gradient is then the depthwise kernel's input gradient,
//! which is several times faster than burn's average-pool backward (7.8 % of an Inception v3
//! step went there, perf). Ceil-mode pools and GPU devices use burn's `avg_pool2d`.

use std::ops::Range;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::conv;
use crate::backend::cpu::{floats, on_cpu, with_simd};
use crate::backend::geometry::window_output;
use crate::backend::tracked::{InputGradient, unary_op};

/// A drop-in for `burn::tensor::module::avg_pool2d`.
pub fn avg_pool2d(x: Tensor<4>, options: AvgPoolOptions<2>) -> Tensor<4> {
    let [_, channels, height, width] = x.dims();
    let [kh, kw] = options.kernel_size;
    let out = |size, k, stride, pad| window_output(size, k, stride, 1, pad, false);
    let size = (
        out(height, kh, options.stride[0], options.padding[0]),
        out(width, kw, options.stride[1], options.padding[1]),
    );
    let (Some(out_h), Some(out_w)) = size else {
        return burn::tensor::module::avg_pool2d(x, options);
    };
    if options.ceil_mode || x.dtype() != DType::F32 || !on_cpu(&x.device()) || out_h * out_w == 0 {
        return burn::tensor::module::avg_pool2d(x, options);
    }
    let device = x.device();
    let ones = Tensor::<4>::ones([channels, 1, kh, kw], &device);
    let sums = conv::conv2d(
        x,
        ones,
        None,
        ConvOptions::new_with_padding(options.stride, options.padding, [1, 1], channels),
    );
    // How many taps of each window count.
    let counted = |out: usize, k: usize, stride: usize, (pad, _): (usize, usize), size: usize| {
        (0..out)
            .map(|o| {
                if options.count_include_pad {
                    k
                } else {
                    (0..k)
                        .filter(|&t| (o * stride + t).checked_sub(pad).is_some_and(|i| i < size))
                        .count()
                }
            })
            .collect::<Vec<usize>>()
    };
    let rows = counted(out_h, kh, options.stride[0], options.padding[0], height);
    let cols = counted(out_w, kw, options.stride[1], options.padding[1], width);
    let scale: Vec<f32> = rows
        .iter()
        .flat_map(|&r| cols.iter().map(move |&c| 1.0 / (r * c).max(1) as f32))
        .collect();
    let scale = Tensor::<1>::from_floats(scale.as_slice(), &device).reshape([1, 1, out_h, out_w]);
    sums.mul(scale)
}

/// Where a max-pool window sits: kernel, stride and the padding before the first row and
/// column (padding never wins: windows only look at values inside the image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Window size, rows then columns.
    pub kernel: [usize; 2],
    /// Stride, rows then columns.
    pub stride: [usize; 2],
    /// Rows above and columns left of the input that windows may cover.
    pub pad: [usize; 2],
}

/// Max pooling as a backend operation, with its own backward pass that routes each output's
/// gradient to the first input of its window equal to the output.
#[backend_extension(Flex, Autodiff)]
pub trait MaxPoolBackend: Backend {
    /// The largest value of each window of `x` (`[N, C, H, W]`), `out_height` x `out_width`
    /// windows.
    fn max_pool(
        x: FloatTensor<Self>,
        geometry: PoolGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Self::max_pool`] with respect to `x`, from its `output` and the
    /// output's gradient.
    fn max_pool_input_grad(
        x: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: PoolGeometry,
    ) -> FloatTensor<Self>;
}

/// The input rows (or columns) that window `o` covers along one dimension.
fn window_span(o: usize, kernel: usize, stride: usize, pad: usize, size: usize) -> Range<usize> {
    let start = (o * stride).saturating_sub(pad).min(size);
    let end = (o * stride + kernel).saturating_sub(pad).min(size);
    start..end.max(start)
}

/// The larger of two values, NaN if either is (as PyTorch's max pooling).
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}

/// One plane's max pool: the windows' rows reduced first (contiguous, vectorised), then
/// each window's columns of that row. A window over padding only gives -inf.
fn max_pool_plane(
    plane: &[f32],
    [height, width]: [usize; 2],
    g: PoolGeometry,
    columns: &[Range<usize>],
    out: &mut [f32],
) {
    let mut rows_max = vec![f32::NEG_INFINITY; width];
    for (oy, out_row) in out.chunks_mut(columns.len()).enumerate() {
        let rows = window_span(oy, g.kernel[0], g.stride[0], g.pad[0], height);
        rows_max.fill(f32::NEG_INFINITY);
        for y in rows {
            let line = &plane[y * width..(y + 1) * width];
            with_simd(
                #[inline(always)]
                || {
                    for (m, &v) in rows_max.iter_mut().zip(line) {
                        *m = nan_max(*m, v);
                    }
                },
            );
        }
        for (o, cols) in out_row.iter_mut().zip(columns) {
            *o = rows_max[cols.clone()]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
        }
    }
}

/// One plane's input gradient: each output's gradient added at the first input of its
/// window (row by row) that equals the window's maximum `out`.
fn max_pool_plane_grad(
    plane: &[f32],
    [height, width]: [usize; 2],
    g: PoolGeometry,
    columns: &[Range<usize>],
    (out, grad): (&[f32], &[f32]),
    gin: &mut [f32],
) {
    let out_w = columns.len();
    for (oy, (out_row, grad_row)) in out.chunks(out_w).zip(grad.chunks(out_w)).enumerate() {
        let rows = window_span(oy, g.kernel[0], g.stride[0], g.pad[0], height);
        let three_rows = rows.len() == 3;
        for ((&m, &dy), cols) in out_row.iter().zip(grad_row).zip(columns) {
            let nan = m.is_nan();
            if three_rows && cols.len() == 3 && !nan {
                // The usual 3x3 window inside the image: where its maximum lies is random, so
                // the search below mispredicts about one branch per window; here the nine
                // comparisons make one mask instead, and its lowest bit is the first match.
                let top = rows.start * width + cols.start;
                let window: [f32; 9] =
                    std::array::from_fn(|i| plane[top + (i / 3) * width + i % 3]);
                let matches = window
                    .iter()
                    .enumerate()
                    .fold(0u32, |mask, (i, &v)| mask | (u32::from(v == m) << i));
                if matches != 0 {
                    let first = matches.trailing_zeros() as usize;
                    gin[top + (first / 3) * width + first % 3] += dy;
                }
                continue;
            }
            'window: for y in rows.clone() {
                let row = y * width;
                for x in cols.clone() {
                    let v = plane[row + x];
                    if v == m || (nan && v.is_nan()) {
                        gin[row + x] += dy;
                        break 'window;
                    }
                }
            }
        }
    }
}

impl MaxPoolBackend for Flex {
    fn max_pool(x: FlexTensor, g: PoolGeometry, out_height: usize, out_width: usize) -> FlexTensor {
        let [batch, channels, height, width] = x.shape().dims();
        let x = floats(&x);
        let columns: Vec<_> = (0..out_width)
            .map(|o| window_span(o, g.kernel[1], g.stride[1], g.pad[1], width))
            .collect();
        let out_plane = out_height * out_width;
        let mut out = vec![f32::NEG_INFINITY; batch * channels * out_plane];
        if out_plane > 0 && height * width > 0 {
            out.par_chunks_mut(out_plane)
                .zip(x.par_chunks(height * width))
                .for_each(|(out, plane)| max_pool_plane(plane, [height, width], g, &columns, out));
        }
        let shape = Shape::from([batch, channels, out_height, out_width]);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn max_pool_input_grad(
        x: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        g: PoolGeometry,
    ) -> FlexTensor {
        let [batch, channels, height, width] = x.shape().dims();
        let [_, _, out_height, out_width] = output_grad.shape().dims();
        let (x, out, grad) = (floats(&x), floats(&output), floats(&output_grad));
        let columns: Vec<_> = (0..out_width)
            .map(|o| window_span(o, g.kernel[1], g.stride[1], g.pad[1], width))
            .collect();
        let (plane, out_plane) = (height * width, out_height * out_width);
        let mut gin = vec![0.0f32; batch * channels * plane];
        if plane > 0 && out_plane > 0 {
            gin.par_chunks_mut(plane)
                .zip(x.par_chunks(plane))
                .zip(out.par_chunks(out_plane).zip(grad.par_chunks(out_plane)))
                .for_each(|((gin, x), out_and_grad)| {
                    max_pool_plane_grad(x, [height, width], g, &columns, out_and_grad, gin)
                });
        }
        let shape = Shape::from([batch, channels, height, width]);
        FlexTensor::from_data(TensorData::new(gin, shape))
    }
}

/// What max pooling keeps for its gradient: its input and output.
#[derive(Clone, Debug)]
struct MaxPoolGradient<B: Backend> {
    input: B::FloatTensorPrimitive,
    output: B::FloatTensorPrimitive,
    geometry: PoolGeometry,
}

impl<B: Backend + MaxPoolBackend> InputGradient<B> for MaxPoolGradient<B> {
    fn input_gradient(self, grad: B::FloatTensorPrimitive) -> B::FloatTensorPrimitive {
        B::max_pool_input_grad(self.input, self.output, grad, self.geometry)
    }
}

impl<B: Backend + MaxPoolBackend, C: CheckpointStrategy> MaxPoolBackend for Autodiff<B, C> {
    fn max_pool(
        x: FloatTensor<Self>,
        geometry: PoolGeometry,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self> {
        unary_op::<B, C, _>(x, |x| {
            let output = B::max_pool(x.clone(), geometry, out_height, out_width);
            let state = MaxPoolGradient::<B> {
                input: x,
                output: output.clone(),
                geometry,
            };
            (output, state)
        })
    }

    fn max_pool_input_grad(
        x: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        geometry: PoolGeometry,
    ) -> FloatTensor<Self> {
        // Only reached through the backward pass above, which runs on the inner backend.
        let grad = B::max_pool_input_grad(
            x.into_primitive(),
            output.into_primitive(),
            output_grad.into_primitive(),
            geometry,
        );
        <Self as AutodiffBackend>::from_inner(grad)
    }
}

/// A drop-in for `burn::tensor::module::max_pool2d`: this module's kernel for `f32` on the
/// CPU without dilation, burn's otherwise.
pub fn max_pool2d(x: Tensor<4>, options: MaxPoolOptions<2>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let [kh, kw] = options.kernel_size;
    let out = |size, k, stride, pad| window_output(size, k, stride, 1, pad, options.ceil_mode);
    let size = (
        out(height, kh, options.stride[0], options.padding[0]),
        out(width, kw, options.stride[1], options.padding[1]),
    );
    let (Some(out_height), Some(out_width)) = size else {
        return burn::tensor::module::max_pool2d(x, options);
    };
    if options.dilation != [1, 1] || x.dtype() != DType::F32 || !on_cpu(&x.device()) {
        return burn::tensor::module::max_pool2d(x, options);
    }
    let geometry = PoolGeometry {
        kernel: options.kernel_size,
        stride: options.stride,
        pad: [options.padding[0].0, options.padding[1].0],
    };
    let output = <burn::backend::Dispatch as MaxPoolBackend>::max_pool(
        x.into_dispatch(),
        geometry,
        out_height,
        out_width,
    );
    Tensor::from_dispatch(output)
}
