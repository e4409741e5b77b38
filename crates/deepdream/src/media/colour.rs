//! Colour statistics of frames: long animations keep each frame's per-channel mean and
//! spread tied to a reference, so colours do not drift frame after frame. And colour
//! transfer by luminance: a styled picture keeps the photo's colours.

use image::RgbImage;

/// The mean and standard deviation of each RGB channel (0–255 scale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColourStats {
    /// Mean of R, G and B.
    pub mean: [f32; 3],
    /// Standard deviation of R, G and B.
    pub std: [f32; 3],
}

impl ColourStats {
    /// The statistics of `image`.
    pub fn of(image: &RgbImage) -> Self {
        let n = (image.width() as f64 * image.height() as f64).max(1.0);
        let mut sum = [0.0f64; 3];
        let mut squares = [0.0f64; 3];
        for pixel in image.pixels() {
            for c in 0..3 {
                let v = pixel.0[c] as f64;
                sum[c] += v;
                squares[c] += v * v;
            }
        }
        let mean = sum.map(|s| s / n);
        let std = [0, 1, 2].map(|c| (squares[c] / n - mean[c] * mean[c]).max(0.0).sqrt() as f32);
        ColourStats {
            mean: mean.map(|m| m as f32),
            std,
        }
    }
}

/// `image` with each channel shifted and scaled so that its mean and standard deviation are
/// `target`'s (a flat channel is only shifted).
pub fn match_colours(image: &RgbImage, target: &ColourStats) -> RgbImage {
    let own = ColourStats::of(image);
    let gain = [0, 1, 2].map(|c| {
        if own.std[c] > 1e-3 {
            target.std[c] / own.std[c]
        } else {
            1.0
        }
    });
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        for (c, value) in pixel.0.iter_mut().enumerate() {
            let v = (*value as f32 - own.mean[c]) * gain[c] + target.mean[c];
            *value = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `image`'s luminance with `colours`' chroma (YIQ), the two the same size: how a styled
/// picture keeps the photo's colours (Gatys et al., "Preserving Color in Neural Artistic
/// Style Transfer", 2016, the luminance-only variant done after the transfer).
pub fn with_colours_of(image: &RgbImage, colours: &RgbImage) -> RgbImage {
    let colours = if colours.dimensions() == image.dimensions() {
        colours.clone()
    } else {
        image::imageops::resize(
            colours,
            image.width(),
            image.height(),
            image::imageops::FilterType::Triangle,
        )
    };
    let mut out = image.clone();
    for (pixel, source) in out.pixels_mut().zip(colours.pixels()) {
        let [r, g, b] = pixel.0.map(f32::from);
        let luma = 0.299 * r + 0.587 * g + 0.114 * b;
        let [r, g, b] = source.0.map(f32::from);
        let i = 0.596 * r - 0.274 * g - 0.322 * b;
        let q = 0.211 * r - 0.523 * g + 0.312 * b;
        let rgb = [
            luma + 0.956 * i + 0.621 * q,
            luma - 0.272 * i - 0.647 * q,
            luma - 1.106 * i + 1.703 * q,
        ];
        pixel.0 = rgb.map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_gives_the_target_statistics() {
        let image = RgbImage::from_fn(32, 16, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5 + 40) as u8, 200])
        });
        let target = ColourStats {
            mean: [120.0, 90.0, 60.0],
            std: [30.0, 20.0, 0.0],
        };
        let matched = ColourStats::of(&match_colours(&image, &target));
        for c in 0..3 {
            assert!(
                (matched.mean[c] - target.mean[c]).abs() < 0.6,
                "{matched:?}"
            );
        }
        assert!((matched.std[0] - 30.0).abs() < 0.6 && (matched.std[1] - 20.0).abs() < 0.6);
        // A flat channel stays flat.
        assert!(matched.std[2] < 1e-3);
    }
}
