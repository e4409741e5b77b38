//! Convolution of any kernel size and stride for the CPU backend as matrix products on a
//! padded copy of the input, forward and gradient with respect to the input (added to burn
//! as a backend extension by [`conv`](crate::backend::conv)).
//!
//! The input is copied once into a zero border, its columns and rows split by their phase
//! modulo the stride, so that every kernel tap reads each channel as one contiguous run of
//! `out_height x row` values at a fixed offset. A 1x1 convolution is then a single product
//! on the input as it is. Other kernels gather every tap's runs into one `in·taps x
//! out_height·row` matrix and multiply once (the inner dimension long, as the matrix
//! product likes it), or, where that matrix would be large, run one product per tap,
//! `weight[:, :, ky, kx] (out x in) · shifted input`, accumulated into a row-padded output.
//! The input gradient runs the same products transposed, adding into the padded copy,
//! which is then read back.

use burn::backend::TensorMetadata;
use burn::backend::ops::ConvOptions;
use burn::tensor::{Shape, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::cpu::{floats, with_simd};
use crate::backend::geometry::{ConvGeometry, cpu_output_size};

/// The largest matrix of gathered taps (values): 32 MiB. Larger inputs take one product per
/// tap instead, which needs no extra memory.
const MOST_GATHERED: usize = 8 << 20;

/// The padded, phase-split copy of one image: for each of the `stride[0] x stride[1]`
/// phases, every channel as `rows x row` values, one row of slack below so that a tap's
/// contiguous run never reaches the next channel.
#[derive(Clone, Copy, Debug)]
struct Layout {
    channels: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    input: [usize; 2],
    out: [usize; 2],
    /// Values per row of a phase: the output row plus the reach of the kernel.
    row: usize,
    /// Rows per channel of a phase.
    rows: usize,
    /// Whether the taps are gathered into one `channels·taps x span` matrix for a single
    /// product with a long inner dimension: faster than one short product per tap (Inception
    /// v3's 5x5 and 1x7 convolutions, 1.4–2x) wherever the matrix is not too large.
    gather: bool,
}

impl Layout {
    fn new(
        channels: usize,
        kernel: [usize; 2],
        g: ConvGeometry,
        input: [usize; 2],
        out: [usize; 2],
    ) -> Self {
        let reach = |k: usize, s: usize| (k - 1) / s;
        let single_tap = kernel == [1, 1];
        let row = out[1] + reach(kernel[1], g.stride[1]);
        let gathered = channels * kernel[0] * kernel[1] * out[0] * row;
        Self {
            channels,
            kernel,
            stride: g.stride,
            pad: g.pad,
            input,
            out,
            row,
            rows: out[0] + reach(kernel[0], g.stride[0]) + usize::from(!single_tap),
            gather: !single_tap && gathered <= MOST_GATHERED,
        }
    }

    /// Whether the copy is the input itself: a 1x1 kernel, stride 1, no padding.
    fn is_identity(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.out == self.input
    }

    fn plane(&self) -> usize {
        self.rows * self.row
    }

    fn phase_len(&self) -> usize {
        self.channels * self.plane()
    }

    fn len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.phase_len()
    }

    /// Values per output channel in the row-padded output.
    fn span(&self) -> usize {
        self.out[0] * self.row
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Where tap `(ky, kx)` starts reading channel 0.
    fn tap_offset(&self, ky: usize, kx: usize) -> usize {
        let [sy, sx] = self.stride;
        ((ky % sy) * sx + kx % sx) * self.phase_len() + (ky / sy) * self.row + kx / sx
    }

    /// Calls `f(input index, copy index, count)` for each run of one channel's input: `count`
    /// values `stride[1]` apart in an input row that lie side by side in one row of the copy
    /// (one run per row and column phase).
    fn for_each_run(&self, channel: usize, mut f: impl FnMut(usize, usize, usize)) {
        let [height, width] = self.input;
        let [sy, sx] = self.stride;
        let [py, px] = self.pad;
        for y in 0..height {
            let r = y + py;
            let (phase_y, qy) = (r % sy, r / sy);
            if qy >= self.rows {
                continue;
            }
            let source = (channel * height + y) * width;
            for phase_x in 0..sx {
                // Copy column j of this phase holds input column j·sx + phase_x - px.
                let first = px.saturating_sub(phase_x).div_ceil(sx);
                let Some(last) = (width + px).checked_sub(phase_x + 1) else {
                    continue;
                };
                let end = (last / sx + 1).min(self.row);
                if first >= end {
                    continue;
                }
                let at = (phase_y * sx + phase_x) * self.phase_len()
                    + channel * self.plane()
                    + qy * self.row
                    + first;
                f(source + first * sx + phase_x - px, at, end - first);
            }
        }
    }

    /// The padded copy of one image's input.
    fn scatter(&self, input: &[f32]) -> Vec<f32> {
        let mut copy = vec![0.0f32; self.len()];
        let shared = SharedMut(copy.as_mut_ptr());
        let step = self.stride[1];
        (0..self.channels).into_par_iter().for_each(|channel| {
            let shared = &shared;
            self.for_each_run(channel, |from, to, count| {
                // SAFETY: every channel writes its own planes, inside the copy.
                let run = unsafe { std::slice::from_raw_parts_mut(shared.0.add(to), count) };
                if step == 1 {
                    run.copy_from_slice(&input[from..from + count]);
                } else {
                    for (value, &v) in run.iter_mut().zip(input[from..].iter().step_by(step)) {
                        *value = v;
                    }
                }
            });
        });
        copy
    }

    /// One image's input gradient read back from its padded copy.
    fn gather(&self, copy: &[f32], grad: &mut [f32]) {
        let [height, width] = self.input;
        let step = self.stride[1];
        grad.par_chunks_mut(height * width)
            .enumerate()
            .for_each(|(channel, plane)| {
                let first = channel * height * width;
                self.for_each_run(channel, |from, to, count| {
                    let values = &copy[to..to + count];
                    let from = from - first;
                    if step == 1 {
                        plane[from..from + count].copy_from_slice(values);
                    } else {
                        for (g, &v) in plane[from..].iter_mut().step_by(step).zip(values) {
                            *g = v;
                        }
                    }
                });
            });
    }
}

/// A pointer that the channels' tasks write through, each to its own part.
struct SharedMut(*mut f32);
// SAFETY: the tasks write disjoint parts of the buffer (see `Layout::scatter`).
unsafe impl Sync for SharedMut {}

/// `dst (m x n, row stride dst_rs) (+)= lhs (m x k) · rhs (k x n, row stride rhs_rs)`.
///
/// # Safety
/// Every index the strides reach lies inside the pointers' allocations, and `dst` overlaps
/// neither operand nor itself.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    [lhs_rs, lhs_cs]: [usize; 2],
    rhs: *const f32,
    rhs_rs: usize,
) {
    let threads = rayon::current_num_threads();
    // SAFETY: the caller's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            1,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        );
    }
}

/// Forward pass of one image on `f32` slices: `x` is `C x H x W`, the result `O x oh x ow`.
fn forward_image(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    out_channels: usize,
    l: &Layout,
) -> Vec<f32> {
    let (taps, channels, span) = (l.taps(), l.channels, l.span());
    let copy;
    let source: &[f32] = if l.is_identity() {
        x
    } else {
        copy = l.scatter(x);
        &copy
    };
    let mut wide = vec![0.0f32; out_channels * span];
    wide.par_chunks_mut(span)
        .zip(bias)
        .for_each(|(plane, &b)| plane.fill(b));
    if span == 0 || channels == 0 {
        return compact(wide, l, out_channels);
    }
    if l.gather {
        let columns = gather_columns(source, l);
        // SAFETY: weight is out x (channels·taps) row-major, columns (channels·taps) x span,
        // wide out x span.
        unsafe {
            product(
                [out_channels, span, channels * taps],
                wide.as_mut_ptr(),
                span,
                true,
                weight.as_ptr(),
                [channels * taps, 1],
                columns.as_ptr(),
                span,
            );
        }
    } else {
        for ky in 0..l.kernel[0] {
            for kx in 0..l.kernel[1] {
                let offset = l.tap_offset(ky, kx);
                // SAFETY: the tap's weights are out x channels at strides (channels·taps, taps)
                // inside `weight`; channel c's run starts at offset + c·plane and ends before
                // the copy does (one row of slack per plane, the offset under one plane).
                unsafe {
                    product(
                        [out_channels, span, channels],
                        wide.as_mut_ptr(),
                        span,
                        true,
                        weight.as_ptr().add(ky * l.kernel[1] + kx),
                        [channels * taps, taps],
                        source.as_ptr().add(offset),
                        l.plane(),
                    );
                }
            }
        }
    }
    compact(wide, l, out_channels)
}

/// The `channels·taps x span` matrix of every tap's run of every channel.
fn gather_columns(source: &[f32], l: &Layout) -> Vec<f32> {
    let (taps, span) = (l.taps(), l.span());
    let mut columns = vec![0.0f32; l.channels * taps * span];
    columns
        .par_chunks_mut(span)
        .enumerate()
        .for_each(|(row, column)| {
            let (channel, tap) = (row / taps, row % taps);
            let start = l.tap_offset(tap / l.kernel[1], tap % l.kernel[1]) + channel * l.plane();
            column.copy_from_slice(&source[start..start + span]);
        });
    columns
}

/// The row-padded output without its padding.
fn compact(wide: Vec<f32>, l: &Layout, out_channels: usize) -> Vec<f32> {
    let [out_h, out_w] = l.out;
    if l.row == out_w {
        return wide;
    }
    let mut out = vec![0.0f32; out_channels * out_h * out_w];
    out.par_chunks_mut(out_w.max(1))
        .enumerate()
        .for_each(|(row, values)| {
            let start = row * l.row;
            values.copy_from_slice(&wide[start..start + out_w]);
        });
    out
}

/// Input gradient of one image on `f32` slices: `grad` is `O x oh x ow`, the result
/// `C x H x W`.
fn input_grad_image(grad: &[f32], weight: &[f32], out_channels: usize, l: &Layout) -> Vec<f32> {
    let [height, width] = l.input;
    let out_w = l.out[1];
    let (taps, channels, span) = (l.taps(), l.channels, l.span());
    let mut result = vec![0.0f32; channels * height * width];
    if span == 0 || out_channels == 0 || result.is_empty() {
        return result;
    }
    // The output gradient with zero row padding, so that what lands in the padding adds 0.
    let wide;
    let grad_wide: &[f32] = if l.row == out_w {
        grad
    } else {
        let mut padded = vec![0.0f32; out_channels * span];
        padded
            .par_chunks_mut(l.row)
            .enumerate()
            .for_each(|(row, values)| {
                values[..out_w].copy_from_slice(&grad[row * out_w..(row + 1) * out_w]);
            });
        wide = padded;
        &wide
    };
    if l.is_identity() {
        // SAFETY: result is channels x span (span = H·W here), weightᵀ channels x out at
        // strides (1, channels), grad out x span.
        unsafe {
            product(
                [channels, span, out_channels],
                result.as_mut_ptr(),
                span,
                false,
                weight.as_ptr(),
                [1, channels],
                grad_wide.as_ptr(),
                span,
            );
        }
        return result;
    }
    let mut copy = vec![0.0f32; l.len()];
    if l.gather {
        let mut columns = vec![0.0f32; channels * taps * span];
        // SAFETY: columns (channels·taps) x span, weightᵀ (channels·taps) x out at strides
        // (1, channels·taps), grad out x span.
        unsafe {
            product(
                [channels * taps, span, out_channels],
                columns.as_mut_ptr(),
                span,
                false,
                weight.as_ptr(),
                [1, channels * taps],
                grad_wide.as_ptr(),
                span,
            );
        }
        // Each tap's run added back where the forward pass read it; the taps of a channel
        // overlap, so channels are the tasks.
        copy_planes_mut(&mut copy, l)
            .into_par_iter()
            .for_each(|(channel, mut planes)| {
                for tap in 0..taps {
                    let start = l.tap_offset(tap / l.kernel[1], tap % l.kernel[1]);
                    let column = &columns[(channel * taps + tap) * span..][..span];
                    planes.add(start, column);
                }
            });
    } else {
        for ky in 0..l.kernel[0] {
            for kx in 0..l.kernel[1] {
                let offset = l.tap_offset(ky, kx);
                // SAFETY: channel c's run of the copy, offset + c·plane .. + span, stays inside
                // its plane (one row of slack), so the rows of this product never overlap;
                // weightᵀ is channels x out at strides (taps, channels·taps).
                unsafe {
                    product(
                        [channels, span, out_channels],
                        copy.as_mut_ptr().add(offset),
                        l.plane(),
                        true,
                        weight.as_ptr().add(ky * l.kernel[1] + kx),
                        [taps, channels * taps],
                        grad_wide.as_ptr(),
                        span,
                    );
                }
            }
        }
    }
    l.gather(&copy, &mut result);
    result
}

/// One channel's planes of the padded copy, in every phase.
struct ChannelPlanes {
    planes: Vec<*mut f32>,
    plane: usize,
    phase_len: usize,
}

// SAFETY: each `ChannelPlanes` points at its own channel's planes only.
unsafe impl Send for ChannelPlanes {}

impl ChannelPlanes {
    /// Adds `values` at `start` (a tap offset, counted from channel 0 of phase 0).
    fn add(&mut self, start: usize, values: &[f32]) {
        let (phase, within) = (start / self.phase_len, start % self.phase_len);
        // SAFETY: `within + values.len()` stays inside the plane (one row of slack).
        let plane = unsafe { std::slice::from_raw_parts_mut(self.planes[phase], self.plane) };
        with_simd(
            #[inline(always)]
            || {
                for (sum, v) in plane[within..within + values.len()].iter_mut().zip(values) {
                    *sum += v;
                }
            },
        );
    }
}

fn copy_planes_mut(copy: &mut [f32], l: &Layout) -> Vec<(usize, ChannelPlanes)> {
    let phases = l.stride[0] * l.stride[1];
    let base = copy.as_mut_ptr();
    (0..l.channels)
        .map(|channel| {
            let planes = (0..phases)
                // SAFETY: phase p's plane of this channel lies inside the copy.
                .map(|p| unsafe { base.add(p * l.phase_len() + channel * l.plane()) })
                .collect();
            (
                channel,
                ChannelPlanes {
                    planes,
                    plane: l.plane(),
                    phase_len: l.phase_len(),
                },
            )
        })
        .collect()
}

/// The images' results `f(0), f(1), …` one after the other.
fn per_image(batch: usize, f: impl Fn(usize) -> Vec<f32>) -> Vec<f32> {
    let mut images = (0..batch).map(f);
    let mut all = images.next().unwrap_or_default();
    for image in images {
        all.extend_from_slice(&image);
    }
    all
}

/// `x` (`[N, C, H, W]`) convolved with `weight` (`[O, C, kh, kw]`) plus `bias` (`[O]`),
/// giving `out_height` x `out_width` outputs.
pub(crate) fn conv(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    geometry: ConvGeometry,
    [out_height, out_width]: [usize; 2],
) -> FlexTensor {
    let [batch, channels, height, width] = x.shape().dims();
    let [out_channels, _, kh, kw] = weight.shape().dims();
    let layout = Layout::new(
        channels,
        [kh, kw],
        geometry,
        [height, width],
        [out_height, out_width],
    );
    let (x, weight, bias) = (floats(&x), floats(&weight), floats(&bias));
    let image = channels * height * width;
    let out = per_image(batch, |n| {
        forward_image(
            &x[n * image..(n + 1) * image],
            &weight,
            &bias,
            out_channels,
            &layout,
        )
    });
    let shape = Shape::from([batch, out_channels, out_height, out_width]);
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// The gradient of [`conv`] with respect to its `in_height` x `in_width` input, from the
/// gradient of its output.
pub(crate) fn conv_input_grad(
    output_grad: FlexTensor,
    weight: FlexTensor,
    geometry: ConvGeometry,
    [in_height, in_width]: [usize; 2],
) -> FlexTensor {
    let [batch, out_channels, out_height, out_width] = output_grad.shape().dims();
    let [_, channels, kh, kw] = weight.shape().dims();
    let layout = Layout::new(
        channels,
        [kh, kw],
        geometry,
        [in_height, in_width],
        [out_height, out_width],
    );
    let (grad, weight) = (floats(&output_grad), floats(&weight));
    let image = out_channels * out_height * out_width;
    let gin = per_image(batch, |n| {
        input_grad_image(
            &grad[n * image..(n + 1) * image],
            &weight,
            out_channels,
            &layout,
        )
    });
    let shape = Shape::from([batch, channels, in_height, in_width]);
    FlexTensor::from_data(TensorData::new(gin, shape))
}

/// The output size when this module computes the convolution: no groups, and the CPU
/// kernels' conditions ([`cpu_output_size`]); `None` otherwise.
pub fn output_size(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<[usize; 2]> {
    if options.groups != 1 {
        return None;
    }
    cpu_output_size(x, weight, bias, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in -1..1 from a simple generator (no tensors needed).
    fn values(count: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// The products per tap give what the gathered matrix gives (the integration tests check
    /// the gathered path, taken by small inputs, against burn).
    #[test]
    fn products_per_tap_match_the_gathered_product() {
        // channels, outputs, kernel, stride, pad, input
        let cases = [
            (5, 7, [3, 3], [1, 1], [1, 1], [9, 11]),
            (4, 6, [5, 5], [2, 2], [2, 2], [13, 12]),
            (8, 3, [1, 7], [1, 1], [0, 3], [6, 10]),
            (3, 4, [7, 1], [2, 1], [3, 0], [10, 5]),
            (6, 5, [2, 2], [2, 2], [0, 1], [7, 7]),
            (2, 3, [3, 3], [1, 1], [2, 1], [1, 1]),
        ];
        for (channels, outputs, kernel, stride, pad, input) in cases {
            let out = [0, 1].map(|d| (input[d] + 2 * pad[d] - kernel[d]) / stride[d] + 1);
            let geometry = ConvGeometry { stride, pad };
            let gathered = Layout::new(channels, kernel, geometry, input, out);
            assert!(gathered.gather);
            let per_tap = Layout {
                gather: false,
                ..gathered
            };
            let x = values(channels * input[0] * input[1], 1);
            let weight = values(outputs * channels * kernel[0] * kernel[1], 2);
            let bias = values(outputs, 3);
            let grad = values(outputs * out[0] * out[1], 4);
            let close = |a: &[f32], b: &[f32]| {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-4)
            };
            let case = (channels, outputs, kernel, stride, pad, input);
            assert!(
                close(
                    &forward_image(&x, &weight, &bias, outputs, &per_tap),
                    &forward_image(&x, &weight, &bias, outputs, &gathered)
                ),
                "{case:?}: output"
            );
            assert!(
                close(
                    &input_grad_image(&grad, &weight, outputs, &per_tap),
                    &input_grad_image(&grad, &weight, outputs, &gathered)
                ),
                "{case:?}: gradient"
            );
        }
    }
}
