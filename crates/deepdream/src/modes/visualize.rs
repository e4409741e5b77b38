//! Feature visualisation (Olah et al., "Feature Visualization", Distill 2017): an image grown
//! from noise to excite one channel of a layer, a whole layer, or one ImageNet class,
//! Lucid-style — a
//! Fourier parameterisation with decorrelated colours, random transformations before every
//! step, Adam. The same priors make class images that a person recognises, where plain
//! gradient ascent on pixels (or a class dream on a photo) gives a fine speckle that only
//! fools the classifier.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::on_worker;
use crate::engine::objective::{Objective, Term};
use crate::engine::optimizer::Optimizer;
use crate::engine::parameterisation::{ImageParameterisation, Parameterisation, to_network_input};
use crate::engine::snapshot::Snapshot;
use crate::engine::transform::Transforms;
use crate::error::{Error, Result};
use crate::networks::network::{Network, Preprocess};

/// What to visualise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One channel of a layer, by the layer's name.
    Channel {
        /// The layer's name.
        layer: String,
        /// The channel.
        channel: usize,
    },
    /// A whole layer, DeepDream's objective (½ Σ a²) grown from noise.
    Layer(String),
    /// An ImageNet class (needs a network with a classifier).
    Class(usize),
}

impl Target {
    /// The target as text: `layer:channel`, `layer`, or `class N (name)`.
    pub fn describe(&self) -> String {
        match self {
            Target::Channel { layer, channel } => format!("{layer}:{channel}"),
            Target::Layer(layer) => layer.clone(),
            Target::Class(class) => format!(
                "class {class} ({})",
                crate::networks::imagenet::class_name(*class).unwrap_or("?")
            ),
        }
    }
}

/// Everything that decides a visualisation besides the network and the target.
#[derive(Clone, Debug)]
pub struct VisualizeParams {
    /// Side of the square image, in pixels.
    pub size: u32,
    /// Optimisation steps.
    pub steps: usize,
    /// Adam's step size on the parameters.
    pub learning_rate: f32,
    /// How the image is parameterised.
    pub parameterisation: Parameterisation,
    /// The random transformations applied before every step.
    pub transforms: Transforms,
    /// Seed of the starting noise and the transformations.
    pub seed: u64,
}

impl Default for VisualizeParams {
    /// Lucid's defaults (224 pixels, 1/f spectrum, decorrelated colours, Adam at 0.05) with
    /// the wider [`Transforms::default`]; 256 steps.
    fn default() -> Self {
        VisualizeParams {
            size: 224,
            steps: 256,
            learning_rate: 0.05,
            parameterisation: Parameterisation::Fourier { decay: 1.0 },
            transforms: Transforms::default(),
            seed: 0,
        }
    }
}

impl VisualizeParams {
    /// Plain gradient ascent on pixels, no transformations (the baseline the priors are
    /// measured against).
    pub fn without_priors(self) -> Self {
        VisualizeParams {
            parameterisation: Parameterisation::Pixels,
            transforms: Transforms::NONE,
            ..self
        }
    }

    /// Whether the priors (a parameterisation other than pixels, random transformations)
    /// are on.
    pub fn has_priors(&self) -> bool {
        self.parameterisation != Parameterisation::Pixels && self.transforms != Transforms::NONE
    }

    /// The parameters as `(key, value)` text, for storing in the output file.
    pub fn metadata(&self) -> Vec<(String, String)> {
        [
            ("deepdream:size", self.size.to_string()),
            ("deepdream:steps", self.steps.to_string()),
            ("deepdream:seed", self.seed.to_string()),
            ("deepdream:priors", self.has_priors().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidParameter(message));
        if self.size == 0 || self.size > 2048 {
            return invalid(format!(
                "the size must be between 1 and 2048 pixels (got {})",
                self.size
            ));
        }
        if self.steps == 0 {
            return invalid("the number of steps must be at least 1".into());
        }
        if let Parameterisation::Fourier { decay } = self.parameterisation
            && !(decay.is_finite() && decay >= 0.0)
        {
            return invalid(format!(
                "the spectrum decay must be at least 0 (got {decay})"
            ));
        }
        self.transforms.validate()?;
        Optimizer::Adam {
            learning_rate: self.learning_rate,
        }
        .validate()
    }
}

/// Where a visualisation is, reported after every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VisualizeProgress {
    /// Steps done.
    pub step: usize,
    /// All steps.
    pub steps: usize,
    /// The target's activation (mean channel activation or class logit) at this step.
    pub activation: f32,
}

/// The term that grows `target` in `network`.
pub fn target_term(network: &dyn Network, target: &Target) -> Result<Term> {
    match target {
        Target::Channel { layer, channel } => {
            let index = network
                .layer_index(layer)
                .ok_or_else(|| network.unknown_layer(layer))?;
            let channels = network.layers()[index].channels;
            if *channel >= channels {
                return Err(Error::UnknownChannel {
                    layer: layer.clone(),
                    channel: *channel,
                    channels,
                });
            }
            Ok(Term::Channel {
                layer: index,
                channel: *channel,
            })
        }
        Target::Layer(layer) => Ok(Term::Amplify {
            layer: network
                .layer_index(layer)
                .ok_or_else(|| network.unknown_layer(layer))?,
        }),
        Target::Class(class) => {
            let layer = network.class_layer().ok_or_else(|| Error::NoClassifier {
                model: network.name().to_string(),
            })?;
            let classes = network.layers()[layer].channels;
            if *class >= classes {
                return Err(Error::UnknownClass {
                    name: class.to_string(),
                    suggestions: format!("the classifier has {classes} classes"),
                });
            }
            Ok(Term::Class {
                layer,
                class: *class,
            })
        }
    }
}

/// Grows an image for `target` from seeded noise; `progress` is called after every step.
pub fn visualize(
    network: &dyn Network,
    target: &Target,
    params: &VisualizeParams,
    device: &Device,
    mut progress: impl FnMut(VisualizeProgress),
) -> Result<RgbImage> {
    visualize_watched(network, target, params, device, |snapshot| {
        progress(snapshot.progress);
        Ok(())
    })
}

/// [`visualize`] with an observer that sees the picture after every step (without the
/// random transformations); an error it returns stops the visualisation.
pub fn visualize_watched(
    network: &dyn Network,
    target: &Target,
    params: &VisualizeParams,
    device: &Device,
    mut observer: impl FnMut(&Snapshot<VisualizeProgress>) -> Result<()>,
) -> Result<RgbImage> {
    params.validate()?;
    let term = target_term(network, target)?;
    let min = network.layers()[match term {
        Term::Channel { layer, .. } | Term::Amplify { layer } | Term::Class { layer, .. } => layer,
        _ => unreachable!("a target term"),
    }]
    .min_input;
    let side = params.size as usize;
    if side < min {
        return Err(Error::InvalidParameter(format!(
            "the size must be at least {min} pixels for this layer (got {side})"
        )));
    }
    let objective = Objective::new().with(term, 1.0);
    let image = ImageParameterisation::new(params.parameterisation, side, side, device);
    let preprocess = network.preprocess();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    // Uniform noise of standard deviation 0.1 (Lucid starts at 0.01; that leaves the image
    // so flat that some deep ReLU channels are zero everywhere and never get a gradient).
    let start: Vec<f32> = (0..image.len())
        .map(|_| rng.random_range(-1.0f32..1.0) * 0.1 * 3f32.sqrt())
        .collect();
    let shape = image.shape();
    let optimizer = Optimizer::Adam {
        learning_rate: params.learning_rate,
    };
    let mut step = 0;
    let parameters = optimizer.minimize(start, params.steps, |values| {
        let (picture, value, gradient) = on_worker(|| {
            let parameters =
                Tensor::<4>::from_data(TensorData::new(values.to_vec(), shape), device)
                    .autodiff()
                    .require_grad();
            let rendered = image.render(parameters.clone());
            let picture = rendered.clone().inner();
            let rgb = params.transforms.apply(rendered, &mut rng);
            let input = to_network_input(rgb, &preprocess);
            // The objective's gradient at the network input (on the network's device), then
            // back through the transforms and the parameterisation: ⟨input, gradient⟩ has
            // the same gradient with respect to the parameters.
            let (losses, input_gradient) =
                objective.evaluate_here(network, input.clone().inner())?;
            let gradients = input.mul(input_gradient.autodiff()).sum().backward();
            let value = losses.total;
            let gradient = parameters.grad(&gradients).ok_or_else(|| {
                Error::InvalidParameter("the target does not depend on the image".into())
            })?;
            Ok((picture, value, gradient))
        })?;
        step += 1;
        let progress = VisualizeProgress {
            step,
            steps: params.steps,
            activation: -value,
        };
        observer(&Snapshot::new(progress, &|| {
            Preprocess::PIXELS.invert(picture.clone().mul_scalar(255.0))
        }))?;
        let gradient = gradient
            .inner()
            .into_data()
            .try_to_vec()
            .map_err(|e| Error::InvalidParameter(format!("cannot read the gradient: {e:?}")))?;
        Ok((value, gradient))
    })?;
    let parameters = Tensor::<4>::from_data(TensorData::new(parameters, shape), device);
    let rgb = image.render(parameters);
    Preprocess::PIXELS.invert(rgb.mul_scalar(255.0))
}

/// Images side by side in a grid of `columns`, separated by `gap` white pixels.
pub fn contact_sheet(images: &[RgbImage], columns: usize, gap: u32) -> RgbImage {
    let columns = columns.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(columns);
    let (w, h) = images.first().map_or((1, 1), |i| i.dimensions());
    let mut sheet = RgbImage::from_pixel(
        columns as u32 * (w + gap) - gap,
        (rows as u32 * (h + gap)).saturating_sub(gap).max(1),
        image::Rgb([255, 255, 255]),
    );
    for (k, tile) in images.iter().enumerate() {
        let (x, y) = (
            (k % columns) as u32 * (w + gap),
            (k / columns) as u32 * (h + gap),
        );
        image::imageops::overlay(&mut sheet, tile, x as i64, y as i64);
    }
    sheet
}
