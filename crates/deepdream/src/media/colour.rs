//! Colour statistics of frames: long animations keep each frame's per-channel mean and
//! spread tied to a reference, so colours do not drift frame after frame.

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
