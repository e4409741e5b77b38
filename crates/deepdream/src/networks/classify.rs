//! ImageNet classification with a network's classifier head: what the network sees.

use burn::tensor::{Device, activation::softmax};
use image::{DynamicImage, RgbImage, imageops::FilterType};

use crate::error::{Error, Result};
use crate::networks::imagenet;
use crate::networks::network::Network;

/// Side of the square the image is classified at.
pub const INPUT_SIDE: u32 = 224;
/// The centre crop keeps `INPUT_SIDE / CROP_BASE` of the shorter side (224/256, the usual
/// ImageNet evaluation crop).
pub const CROP_BASE: u32 = 256;

/// One guess: class index, its name and probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Guess {
    /// ImageNet class index.
    pub class: usize,
    /// Its name.
    pub name: &'static str,
    /// Softmax probability.
    pub probability: f32,
}

/// The centre crop of the image scaled to `INPUT_SIDE` square.
pub fn evaluation_crop(image: &DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let side = ((w.min(h) as u64 * INPUT_SIDE as u64) / CROP_BASE as u64).max(1) as u32;
    let cropped = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    cropped
        .resize_exact(INPUT_SIDE, INPUT_SIDE, FilterType::CatmullRom)
        .to_rgb8()
}

/// The `top` most probable ImageNet classes of an image.
pub fn classify(
    network: &dyn Network,
    image: &DynamicImage,
    top: usize,
    device: &Device,
) -> Result<Vec<Guess>> {
    let layer = network.class_layer().ok_or_else(|| Error::NoClassifier {
        model: network.name().to_string(),
    })?;
    let input = network.preprocess().apply(&evaluation_crop(image), device);
    let logits = network.forward(input, &[layer])?.remove(0);
    let probabilities: Vec<f32> = softmax(logits.reshape([1, imagenet::CLASS_COUNT]), 1)
        .into_data()
        .try_to_vec()
        .map_err(|e| Error::InvalidParameter(format!("cannot read probabilities: {e:?}")))?;
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    Ok(order
        .into_iter()
        .take(top)
        .map(|class| Guess {
            class,
            name: imagenet::class_name(class).unwrap_or("?"),
            probability: probabilities[class],
        })
        .collect())
}
