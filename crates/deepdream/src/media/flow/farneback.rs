//! Dense optical flow: Gunnar Farnebäck's two-frame motion estimation ("Two-Frame Motion
//! Estimation Based on Polynomial Expansion", SCIA 2003), as OpenCV's
//! `calcOpticalFlowFarneback` computes it (box-filtered update, no Gaussian window flag),
//! written with burn tensor operations so that it runs on every backend.
//!
//! Each pyramid level approximates both images locally by quadratic polynomials
//! (`polynomial_expansion`), then repeatedly solves for the displacement that best maps one
//! polynomial onto the other, averaged over a window (`solve_flow`).

use burn::tensor::module::{avg_pool2d, conv2d, interpolate};
use burn::tensor::ops::{
    AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions, PadMode,
};
use burn::tensor::{Device, Tensor};

use super::warp::{sample_positions, warp};

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

/// The flow from `prev` to `next` (grey images `[1, 1, H, W]`, 0–255): `[1, 2, H, W]`, channel
/// 0 the horizontal and 1 the vertical displacement, in pixels, such that
/// `prev(p) ≈ next(p + flow(p))`.
pub fn farneback(prev: &Tensor<4>, next: &Tensor<4>, params: &FarnebackParams) -> Tensor<4> {
    let [_, _, height, width] = prev.dims();
    let device = prev.device();
    let expansion = PolynomialExpansion::new(params.poly_n, params.poly_sigma, &device);
    let mut flow: Option<Tensor<4>> = None;
    for level in (0..=params.levels).rev() {
        let scale = (params.pyr_scale as f64).powi(level as i32);
        let (w, h) = (
            (width as f64 * scale).round() as usize,
            (height as f64 * scale).round() as usize,
        );
        if w < MIN_LEVEL_SIDE || h < MIN_LEVEL_SIDE {
            continue;
        }
        let sigma = (1.0 / scale - 1.0) * 0.5;
        let level_image = |image: &Tensor<4>| {
            let blurred = gaussian_blur(image.clone(), sigma);
            expansion.apply(resize(blurred, h, w))
        };
        let (r0, r1) = (level_image(prev), level_image(next));
        let mut current = match flow.take() {
            None => Tensor::zeros([1, 2, h, w], &device),
            Some(coarse) => resize(coarse, h, w).div_scalar(params.pyr_scale),
        };
        let border = border_weights(h, w, &device);
        let mut matrices = update_matrices(&r0, &r1, &current, &border);
        for iteration in 0..params.iterations {
            current = solve_flow(matrices.clone(), params.winsize);
            if iteration + 1 < params.iterations {
                matrices = update_matrices(&r0, &r1, &current, &border);
            }
        }
        flow = Some(current);
    }
    flow.unwrap_or_else(|| Tensor::zeros([1, 2, height, width], &device))
}

/// The least-squares fit of `c + bᵀx + xᵀAx` around each pixel under a Gaussian weighting.
struct PolynomialExpansion {
    half: usize,
    /// Vertical pass: `[3, 1, 2n+1, 1]` (weights g, y·g, y²·g).
    vertical: Tensor<4>,
    /// Horizontal pass: `[6, 3, 1, 2n+1]`, the six moments 1, x, x², y, xy, y².
    horizontal: Tensor<4>,
    /// Entries of the inverse moment matrix: linear terms, constant–square coupling,
    /// squares, cross term.
    inverse: [f32; 4],
}

impl PolynomialExpansion {
    fn new(half: usize, sigma: f32, device: &Device) -> Self {
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
        let (m0, m1, m2) = (moment(0), moment(1), moment(2));
        let s2: f64 = m2.iter().sum();
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
        let k = 2 * half + 1;
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let vertical: Vec<f32> = [&m0, &m1, &m2].iter().flat_map(|m| to_f32(m)).collect();
        let vertical = Tensor::<1>::from_floats(vertical.as_slice(), device).reshape([3, 1, k, 1]);
        // (input channel, horizontal weights) of each output moment.
        let plan: [(usize, &Vec<f64>); 6] =
            [(0, &m0), (0, &m1), (0, &m2), (1, &m0), (1, &m1), (2, &m0)];
        let mut horizontal = vec![0.0f32; 6 * 3 * k];
        for (out, (input, weights)) in plan.iter().enumerate() {
            let start = (out * 3 + input) * k;
            horizontal[start..start + k].copy_from_slice(&to_f32(weights));
        }
        let horizontal =
            Tensor::<1>::from_floats(horizontal.as_slice(), device).reshape([6, 3, 1, k]);
        PolynomialExpansion {
            half,
            vertical,
            horizontal,
            inverse,
        }
    }

    /// The coefficients `[1, 5, H, W]` of a grey image `[1, 1, H, W]`, in the order
    /// b_y, b_x, a_yy, a_xx, a_xy (the last the full cross coefficient).
    fn apply(&self, image: Tensor<4>) -> Tensor<4> {
        let n = self.half;
        let no_padding = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let rows = conv2d(
            image.pad([(n, n), (0, 0)], PadMode::Edge),
            self.vertical.clone(),
            None,
            no_padding.clone(),
        );
        let moments = conv2d(
            rows.pad([(0, 0), (n, n)], PadMode::Edge),
            self.horizontal.clone(),
            None,
            no_padding,
        );
        let m = |i: usize| moments.clone().narrow(1, i, 1);
        let [linear, coupling, square, cross] = self.inverse;
        Tensor::cat(
            vec![
                m(3).mul_scalar(linear),
                m(1).mul_scalar(linear),
                m(0).mul_scalar(coupling).add(m(5).mul_scalar(square)),
                m(0).mul_scalar(coupling).add(m(2).mul_scalar(square)),
                m(4).mul_scalar(cross),
            ],
            1,
        )
    }
}

/// The per-pixel normal equations `[1, 5, H, W]` (G11, G12, G22, h1, h2 in (y, x) order) of
/// the displacement that maps `r0`'s polynomials onto `r1`'s, linearised around `flow`.
fn update_matrices(
    r0: &Tensor<4>,
    r1: &Tensor<4>,
    flow: &Tensor<4>,
    border: &Tensor<4>,
) -> Tensor<4> {
    let [_, _, h, w] = flow.dims();
    let (x, y) = sample_positions(flow);
    // OpenCV interpolates only where the whole 2x2 neighbourhood is inside the image.
    let inside = x
        .clone()
        .greater_equal_elem(0.0)
        .bool_and(y.clone().greater_equal_elem(0.0))
        .bool_and(x.clone().lower_elem((w - 1) as f32))
        .bool_and(y.clone().lower_elem((h - 1) as f32))
        .float();
    let warped = warp(r1.clone(), flow).mul(inside.clone());
    let keep = inside.mul_scalar(-0.5).add_scalar(1.0);
    let c = |t: &Tensor<4>, i: usize| t.clone().narrow(1, i, 1);
    let average = |i: usize| {
        c(r0, i)
            .mul(keep.clone())
            .add(c(&warped, i).mul_scalar(0.5))
    };
    let (dx, dy) = (c(flow, 0), c(flow, 1));
    let a_yy = average(2);
    let a_xx = average(3);
    let a_xy = average(4).mul_scalar(0.5);
    let b_y = c(r0, 0)
        .sub(c(&warped, 0))
        .mul_scalar(0.5)
        .add(a_yy.clone().mul(dy.clone()))
        .add(a_xy.clone().mul(dx.clone()));
    let b_x = c(r0, 1)
        .sub(c(&warped, 1))
        .mul_scalar(0.5)
        .add(a_xy.clone().mul(dy))
        .add(a_xx.clone().mul(dx));
    let [a_yy, a_xx, a_xy, b_y, b_x] = [a_yy, a_xx, a_xy, b_y, b_x].map(|t| t.mul(border.clone()));
    Tensor::cat(
        vec![
            a_yy.clone().powi_scalar(2).add(a_xy.clone().powi_scalar(2)),
            a_yy.clone().add(a_xx.clone()).mul(a_xy.clone()),
            a_xx.clone().powi_scalar(2).add(a_xy.clone().powi_scalar(2)),
            a_yy.mul(b_y.clone()).add(a_xy.clone().mul(b_x.clone())),
            a_xy.mul(b_y).add(a_xx.mul(b_x)),
        ],
        1,
    )
}

/// The displacement `[1, 2, H, W]` (x, y) solving the normal equations averaged over a
/// `winsize` box.
fn solve_flow(matrices: Tensor<4>, winsize: usize) -> Tensor<4> {
    let m = winsize / 2;
    let averaged = avg_pool2d(
        matrices.pad([(m, m), (m, m)], PadMode::Edge),
        AvgPoolOptions::new([2 * m + 1, 2 * m + 1]).with_stride([1, 1]),
    );
    let g = |i: usize| averaged.clone().narrow(1, i, 1);
    let (g11, g12, g22, h1, h2) = (g(0), g(1), g(2), g(3), g(4));
    let det = g11
        .clone()
        .mul(g22.clone())
        .sub(g12.clone().powi_scalar(2))
        .add_scalar(1e-3);
    let dx = g11
        .mul(h2.clone())
        .sub(g12.clone().mul(h1.clone()))
        .div(det.clone());
    let dy = g22.mul(h1).sub(g12.mul(h2)).div(det);
    Tensor::cat(vec![dx, dy], 1)
}

/// The weight of each pixel's equations: damped within [`BORDER`] pixels of the edge.
fn border_weights(h: usize, w: usize, device: &Device) -> Tensor<4> {
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
    let rows = Tensor::<1>::from_floats(profile(h).as_slice(), device).reshape([1, 1, h, 1]);
    let cols = Tensor::<1>::from_floats(profile(w).as_slice(), device).reshape([1, 1, 1, w]);
    rows.mul(cols)
}

/// OpenCV's `GaussianBlur` for the pyramid: a kernel of `round(5σ) | 1` (at least 3) taps,
/// the fixed `[1, 2, 1] / 4` when `σ` is 0, mirrored edges.
fn gaussian_blur(image: Tensor<4>, sigma: f64) -> Tensor<4> {
    let kernel: Vec<f32> = if sigma <= 0.0 {
        vec![0.25, 0.5, 0.25]
    } else {
        let size = (((sigma * 5.0).round_ties_even() as usize) | 1).max(3);
        let half = (size / 2) as i64;
        let raw: Vec<f64> = (-half..=half)
            .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f64 = raw.iter().sum();
        raw.iter().map(|v| (v / total) as f32).collect()
    };
    let k = kernel.len();
    let half = k / 2;
    let [_, _, h, w] = image.dims();
    let device = image.device();
    let weights = Tensor::<1>::from_floats(kernel.as_slice(), &device);
    let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    // Mirroring needs the image to be longer than the margin; tiny images keep their edge.
    let mode = |side: usize| {
        if side > half {
            PadMode::Reflect
        } else {
            PadMode::Edge
        }
    };
    let vertical = conv2d(
        image.pad([(half, half), (0, 0)], mode(h)),
        weights.clone().reshape([1, 1, k, 1]),
        None,
        options.clone(),
    );
    conv2d(
        vertical.pad([(0, 0), (half, half)], mode(w)),
        weights.reshape([1, 1, 1, k]),
        None,
        options,
    )
}

/// Bilinear resize with half-pixel centres (OpenCV's `INTER_LINEAR`).
fn resize(tensor: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let [_, _, h, w] = tensor.dims();
    if (h, w) == (height, width) {
        return tensor;
    }
    interpolate(
        tensor,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([height, width]),
    )
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
        let device = Device::flex();
        let (h, w) = (21usize, 23usize);
        let f = |x: f32, y: f32| 3.0 + 2.0 * x - y + 0.5 * x * x + 0.25 * y * y - 0.75 * x * y;
        let values: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x as f32, y as f32)))
            .map(|(x, y)| f(x, y))
            .collect();
        let image = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([1, 1, h, w]);
        let r: Vec<f32> = PolynomialExpansion::new(5, 1.2, &device)
            .apply(image)
            .into_data()
            .try_to_vec()
            .unwrap();
        let (x, y) = (11usize, 10usize);
        let at = |c: usize| r[c * h * w + y * w + x];
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
}
