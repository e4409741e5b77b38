//! Dense optical flow: Gunnar Farnebäck's two-frame motion estimation ("Two-Frame Motion
//! Estimation Based on Polynomial Expansion", SCIA 2003), as OpenCV's
//! `calcOpticalFlowFarneback` computes it (box-filtered update, no Gaussian window flag).
//!
//! Each pyramid level approximates both images locally by quadratic polynomials
//! (`PolynomialExpansion`), then repeatedly solves for the displacement that best maps one
//! polynomial onto the other, averaged over a window (`solve_flow`). Like DIS it runs as a
//! CPU kernel on the frames' values, every pass split by rows across the threads; the input
//! and output are burn tensors.

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::tensors::{flow_tensor, plane_values};

/// Smallest pyramid level side that is used (smaller levels are skipped, as in OpenCV).
const MIN_LEVEL_SIDE: usize = 32;
/// Width of the band along the image border whose equations are damped.
const BORDER: usize = 5;
/// Damping of the border band's equations, from the edge inwards.
const BORDER_WEIGHTS: [f32; BORDER] = [0.14, 0.14, 0.4472, 0.4472, 0.4472];

/// The parameters of Farnebäck's method, named and defaulted as OpenCV's are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FarnebackParams {
    /// Size ratio between pyramid levels (< 1).
    pub pyr_scale: f32,
    /// Number of pyramid levels above the full image.
    pub levels: usize,
    /// Side of the averaging window.
    pub winsize: usize,
    /// Iterations of the displacement update per level.
    pub iterations: usize,
    /// Half-size of the neighbourhood of the polynomial expansion (5 or 7).
    pub poly_n: usize,
    /// Standard deviation of the Gaussian weighting of the polynomial expansion.
    pub poly_sigma: f32,
}

impl Default for FarnebackParams {
    /// OpenCV's commonly used video settings: `0.5, 3, 15, 3, 5, 1.2`.
    fn default() -> Self {
        FarnebackParams {
            pyr_scale: 0.5,
            levels: 3,
            winsize: 15,
            iterations: 3,
            poly_n: 5,
            poly_sigma: 1.2,
        }
    }
}

/// `C` values per pixel, row-major.
#[derive(Clone, Debug)]
struct Field<const C: usize> {
    width: usize,
    height: usize,
    values: Vec<[f32; C]>,
}

impl<const C: usize> Field<C> {
    /// A field of zeros.
    fn zeros(width: usize, height: usize) -> Field<C> {
        Field {
            width,
            height,
            values: vec![[0.0; C]; width * height],
        }
    }

    /// A field whose row `y` `row(y, out)` fills (from zeros), the rows made in parallel.
    fn from_rows(
        width: usize,
        height: usize,
        row: impl Fn(usize, &mut [[f32; C]]) + Sync,
    ) -> Field<C> {
        let mut field = Field::zeros(width, height);
        field
            .values
            .par_chunks_mut(width.max(1))
            .enumerate()
            .for_each(|(y, out)| row(y, out));
        field
    }

    /// Each pixel's values mapped by `f`, in parallel.
    fn map<const D: usize>(&self, f: impl Fn([f32; C]) -> [f32; D] + Sync) -> Field<D> {
        Field {
            width: self.width,
            height: self.height,
            values: self.values.par_iter().map(|&v| f(v)).collect(),
        }
    }

    fn row(&self, y: usize) -> &[[f32; C]] {
        &self.values[y * self.width..(y + 1) * self.width]
    }
}

/// How a filter reads past an edge.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Edge {
    /// The edge value repeated.
    Repeat,
    /// Mirrored about the edge pixel (`…, 2, 1 | 0, 1, 2, …`).
    Mirror,
}

impl Edge {
    /// The index read for position `i` (possibly outside `0..n`).
    fn index(self, i: isize, n: usize) -> usize {
        let last = n as isize - 1;
        let i = match self {
            Edge::Repeat => i,
            Edge::Mirror if i < 0 => -i,
            Edge::Mirror if i > last => 2 * last - i,
            Edge::Mirror => i,
        };
        i.clamp(0, last) as usize
    }
}

/// `image` filtered along columns by the centred `weights`, rows past the edge read as
/// `edge` says (tap by tap over whole rows, which the compiler vectorises).
fn filter_columns(image: &Field<1>, weights: &[f32], edge: Edge) -> Field<1> {
    let (width, height) = (image.width, image.height);
    let half = (weights.len() / 2) as isize;
    let values = image.values.as_flattened();
    Field::from_rows(width, height, |y, out| {
        let out = out.as_flattened_mut();
        for (k, weight) in weights.iter().enumerate() {
            let source = edge.index(y as isize + k as isize - half, height);
            let row = &values[source * width..(source + 1) * width];
            for (out, value) in out.iter_mut().zip(row) {
                *out += weight * value;
            }
        }
    })
}

/// `image` filtered along rows, as [`filter_columns`] does along columns.
fn filter_rows(image: &Field<1>, weights: &[f32], edge: Edge) -> Field<1> {
    let width = image.width;
    let half = weights.len() / 2;
    Field::from_rows(width, image.height, |y, out| {
        let row = image.row(y).as_flattened();
        // The row with its edges read as `edge` says, so that the taps need no bounds.
        let padded: Vec<f32> = (0..width + 2 * half)
            .map(|i| row[edge.index(i as isize - half as isize, width)])
            .collect();
        let out = out.as_flattened_mut();
        for (k, weight) in weights.iter().enumerate() {
            for (out, value) in out.iter_mut().zip(&padded[k..]) {
                *out += weight * value;
            }
        }
    })
}

/// The mean of `field` over the `size` x `size` box around each pixel, edges repeated, by
/// running sums (in f64, so that sliding along a long row adds no drift): in bands of rows,
/// each starting its column sums afresh and sliding them down, each row's box sums slid
/// along the column sums.
fn box_mean<const C: usize>(field: &Field<C>, size: usize) -> Field<C> {
    const BAND: usize = 16;
    let (width, height) = (field.width, field.height);
    let half = (size / 2) as isize;
    let area = (size * size) as f64;
    let row_at = |y: isize| field.row(Edge::Repeat.index(y, height));
    let mut mean = Field::zeros(width, height);
    mean.values
        .par_chunks_mut(width * BAND)
        .enumerate()
        .for_each(|(band, out)| {
            let first = (band * BAND) as isize;
            let mut columns = vec![[0.0f64; C]; width];
            for k in -half..=half {
                for (sum, value) in columns.iter_mut().zip(row_at(first + k)) {
                    for (sum, value) in sum.iter_mut().zip(value) {
                        *sum += *value as f64;
                    }
                }
            }
            for (offset, out) in out.chunks_mut(width).enumerate() {
                let y = first + offset as isize;
                if offset > 0 {
                    let (enter, leave) = (row_at(y + half), row_at(y - half - 1));
                    for ((sum, a), b) in columns.iter_mut().zip(enter).zip(leave) {
                        for ((sum, a), b) in sum.iter_mut().zip(a).zip(b) {
                            *sum += *a as f64 - *b as f64;
                        }
                    }
                }
                let at = |x: isize| &columns[Edge::Repeat.index(x, width)];
                let mut sum = [0.0f64; C];
                for k in -half..=half {
                    for (sum, value) in sum.iter_mut().zip(at(k)) {
                        *sum += value;
                    }
                }
                for (x, out) in out.iter_mut().enumerate() {
                    if x > 0 {
                        let (enter, leave) = (at(x as isize + half), at(x as isize - half - 1));
                        for ((sum, a), b) in sum.iter_mut().zip(enter).zip(leave) {
                            *sum += a - b;
                        }
                    }
                    *out = sum.map(|v| (v / area) as f32);
                }
            }
        });
    mean
}

/// The flow from `prev` to `next` (grey images `[1, 1, H, W]`, 0–255): `[1, 2, H, W]`, channel
/// 0 the horizontal and 1 the vertical displacement, in pixels, such that
/// `prev(p) ≈ next(p + flow(p))`.
pub fn farneback(prev: &Tensor<4>, next: &Tensor<4>, params: &FarnebackParams) -> Tensor<4> {
    let (a, b) = (Pyramid::new(prev, params), Pyramid::new(next, params));
    to_tensor(&flow(&a, &b, params), prev)
}

/// The flows both ways between two frames, `(a → b, b → a)`, as [`farneback`] gives each:
/// each frame's pyramid of polynomials is made once for both, and the two flows are solved
/// side by side.
pub fn farneback_both(
    a: &Tensor<4>,
    b: &Tensor<4>,
    params: &FarnebackParams,
) -> (Tensor<4>, Tensor<4>) {
    let (first, second) = rayon::join(|| Pyramid::new(a, params), || Pyramid::new(b, params));
    let (forward, backward) = rayon::join(
        || flow(&first, &second, params),
        || flow(&second, &first, params),
    );
    (to_tensor(&forward, a), to_tensor(&backward, a))
}

/// A flow field as a `[1, 2, H, W]` tensor on `like`'s device.
fn to_tensor(flow: &Field<2>, like: &Tensor<4>) -> Tensor<4> {
    let (u, v) = flow.values.iter().map(|&[u, v]| (u, v)).unzip();
    flow_tensor(u, v, flow.height, flow.width, &like.device())
}

/// A frame's polynomial expansion on each pyramid level used, coarsest first.
struct Pyramid {
    width: usize,
    height: usize,
    levels: Vec<Field<5>>,
}

impl Pyramid {
    /// The pyramid of a grey image `[1, 1, H, W]`.
    fn new(image: &Tensor<4>, params: &FarnebackParams) -> Pyramid {
        let [_, _, height, width] = image.dims();
        let image = Field {
            width,
            height,
            values: plane_values(image).into_iter().map(|v| [v]).collect(),
        };
        let expansion = PolynomialExpansion::new(params.poly_n, params.poly_sigma);
        let levels = levels(params, width, height)
            .into_par_iter()
            .map(|level| {
                let blurred = gaussian_blur(&image, level.blur_sigma());
                expansion.apply(&resize(&blurred, level.height, level.width))
            })
            .collect();
        Pyramid {
            width,
            height,
            levels,
        }
    }
}

/// One pyramid level: its scale of the frame and its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Level {
    pub scale: f64,
    pub width: usize,
    pub height: usize,
}

impl Level {
    /// The standard deviation of the blur before the frame is scaled down to the level.
    pub fn blur_sigma(&self) -> f64 {
        (1.0 / self.scale - 1.0) * 0.5
    }
}

/// The pyramid levels of a `width` x `height` frame that are used, coarsest first (levels
/// too small are skipped, as in OpenCV).
pub(super) fn levels(params: &FarnebackParams, width: usize, height: usize) -> Vec<Level> {
    (0..=params.levels)
        .rev()
        .filter_map(|level| {
            let scale = (params.pyr_scale as f64).powi(level as i32);
            let (w, h) = (
                (width as f64 * scale).round() as usize,
                (height as f64 * scale).round() as usize,
            );
            (w >= MIN_LEVEL_SIDE && h >= MIN_LEVEL_SIDE).then_some(Level {
                scale,
                width: w,
                height: h,
            })
        })
        .collect()
}

/// The side of the box the normal equations are averaged over (odd).
pub(super) fn box_side(params: &FarnebackParams) -> usize {
    2 * (params.winsize / 2) + 1
}

/// The flow from the frame of pyramid `prev` to that of `next`, (x, y) per pixel.
fn flow(prev: &Pyramid, next: &Pyramid, params: &FarnebackParams) -> Field<2> {
    let mut flow: Option<Field<2>> = None;
    for (r0, r1) in prev.levels.iter().zip(&next.levels) {
        let (w, h) = (r0.width, r0.height);
        let mut current = match flow.take() {
            None => Field::zeros(w, h),
            Some(coarse) => {
                let factor = 1.0 / params.pyr_scale;
                resize(&coarse, h, w).map(|d| d.map(|d| d * factor))
            }
        };
        let border = border_weights(h, w);
        let mut matrices = update_matrices(r0, r1, &current, &border);
        for iteration in 0..params.iterations {
            current = solve_flow(&matrices, box_side(params));
            if iteration + 1 < params.iterations {
                matrices = update_matrices(r0, r1, &current, &border);
            }
        }
        flow = Some(current);
    }
    flow.unwrap_or_else(|| Field::zeros(prev.width, prev.height))
}

/// The least-squares fit of `c + bᵀx + xᵀAx` around each pixel under a Gaussian weighting.
pub(super) struct PolynomialExpansion {
    /// The weights g, x·g and x²·g of the separable moments.
    pub weights: [Vec<f32>; 3],
    /// Entries of the inverse moment matrix: linear terms, constant–square coupling,
    /// squares, cross term.
    pub inverse: [f32; 4],
}

impl PolynomialExpansion {
    /// The fit over a `2·half + 1` neighbourhood weighted by a Gaussian of `sigma`.
    pub fn new(half: usize, sigma: f32) -> Self {
        let n = half as i64;
        let sigma = if sigma > f32::EPSILON {
            sigma as f64
        } else {
            half as f64 * 0.3
        };
        let raw: Vec<f64> = (-n..=n)
            .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = raw.iter().sum();
        let g: Vec<f64> = raw.iter().map(|v| v / total).collect();
        let moment = |power: i32| -> Vec<f64> {
            (-n..=n)
                .zip(&g)
                .map(|(x, g)| g * (x as f64).powi(power))
                .collect()
        };
        let s2: f64 = moment(2).iter().sum();
        let s4: f64 = moment(4).iter().sum();
        // The normal equations of the basis {1, x, y, x², y², xy} under the separable
        // weighting decouple; only {1, x², y²} form a 3x3 block.
        let block = invert3([[1.0, s2, s2], [s2, s4, s2 * s2], [s2, s2 * s2, s4]]);
        let inverse = [
            (1.0 / s2) as f32,
            block[0][1] as f32,
            block[1][1] as f32,
            (1.0 / (s2 * s2)) as f32,
        ];
        PolynomialExpansion {
            weights: [0, 1, 2].map(|power| moment(power).iter().map(|&w| w as f32).collect()),
            inverse,
        }
    }

    /// The coefficients of a grey image, per pixel in the order b_y, b_x, a_yy, a_xx, a_xy
    /// (the last the full cross coefficient).
    fn apply(&self, image: &Field<1>) -> Field<5> {
        let [g, x_g, x2_g] = &self.weights;
        // Along columns the weights g, y·g, y²·g; then along rows each moment of
        // 1, x, x², y, xy, y².
        let columns = |weights| filter_columns(image, weights, Edge::Repeat);
        let (m_1, m_y, m_y2) = (columns(g), columns(x_g), columns(x2_g));
        let rows = |input: &Field<1>, weights| filter_rows(input, weights, Edge::Repeat);
        let moments = [
            rows(&m_1, g),
            rows(&m_1, x_g),
            rows(&m_1, x2_g),
            rows(&m_y, g),
            rows(&m_y, x_g),
            rows(&m_y2, g),
        ];
        let [linear, coupling, square, cross] = self.inverse;
        Field::from_rows(image.width, image.height, |y, out| {
            let [one, x, x2, y_, xy, y2] = moments.each_ref().map(|m| m.row(y));
            for (i, out) in out.iter_mut().enumerate() {
                *out = [
                    y_[i][0] * linear,
                    x[i][0] * linear,
                    one[i][0] * coupling + y2[i][0] * square,
                    one[i][0] * coupling + x2[i][0] * square,
                    xy[i][0] * cross,
                ];
            }
        })
    }
}

/// The per-pixel normal equations (G11, G12, G22, h1, h2 in (y, x) order) of the
/// displacement that maps `r0`'s polynomials onto `r1`'s, linearised around `flow`.
fn update_matrices(r0: &Field<5>, r1: &Field<5>, flow: &Field<2>, border: &[f32]) -> Field<5> {
    let (w, h) = (flow.width, flow.height);
    Field::from_rows(w, h, |row, out| {
        for (col, out) in out.iter_mut().enumerate() {
            let i = row * w + col;
            let [dx, dy] = flow.values[i];
            let (x, y) = (col as f32 + dx, row as f32 + dy);
            // OpenCV interpolates only where the whole 2x2 neighbourhood is inside the image.
            let inside = x >= 0.0 && y >= 0.0 && x < (w - 1) as f32 && y < (h - 1) as f32;
            let (warped, keep) = if inside {
                // Inside, the positions are not negative: truncation is the floor.
                let (x0, y0) = (x as usize, y as usize);
                let (fx, fy) = (x - x0 as f32, y - y0 as f32);
                let at = y0 * w + x0;
                let [a, b, c, d] = [at, at + 1, at + w, at + w + 1].map(|j| r1.values[j]);
                let mut warped = [0.0f32; 5];
                for (k, value) in warped.iter_mut().enumerate() {
                    *value = (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy)
                        + (c[k] * (1.0 - fx) + d[k] * fx) * fy;
                }
                (warped, 0.5)
            } else {
                ([0.0; 5], 1.0)
            };
            let r = r0.values[i];
            let average = |k: usize| r[k] * keep + warped[k] * 0.5;
            let a_yy = average(2);
            let a_xx = average(3);
            let a_xy = average(4) * 0.5;
            let b_y = (r[0] - warped[0]) * 0.5 + a_yy * dy + a_xy * dx;
            let b_x = (r[1] - warped[1]) * 0.5 + a_xy * dy + a_xx * dx;
            let [a_yy, a_xx, a_xy, b_y, b_x] = [a_yy, a_xx, a_xy, b_y, b_x].map(|v| v * border[i]);
            *out = [
                a_yy * a_yy + a_xy * a_xy,
                (a_yy + a_xx) * a_xy,
                a_xx * a_xx + a_xy * a_xy,
                a_yy * b_y + a_xy * b_x,
                a_xy * b_y + a_xx * b_x,
            ];
        }
    })
}

/// The displacement (x, y) per pixel solving the normal equations averaged over a `side`
/// box (edges repeated).
fn solve_flow(matrices: &Field<5>, side: usize) -> Field<2> {
    box_mean(matrices, side).map(|[g11, g12, g22, h1, h2]| {
        let det = g11 * g22 - g12 * g12 + 1e-3;
        [(g11 * h2 - g12 * h1) / det, (g22 * h1 - g12 * h2) / det]
    })
}

/// The weight of each pixel's equations: damped within [`BORDER`] pixels of the edge.
fn border_weights(h: usize, w: usize) -> Vec<f32> {
    let profile = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let from_start = if i < BORDER { BORDER_WEIGHTS[i] } else { 1.0 };
                let from_end = if n - 1 - i < BORDER {
                    BORDER_WEIGHTS[n - 1 - i]
                } else {
                    1.0
                };
                from_start * from_end
            })
            .collect()
    };
    let (rows, cols) = (profile(h), profile(w));
    rows.iter()
        .flat_map(|r| cols.iter().map(move |c| r * c))
        .collect()
}

/// OpenCV's `GaussianBlur` for the pyramid: [`gaussian_kernel`] along columns and rows,
/// mirrored edges ([`blur_mirrors`]).
fn gaussian_blur(image: &Field<1>, sigma: f64) -> Field<1> {
    let kernel = gaussian_kernel(sigma);
    let edge = |side: usize| {
        if blur_mirrors(&kernel, side) {
            Edge::Mirror
        } else {
            Edge::Repeat
        }
    };
    filter_rows(
        &filter_columns(image, &kernel, edge(image.height)),
        &kernel,
        edge(image.width),
    )
}

/// Whether a blur by `kernel` along a side of `side` pixels reads mirrored values past the
/// edge: mirroring needs the side to be longer than the margin; tiny images keep their edge.
pub(super) fn blur_mirrors(kernel: &[f32], side: usize) -> bool {
    side > kernel.len() / 2
}

/// The pyramid blur's taps: OpenCV's Gaussian kernel of `round(5σ) | 1` (at least 3) taps,
/// the fixed `[1, 2, 1] / 4` when `σ` is 0.
pub(super) fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        vec![0.25, 0.5, 0.25]
    } else {
        let size = (((sigma * 5.0).round_ties_even() as usize) | 1).max(3);
        let half = (size / 2) as i64;
        let raw: Vec<f64> = (-half..=half)
            .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter().map(|v| (v / total) as f32).collect()
    }
}

/// Bilinear resize with half-pixel centres (OpenCV's `INTER_LINEAR`).
fn resize<const C: usize>(field: &Field<C>, height: usize, width: usize) -> Field<C> {
    if (field.height, field.width) == (height, width) {
        return field.clone();
    }
    let y_ratio = field.height as f64 / height as f64;
    let x_ratio = field.width as f64 / width as f64;
    Field::from_rows(width, height, |y, out| {
        let source = ((y as f64 + 0.5) * y_ratio - 0.5).max(0.0);
        let y0 = source.floor() as usize;
        let y1 = (y0 + 1).min(field.height - 1);
        let fy = (source - y0 as f64) as f32;
        let (top, bottom) = (field.row(y0), field.row(y1));
        for (x, out) in out.iter_mut().enumerate() {
            let source = ((x as f64 + 0.5) * x_ratio - 0.5).max(0.0);
            let x0 = source.floor() as usize;
            let x1 = (x0 + 1).min(field.width - 1);
            let fx = (source - x0 as f64) as f32;
            for c in 0..C {
                out[c] = top[x0][c] * (1.0 - fx) * (1.0 - fy)
                    + top[x1][c] * fx * (1.0 - fy)
                    + bottom[x0][c] * (1.0 - fx) * fy
                    + bottom[x1][c] * fx * fy;
            }
        }
    })
}

/// The inverse of a 3x3 matrix (by cofactors).
fn invert3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let det: f64 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
    let mut inverse = [[0.0; 3]; 3];
    for (r, row) in inverse.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            *value = cofactor(c, r) / det;
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert3_gives_the_inverse() {
        let m = [[2.0, 1.0, 0.5], [1.0, 3.0, 0.25], [0.5, 0.25, 4.0]];
        let inv = invert3(m);
        for (r, row) in m.iter().enumerate() {
            for c in 0..3 {
                let product: f64 = row.iter().zip(&inv).map(|(a, b)| a * b[c]).sum();
                let identity = if r == c { 1.0 } else { 0.0 };
                assert!((product - identity).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn polynomial_expansion_recovers_a_quadratic() {
        // f = 3 + 2x - y + 0.5x² + 0.25y² - 0.75xy, away from the borders.
        let (h, w) = (21usize, 23usize);
        let f = |x: f32, y: f32| 3.0 + 2.0 * x - y + 0.5 * x * x + 0.25 * y * y - 0.75 * x * y;
        let image = Field {
            width: w,
            height: h,
            values: (0..h)
                .flat_map(|y| (0..w).map(move |x| [f(x as f32, y as f32)]))
                .collect(),
        };
        let r = PolynomialExpansion::new(5, 1.2).apply(&image);
        let (x, y) = (11usize, 10usize);
        let at = |c: usize| r.values[y * w + x][c];
        let (xf, yf) = (x as f32, y as f32);
        // Gradient of f at (x, y) and its second-order coefficients.
        let expected = [
            -1.0 + 0.5 * yf - 0.75 * xf,
            2.0 + xf - 0.75 * yf,
            0.25,
            0.5,
            -0.75,
        ];
        for (c, e) in expected.iter().enumerate() {
            assert!(
                (at(c) - e).abs() < 1e-3 * e.abs().max(1.0),
                "coefficient {c}: {} vs {e}",
                at(c)
            );
        }
    }

    #[test]
    fn edges_repeat_or_mirror() {
        let read = |edge: Edge| [-2, -1, 0, 3, 4, 5].map(|i| edge.index(i, 4));
        assert_eq!(read(Edge::Repeat), [0, 0, 0, 3, 3, 3]);
        assert_eq!(read(Edge::Mirror), [2, 1, 0, 3, 2, 1]);
    }

    /// The running sums give each box's plain mean, edges repeated, bands and rows alike.
    #[test]
    fn box_mean_is_the_mean_over_each_box() {
        let (width, height, size) = (23usize, 37usize, 7usize);
        let field = Field::<2> {
            width,
            height,
            values: (0..width * height)
                .map(|i| [(i * 7919 % 101) as f32 - 50.0, (i % 13) as f32 * 1000.0])
                .collect(),
        };
        let mean = box_mean(&field, size);
        let half = (size / 2) as isize;
        for y in 0..height {
            for x in 0..width {
                let mut expected = [0.0f64; 2];
                for dy in -half..=half {
                    for dx in -half..=half {
                        let yy = Edge::Repeat.index(y as isize + dy, height);
                        let xx = Edge::Repeat.index(x as isize + dx, width);
                        let value = field.values[yy * width + xx];
                        for (sum, value) in expected.iter_mut().zip(value) {
                            *sum += value as f64;
                        }
                    }
                }
                for (c, expected) in expected.iter().enumerate() {
                    let want = (expected / (size * size) as f64) as f32;
                    let got = mean.values[y * width + x][c];
                    assert!(
                        (got - want).abs() <= 1e-3,
                        "({x}, {y}) {c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
