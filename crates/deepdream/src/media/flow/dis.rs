//! DIS, dense inverse search (Kroeger, Timofte, Dai and Van Gool, "Fast Optical Flow using
//! Dense Inverse Search", ECCV 2016), as OpenCV's `DISOpticalFlow` computes it without its
//! variational refinement (OpenCV's ultrafast preset).
//!
//! On each level of an image pyramid, from the coarsest up to `finest_scale`: square patches
//! of the first image on a regular grid each find where they went in the second image by a
//! few inverse-compositional Gauss–Newton steps (starting from the coarser level's flow or
//! a neighbouring patch's, whichever matches better); the dense flow is then the average of
//! the overlapping patches' flows, each weighted by how well it explains the pixel. The
//! search is a sequential sweep (each patch starts from its neighbours' results), so it
//! runs as a CPU kernel on the tensors' values, eight horizontal stripes at a time as
//! OpenCV does; the input and output are burn tensors like Farnebäck's.

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::tensors::{flow_tensor, plane_values};

/// Width of the replicated border around the second image, so patches may leave it.
const BORDER: usize = 16;
/// Horizontal stripes searched independently (OpenCV's fixed count, for the same result).
const STRIPES: usize = 8;
/// Smallest structure-tensor determinant used.
const EPS: f32 = 0.001;
/// Matching cost before any patch is compared.
const INFINITE_COST: f32 = 1e10;

/// The parameters of DIS, named and defaulted as OpenCV's ultrafast preset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisParams {
    /// The finest pyramid level searched (0 the image itself, 2 a quarter of each side);
    /// the flow found there is scaled up to the image.
    pub finest_scale: usize,
    /// Side of the square patches that are matched.
    pub patch_size: usize,
    /// Distance between neighbouring patches (less than `patch_size`: they overlap).
    pub patch_stride: usize,
    /// Gauss–Newton steps per patch, shared between the two sweeps.
    pub gradient_descent_iterations: usize,
    /// Compare patches after taking away their means (robust to changes of light).
    pub mean_normalization: bool,
    /// Start each patch from its neighbours' flow where that matches better.
    pub spatial_propagation: bool,
}

impl Default for DisParams {
    /// OpenCV's `PRESET_ULTRAFAST`: finest scale 2, 8-pixel patches every 4 pixels, 12
    /// steps, mean normalisation and spatial propagation.
    fn default() -> Self {
        DisParams {
            finest_scale: 2,
            patch_size: 8,
            patch_stride: 4,
            gradient_descent_iterations: 12,
            mean_normalization: true,
            spatial_propagation: true,
        }
    }
}

/// The flow from `prev` to `next` (grey images `[1, 1, H, W]`, 0–255): `[1, 2, H, W]`,
/// channel 0 the horizontal and 1 the vertical displacement, in pixels, such that
/// `prev(p) ≈ next(p + flow(p))`.
pub fn dis(prev: &Tensor<4>, next: &Tensor<4>, params: &DisParams) -> Tensor<4> {
    let [_, _, height, width] = prev.dims();
    let device = prev.device();
    let bytes = |image: &Tensor<4>| Plane {
        width,
        height,
        values: plane_values(image)
            .iter()
            .map(|&v| v.round().clamp(0.0, 255.0) as u8)
            .collect(),
    };
    let (u, v) = flow(&bytes(prev), &bytes(next), params);
    flow_tensor(u.values, v.values, height, width, &device)
}

/// A single-channel image, row by row.
#[derive(Clone)]
struct Plane<T> {
    width: usize,
    height: usize,
    values: Vec<T>,
}

impl<T: Copy> Plane<T> {
    fn at(&self, x: usize, y: usize) -> T {
        self.values[y * self.width + x]
    }
}

/// The horizontal and vertical flow from `first` to `second`.
fn flow(first: &Plane<u8>, second: &Plane<u8>, params: &DisParams) -> (Plane<f32>, Plane<f32>) {
    let (width, height) = (first.width, first.height);
    let zero = || Plane {
        width,
        height,
        values: vec![0.0; width * height],
    };
    let patch = params.patch_size.max(1);
    let params = DisParams {
        patch_size: patch,
        patch_stride: params.patch_stride.max(1),
        ..*params
    };
    // OpenCV's choice of the coarsest level: motion up to a quarter of the image, and no
    // level narrower than a patch.
    let by_motion = ((width.max(height) as f64 / (4.0 * patch as f64)).log2() + 0.5) as i64;
    let patches_across = width.min(height) / patch;
    if patches_across == 0 {
        return (zero(), zero());
    }
    let coarsest = by_motion.min((patches_across as f64).log2() as i64).max(0) as usize;
    let finest = params.finest_scale.min(coarsest);

    let mut firsts = vec![area_resize(first, width >> finest, height >> finest)];
    let mut seconds = vec![area_resize(second, width >> finest, height >> finest)];
    for _ in finest..coarsest {
        let (w, h) = (
            firsts.last().unwrap().width / 2,
            firsts.last().unwrap().height / 2,
        );
        firsts.push(area_resize(firsts.last().unwrap(), w, h));
        seconds.push(area_resize(seconds.last().unwrap(), w, h));
    }
    let mut dense: Option<(Plane<f32>, Plane<f32>)> = None;
    for (first, second) in firsts.iter().zip(&seconds).rev() {
        let (w, h) = (first.width, first.height);
        let (ux, uy) = match dense.take() {
            None => (vec![0.0; w * h], vec![0.0; w * h]),
            Some((ux, uy)) => (
                linear_resize(&ux, w, h, 2.0).values,
                linear_resize(&uy, w, h, 2.0).values,
            ),
        };
        let level = Level::new(first, second, &params);
        let (sx, sy) = level.search(&ux, &uy, &params);
        dense = Some(level.densify(&sx, &sy));
    }
    let (ux, uy) = dense.expect("at least one level");
    let factor = (1usize << finest) as f32;
    (
        linear_resize(&ux, width, height, factor),
        linear_resize(&uy, width, height, factor),
    )
}

/// One pyramid level: the two images, the first one's gradients and the sums over each
/// grid patch that its Gauss–Newton steps need.
struct Level<'a> {
    first: &'a Plane<u8>,
    second: &'a Plane<u8>,
    /// The second image with a replicated border of [`BORDER`] pixels.
    second_wide: Plane<u8>,
    /// Sobel gradients of the first image.
    gx: Plane<i16>,
    gy: Plane<i16>,
    /// Patch side and the distance between patches.
    patch: usize,
    stride: usize,
    /// Patches across and down.
    across: usize,
    down: usize,
    /// Per grid patch: sums of gx², gy², gx·gy, gx and gy.
    sums: Vec<[f32; 5]>,
}

impl<'a> Level<'a> {
    fn new(first: &'a Plane<u8>, second: &'a Plane<u8>, params: &DisParams) -> Self {
        let (w, h) = (first.width, first.height);
        let (patch, stride) = (params.patch_size, params.patch_stride);
        let (gx, gy) = sobel(first);
        let across = 1 + (w - patch) / stride;
        let down = 1 + (h - patch) / stride;
        let mut sums = Vec::with_capacity(across * down);
        for row in 0..down {
            for column in 0..across {
                let mut sum = [0.0f64; 5];
                for y in row * stride..row * stride + patch {
                    for x in column * stride..column * stride + patch {
                        let (a, b) = (gx.at(x, y) as f64, gy.at(x, y) as f64);
                        sum[0] += a * a;
                        sum[1] += b * b;
                        sum[2] += a * b;
                        sum[3] += a;
                        sum[4] += b;
                    }
                }
                sums.push(sum.map(|s| s as f32));
            }
        }
        Level {
            first,
            second,
            second_wide: replicate_border(second, BORDER),
            gx,
            gy,
            patch,
            stride,
            across,
            down,
            sums,
        }
    }

    /// Each grid patch's flow `(x, y)`, starting from the dense flow `ux, uy` at its centre.
    fn search(&self, ux: &[f32], uy: &[f32], params: &DisParams) -> (Vec<f32>, Vec<f32>) {
        let mut sx = vec![0.0; self.across * self.down];
        let mut sy = vec![0.0; self.across * self.down];
        let (stripe_rows, sweeps) = if params.spatial_propagation {
            (self.down.div_ceil(STRIPES), 2)
        } else {
            (self.down, 1)
        };
        let chunk = stripe_rows * self.across;
        sx.par_chunks_mut(chunk)
            .zip(sy.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(stripe, (sx, sy))| {
                let first_row = stripe * stripe_rows;
                let rows = first_row..first_row + sx.len() / self.across;
                self.search_stripe(rows, sweeps, ux, uy, sx, sy, params);
            });
        (sx, sy)
    }

    /// The search over the patch rows `rows` (whose flows are `sx, sy`): a sweep forwards
    /// and, with spatial propagation, one backwards.
    #[allow(clippy::too_many_arguments)]
    fn search_stripe(
        &self,
        rows: std::ops::Range<usize>,
        sweeps: usize,
        ux: &[f32],
        uy: &[f32],
        sx: &mut [f32],
        sy: &mut [f32],
        params: &DisParams,
    ) {
        let (patch, stride) = (params.patch_size, params.patch_stride);
        let (w, across) = (self.first.width, self.across);
        let steps = params.gradient_descent_iterations / sweeps;
        for sweep in 0..sweeps {
            let forwards = sweep % 2 == 0;
            let order = |n: usize| -> Vec<usize> {
                if forwards {
                    (0..n).collect()
                } else {
                    (0..n).rev().collect()
                }
            };
            for (k, local_row) in order(rows.len()).into_iter().enumerate() {
                let row = rows.start + local_row;
                for (l, column) in order(across).into_iter().enumerate() {
                    let index = local_row * across + column;
                    let (x, y) = (column * stride, row * stride);
                    if sweep == 0 {
                        let centre = (y + patch / 2) * w + x + patch / 2;
                        sx[index] = ux[centre];
                        sy[index] = uy[centre];
                    }
                    if params.spatial_propagation {
                        let mut best = self.cost(x, y, sx[index], sy[index], params);
                        let before =
                            |i: usize, step: usize| if forwards { i - step } else { i + step };
                        let mut neighbours = Vec::with_capacity(2);
                        if l > 0 {
                            neighbours.push(before(index, 1));
                        }
                        if k > 0 {
                            neighbours.push(before(index, across));
                        }
                        for n in neighbours {
                            let cost = self.cost(x, y, sx[n], sy[n], params);
                            if cost < best {
                                best = cost;
                                sx[index] = sx[n];
                                sy[index] = sy[n];
                            }
                        }
                    }
                    let (start_x, start_y) = (sx[index], sy[index]);
                    let (flow_x, flow_y) =
                        self.descend(row * across + column, x, y, start_x, start_y, steps, params);
                    // A step that wandered further than a patch is not trusted.
                    let moved = ((flow_x - start_x).powi(2) + (flow_y - start_y).powi(2)).sqrt();
                    if moved <= patch as f32 {
                        sx[index] = flow_x;
                        sy[index] = flow_y;
                    }
                }
            }
        }
    }

    /// Gauss–Newton steps for the patch at `(x, y)` (grid index `grid`) from the flow
    /// `(u, v)`, stopping when the match stops improving.
    #[allow(clippy::too_many_arguments)]
    fn descend(
        &self,
        grid: usize,
        x: usize,
        y: usize,
        mut u: f32,
        mut v: f32,
        steps: usize,
        params: &DisParams,
    ) -> (f32, f32) {
        let [xx, yy, xy, _, _] = self.sums[grid];
        let mut det = xx * yy - xy * xy;
        if det.abs() < EPS {
            det = EPS;
        }
        let (inverse_xx, inverse_xy, inverse_yy) = (yy / det, -xy / det, xx / det);
        let mut previous = INFINITE_COST;
        for _ in 0..steps {
            let (cost, du, dv) = self.compare(x, y, u, v, Some(self.sums[grid]), params);
            u -= inverse_xx * du + inverse_xy * dv;
            v -= inverse_xy * du + inverse_yy * dv;
            if cost >= previous {
                break;
            }
            previous = cost;
        }
        (u, v)
    }

    /// How badly the patch at `(x, y)` matches the second image moved by `(u, v)`.
    fn cost(&self, x: usize, y: usize, u: f32, v: f32, params: &DisParams) -> f32 {
        self.compare(x, y, u, v, None, params).0
    }

    /// The patch at `(x, y)` against the second image moved by `(u, v)` (bilinear): the sum
    /// of squared differences and, given the patch's sums, the gradient's projections.
    fn compare(
        &self,
        x: usize,
        y: usize,
        u: f32,
        v: f32,
        sums: Option<[f32; 5]>,
        params: &DisParams,
    ) -> (f32, f32, f32) {
        let patch = params.patch_size;
        let (w, h) = (self.first.width as f32, self.first.height as f32);
        let border = BORDER as f32;
        let lowest = border - patch as f32 + 1.0;
        let row = (y as f32 + v + border).clamp(lowest, border + h - 1.0);
        let column = (x as f32 + u + border).clamp(lowest, border + w - 1.0);
        let (top, left) = (row.floor(), column.floor());
        let w11 = (row - top) * (column - left);
        let w10 = (row - top) * (left + 1.0 - column);
        let w01 = (top + 1.0 - row) * (column - left);
        let w00 = (top + 1.0 - row) * (left + 1.0 - column);
        let wide = &self.second_wide;
        let (top, left) = (top as usize, left as usize);
        let (mut sum, mut squares, mut along_x, mut along_y) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for i in 0..patch {
            let upper = &wide.values[(top + i) * wide.width + left..];
            let lower = &wide.values[(top + i + 1) * wide.width + left..];
            let start = (y + i) * self.first.width + x;
            let original = &self.first.values[start..start + patch];
            for j in 0..patch {
                let diff = w00 * upper[j] as f32
                    + w01 * upper[j + 1] as f32
                    + w10 * lower[j] as f32
                    + w11 * lower[j + 1] as f32
                    - original[j] as f32;
                sum += diff;
                squares += diff * diff;
                if sums.is_some() {
                    along_x += diff * self.gx.values[start + j] as f32;
                    along_y += diff * self.gy.values[start + j] as f32;
                }
            }
        }
        let n = (patch * patch) as f32;
        match (params.mean_normalization, sums) {
            (true, Some([_, _, _, gx_sum, gy_sum])) => (
                squares - sum * sum / n,
                along_x - sum * gx_sum / n,
                along_y - sum * gy_sum / n,
            ),
            (true, None) => (squares - sum * sum / n, 0.0, 0.0),
            (false, _) => (squares, along_x, along_y),
        }
    }

    /// The dense flow: at each pixel, the flows of the patches over it, each weighted by
    /// `1 / max(1, |second(p + flow) - first(p)|)`.
    fn densify(&self, sx: &[f32], sy: &[f32]) -> (Plane<f32>, Plane<f32>) {
        let (w, h) = (self.first.width, self.first.height);
        let rows = covering(h, self.patch, self.stride);
        let columns = covering(w, self.patch, self.stride);
        let mut ux = vec![0.0f32; w * h];
        let mut uy = vec![0.0f32; w * h];
        let (right, bottom) = (w as f32 - 1.0 - EPS, h as f32 - 1.0 - EPS);
        ux.par_chunks_mut(w)
            .zip(uy.par_chunks_mut(w))
            .enumerate()
            .for_each(|(i, (ux, uy))| {
                let (first_row, last_row) = rows[i];
                for j in 0..w {
                    let (first_column, last_column) = columns[j];
                    let original = self.first.at(j, i) as f32;
                    let (mut total, mut sum_x, mut sum_y) = (0.0f32, 0.0f32, 0.0f32);
                    for grid_row in first_row..=last_row {
                        for grid_column in first_column..=last_column {
                            let index = grid_row * self.across + grid_column;
                            let (u, v) = (sx[index], sy[index]);
                            let jm = (j as f32 + u).clamp(0.0, right);
                            let im = (i as f32 + v).clamp(0.0, bottom);
                            let (jl, il) = (jm as usize, im as usize);
                            let (ju, iu) = ((jl + 1) as f32, (il + 1) as f32);
                            let at = |x: usize, y: usize| self.second.at(x, y) as f32;
                            let diff = (jm - jl as f32) * (im - il as f32) * at(jl + 1, il + 1)
                                + (ju - jm) * (im - il as f32) * at(jl, il + 1)
                                + (jm - jl as f32) * (iu - im) * at(jl + 1, il)
                                + (ju - jm) * (iu - im) * at(jl, il)
                                - original;
                            let weight = 1.0 / diff.abs().max(1.0);
                            sum_x += weight * u;
                            sum_y += weight * v;
                            total += weight;
                        }
                    }
                    ux[j] = sum_x / total;
                    uy[j] = sum_y / total;
                }
            });
        let plane = |values| Plane {
            width: w,
            height: h,
            values,
        };
        (plane(ux), plane(uy))
    }
}

/// For each pixel along a side of `size` pixels, the first and last grid patches (of
/// `patch` pixels every `stride`) over it; pixels past the last patch take the last one.
fn covering(size: usize, patch: usize, stride: usize) -> Vec<(usize, usize)> {
    let (mut first, mut last) = (0usize, None::<usize>);
    (0..size)
        .map(|i| {
            if i.is_multiple_of(stride) && i + patch <= size {
                last = Some(last.map_or(0, |l| l + 1));
            }
            if i >= patch && (i - patch).is_multiple_of(stride) && last.is_some_and(|l| first < l) {
                first += 1;
            }
            (first, last.unwrap_or(0))
        })
        .collect()
}

/// Sobel's 3x3 gradients `(d/dx, d/dy)`, edges mirrored without repeating the edge pixel
/// (OpenCV's `spatialGradient`).
fn sobel(image: &Plane<u8>) -> (Plane<i16>, Plane<i16>) {
    let (w, h) = (image.width, image.height);
    let mirror = |i: isize, n: usize| -> usize {
        if n == 1 {
            0
        } else if i < 0 {
            (-i) as usize
        } else if i as usize >= n {
            2 * (n - 1) - i as usize
        } else {
            i as usize
        }
    };
    let mut gx = Vec::with_capacity(w * h);
    let mut gy = Vec::with_capacity(w * h);
    for y in 0..h {
        let (up, down) = (mirror(y as isize - 1, h), mirror(y as isize + 1, h));
        for x in 0..w {
            let (left, right) = (mirror(x as isize - 1, w), mirror(x as isize + 1, w));
            let p = |x: usize, y: usize| image.at(x, y) as i16;
            gx.push(
                p(right, up) + 2 * p(right, y) + p(right, down)
                    - p(left, up)
                    - 2 * p(left, y)
                    - p(left, down),
            );
            gy.push(
                p(left, down) + 2 * p(x, down) + p(right, down)
                    - p(left, up)
                    - 2 * p(x, up)
                    - p(right, up),
            );
        }
    }
    let plane = |values| Plane {
        width: w,
        height: h,
        values,
    };
    (plane(gx), plane(gy))
}

/// `image` with its edge pixels repeated `border` times on every side.
fn replicate_border(image: &Plane<u8>, border: usize) -> Plane<u8> {
    let (w, h) = (image.width, image.height);
    let (wide_w, wide_h) = (w + 2 * border, h + 2 * border);
    let mut values = Vec::with_capacity(wide_w * wide_h);
    for y in 0..wide_h {
        let source = y.saturating_sub(border).min(h - 1);
        for x in 0..wide_w {
            values.push(image.at(x.saturating_sub(border).min(w - 1), source));
        }
    }
    Plane {
        width: wide_w,
        height: wide_h,
        values,
    }
}

/// `image` shrunk to `width x height` by averaging the source pixels each output pixel
/// covers, weighted by the covered area (OpenCV's `INTER_AREA` for 8-bit images).
fn area_resize(image: &Plane<u8>, width: usize, height: usize) -> Plane<u8> {
    if (width, height) == (image.width, image.height) {
        return image.clone();
    }
    let (sx, sy) = (
        image.width as f64 / width as f64,
        image.height as f64 / height as f64,
    );
    let mut values = Vec::with_capacity(width * height);
    if sx == 2.0 && sy == 2.0 {
        // OpenCV's vectorised halving rounds halves up.
        for y in 0..height {
            for x in 0..width {
                let p = |dx: usize, dy: usize| image.at(2 * x + dx, 2 * y + dy) as u32;
                values.push(((p(0, 0) + p(1, 0) + p(0, 1) + p(1, 1) + 2) >> 2) as u8);
            }
        }
    } else {
        let columns = area_weights(image.width, width, sx);
        let rows = area_weights(image.height, height, sy);
        for row in &rows {
            for column in &columns {
                let mut sum = 0.0f32;
                for &(y, wy) in row {
                    for &(x, wx) in column {
                        sum += wy * wx * image.at(x, y) as f32;
                    }
                }
                values.push(sum.round_ties_even().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Plane {
        width,
        height,
        values,
    }
}

/// For each of `target` output pixels along a side, the source pixels it covers and their
/// weights (covered length over the output pixel's length).
fn area_weights(source: usize, target: usize, scale: f64) -> Vec<Vec<(usize, f32)>> {
    (0..target)
        .map(|d| {
            let start = d as f64 * scale;
            let end = start + scale;
            let cell = scale.min(source as f64 - start);
            let last = (end.floor() as usize).min(source - 1);
            let first = (start.ceil() as usize).min(last);
            let mut weights = Vec::new();
            if first as f64 - start > 1e-3 {
                weights.push((first - 1, ((first as f64 - start) / cell) as f32));
            }
            weights.extend((first..last).map(|s| (s, (1.0 / cell) as f32)));
            if end - last as f64 > 1e-3 {
                let covered = (end - last as f64).min(1.0).min(cell);
                weights.push((last, (covered / cell) as f32));
            }
            weights
        })
        .collect()
}

/// `plane` resized to `width x height` bilinearly (pixel centres aligned, edges repeated:
/// OpenCV's `INTER_LINEAR`) and multiplied by `factor`.
fn linear_resize(plane: &Plane<f32>, width: usize, height: usize, factor: f32) -> Plane<f32> {
    let taps = |source: usize, target: usize| -> Vec<(usize, usize, f32)> {
        let scale = source as f64 / target as f64;
        (0..target)
            .map(|d| {
                let position = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let below = position.floor();
                let fraction = position - below;
                let clamp = |i: f32| (i.max(0.0) as usize).min(source - 1);
                (clamp(below), clamp(below + 1.0), fraction)
            })
            .collect()
    };
    let columns = taps(plane.width, width);
    let rows = taps(plane.height, height);
    let mut values = Vec::with_capacity(width * height);
    for &(top, bottom, fy) in &rows {
        for &(left, right, fx) in &columns {
            let upper = plane.at(left, top) * (1.0 - fx) + plane.at(right, top) * fx;
            let lower = plane.at(left, bottom) * (1.0 - fx) + plane.at(right, bottom) * fx;
            values.push((upper * (1.0 - fy) + lower * fy) * factor);
        }
    }
    Plane {
        width,
        height,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_lists_the_patches_over_each_pixel() {
        // 8-pixel patches every 4 pixels over 30 pixels start at 0, 4, ..., 20.
        let spans = covering(30, 8, 4);
        assert_eq!(spans[0], (0, 0));
        assert_eq!(spans[5], (0, 1));
        assert_eq!(spans[9], (1, 2));
        assert_eq!(spans[27], (5, 5));
        // Past the last patch: the last one.
        assert_eq!(spans[29], (5, 5));
    }

    #[test]
    fn area_resize_averages_what_each_pixel_covers() {
        let image = Plane {
            width: 4,
            height: 2,
            values: vec![0, 10, 20, 31, 0, 10, 20, 30],
        };
        let half = area_resize(&image, 2, 1);
        assert_eq!(half.values, vec![5, 25]);
        // 3 -> 2: each output covers one and a half source pixels.
        let row = Plane {
            width: 3,
            height: 1,
            values: vec![0, 30, 60],
        };
        assert_eq!(area_resize(&row, 2, 1).values, vec![10, 50]);
    }

    #[test]
    fn sobel_of_a_ramp_is_constant() {
        let image = Plane {
            width: 5,
            height: 4,
            values: (0..20).map(|i| ((i % 5) * 3) as u8).collect(),
        };
        let (gx, gy) = sobel(&image);
        assert_eq!(gx.at(2, 1), 24);
        assert_eq!(gy.at(2, 1), 0);
        // Mirrored edge: the neighbours on both sides are the same pixel.
        assert_eq!(gx.at(0, 1), 0);
    }
}
