//! Image parameterisations: how the numbers an optimiser changes become an RGB image. Plain
//! pixels, or (as Olah et al., "Feature Visualization", Distill 2017, and tensorflow/lucid
//! do) a Fourier spectrum scaled by 1/frequency, so that every frequency moves at the same
//! rate and the optimisation does not fill the image with high-frequency patterns, with
//! colours decorrelated by ImageNet's colour covariance. Both end in a sigmoid, so the image
//! stays within 0–1 whatever the parameters.

use std::f32::consts::PI;

use burn::tensor::{Device, Tensor};

use crate::networks::network::Preprocess;

/// The square root of ImageNet's RGB covariance (from its SVD), as Lucid uses it: colours
/// drawn independently in this basis have natural correlations.
const COLOUR_CORRELATION_SQRT: [[f32; 3]; 3] =
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// How an image is parameterised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Parameterisation {
    /// One parameter per pixel and channel (through a sigmoid).
    Pixels,
    /// A Fourier spectrum scaled by `1 / frequency^decay`, colours decorrelated.
    Fourier {
        /// The spectrum's fall-off: 1 is the 1/f of natural images.
        decay: f32,
    },
}

/// An image of a given size under a parameterisation: renders parameters to RGB.
pub struct ImageParameterisation {
    kind: Parameterisation,
    height: usize,
    width: usize,
    /// For the Fourier kind: `cos` and `sin` of `2π·u·y/H` (`[H, H]`) and of `2π·v·x/W`
    /// (`[W, W]`), and each frequency's scale (`[1, 1, H, W]`).
    basis: Option<FourierBasis>,
}

struct FourierBasis {
    cos_h: Tensor<2>,
    sin_h: Tensor<2>,
    cos_w: Tensor<2>,
    sin_w: Tensor<2>,
    scale: Tensor<4>,
}

/// `cos` and `sin` of `2π·i·j/n` for `i, j < n`.
fn dft_matrices(n: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let angle = |i: usize, j: usize| 2.0 * PI * ((i * j) % n) as f32 / n as f32;
    let cos: Vec<f32> = (0..n * n).map(|k| angle(k / n, k % n).cos()).collect();
    let sin: Vec<f32> = (0..n * n).map(|k| angle(k / n, k % n).sin()).collect();
    (
        Tensor::<1>::from_floats(cos.as_slice(), device).reshape([n, n]),
        Tensor::<1>::from_floats(sin.as_slice(), device).reshape([n, n]),
    )
}

impl ImageParameterisation {
    /// A `height` x `width` image parameterised by `kind`.
    pub fn new(kind: Parameterisation, height: usize, width: usize, device: &Device) -> Self {
        let basis = match kind {
            Parameterisation::Pixels => None,
            Parameterisation::Fourier { decay } => {
                let (cos_h, sin_h) = dft_matrices(height, device);
                let (cos_w, sin_w) = dft_matrices(width, device);
                // Frequencies in cycles per pixel, |f| = √(fy² + fx²), the constant term
                // treated as the lowest non-zero frequency.
                let frequency = |k: usize, n: usize| k.min(n - k) as f32 / n as f32;
                let floor = 1.0 / height.max(width) as f32;
                let scale: Vec<f32> = (0..height * width)
                    .map(|k| {
                        let (u, v) = (k / width, k % width);
                        let f = frequency(u, height).hypot(frequency(v, width)).max(floor);
                        1.0 / f.powf(decay)
                    })
                    .collect();
                // The scale of the whole spectrum: unit-variance parameters give an image
                // of about unit variance before the colour transform.
                let norm = (scale.iter().map(|s| s * s).sum::<f32>()).sqrt().max(1e-12);
                let scale: Vec<f32> = scale.iter().map(|s| s / norm).collect();
                Some(FourierBasis {
                    cos_h,
                    sin_h,
                    cos_w,
                    sin_w,
                    scale: Tensor::<1>::from_floats(scale.as_slice(), device)
                        .reshape([1, 1, height, width]),
                })
            }
        };
        ImageParameterisation {
            kind,
            height,
            width,
            basis,
        }
    }

    /// How many parameters the image has.
    pub fn len(&self) -> usize {
        match self.kind {
            Parameterisation::Pixels => 3 * self.height * self.width,
            Parameterisation::Fourier { .. } => 2 * 3 * self.height * self.width,
        }
    }

    /// Whether the image has no parameters (an empty image).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parameters' shape: `[1, 3, H, W]` for pixels, `[2, 3, H, W]` (real and imaginary
    /// parts) for a spectrum.
    pub fn shape(&self) -> [usize; 4] {
        let lead = match self.kind {
            Parameterisation::Pixels => 1,
            Parameterisation::Fourier { .. } => 2,
        };
        [lead, 3, self.height, self.width]
    }

    /// The image before the colour transform and the sigmoid (`[1, 3, H, W]`): the pixels
    /// themselves, or the real part of the scaled spectrum's inverse Fourier transform.
    pub fn spatial(&self, parameters: Tensor<4>) -> Tensor<4> {
        let Some(b) = &self.basis else {
            return parameters;
        };
        let (h, w) = (self.height, self.width);
        let scaled = parameters.mul(b.scale.clone());
        let real = scaled.clone().narrow(0, 0, 1).reshape([3, h, w]);
        let imaginary = scaled.narrow(0, 1, 1).reshape([3, h, w]);
        // Re(Σ (a + ib) e^{iθ}) = Σ a cos θ - b sin θ, θ = 2π(uy/H + vx/W), expanded into
        // products of the row and column matrices.
        let rows = |m: &Tensor<2>, t: Tensor<3>| m.clone().unsqueeze::<3>().matmul(t);
        let cols = |t: Tensor<3>, m: &Tensor<2>| t.matmul(m.clone().transpose().unsqueeze::<3>());
        let (ch, sh, cw, sw) = (&b.cos_h, &b.sin_h, &b.cos_w, &b.sin_w);
        let image = cols(rows(ch, real.clone()), cw)
            .sub(cols(rows(sh, real), sw))
            .sub(cols(rows(sh, imaginary.clone()), cw))
            .sub(cols(rows(ch, imaginary), sw));
        image.reshape([1, 3, h, w])
    }

    /// The parameters whose [`Self::spatial`] image is `image` (`[1, 3, H, W]`): the image
    /// itself for pixels, its Fourier transform divided by the scale for a spectrum.
    pub fn parameters_of(&self, image: Tensor<4>) -> Tensor<4> {
        let Some(b) = &self.basis else {
            return image;
        };
        let (h, w) = (self.height, self.width);
        let x = image.reshape([3, h, w]);
        let rows = |m: &Tensor<2>, t: Tensor<3>| m.clone().unsqueeze::<3>().matmul(t);
        let cols = |t: Tensor<3>, m: &Tensor<2>| t.matmul(m.clone().transpose().unsqueeze::<3>());
        let (ch, sh, cw, sw) = (&b.cos_h, &b.sin_h, &b.cos_w, &b.sin_w);
        // (1/HW) Σ x e^{-iθ}: real part cos·cos - sin·sin, imaginary -(sin·cos + cos·sin).
        let count = (h * w) as f32;
        let real = cols(rows(ch, x.clone()), cw).sub(cols(rows(sh, x.clone()), sw));
        let imaginary = cols(rows(sh, x.clone()), cw)
            .add(cols(rows(ch, x), sw))
            .neg();
        Tensor::cat(
            vec![real.reshape([1, 3, h, w]), imaginary.reshape([1, 3, h, w])],
            0,
        )
        .div_scalar(count)
        .div(b.scale.clone())
    }

    /// The RGB image (0–1, `[1, 3, H, W]`) the parameters give.
    pub fn render(&self, parameters: Tensor<4>) -> Tensor<4> {
        let spatial = self.spatial(parameters);
        let coloured = match self.kind {
            Parameterisation::Pixels => spatial,
            Parameterisation::Fourier { .. } => decorrelated_colours(spatial),
        };
        burn::tensor::activation::sigmoid(coloured)
    }
}

/// Colours mixed by [`COLOUR_CORRELATION_SQRT`], scaled by its largest column norm.
fn decorrelated_colours(image: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = image.dims();
    let norm = (0..3)
        .map(|c| {
            (0..3)
                .map(|r| COLOUR_CORRELATION_SQRT[r][c].powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .fold(0.0f32, f32::max);
    let matrix: Vec<f32> = COLOUR_CORRELATION_SQRT
        .iter()
        .flatten()
        .map(|v| v / norm)
        .collect();
    let matrix = Tensor::<1>::from_floats(matrix.as_slice(), &image.device()).reshape([3, 3]);
    matrix
        .matmul(image.reshape([3, h * w]))
        .reshape([1, 3, h, w])
}

/// An RGB image (0–1, `[1, 3, H, W]`) as the network's input, differentiably.
pub fn to_network_input(rgb: Tensor<4>, preprocess: &Preprocess) -> Tensor<4> {
    let channels: Vec<Tensor<4>> = preprocess
        .channel_order()
        .iter()
        .map(|&c| {
            rgb.clone()
                .narrow(1, c, 1)
                .mul_scalar(255.0 / preprocess.std[c])
                .sub_scalar(preprocess.mean[c] / preprocess.std[c])
        })
        .collect();
    Tensor::cat(channels, 1)
}
