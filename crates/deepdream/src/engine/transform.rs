//! Random transformations applied to the image before each evaluation, so that what is
//! optimised must survive small shifts, scalings and rotations ("transformation
//! robustness", Olah et al. 2017): the image is padded with a constant, then resampled
//! through one random affine map (jitter, scale, rotation, jitter again, as Lucid's standard
//! transforms). The resampling is bilinear and written with index selections, so that the
//! gradient flows back through it. Also the plain bilinear [`resize`] that carries an image
//! from one scale to the next (the dream's octaves, style transfer's scales).

use crate::error::{Error, Result};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use rand::Rng;

/// The ranges the random transformations are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transforms {
    /// Constant border added around the image first, in pixels.
    pub pad: usize,
    /// Value of the border (0–1 RGB: 0.5 is mid-grey).
    pub pad_value: f32,
    /// Largest shift before scaling and rotating, in pixels.
    pub jitter: f32,
    /// Largest relative change of scale (0.1: 0.9x to 1.1x).
    pub scale: f32,
    /// Largest rotation, in degrees.
    pub rotate: f32,
    /// Largest shift after scaling and rotating, in pixels.
    pub jitter_after: f32,
}

impl Default for Transforms {
    /// Lucid's standard transforms (pad 12, jitter 8, scale 0.9–1.1, rotate ±10°, jitter 4)
    /// widened to pad 16, jitter 16, scale 0.75–1.25, rotate ±15°, jitter 8: objects of a
    /// class come out whole and distinct instead of as scattered parts.
    fn default() -> Self {
        Transforms {
            pad: 16,
            pad_value: 0.5,
            jitter: 16.0,
            scale: 0.25,
            rotate: 15.0,
            jitter_after: 8.0,
        }
    }
}

impl Transforms {
    /// No transformation at all.
    pub const NONE: Transforms = Transforms {
        pad: 0,
        pad_value: 0.5,
        jitter: 0.0,
        scale: 0.0,
        rotate: 0.0,
        jitter_after: 0.0,
    };

    /// The largest border [`Transforms::validate`] accepts, in pixels.
    pub const MAX_PAD: usize = 1024;

    /// Checks the ranges: finite, not negative, a border of at most [`Self::MAX_PAD`]
    /// pixels, a scale change below 1 (the picture never shrinks to nothing).
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidParameter(message));
        if self.pad > Self::MAX_PAD {
            return invalid(format!(
                "the border must be at most {} pixels (got {})",
                Self::MAX_PAD,
                self.pad
            ));
        }
        if !(self.pad_value.is_finite() && (0.0..=1.0).contains(&self.pad_value)) {
            return invalid(format!(
                "the border value must be from 0 to 1 (got {})",
                self.pad_value
            ));
        }
        for (name, value) in [
            ("jitter", self.jitter),
            ("rotation", self.rotate),
            ("jitter after", self.jitter_after),
        ] {
            if !(value.is_finite() && (0.0..=1e6).contains(&value)) {
                return invalid(format!(
                    "the {name} must be a number from 0 to 1000000 (got {value})"
                ));
            }
        }
        if !(self.scale.is_finite() && (0.0..1.0).contains(&self.scale)) {
            return invalid(format!(
                "the scale change must be at least 0 and below 1 (got {})",
                self.scale
            ));
        }
        Ok(())
    }

    /// `image` (`[1, C, H, W]`) padded and resampled through a random affine map drawn
    /// from `rng`; the result is as large as the padded image.
    pub fn apply(&self, image: Tensor<4>, rng: &mut impl Rng) -> Tensor<4> {
        let image = pad(image, self.pad, self.pad_value);
        let mut draw = |limit: f32| {
            if limit > 0.0 {
                rng.random_range(-limit..=limit)
            } else {
                0.0
            }
        };
        let shift = (draw(self.jitter), draw(self.jitter));
        let scale = 1.0 + draw(self.scale);
        let angle = draw(self.rotate).to_radians();
        let shift_after = (draw(self.jitter_after), draw(self.jitter_after));
        if shift == (0.0, 0.0) && scale == 1.0 && angle == 0.0 && shift_after == (0.0, 0.0) {
            return image;
        }
        let [_, _, h, w] = image.dims();
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (sin, cos) = angle.sin_cos();
        // Output pixel (x, y) reads the source at the inverse map: undo the second shift,
        // rotate and scale about the centre, undo the first shift.
        let source = |x: usize, y: usize| {
            let (dx, dy) = (x as f32 - shift_after.0 - cx, y as f32 - shift_after.1 - cy);
            let (rx, ry) = (
                (cos * dx + sin * dy) / scale,
                (-sin * dx + cos * dy) / scale,
            );
            (rx + cx - shift.0, ry + cy - shift.1)
        };
        resample(image, source, self.pad_value)
    }
}

/// `image` with a border of `pad` pixels of `value` on every side.
fn pad(image: Tensor<4>, pad: usize, value: f32) -> Tensor<4> {
    if pad == 0 {
        return image;
    }
    let [n, c, h, w] = image.dims();
    let device = image.device();
    let side = |rows: usize, cols: usize| Tensor::<4>::full([n, c, rows, cols], value, &device);
    let middle = Tensor::cat(vec![side(h, pad), image, side(h, pad)], 3);
    Tensor::cat(
        vec![side(pad, w + 2 * pad), middle, side(pad, w + 2 * pad)],
        2,
    )
}

/// Bilinear resampling: output pixel `(x, y)` takes the source at `source(x, y)`, `fill`
/// outside the image. A sum of four weighted index selections, so it has a gradient.
fn resample(image: Tensor<4>, source: impl Fn(usize, usize) -> (f32, f32), fill: f32) -> Tensor<4> {
    let [n, c, h, w] = image.dims();
    let device = image.device();
    // A fill pixel at index h·w of every flattened channel.
    let flat = Tensor::cat(
        vec![
            image.reshape([n, c, h * w]),
            Tensor::<3>::full([n, c, 1], fill, &device),
        ],
        2,
    );
    let outside = (h * w) as i64;
    let mut indices: [Vec<i64>; 4] = std::array::from_fn(|_| Vec::with_capacity(h * w));
    let mut weights: [Vec<f32>; 4] = std::array::from_fn(|_| Vec::with_capacity(h * w));
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = source(x, y);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let corners = [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x0 + 1.0, y0, fx * (1.0 - fy)),
                (x0, y0 + 1.0, (1.0 - fx) * fy),
                (x0 + 1.0, y0 + 1.0, fx * fy),
            ];
            for (k, &(px, py, weight)) in corners.iter().enumerate() {
                let inside = px >= 0.0 && py >= 0.0 && px < w as f32 && py < h as f32;
                indices[k].push(if inside {
                    py as i64 * w as i64 + px as i64
                } else {
                    outside
                });
                weights[k].push(weight);
            }
        }
    }
    let terms = indices.into_iter().zip(weights).map(|(index, weight)| {
        let index = Tensor::<1, Int>::from_ints(index.as_slice(), &device);
        let weight = Tensor::<1>::from_floats(weight.as_slice(), &device).reshape([1, 1, h * w]);
        flat.clone().select(2, index).mul(weight)
    });
    terms
        .reduce(Tensor::add)
        .expect("four corners")
        .reshape([n, c, h, w])
}

/// Bilinear resize of a `[N, C, H, W]` tensor to `height` x `width`, with aligned corners
/// (as `scipy.ndimage.zoom(order=1)`, the dream's octaves) or not (pixel centres, as
/// PyTorch's default).
pub fn resize(tensor: Tensor<4>, height: usize, width: usize, align_corners: bool) -> Tensor<4> {
    let [_, _, h, w] = tensor.dims();
    if (h, w) == (height, width) {
        return tensor;
    }
    let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
    options.align_corners = align_corners;
    options.output_size = Some([height, width]);
    interpolate(tensor, options)
}
