//! The DeepDream algorithm as Google published it in 2015 (the `deepdream.ipynb` notebook):
//! gradient ascent on the input image over several octaves, with a random jitter each step.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Int, Tensor};
use image::{DynamicImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::image_io;
use crate::network::Network;

/// Longest side a guide image is scaled down to before its features are taken (the
/// notebook used a 224x224 guide).
pub const GUIDE_MAX_SIDE: u32 = 224;

/// A layer to dream on and the weight of its term in the objective.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeight {
    /// The layer's name, as [`Network::layers`] lists it.
    pub layer: String,
    /// The weight of the layer's term.
    pub weight: f32,
}

/// Everything that decides a dream besides the network and the image.
#[derive(Clone, Debug)]
pub struct DreamParams {
    /// Layers to amplify with their weights; empty means the model's default layers.
    pub layers: Vec<LayerWeight>,
    /// Amplify only these channels of each layer (all channels when `None`).
    pub channels: Option<Vec<usize>>,
    /// Grow this ImageNet class: its logit is added to the objective (needs a network with
    /// an ImageNet classifier).
    pub class: Option<usize>,
    /// A guide image: each position's features are pulled towards the guide's best-matching
    /// feature instead of simply being amplified.
    pub guide: Option<RgbImage>,
    /// Number of scales, the smallest first.
    pub octaves: usize,
    /// Size ratio between one octave and the next.
    pub octave_scale: f32,
    /// Gradient-ascent steps per octave.
    pub iterations: usize,
    /// Size of each step, in pixel values per mean absolute gradient.
    pub step_size: f32,
    /// Largest random shift (pixels) applied before each step.
    pub jitter: u32,
    /// Seed of the jitter sequence.
    pub seed: u64,
}

impl Default for DreamParams {
    /// The notebook's defaults: 4 octaves of scale 1.4, 10 iterations, step 1.5, jitter 32.
    fn default() -> Self {
        DreamParams {
            layers: Vec::new(),
            channels: None,
            class: None,
            guide: None,
            octaves: 4,
            octave_scale: 1.4,
            iterations: 10,
            step_size: 1.5,
            jitter: 32,
            seed: 0,
        }
    }
}

impl DreamParams {
    /// Checks the numeric parameters.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::InvalidParameter(what.to_string()));
        if self.octaves == 0 {
            return invalid("octaves must be at least 1");
        }
        if !(self.octave_scale.is_finite() && self.octave_scale > 1.0) {
            return invalid("octave scale must be a number greater than 1");
        }
        if !(self.step_size.is_finite() && self.step_size >= 0.0) {
            return invalid("step size must be a non-negative number");
        }
        if self.layers.iter().any(|l| !l.weight.is_finite()) {
            return invalid("layer weights must be finite numbers");
        }
        if matches!(&self.channels, Some(channels) if channels.is_empty()) {
            return invalid("the channel list is empty");
        }
        Ok(())
    }

    /// The parameters as `(key, value)` text, for storing in the output file.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let layers = self
            .layers
            .iter()
            .map(|l| format!("{}:{}", l.layer, l.weight))
            .collect::<Vec<_>>()
            .join(",");
        let mut entries = vec![
            ("deepdream:layers", layers),
            ("deepdream:octaves", self.octaves.to_string()),
            ("deepdream:octave-scale", self.octave_scale.to_string()),
            ("deepdream:iterations", self.iterations.to_string()),
            ("deepdream:step", self.step_size.to_string()),
            ("deepdream:jitter", self.jitter.to_string()),
            ("deepdream:seed", self.seed.to_string()),
        ];
        if let Some(channels) = &self.channels {
            let list = channels.iter().map(usize::to_string).collect::<Vec<_>>();
            entries.push(("deepdream:channels", list.join(",")));
        }
        if let Some(class) = self.class {
            let name = crate::imagenet::class_name(class).unwrap_or("?");
            entries.push(("deepdream:class", format!("{class} ({name})")));
        }
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// Where a dream is: reported to the progress callback after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The octave being dreamed, from 0 (smallest).
    pub octave: usize,
    /// Number of octaves actually dreamed (octaves too small for the layer are skipped).
    pub octaves: usize,
    /// Steps done in this octave.
    pub iteration: usize,
    /// Steps per octave.
    pub iterations: usize,
    /// The octave's image size.
    pub width: usize,
    /// The octave's image size.
    pub height: usize,
}

impl Progress {
    /// Steps done so far over the whole dream.
    pub fn steps_done(&self) -> usize {
        self.octave * self.iterations + self.iteration
    }

    /// Steps of the whole dream.
    pub fn steps_total(&self) -> usize {
        self.octaves * self.iterations
    }
}

/// One term of the objective, resolved against the network.
struct Term {
    name: String,
    layer: usize,
    weight: f32,
    /// Maximise this class's logit (the layer is the network's logits).
    class: Option<usize>,
    /// Features of the guide image at this layer, `[C, positions]`.
    guide: Option<Tensor<2>>,
}

/// Runs DeepDream with a network on a device.
pub struct Dreamer<'a> {
    network: &'a dyn Network,
    device: Device,
    params: DreamParams,
    terms: Vec<Term>,
    channels: Option<Tensor<1, Int>>,
    min_side: usize,
}

impl<'a> Dreamer<'a> {
    /// Prepares a dream: checks the parameters against the network (layers, channels) and
    /// computes the guide image's features. `device` is a plain (not autodiff) device.
    pub fn new(network: &'a dyn Network, params: DreamParams, device: &Device) -> Result<Self> {
        params.validate()?;
        let mut params = params;
        if params.layers.is_empty() && params.class.is_none() {
            params.layers = network
                .default_layers()
                .iter()
                .map(|layer| LayerWeight {
                    layer: layer.clone(),
                    weight: 1.0,
                })
                .collect();
        }
        if params.layers.is_empty() && params.class.is_none() {
            return Err(Error::InvalidParameter(format!(
                "model '{}' has no default layer: choose one with --layers",
                network.name()
            )));
        }
        let layers = network.layers();
        let mut indices = Vec::new();
        for term in &params.layers {
            let index = network
                .layer_index(&term.layer)
                .ok_or_else(|| network.unknown_layer(&term.layer))?;
            if let Some(channels) = &params.channels {
                let available = layers[index].channels;
                if let Some(&bad) = channels.iter().find(|&&c| c >= available) {
                    return Err(Error::UnknownChannel {
                        layer: term.layer.clone(),
                        channel: bad,
                        channels: available,
                    });
                }
            }
            indices.push(index);
        }
        let class_term = match params.class {
            Some(class) => {
                let layer = network.class_layer().ok_or_else(|| Error::NoClassifier {
                    model: network.name().to_string(),
                })?;
                if class >= layers[layer].channels {
                    return Err(Error::UnknownClass {
                        name: class.to_string(),
                        suggestions: format!(
                            "the classifier has {} classes",
                            layers[layer].channels
                        ),
                    });
                }
                Some(Term {
                    name: format!("class {class}"),
                    layer,
                    weight: 1.0,
                    class: Some(class),
                    guide: None,
                })
            }
            None => None,
        };
        let min_side = indices
            .iter()
            .chain(class_term.as_ref().map(|t| &t.layer))
            .map(|&i| layers[i].min_input)
            .max()
            .unwrap_or(1);
        let channels = params.channels.as_ref().map(|channels| {
            let list: Vec<i64> = channels.iter().map(|&c| c as i64).collect();
            Tensor::<1, Int>::from_ints(list.as_slice(), device)
        });
        let mut dreamer = Dreamer {
            network,
            device: device.clone(),
            terms: Vec::new(),
            channels,
            min_side,
            params: params.clone(),
        };
        dreamer.terms = indices
            .iter()
            .zip(&params.layers)
            .map(|(&layer, term)| Term {
                name: term.layer.clone(),
                layer,
                weight: term.weight,
                class: None,
                guide: None,
            })
            .chain(class_term)
            .collect();
        if let Some(guide) = &params.guide {
            let features = dreamer.guide_features(guide, &indices)?;
            for (term, features) in dreamer.terms.iter_mut().zip(features) {
                term.guide = features;
            }
        }
        Ok(dreamer)
    }

    /// The parameters in use (with the model's default layers filled in).
    pub fn params(&self) -> &DreamParams {
        &self.params
    }

    /// The octave sizes `(height, width)` a dream of a `width`x`height` image goes through,
    /// smallest first. Octaves smaller than the layers can see are left out.
    pub fn octave_sizes(&self, width: u32, height: u32) -> Result<Vec<(usize, usize)>> {
        let (mut h, mut w) = (height as usize, width as usize);
        if h.min(w) < self.min_side {
            return Err(Error::ImageTooSmall {
                width,
                height,
                layer: self.terms[0].name.clone(),
                min: self.min_side as u32,
            });
        }
        let mut sizes = vec![(h, w)];
        for _ in 1..self.params.octaves {
            // scipy.ndimage.zoom's output size: round(size * zoom).
            h = (h as f64 / self.params.octave_scale as f64).round() as usize;
            w = (w as f64 / self.params.octave_scale as f64).round() as usize;
            if h.min(w) < self.min_side {
                break;
            }
            sizes.push((h, w));
        }
        sizes.reverse();
        Ok(sizes)
    }

    /// Dreams an RGB image; `progress` is called after every step.
    pub fn dream(&self, image: &RgbImage, mut progress: impl FnMut(Progress)) -> Result<RgbImage> {
        let preprocess = self.network.preprocess();
        let sizes = self.octave_sizes(image.width(), image.height())?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.params.seed);

        // Octave bases, largest first: each one the previous one scaled down.
        let mut bases = vec![preprocess.apply(image, &self.device)];
        for &(h, w) in sizes.iter().rev().skip(1) {
            let previous = bases.last().expect("at least one octave").clone();
            bases.push(resize(previous, h, w));
        }
        bases.reverse();

        let mut detail: Option<Tensor<4>> = None;
        let mut current = bases[0].clone();
        for (octave, base) in bases.iter().enumerate() {
            let [_, _, h, w] = base.dims();
            let detail_here = match detail.take() {
                Some(detail) => resize(detail, h, w),
                None => base.zeros_like(),
            };
            current = base.clone().add(detail_here);
            for iteration in 0..self.params.iterations {
                current = self.step(current, &mut rng)?;
                progress(Progress {
                    octave,
                    octaves: bases.len(),
                    iteration: iteration + 1,
                    iterations: self.params.iterations,
                    width: w,
                    height: h,
                });
            }
            detail = Some(current.clone().sub(base.clone()));
        }
        preprocess.invert(current)
    }

    /// Dreams any image: grey becomes RGB, an alpha channel is kept unchanged.
    pub fn dream_image(
        &self,
        image: &DynamicImage,
        progress: impl FnMut(Progress),
    ) -> Result<DynamicImage> {
        let (rgb, alpha) = image_io::split_alpha(image);
        let dreamed = self.dream(&rgb, progress)?;
        Ok(image_io::join_alpha(dreamed, alpha.as_ref()))
    }

    /// One gradient-ascent step: jitter, gradient, normalised ascent, un-jitter, clip.
    /// The step is `step_size` pixel levels per mean absolute gradient, converted to each
    /// channel's network units (for Caffe-style networks they are the same).
    fn step(&self, image: Tensor<4>, rng: &mut impl Rng) -> Result<Tensor<4>> {
        let jitter = self.params.jitter as i64;
        let ox = rng.random_range(-jitter..=jitter);
        let oy = rng.random_range(-jitter..=jitter);
        let shifted = image.roll(&[oy, ox], &[2, 3]);
        let gradient = self.gradient(shifted.clone())?;
        let mean_abs: f32 = gradient.clone().abs().mean().into_scalar();
        let rate = if mean_abs > 0.0 && mean_abs.is_finite() {
            self.params.step_size / mean_abs
        } else {
            0.0
        };
        let preprocess = self.network.preprocess();
        let channels: Vec<Tensor<4>> = preprocess
            .value_range()
            .iter()
            .zip(preprocess.value_per_pixel_level())
            .enumerate()
            .map(|(c, (&(lo, hi), unit))| {
                let g = gradient.clone().narrow(1, c, 1).mul_scalar(rate * unit);
                shifted.clone().narrow(1, c, 1).add(g).clamp(lo, hi)
            })
            .collect();
        Ok(Tensor::cat(channels, 1).roll(&[-oy, -ox], &[2, 3]))
    }

    /// The gradient of the objective with respect to the (preprocessed) input.
    pub fn gradient(&self, input: Tensor<4>) -> Result<Tensor<4>> {
        let input = input.autodiff().require_grad();
        let indices: Vec<usize> = self.terms.iter().map(|t| t.layer).collect();
        let activations = self.network.forward(input.clone(), &indices)?;
        let mut loss: Option<Tensor<1>> = None;
        for (term, activation) in self.terms.iter().zip(activations) {
            if let Some(class) = term.class {
                // The class's logit itself, not its square: a negative logit must grow too.
                let logit = activation.narrow(1, class, 1).sum().mul_scalar(term.weight);
                loss = Some(match loss {
                    Some(loss) => loss.add(logit),
                    None => logit,
                });
                continue;
            }
            let activation = match &self.channels {
                Some(channels) => activation.select(1, channels.clone().autodiff()),
                None => activation,
            };
            let count = activation.shape().num_elements() as f32;
            let value = match &term.guide {
                // ½ Σ a²: its gradient at the layer is the activation itself.
                None => activation.powi_scalar(2).sum().mul_scalar(0.5),
                // Σ a·y: its gradient is y, the best-matching guide feature at each position.
                Some(guide) => {
                    let matched = matched_guide(activation.clone().inner(), guide);
                    activation.mul(matched.autodiff()).sum()
                }
            };
            let value = value.mul_scalar(term.weight / count);
            loss = Some(match loss {
                Some(loss) => loss.add(value),
                None => value,
            });
        }
        let loss = loss.expect("at least one term");
        let gradients = loss.backward();
        let gradient = input.grad(&gradients).ok_or_else(|| {
            Error::InvalidParameter("the objective does not depend on the image".into())
        })?;
        Ok(gradient.inner())
    }

    /// Features of the guide image at each of `layers`, as `[C, positions]`.
    fn guide_features(&self, guide: &RgbImage, layers: &[usize]) -> Result<Vec<Option<Tensor<2>>>> {
        let (w, h) = guide.dimensions();
        let scale = (GUIDE_MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
        let (gw, gh) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        let resized = image::imageops::resize(guide, gw, gh, image::imageops::FilterType::Triangle);
        if (gw.min(gh) as usize) < self.min_side {
            return Err(Error::ImageTooSmall {
                width: gw,
                height: gh,
                layer: self.terms[0].name.clone(),
                min: self.min_side as u32,
            });
        }
        let input = self.network.preprocess().apply(&resized, &self.device);
        let activations = self.network.forward(input, layers)?;
        Ok(activations
            .into_iter()
            .map(|a| {
                let a = match &self.channels {
                    Some(channels) => a.select(1, channels.clone()),
                    None => a,
                };
                let [_, c, h, w] = a.dims();
                Some(a.reshape([c, h * w]))
            })
            .collect())
    }
}

/// For each position of `activation` (`[1, C, H, W]`), the guide feature (`[C, P]`) with
/// the largest dot product, laid out like `activation`.
fn matched_guide(activation: Tensor<4>, guide: &Tensor<2>) -> Tensor<4> {
    let [n, c, h, w] = activation.dims();
    let x = activation.reshape([c, h * w]);
    let scores = x.transpose().matmul(guide.clone()); // [positions, guide positions]
    let best = scores.argmax(1).reshape([h * w]);
    guide.clone().select(1, best).reshape([n, c, h, w])
}

/// Bilinear resize with aligned corners, as `scipy.ndimage.zoom(order=1)` does.
fn resize(tensor: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let [_, _, h, w] = tensor.dims();
    if (h, w) == (height, width) {
        return tensor;
    }
    let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
    options.align_corners = true;
    options.output_size = Some([height, width]);
    interpolate(tensor, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_position_takes_the_guide_feature_with_the_largest_dot_product() {
        let device = Device::flex();
        // Two positions: (1, 0) and (0, 1) over two channels.
        let activation =
            Tensor::<1>::from_floats([1.0, 0.0, 0.0, 1.0], &device).reshape([1, 2, 1, 2]);
        // Three guide features as columns: (0.9, 0.1), (0.1, 0.8), (-1, -1).
        let guide =
            Tensor::<1>::from_floats([0.9, 0.1, -1.0, 0.1, 0.8, -1.0], &device).reshape([2, 3]);
        let matched: Vec<f32> = matched_guide(activation, &guide)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(matched, vec![0.9, 0.1, 0.1, 0.8]);
    }

    #[test]
    fn resize_aligns_corners_like_scipy_zoom() {
        let device = Device::flex();
        let row = Tensor::<1>::from_floats([0.0, 10.0], &device).reshape([1, 1, 1, 2]);
        let resized: Vec<f32> = resize(row, 1, 3).into_data().try_to_vec().unwrap();
        // scipy.ndimage.zoom([[0, 10]], (1, 1.5), order=1) == [[0, 5, 10]]
        assert_eq!(resized, vec![0.0, 5.0, 10.0]);
    }
}
