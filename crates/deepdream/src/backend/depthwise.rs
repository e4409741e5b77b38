//! Depthwise convolution for the CPU backend (each channel convolved with its own kernel,
//! as in EfficientNet and MobileNet), forward and gradient with respect to the input (added
//! to burn as a backend extension by [`conv`](crate::backend::conv)). burn's grouped
//! convolution runs a depthwise convolution as thousands of one-channel matrix products and
//! its gradient as a transposed convolution; here each channel's plane is one task: copied
//! into a zero border (columns split by phase for a stride, so that every tap reads
//! contiguous values), then correlated with its kernel sixteen outputs at a time, the sums
//! kept in registers across all taps. The input gradient is the same correlation of the
//! output gradient, spread out by the stride, with the kernel turned by 180°. Any kernel
//! size, stride, and per-side padding.

use burn::backend::TensorMetadata;
use burn::backend::ops::ConvOptions;
use burn::tensor::{Shape, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::backend::cpu::floats;
use crate::backend::geometry::{ConvGeometry, cpu_output_size};

/// Outputs computed together, kept in registers while every tap is added.
const BLOCK: usize = 16;

/// One plane copied into a zero border, for a correlation: value `(y, x)` of the source
/// lands at padded row `top + y·spread[0]` and column `left + x·spread[1]`, and the padded
/// columns are split by their phase modulo `phases`, so that a tap of a strided correlation
/// reads a contiguous run of each row.
struct Padded {
    rows: usize,
    /// Values per row of one phase.
    row: usize,
    phases: usize,
}

impl Padded {
    /// Room for a `[kh, kw]` correlation at stride `[sy, phases]` with `out` outputs, the
    /// last block of each row read in full.
    fn new([kh, kw]: [usize; 2], [sy, phases]: [usize; 2], [out_h, out_w]: [usize; 2]) -> Self {
        Self {
            rows: (out_h.max(1) - 1) * sy + kh,
            row: out_w.div_ceil(BLOCK) * BLOCK + (kw - 1) / phases,
            phases,
        }
    }

    fn phase_len(&self) -> usize {
        self.rows * self.row
    }

    /// Fills `buffer` with `source` (`[height, width]`) placed as described on [`Padded`].
    fn fill(
        &self,
        buffer: &mut Vec<f32>,
        source: &[f32],
        [height, width]: [usize; 2],
        spread: [usize; 2],
        [top, left]: [isize; 2],
    ) {
        buffer.clear();
        buffer.resize(self.phases * self.phase_len(), 0.0);
        for y in 0..height {
            let r = top + (y * spread[0]) as isize;
            if r < 0 || r as usize >= self.rows {
                continue;
            }
            let line = &source[y * width..(y + 1) * width];
            let start = r as usize * self.row;
            for phase in 0..self.phases {
                let dest = &mut buffer[phase * self.phase_len() + start..][..self.row];
                self.fill_row(dest, line, spread[1], left - phase as isize);
            }
        }
    }

    /// One row of one phase: `dest[j] = line[x]` where `left + x·spread = j·phases` (the
    /// phase's own offset taken off `left`); either `spread` or the phases are 1.
    fn fill_row(&self, dest: &mut [f32], line: &[f32], spread: usize, left: isize) {
        let phases = self.phases as isize;
        if spread == 1 {
            // x = j·phases - left, for the j that put x inside the line.
            let first = if left > 0 {
                (left as usize).div_ceil(self.phases)
            } else {
                0
            };
            let last = line.len() as isize - 1 + left;
            let end = if last < 0 {
                0
            } else {
                (last as usize / self.phases + 1).min(dest.len())
            };
            if phases == 1 {
                let first = first.min(end);
                let from = (first as isize - left) as usize;
                dest[first..end].copy_from_slice(&line[from..from + end - first]);
                return;
            }
            for (j, d) in dest.iter_mut().enumerate().take(end).skip(first) {
                *d = line[(j as isize * phases - left) as usize];
            }
        } else {
            // One phase: column left + x·spread.
            let first = if left < 0 {
                (left.unsigned_abs()).div_ceil(spread)
            } else {
                0
            };
            for (x, &v) in line.iter().enumerate().skip(first) {
                let c = (left + (x * spread) as isize) as usize;
                if c >= dest.len() {
                    break;
                }
                dest[c] = v;
            }
        }
    }

    /// `out[oy][ox] = bias + Σ taps[ky][kx] · padded[oy·sy + ky][ox·phases + kx]`, computed
    /// [`BLOCK`] outputs at a time.
    fn correlate(
        &self,
        buffer: &[f32],
        kernel: (&[f32], [usize; 2]),
        sy: usize,
        bias: f32,
        out: &mut [f32],
        out_w: usize,
    ) {
        // Where each kernel column starts reading, from the start of a block's row.
        let columns: Vec<usize> = (0..kernel.1[1])
            .map(|kx| (kx % self.phases) * self.phase_len() + kx / self.phases)
            .collect();
        let rows = (self.row, sy);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { correlate_avx512(buffer, kernel, &columns, rows, bias, out, out_w) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { correlate_avx2(buffer, kernel, &columns, rows, bias, out, out_w) };
        }
        correlate_blocks(buffer, kernel, &columns, rows, bias, out, out_w);
    }
}

/// The loop of [`Padded::correlate`]: `columns[kx]` is where kernel column `kx` starts
/// reading, `row` the values per padded row, `sy` the stride between output rows.
#[inline(always)]
fn correlate_blocks(
    buffer: &[f32],
    (taps, [kh, kw]): (&[f32], [usize; 2]),
    columns: &[usize],
    (row, sy): (usize, usize),
    bias: f32,
    out: &mut [f32],
    out_w: usize,
) {
    for (oy, out_row) in out.chunks_mut(out_w).enumerate() {
        for (block, values) in out_row.chunks_mut(BLOCK).enumerate() {
            let mut sums = [bias; BLOCK];
            for ky in 0..kh {
                let line = (oy * sy + ky) * row + block * BLOCK;
                for (&column, &tap) in columns.iter().zip(&taps[ky * kw..(ky + 1) * kw]) {
                    let start = line + column;
                    let inputs: &[f32; BLOCK] =
                        buffer[start..start + BLOCK].try_into().expect("block");
                    for (sum, v) in sums.iter_mut().zip(inputs) {
                        *sum += tap * v;
                    }
                }
            }
            values.copy_from_slice(&sums[..values.len()]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn correlate_avx512(
    buffer: &[f32],
    kernel: (&[f32], [usize; 2]),
    columns: &[usize],
    rows: (usize, usize),
    bias: f32,
    out: &mut [f32],
    out_w: usize,
) {
    correlate_blocks(buffer, kernel, columns, rows, bias, out, out_w);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn correlate_avx2(
    buffer: &[f32],
    kernel: (&[f32], [usize; 2]),
    columns: &[usize],
    rows: (usize, usize),
    bias: f32,
    out: &mut [f32],
    out_w: usize,
) {
    correlate_blocks(buffer, kernel, columns, rows, bias, out, out_w);
}

/// Forward pass on `f32` slices (NCHW), bias added.
fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    [channels, height, width]: [usize; 3],
    kernel: [usize; 2],
    g: ConvGeometry,
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let taps_per_channel = kernel[0] * kernel[1];
    let planes = x.len() / (height * width).max(1);
    let mut out = vec![0.0f32; planes * out_h * out_w];
    if out.is_empty() {
        return out;
    }
    let padded = Padded::new(kernel, g.stride, [out_h, out_w]);
    let corner = [g.pad[0] as isize, g.pad[1] as isize];
    out.par_chunks_mut(out_h * out_w).enumerate().for_each_init(
        Vec::new,
        |buffer, (plane, out)| {
            let c = plane % channels;
            let input = &x[plane * height * width..(plane + 1) * height * width];
            let taps = &weight[c * taps_per_channel..(c + 1) * taps_per_channel];
            padded.fill(buffer, input, [height, width], [1, 1], corner);
            padded.correlate(buffer, (taps, kernel), g.stride[0], bias[c], out, out_w);
        },
    );
    out
}

/// Input gradient on `f32` slices: the correlation of the output gradient, spread out by
/// the stride, with the kernel turned by 180°.
fn input_grad(
    grad: &[f32],
    weight: &[f32],
    [channels, height, width]: [usize; 3],
    kernel @ [kh, kw]: [usize; 2],
    g: ConvGeometry,
    [out_h, out_w]: [usize; 2],
) -> Vec<f32> {
    let taps_per_channel = kh * kw;
    let planes = grad.len() / (out_h * out_w).max(1);
    let mut gin = vec![0.0f32; planes * height * width];
    if gin.is_empty() || out_h * out_w == 0 {
        return gin;
    }
    let padded = Padded::new(kernel, [1, 1], [height, width]);
    let corner = [
        kh as isize - 1 - g.pad[0] as isize,
        kw as isize - 1 - g.pad[1] as isize,
    ];
    gin.par_chunks_mut(height * width)
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(buffer, turned), (plane, gin)| {
                let c = plane % channels;
                let grad = &grad[plane * out_h * out_w..(plane + 1) * out_h * out_w];
                turned.clear();
                turned.extend(
                    weight[c * taps_per_channel..(c + 1) * taps_per_channel]
                        .iter()
                        .rev(),
                );
                padded.fill(buffer, grad, [out_h, out_w], g.stride, corner);
                padded.correlate(buffer, (turned, kernel), 1, 0.0, gin, width);
            },
        );
    gin
}

/// `x` (`[N, C, H, W]`) convolved channel by channel with `weight` (`[C, 1, kh, kw]`) plus
/// `bias` (`[C]`), giving `out_height` x `out_width` outputs.
pub(crate) fn conv(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    geometry: ConvGeometry,
    [out_height, out_width]: [usize; 2],
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

/// The gradient of [`conv`] with respect to its `in_height` x `in_width` input, from the
/// gradient of its output.
pub(crate) fn conv_input_grad(
    output_grad: FlexTensor,
    weight: FlexTensor,
    geometry: ConvGeometry,
    [in_height, in_width]: [usize; 2],
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

/// The output size when the depthwise kernel computes this convolution: one input channel
/// per group, one output per group, and the CPU kernels' conditions ([`cpu_output_size`]);
/// `None` otherwise.
pub fn output_size(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<[usize; 2]> {
    let [_, channels, _, _] = x.dims();
    let [out_channels, per_group, _, _] = weight.dims();
    let depthwise =
        options.groups == channels && out_channels == channels && per_group == 1 && channels > 1;
    if !depthwise {
        return None;
    }
    cpu_output_size(x, weight, bias, options)
}
