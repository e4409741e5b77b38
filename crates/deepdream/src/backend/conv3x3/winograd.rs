//! Winograd F(4x4, 3x3) convolution on plain `f32` slices (NCHW), multithreaded with rayon.
//!
//! Each 4x4 block of outputs comes from a 6x6 block of inputs: the input block and the 3x3
//! kernel are transformed (`Bᵀ d B`, `G g Gᵀ`), multiplied element by element (36 products
//! instead of the 144 of direct convolution; summed over input channels this is 36 matrix
//! products, done by the `gemm` crate), and transformed back (`Aᵀ m A`). Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks" (2016), interpolation points 0, ±1, ±2, ∞.
//!
//! The work is split into blocks of tile rows; each block gathers its input rows into a
//! channels-last buffer (so the transforms run on contiguous runs of channels, which the
//! compiler vectorises), transforms, multiplies and writes its own output rows.

use std::sync::Mutex;

use rayon::prelude::*;

use crate::backend::cpu::with_simd;

/// Channels handled together by the transforms (one AVX register of `f32`).
const LANES: usize = 8;
/// Winograd block: 6x6 inputs, 4x4 outputs.
const ALPHA: usize = 6;
const OUT: usize = 4;
/// Aim for about this many `f32` in a block's transformed inputs (its cache footprint).
const BLOCK_FLOATS: usize = 1 << 19;

/// Geometry of a 3x3, stride-1 convolution: sizes and the padding on the top and left (the
/// bottom and right follow from the output size). Negative padding crops the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3x3Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Channels of the input.
    pub in_channels: usize,
    /// Input rows.
    pub in_height: usize,
    /// Input columns.
    pub in_width: usize,
    /// Channels of the output.
    pub out_channels: usize,
    /// Output rows: output row `y` reads input rows `y - pad_top ..= y - pad_top + 2`.
    pub out_height: usize,
    /// Output columns: output column `x` reads input columns `x - pad_left ..= x - pad_left + 2`.
    pub out_width: usize,
    /// Zero rows above the input (negative: input rows skipped).
    pub pad_top: isize,
    /// Zero columns left of the input (negative: input columns skipped).
    pub pad_left: isize,
}

/// 3x3 kernels in the Winograd domain, laid out `[in_channels][36][out_channels]` with both
/// channel counts rounded up to [`LANES`] (the extra rows and columns are zero).
pub struct TransformedKernel {
    data: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
}

impl TransformedKernel {
    /// The kernel `weight` (`[out][in][3][3]`) of a forward convolution.
    pub fn forward(weight: &[f32], out_channels: usize, in_channels: usize) -> Self {
        Self::build(in_channels, out_channels, |o, i| {
            let start = (o * in_channels + i) * 9;
            std::array::from_fn(|ky| std::array::from_fn(|kx| weight[start + ky * 3 + kx]))
        })
    }

    /// The kernel of the convolution that maps the output gradient of `weight`'s forward
    /// convolution back to its input: channels swapped and the taps rotated by 180°.
    pub fn input_gradient(weight: &[f32], out_channels: usize, in_channels: usize) -> Self {
        Self::build(out_channels, in_channels, |o, i| {
            let start = (i * in_channels + o) * 9;
            std::array::from_fn(|ky| {
                std::array::from_fn(|kx| weight[start + (2 - ky) * 3 + 2 - kx])
            })
        })
    }

    /// `taps(out, in)` gives the 3x3 kernel from input channel `in` to output channel `out`
    /// of the convolution from `ins` to `outs` channels.
    fn build(ins: usize, outs: usize, taps: impl Fn(usize, usize) -> [[f32; 3]; 3] + Sync) -> Self {
        let outs_p = round_up(outs);
        let row = ALPHA * ALPHA * outs_p;
        let mut data = vec![0.0f32; round_up(ins) * row];
        data.par_chunks_mut(row)
            .take(ins)
            .enumerate()
            .for_each(|(i, planes)| {
                for o in 0..outs {
                    let g = taps(o, i);
                    // G g (6x3), then (G g) Gᵀ (6x6).
                    let columns: [[f32; ALPHA]; 3] =
                        std::array::from_fn(|c| kernel_1d([g[0][c], g[1][c], g[2][c]]));
                    for r in 0..ALPHA {
                        let u = kernel_1d([columns[0][r], columns[1][r], columns[2][r]]);
                        for (c, value) in u.into_iter().enumerate() {
                            planes[(r * ALPHA + c) * outs_p + o] = value;
                        }
                    }
                }
            });
        Self {
            data,
            in_channels: ins,
            out_channels: outs,
        }
    }
}

/// `G g` for one column of three taps.
#[inline(always)]
fn kernel_1d([g0, g1, g2]: [f32; 3]) -> [f32; ALPHA] {
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

fn round_up(channels: usize) -> usize {
    channels.div_ceil(LANES) * LANES
}

/// The convolution of `input` (NCHW, `geometry`'s input sizes) with `kernel`, plus `bias`
/// (one value per output channel) when given; NCHW output of `geometry`'s output sizes.
pub fn conv3x3(
    input: &[f32],
    kernel: &TransformedKernel,
    bias: Option<&[f32]>,
    geometry: &Conv3x3Geometry,
) -> Vec<f32> {
    let g = *geometry;
    assert_eq!(kernel.in_channels, g.in_channels, "kernel input channels");
    assert_eq!(
        kernel.out_channels, g.out_channels,
        "kernel output channels"
    );
    assert_eq!(
        input.len(),
        g.batch * g.in_channels * g.in_height * g.in_width
    );
    let mut output = vec![0.0f32; g.batch * g.out_channels * g.out_height * g.out_width];
    if output.is_empty() {
        return output;
    }
    let plan = Plan::new(&g);
    // The bias, rounded up to whole lanes like the output channels.
    let mut bias_lanes = vec![0.0f32; plan.out_p];
    if let Some(bias) = bias {
        bias_lanes[..g.out_channels].copy_from_slice(bias);
    }
    let out_ptr = SharedOutput(output.as_mut_ptr());
    let blocks: Vec<(usize, usize)> = (0..g.batch)
        .flat_map(|n| {
            (0..plan.tiles_y)
                .step_by(plan.rows_per_block)
                .map(move |r| (n, r))
        })
        .collect();
    blocks.into_par_iter().for_each(|(n, first_row)| {
        let rows = plan.rows_per_block.min(plan.tiles_y - first_row);
        let block = Block { n, first_row, rows };
        let mut scratch = Scratch::take(&plan);
        run_block(
            input,
            kernel,
            &bias_lanes,
            &g,
            &plan,
            &mut scratch,
            &block,
            out_ptr,
        );
        Scratch::give_back(scratch);
    });
    output
}

/// A block of whole tile rows of one image.
struct Block {
    n: usize,
    first_row: usize,
    rows: usize,
}

/// Sizes derived from the geometry, shared by every block.
struct Plan {
    tiles_y: usize,
    tiles_x: usize,
    rows_per_block: usize,
    in_p: usize,
    out_p: usize,
    /// Width of the gathered input rows: 4 per tile plus the 2 columns of overlap.
    gathered_width: usize,
}

impl Plan {
    fn new(g: &Conv3x3Geometry) -> Self {
        let tiles_y = g.out_height.div_ceil(OUT);
        let tiles_x = g.out_width.div_ceil(OUT);
        let (in_p, out_p) = (round_up(g.in_channels), round_up(g.out_channels));
        let tiles_wanted = (BLOCK_FLOATS / (ALPHA * ALPHA * in_p.max(out_p))).max(1);
        let rows_per_block = tiles_wanted.div_ceil(tiles_x).clamp(1, tiles_y);
        Self {
            tiles_y,
            tiles_x,
            rows_per_block,
            in_p,
            out_p,
            gathered_width: tiles_x * OUT + 2,
        }
    }
}

/// A block's buffers, pooled across blocks and calls (see [`SCRATCH_POOL`]).
struct Scratch {
    gathered: Vec<f32>,
    transformed: Vec<f32>,
    products: Vec<f32>,
}

/// Buffers of finished blocks, for the next ones: fresh allocations of this size come from
/// the operating system each time, page by page.
static SCRATCH_POOL: Mutex<Vec<Scratch>> = Mutex::new(Vec::new());

impl Scratch {
    /// Buffers big enough for a block of `plan`, from the pool when it has some.
    fn take(plan: &Plan) -> Self {
        let pooled = SCRATCH_POOL.lock().expect("scratch pool").pop();
        let mut scratch = pooled.unwrap_or(Self {
            gathered: Vec::new(),
            transformed: Vec::new(),
            products: Vec::new(),
        });
        let tiles = plan.rows_per_block * plan.tiles_x;
        let rows = plan.rows_per_block * OUT + 2;
        let grow = |buffer: &mut Vec<f32>, len: usize| {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
        };
        grow(
            &mut scratch.gathered,
            rows * plan.gathered_width * plan.in_p,
        );
        grow(&mut scratch.transformed, ALPHA * ALPHA * tiles * plan.in_p);
        grow(&mut scratch.products, ALPHA * ALPHA * tiles * plan.out_p);
        scratch
    }

    /// Returns the buffers to the pool (one set per thread is all that is ever needed).
    fn give_back(self) {
        let mut pool = SCRATCH_POOL.lock().expect("scratch pool");
        if pool.len() < rayon::current_num_threads() {
            pool.push(self);
        }
    }
}

/// The output buffer, written by several threads at disjoint rows.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: every block writes only its own output rows (see `run_block`), so no two threads
// write the same element, and nothing reads the buffer until all blocks are done.
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

/// Gathers, transforms, multiplies and transforms back one block, writing its output rows.
#[allow(clippy::too_many_arguments, reason = "one block's complete work order")]
fn run_block(
    input: &[f32],
    kernel: &TransformedKernel,
    bias_lanes: &[f32],
    g: &Conv3x3Geometry,
    plan: &Plan,
    scratch: &mut Scratch,
    block: &Block,
    output: SharedOutput,
) {
    let (in_p, out_p, width) = (plan.in_p, plan.out_p, plan.gathered_width);
    let tiles = block.rows * plan.tiles_x;
    with_simd(
        #[inline(always)]
        || gather_rows(input, g, plan, block, &mut scratch.gathered),
    );

    // Input transform: V[p][tile][c] = (Bᵀ d B)[p] for each tile and channel.
    let gathered = &scratch.gathered;
    let transformed = &mut scratch.transformed[..ALPHA * ALPHA * tiles * in_p];
    let stride_p = tiles * in_p;
    with_simd(
        #[inline(always)]
        || {
            for ty in 0..block.rows {
                for tx in 0..plan.tiles_x {
                    let tile = ty * plan.tiles_x + tx;
                    let origin = (ty * OUT * width + tx * OUT) * in_p;
                    for c in (0..in_p).step_by(LANES) {
                        let dst_offset = tile * in_p + c;
                        input_tile(
                            gathered,
                            origin + c,
                            width * in_p,
                            in_p,
                            transformed,
                            dst_offset,
                            stride_p,
                        );
                    }
                }
            }
        },
    );

    // 36 independent matrix products: M[p] (tiles x out) = V[p] (tiles x in) · U[p] (in x out).
    let products = &mut scratch.products[..ALPHA * ALPHA * tiles * out_p];
    let transformed = &*transformed;
    products
        .par_chunks_mut(tiles * out_p)
        .enumerate()
        .for_each(|(p, product)| {
            let lhs = &transformed[p * stride_p..(p + 1) * stride_p];
            // SAFETY: `product` is tiles x out_p row-major, `lhs` tiles x in_p row-major, and
            // the right-hand side is in_p rows of out_p at a row stride of 36 * out_p starting
            // at column block p, all within their slices; the destination overlaps neither.
            unsafe {
                gemm::gemm(
                    tiles,
                    out_p,
                    in_p,
                    product.as_mut_ptr(),
                    1,
                    out_p as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    in_p as isize,
                    kernel.data.as_ptr().add(p * out_p),
                    1,
                    (ALPHA * ALPHA * out_p) as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });

    // Output transform, (Aᵀ m A) + bias, straight into the NCHW output.
    let products = &*products;
    with_simd(
        #[inline(always)]
        || {
            for ty in 0..block.rows {
                let y = (block.first_row + ty) * OUT;
                let rows = OUT.min(g.out_height - y);
                for tx in 0..plan.tiles_x {
                    let tile = ty * plan.tiles_x + tx;
                    let x = tx * OUT;
                    let cols = OUT.min(g.out_width - x);
                    for c in (0..out_p).step_by(LANES) {
                        let values = output_tile(
                            products,
                            tile * out_p + c,
                            tiles * out_p,
                            &bias_lanes[c..c + LANES],
                        );
                        for (lane, channel) in (c..g.out_channels.min(c + LANES)).enumerate() {
                            let base = ((block.n * g.out_channels + channel) * g.out_height + y)
                                * g.out_width
                                + x;
                            for (r, row) in values.iter().take(rows).enumerate() {
                                for (col, value) in row.iter().take(cols).enumerate() {
                                    // SAFETY: output rows y..y + rows of image n belong to this
                                    // block alone, and channel < out_channels, y + r < out_height,
                                    // x + col < out_width keep the offset inside the output.
                                    unsafe {
                                        *output.0.add(base + r * g.out_width + col) = value[lane]
                                    };
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// Copies the input rows `block` reads into `gathered`, channels last (`[row][x][channel]`,
/// channels rounded up to [`LANES`]), zero where the padding is.
#[inline(always)]
fn gather_rows(
    input: &[f32],
    g: &Conv3x3Geometry,
    plan: &Plan,
    block: &Block,
    gathered: &mut [f32],
) {
    let (in_p, width) = (plan.in_p, plan.gathered_width);
    let gathered_rows = block.rows * OUT + 2;
    let gathered = &mut gathered[..gathered_rows * width * in_p];
    gathered.fill(0.0);
    let plane = g.in_height * g.in_width;
    // Gathered column x reads input column x - pad_left.
    let x_start = g.pad_left.max(0) as usize;
    let x_end = ((g.in_width as isize + g.pad_left).max(0) as usize).min(width);
    if x_start >= x_end {
        return;
    }
    for r in 0..gathered_rows {
        let y = (block.first_row * OUT + r) as isize - g.pad_top;
        if y < 0 || y >= g.in_height as isize {
            continue;
        }
        let row_out = &mut gathered[r * width * in_p..(r + 1) * width * in_p];
        let row_in = |c: usize| {
            let start = (block.n * g.in_channels + c) * plane + y as usize * g.in_width;
            let skip = (x_start as isize - g.pad_left) as usize;
            &input[start + skip..start + g.in_width]
        };
        let full = g.in_channels / LANES * LANES;
        for c0 in (0..full).step_by(LANES) {
            // Transpose LANES x LANES squares: LANES channels by LANES columns.
            let sources: [&[f32]; LANES] = std::array::from_fn(|l| row_in(c0 + l));
            let mut x = x_start;
            while x + LANES <= x_end {
                let offset = x - x_start;
                let square: [&[f32; LANES]; LANES] = std::array::from_fn(|l| {
                    sources[l][offset..offset + LANES]
                        .try_into()
                        .expect("LANES values")
                });
                let dst = &mut row_out[x * in_p + c0..(x + LANES - 1) * in_p + c0 + LANES];
                transpose_square(square, dst, in_p);
                x += LANES;
            }
            for x in x..x_end {
                for (l, source) in sources.iter().enumerate() {
                    row_out[x * in_p + c0 + l] = source[x - x_start];
                }
            }
        }
        for c in full..g.in_channels {
            for (k, value) in row_in(c)[..x_end - x_start].iter().enumerate() {
                row_out[(x_start + k) * in_p + c] = *value;
            }
        }
    }
}

/// Writes `square[l][k]` to `dst[k * stride + l]`: eight channels' runs of eight columns
/// turned into eight columns' runs of eight channels (with AVX2 shuffles where the CPU has
/// them).
#[inline(always)]
fn transpose_square(square: [&[f32; LANES]; LANES], dst: &mut [f32], stride: usize) {
    assert!(
        dst.len() >= (LANES - 1) * stride + LANES,
        "transpose destination"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked), and `dst` holds every row written (asserted).
        unsafe { transpose_avx2(square, dst.as_mut_ptr(), stride) };
        return;
    }
    for (k, row) in dst.chunks_mut(stride).take(LANES).enumerate() {
        for (l, value) in row[..LANES].iter_mut().enumerate() {
            *value = square[l][k];
        }
    }
}

/// The 8x8 transpose of [`transpose_square`] in eight AVX registers: interleave pairs of
/// rows, then pairs of pairs, then swap 128-bit halves.
///
/// # Safety
/// `dst + k * stride .. + 8` must be writable for every `k` in `0..8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_avx2(square: [&[f32; LANES]; LANES], dst: *mut f32, stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: each source row holds eight values; the caller vouches for `dst`.
    unsafe {
        let r: [__m256; LANES] = std::array::from_fn(|l| _mm256_loadu_ps(square[l].as_ptr()));
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        let columns = [
            _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
            _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
        ];
        for (k, column) in columns.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(k * stride), column);
        }
    }
}

/// Transforms the 6x6 input block at `src[origin..]` for [`LANES`] channels into the 36
/// planes of `dst` (`dst_stride` apart).
#[inline(always)]
fn input_tile(
    src: &[f32],
    origin: usize,
    row_stride: usize,
    pixel_stride: usize,
    dst: &mut [f32],
    dst_offset: usize,
    dst_stride: usize,
) {
    let load = |r: usize, col: usize| -> [f32; LANES] {
        let start = origin + r * row_stride + col * pixel_stride;
        src[start..start + LANES].try_into().unwrap()
    };
    // Bᵀ d along the rows, for each column.
    let mut columns = [[[0.0f32; LANES]; ALPHA]; ALPHA];
    for (col, column) in columns.iter_mut().enumerate() {
        let d: [[f32; LANES]; ALPHA] = std::array::from_fn(|r| load(r, col));
        *column = input_1d(&d);
    }
    // (Bᵀ d) B along the columns, for each row.
    let rows: [[[f32; LANES]; ALPHA]; ALPHA] =
        std::array::from_fn(|r| std::array::from_fn(|col| columns[col][r]));
    for (r, row) in rows.iter().enumerate() {
        let v = input_1d(row);
        for (col, values) in v.iter().enumerate() {
            let start = dst_offset + (r * ALPHA + col) * dst_stride;
            dst[start..start + LANES].copy_from_slice(values);
        }
    }
}

/// `Bᵀ d` for six lanes-wide values.
#[inline(always)]
fn input_1d(d: &[[f32; LANES]; ALPHA]) -> [[f32; LANES]; ALPHA] {
    let mut out = [[0.0f32; LANES]; ALPHA];
    for l in 0..LANES {
        let [d0, d1, d2, d3, d4, d5] = [d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]];
        out[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        out[1][l] = -4.0 * (d1 + d2) + d3 + d4;
        out[2][l] = 4.0 * (d1 - d2) - d3 + d4;
        out[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        out[4][l] = 2.0 * (d1 - d3) - d2 + d4;
        out[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    out
}

/// `Aᵀ m` for six lanes-wide values.
#[inline(always)]
fn output_1d(m: &[[f32; LANES]; ALPHA]) -> [[f32; LANES]; OUT] {
    let mut out = [[0.0f32; LANES]; OUT];
    for l in 0..LANES {
        let [m0, m1, m2, m3, m4, m5] = [m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]];
        let (sum12, diff12) = (m1 + m2, m1 - m2);
        let (sum34, diff34) = (m3 + m4, m3 - m4);
        out[0][l] = m0 + sum12 + sum34;
        out[1][l] = diff12 + 2.0 * diff34;
        out[2][l] = sum12 + 4.0 * sum34;
        out[3][l] = diff12 + 8.0 * diff34 + m5;
    }
    out
}

/// Transforms the 36 products of one tile for [`LANES`] channels back into its 4x4 outputs
/// (`[row][column][lane]`) and adds `bias`.
#[inline(always)]
fn output_tile(
    src: &[f32],
    src_offset: usize,
    src_stride: usize,
    bias: &[f32],
) -> [[[f32; LANES]; OUT]; OUT] {
    let load = |p: usize| -> [f32; LANES] {
        let start = src_offset + p * src_stride;
        src[start..start + LANES].try_into().unwrap()
    };
    // Aᵀ m along the rows, for each of the six columns.
    let mut columns = [[[0.0f32; LANES]; OUT]; ALPHA];
    for (col, column) in columns.iter_mut().enumerate() {
        let m: [[f32; LANES]; ALPHA] = std::array::from_fn(|r| load(r * ALPHA + col));
        *column = output_1d(&m);
    }
    std::array::from_fn(|r| {
        let row: [[f32; LANES]; ALPHA] = std::array::from_fn(|col| columns[col][r]);
        let mut y = output_1d(&row);
        for values in &mut y {
            for (value, b) in values.iter_mut().zip(bias) {
                *value += b;
            }
        }
        y
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution, the definition.
    fn direct(
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        g: &Conv3x3Geometry,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; g.batch * g.out_channels * g.out_height * g.out_width];
        for n in 0..g.batch {
            for o in 0..g.out_channels {
                for y in 0..g.out_height {
                    for x in 0..g.out_width {
                        let mut sum = bias.map_or(0.0, |b| b[o]) as f64;
                        for i in 0..g.in_channels {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let yi = y as isize + ky as isize - g.pad_top;
                                    let xi = x as isize + kx as isize - g.pad_left;
                                    if yi < 0
                                        || xi < 0
                                        || yi >= g.in_height as isize
                                        || xi >= g.in_width as isize
                                    {
                                        continue;
                                    }
                                    let v = input[((n * g.in_channels + i) * g.in_height
                                        + yi as usize)
                                        * g.in_width
                                        + xi as usize];
                                    let w = weight[((o * g.in_channels + i) * 3 + ky) * 3 + kx];
                                    sum += (v * w) as f64;
                                }
                            }
                        }
                        out[((n * g.out_channels + o) * g.out_height + y) * g.out_width + x] =
                            sum as f32;
                    }
                }
            }
        }
        out
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_direct_convolution() {
        let cases = [
            (1, 3, 5, 7, 8, 1, 1),
            (2, 9, 13, 6, 11, 1, 1),
            (1, 16, 1, 1, 4, 1, 1),
            (1, 5, 10, 9, 3, 0, 0),
            (1, 4, 8, 8, 5, 2, 2),
            (1, 7, 9, 12, 6, 0, 1),
        ];
        for (seed, (batch, cin, h, w, cout, pt, pl)) in cases.into_iter().enumerate() {
            let g = Conv3x3Geometry {
                batch,
                in_channels: cin,
                in_height: h,
                in_width: w,
                out_channels: cout,
                out_height: h + 2 * pt - 2,
                out_width: w + 2 * pl - 2,
                pad_top: pt as isize,
                pad_left: pl as isize,
            };
            let input = pseudo_random(batch * cin * h * w, seed as u32);
            let weight = pseudo_random(cout * cin * 9, 100 + seed as u32);
            let bias = pseudo_random(cout, 200 + seed as u32);
            let kernel = TransformedKernel::forward(&weight, cout, cin);
            let fast = conv3x3(&input, &kernel, Some(&bias), &g);
            let reference = direct(&input, &weight, Some(&bias), &g);
            let max = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in fast.iter().zip(&reference) {
                assert!((a - b).abs() <= 1e-5 * max.max(1.0), "{g:?}: {a} vs {b}");
            }
        }
    }
}
