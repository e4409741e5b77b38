//! Masks: grey pictures that say where a dream may change the image (white dreams, black
//! stays, grey in between), resized to each octave and frame.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage};

use crate::error::{Error, Result};
use crate::media::image_io;

/// A grey picture of weights from 0 (the image stays) to 1 (it dreams fully), at any size:
/// it is stretched to the picture it masks.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    grey: GrayImage,
    /// How much the mask holds back: 1 (the default) applies it fully, 0 not at all (the
    /// whole picture dreams); in between, black areas dream by `1 − strength`.
    pub strength: f32,
}

impl Mask {
    /// A mask from any picture: its luminance (an alpha channel multiplies it, so a
    /// transparent area stays).
    pub fn from_image(image: &DynamicImage) -> Self {
        let grey = match image.color().has_alpha() {
            false => image.to_luma8(),
            true => {
                let luma_alpha = image.to_luma_alpha8();
                GrayImage::from_fn(luma_alpha.width(), luma_alpha.height(), |x, y| {
                    let [l, a] = luma_alpha.get_pixel(x, y).0;
                    image::Luma([((l as u32 * a as u32 + 127) / 255) as u8])
                })
            }
        };
        Mask {
            grey,
            strength: 1.0,
        }
    }

    /// Reads a mask picture; an error naming the file when it is not one.
    pub fn load(path: &Path) -> Result<Self> {
        let image = image_io::load(path).map_err(|error| match error {
            Error::ImageRead { path, reason } => Error::ImageRead {
                path,
                reason: format!("it is not a mask picture ({reason})"),
            },
            other => other,
        })?;
        Ok(Self::from_image(&image))
    }

    /// The mask with `strength` (0–1).
    pub fn with_strength(mut self, strength: f32) -> Result<Self> {
        check_strength(strength)?;
        self.strength = strength;
        Ok(self)
    }

    /// The mask's own size.
    pub fn dimensions(&self) -> (u32, u32) {
        self.grey.dimensions()
    }

    /// The weights (0–1, strength applied) stretched to `width` x `height`, as a
    /// `[1, 1, height, width]` tensor.
    pub fn weights(&self, width: usize, height: usize, device: &Device) -> Tensor<4> {
        let resized;
        let grey = if self.grey.dimensions() == (width as u32, height as u32) {
            &self.grey
        } else {
            resized = image::imageops::resize(
                &self.grey,
                width as u32,
                height as u32,
                FilterType::Triangle,
            );
            &resized
        };
        let keep = 1.0 - self.strength;
        let values: Vec<f32> = grey
            .as_raw()
            .iter()
            .map(|&v| keep + self.strength * v as f32 / 255.0)
            .collect();
        Tensor::from_data(TensorData::new(values, [1, 1, height, width]), device)
    }

    /// The mean weight (0–1, strength applied): how much of the picture dreams.
    pub fn coverage(&self) -> f32 {
        let raw = self.grey.as_raw();
        let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / raw.len().max(1) as f64 / 255.0;
        1.0 - self.strength + self.strength * mean as f32
    }
}

/// Checks a mask strength.
pub fn check_strength(strength: f32) -> Result<()> {
    if strength.is_finite() && (0.0..=1.0).contains(&strength) {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "the mask strength must be from 0 to 1 (got {strength})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_grey_levels_and_the_strength() {
        let device = Device::flex();
        let grey = GrayImage::from_fn(4, 1, |x, _| image::Luma([[0, 51, 204, 255][x as usize]]));
        let mask = Mask::from_image(&DynamicImage::ImageLuma8(grey));
        let weights: Vec<f32> = mask
            .weights(4, 1, &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected = [0.0, 0.2, 0.8, 1.0];
        assert!(
            weights
                .iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
        let half = mask.with_strength(0.5).unwrap();
        let weights: Vec<f32> = half
            .weights(4, 1, &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((weights[0] - 0.5).abs() < 1e-6 && (weights[3] - 1.0).abs() < 1e-6);
        assert!(
            Mask::from_image(&DynamicImage::new_luma8(1, 1))
                .with_strength(1.5)
                .is_err()
        );
    }

    #[test]
    fn transparency_keeps_the_image() {
        let image = image::RgbaImage::from_fn(2, 1, |x, _| {
            image::Rgba([255, 255, 255, [255, 0][x as usize]])
        });
        let mask = Mask::from_image(&DynamicImage::ImageRgba8(image));
        assert_eq!(mask.grey.as_raw(), &vec![255, 0]);
    }
}
