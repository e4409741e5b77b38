//! Neural style transfer (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
//! Neural Networks", CVPR 2016): an image whose deep features match a content photo and
//! whose feature correlations (Gram matrices) match one or more paintings, found by L-BFGS
//! from the photo (or from noise), coarse to fine over a few scales. With several styles,
//! the target Gram matrices are their weighted mean (as jcjohnson/neural-style blends them).

use burn::tensor::{Device, Tensor};
use image::RgbImage;
use image::imageops::FilterType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::objective::{Losses, Objective, Term, gram};
use crate::engine::optimizer::Optimizer;
use crate::engine::{snapshot::Snapshot, transform};
use crate::error::{Error, Result};
use crate::media::colour::with_colours_of;
use crate::networks::network::Network;

/// Layers whose Gram matrices carry the style (VGG16's first convolution of each block).
pub const DEFAULT_STYLE_LAYERS: [&str; 5] = [
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
];

/// The layer whose features carry the content.
pub const DEFAULT_CONTENT_LAYERS: [&str; 1] = ["block4_conv2"];

/// The longest output side the style transfer accepts.
pub const MAX_SIZE: u32 = 8192;

/// A painting to take the style from, with its share of the blend.
#[derive(Clone, Debug)]
pub struct StyleImage {
    /// The painting.
    pub image: RgbImage,
    /// Its weight among the styles (the weights are normalised to sum to 1).
    pub weight: f32,
}

/// Where the optimisation starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// From the content photo.
    Content,
    /// From random noise (seeded).
    Noise,
}

/// Everything that decides a style transfer besides the network and the images.
#[derive(Clone, Debug)]
pub struct StyleParams {
    /// Layers matched by Gram matrix.
    pub style_layers: Vec<String>,
    /// Layers matched feature by feature.
    pub content_layers: Vec<String>,
    /// Weight of the content terms (shared among the content layers).
    pub content_weight: f32,
    /// Weight of the style terms (shared among the style layers).
    pub style_weight: f32,
    /// Weight of the total variation (smoothness) term.
    pub tv_weight: f32,
    /// Where the optimisation starts.
    pub init: Init,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// Objective evaluations (iterations) per scale.
    pub iterations: usize,
    /// Longest side of the result, in pixels.
    pub size: u32,
    /// Number of scales, coarse to fine.
    pub scales: usize,
    /// Size ratio between one scale and the next.
    pub scale_ratio: f32,
    /// Keep the content's colours: the result's luminance with the photo's chroma.
    pub preserve_colours: bool,
    /// Seed of the noise start.
    pub seed: u64,
}

impl Default for StyleParams {
    /// jcjohnson/neural-style's balance (content 5, style 100 per layer over five layers,
    /// with the same Gram normalisation and Caffe-scale inputs); 200 L-BFGS iterations at
    /// each of two scales, 512 pixels on the longest side.
    fn default() -> Self {
        StyleParams {
            style_layers: DEFAULT_STYLE_LAYERS.map(String::from).to_vec(),
            content_layers: DEFAULT_CONTENT_LAYERS.map(String::from).to_vec(),
            content_weight: 5.0,
            style_weight: 500.0,
            tv_weight: 1.0,
            init: Init::Content,
            optimizer: Optimizer::LBFGS,
            iterations: 200,
            size: 512,
            scales: 2,
            scale_ratio: 2.0,
            preserve_colours: false,
            seed: 0,
        }
    }
}

impl StyleParams {
    /// Checks the parameters, with a message for the first one that cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidParameter(message));
        for (name, weight) in [
            ("content weight", self.content_weight),
            ("style weight", self.style_weight),
            ("total variation weight", self.tv_weight),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return invalid(format!(
                    "the {name} must be a number of at least 0 (got {weight})"
                ));
            }
        }
        if self.style_layers.is_empty() && self.content_layers.is_empty() {
            return invalid("no style or content layer given".into());
        }
        if self.iterations == 0 {
            return invalid("the number of iterations must be at least 1".into());
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return invalid(format!(
                "the size must be between 1 and {MAX_SIZE} pixels (got {})",
                self.size
            ));
        }
        if self.scales == 0 || self.scales > 8 {
            return invalid(format!(
                "the number of scales must be between 1 and 8 (got {})",
                self.scales
            ));
        }
        if !(self.scale_ratio.is_finite() && self.scale_ratio >= 1.0) {
            return invalid(format!(
                "the scale ratio must be at least 1 (got {})",
                self.scale_ratio
            ));
        }
        self.optimizer.validate()
    }

    /// The parameters as `(key, value)` text, for storing in the output file.
    pub fn metadata(&self) -> Vec<(String, String)> {
        [
            ("deepdream:style-layers", self.style_layers.join(",")),
            ("deepdream:content-layers", self.content_layers.join(",")),
            ("deepdream:content-weight", self.content_weight.to_string()),
            ("deepdream:style-weight", self.style_weight.to_string()),
            ("deepdream:tv-weight", self.tv_weight.to_string()),
            ("deepdream:iterations", self.iterations.to_string()),
            ("deepdream:size", self.size.to_string()),
            ("deepdream:scales", self.scales.to_string()),
            ("deepdream:seed", self.seed.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The result's longest side at each scale, coarsest first.
    pub fn sizes(&self) -> Vec<u32> {
        (0..self.scales)
            .rev()
            .map(|k| {
                let side = self.size as f64 / (self.scale_ratio as f64).powi(k as i32);
                (side.round() as u32).max(1)
            })
            .collect()
    }
}

/// Where a style transfer is, reported after every evaluation of the objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StyleProgress {
    /// The scale being optimised, from 0 (coarsest).
    pub scale: usize,
    /// Number of scales.
    pub scales: usize,
    /// Evaluations done at this scale.
    pub iteration: usize,
    /// Evaluations per scale.
    pub iterations: usize,
    /// The image's size at this scale.
    pub width: usize,
    /// The image's size at this scale.
    pub height: usize,
    /// The objective at the evaluated image.
    pub losses: Losses,
}

impl StyleProgress {
    /// Evaluations done over all scales.
    pub fn done(&self) -> usize {
        self.scale * self.iterations + self.iteration
    }
}

/// `image` scaled so that its longest side is `side`.
fn fit(image: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = side as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    if (nw, nh) == (w, h) {
        return image.clone();
    }
    image::imageops::resize(image, nw, nh, FilterType::Lanczos3)
}

/// Runs style transfers with one network on one device.
pub struct Stylist<'a> {
    network: &'a dyn Network,
    device: Device,
    params: StyleParams,
    style_layers: Vec<usize>,
    content_layers: Vec<usize>,
}

impl<'a> Stylist<'a> {
    /// Checks the parameters and the layers against the network. `device` is a plain (not
    /// autodiff) device.
    pub fn new(network: &'a dyn Network, params: StyleParams, device: &Device) -> Result<Self> {
        params.validate()?;
        let index = |name: &String| {
            network
                .layer_index(name)
                .ok_or_else(|| network.unknown_layer(name))
        };
        let style_layers = params
            .style_layers
            .iter()
            .map(index)
            .collect::<Result<_>>()?;
        let content_layers = params
            .content_layers
            .iter()
            .map(index)
            .collect::<Result<_>>()?;
        Ok(Stylist {
            network,
            device: device.clone(),
            params,
            style_layers,
            content_layers,
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &StyleParams {
        &self.params
    }

    /// The result's size for a `width`x`height` content photo.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let scale = self.params.size as f64 / width.max(height) as f64;
        (
            ((width as f64 * scale).round() as u32).max(1),
            ((height as f64 * scale).round() as u32).max(1),
        )
    }

    /// The smallest image side every layer of the objective can see.
    fn min_side(&self) -> usize {
        let layers = self.network.layers();
        (self.style_layers.iter().chain(&self.content_layers))
            .map(|&l| layers[l].min_input)
            .max()
            .unwrap_or(1)
    }

    /// Rough memory of one evaluation of the objective at the finest scale, in bytes.
    pub fn memory_estimate(&self, width: u32, height: u32) -> u64 {
        let (w, h) = self.output_size(width, height);
        let layers = self.network.layers();
        let per_pixel = self
            .style_layers
            .iter()
            .chain(&self.content_layers)
            .map(|&l| layers[l].bytes_per_pixel)
            .fold(0.0f32, f32::max);
        (per_pixel as f64 * w as f64 * h as f64) as u64
    }

    /// The objective at one scale: the content photo's features and the styles' blended
    /// Gram matrices at that scale as targets.
    fn objective(&self, content: &RgbImage, styles: &[StyleImage], side: u32) -> Result<Objective> {
        let preprocess = self.network.preprocess();
        let mut objective = Objective::new();
        if !self.content_layers.is_empty() {
            let input = preprocess.apply(content, &self.device);
            let features = self.network.forward(input, &self.content_layers)?;
            for (&layer, target) in self.content_layers.iter().zip(features) {
                let weight = self.params.content_weight / self.content_layers.len() as f32;
                objective = objective.with(Term::Content { layer, target }, weight);
            }
        }
        if !self.style_layers.is_empty() {
            let total: f32 = styles.iter().map(|s| s.weight).sum();
            let mut blended: Vec<Option<Tensor<2>>> = vec![None; self.style_layers.len()];
            for style in styles {
                // As large as the photo, or as large as the layers need if that is larger.
                let (w, h) = style.image.dimensions();
                let least = (self.min_side() as f64 * w.max(h) as f64 / w.min(h) as f64).ceil();
                let side = side.max(least as u32);
                let input = preprocess.apply(&fit(&style.image, side), &self.device);
                let features = self.network.forward(input, &self.style_layers)?;
                for (sum, feature) in blended.iter_mut().zip(features) {
                    let part = gram(feature).mul_scalar(style.weight / total);
                    *sum = Some(match sum.take() {
                        Some(sum) => sum.add(part),
                        None => part,
                    });
                }
            }
            for (&layer, target) in self.style_layers.iter().zip(blended) {
                let target = target.expect("at least one style");
                let weight = self.params.style_weight / self.style_layers.len() as f32;
                objective = objective.with(Term::Style { layer, target }, weight);
            }
        }
        if self.params.tv_weight > 0.0 {
            objective = objective.with(Term::TotalVariation, self.params.tv_weight);
        }
        Ok(objective)
    }

    /// The content photo restyled after `styles`; `progress` is called after every
    /// evaluation of the objective.
    pub fn transfer(
        &self,
        content: &RgbImage,
        styles: &[StyleImage],
        mut progress: impl FnMut(StyleProgress),
    ) -> Result<RgbImage> {
        self.transfer_watched(content, styles, |snapshot| {
            progress(snapshot.progress);
            Ok(())
        })
    }

    /// [`Stylist::transfer`] with an observer that sees the picture after every evaluation
    /// (at the current scale's size, colours not yet kept); an error it returns stops the
    /// transfer.
    pub fn transfer_watched(
        &self,
        content: &RgbImage,
        styles: &[StyleImage],
        mut observer: impl FnMut(&Snapshot<StyleProgress>) -> Result<()>,
    ) -> Result<RgbImage> {
        check_styles(styles)?;
        let preprocess = self.network.preprocess();
        let sizes = self.params.sizes();
        let min_side = self.min_side();
        let mut current: Option<Tensor<4>> = None;
        for (scale, &side) in sizes.iter().enumerate() {
            let photo = fit(content, side);
            let (width, height) = photo.dimensions();
            if (width.min(height) as usize) < min_side {
                if scale + 1 < sizes.len() {
                    continue; // too small for the layers: start at a finer scale
                }
                return Err(Error::ImageTooSmall {
                    width,
                    height,
                    layer: self
                        .params
                        .style_layers
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    min: min_side as u32,
                });
            }
            let objective = self.objective(&photo, styles, side)?;
            let (h, w) = (height as usize, width as usize);
            let start = match current.take() {
                Some(previous) => transform::resize(previous, h, w, false),
                None => match self.params.init {
                    Init::Content => preprocess.apply(&photo, &self.device),
                    Init::Noise => self.noise(h, w),
                },
            };
            let x: Vec<f32> = start.into_data().try_to_vec().map_err(tensor_error)?;
            let mut iteration = 0;
            let x = self
                .params
                .optimizer
                .minimize(x, self.params.iterations, |x| {
                    let image = Tensor::<1>::from_floats(x, &self.device).reshape([1, 3, h, w]);
                    let (losses, gradient) = objective.evaluate(self.network, image.clone())?;
                    iteration += 1;
                    let progress = StyleProgress {
                        scale,
                        scales: sizes.len(),
                        iteration,
                        iterations: self.params.iterations,
                        width: w,
                        height: h,
                        losses,
                    };
                    observer(&Snapshot::new(progress, &|| {
                        preprocess.invert(image.clone())
                    }))?;
                    let gradient = gradient.into_data().try_to_vec().map_err(tensor_error)?;
                    Ok((losses.total, gradient))
                })?;
            current =
                Some(Tensor::<1>::from_floats(x.as_slice(), &self.device).reshape([1, 3, h, w]));
        }
        let result = preprocess.invert(current.expect("the finest scale always runs"))?;
        Ok(if self.params.preserve_colours {
            let photo = fit(content, result.width().max(result.height()));
            with_colours_of(&result, &photo)
        } else {
            result
        })
    }

    /// The objective of the finest scale evaluated at `image` (for reports and comparisons).
    pub fn losses(
        &self,
        content: &RgbImage,
        styles: &[StyleImage],
        image: &RgbImage,
    ) -> Result<Losses> {
        check_styles(styles)?;
        let side = self.params.size;
        let objective = self.objective(&fit(content, side), styles, side)?;
        let input = self
            .network
            .preprocess()
            .apply(&fit(image, side), &self.device);
        Ok(objective.evaluate(self.network, input)?.0)
    }

    /// Uniform noise around mid-grey, 32 pixel levels of standard deviation, from the seed.
    fn noise(&self, height: usize, width: usize) -> Tensor<4> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.params.seed);
        let spread = 32.0 * 3f32.sqrt();
        let noisy = RgbImage::from_fn(width as u32, height as u32, |_, _| {
            image::Rgb([(); 3].map(|_| (128.0 + rng.random_range(-spread..spread)).round() as u8))
        });
        self.network.preprocess().apply(&noisy, &self.device)
    }
}

fn check_styles(styles: &[StyleImage]) -> Result<()> {
    if styles.is_empty() {
        return Err(Error::InvalidParameter("no style image given".into()));
    }
    if let Some(bad) = styles
        .iter()
        .find(|s| !(s.weight.is_finite() && s.weight > 0.0))
    {
        return Err(Error::InvalidParameter(format!(
            "a style's blend weight must be a positive number (got {})",
            bad.weight
        )));
    }
    Ok(())
}

fn tensor_error(error: impl std::fmt::Debug) -> Error {
    Error::InvalidParameter(format!("cannot read a tensor: {error:?}"))
}
