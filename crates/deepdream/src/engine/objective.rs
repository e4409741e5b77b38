//! Objectives over a network's layers: what an image is optimised for. An [`Objective`] is a
//! weighted sum of [`Term`]s, each reading one layer's activation (a content match, a style
//! match through Gram matrices, a channel or class to grow) or the image itself (total
//! variation); evaluating it runs the network once up to the deepest layer any term reads
//! and returns the value of every term and the gradient with respect to the image. Every
//! term is minimised; what should grow enters negated.

use burn::tensor::{Gradients, Tensor, TensorData};

use crate::backend::layer_terms::Match;
use crate::backend::on_worker;
use crate::error::{Error, Result};
use crate::networks::network::{LayerLoss, LayerTerms, Network};

/// A layer to dream on and the weight of its term in the objective.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeight {
    /// The layer's name, as [`Network::layers`] lists it.
    pub layer: String,
    /// The weight of the layer's term.
    pub weight: f32,
}

impl LayerWeight {
    /// Parses a list, `block3_conv3:0.5,block4_conv3` (empty parts skipped); an error for
    /// a list that names no layer.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let layers: Vec<Self> = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_>>()?;
        if layers.is_empty() {
            return Err(Error::InvalidParameter(format!("'{text}' names no layer")));
        }
        Ok(layers)
    }
}

impl std::str::FromStr for LayerWeight {
    type Err = Error;

    /// Parses `block4_conv3` (weight 1) or `block4_conv3:0.5`.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (layer, weight) = match text.rsplit_once(':') {
            Some((layer, weight)) => {
                let weight = weight.trim().parse().map_err(|_| {
                    Error::InvalidParameter(format!("layer weight '{weight}' is not a number"))
                })?;
                (layer.trim(), weight)
            }
            None => (text, 1.0),
        };
        if layer.is_empty() {
            return Err(Error::InvalidParameter(format!("'{text}' names no layer")));
        }
        Ok(LayerWeight {
            layer: layer.to_string(),
            weight,
        })
    }
}

/// The Gram matrix of a `[1, C, H, W]` activation: `F Fᵀ / (C·H·W)` with `F` the `[C, H·W]`
/// feature matrix, the channels' correlations (Gatys et al. 2016).
pub fn gram(activation: Tensor<4>) -> Tensor<2> {
    let [_, channels, height, width] = activation.dims();
    let features = activation.reshape([channels, height * width]);
    let count = (channels * height * width).max(1) as f32;
    features
        .clone()
        .matmul(features.transpose())
        .div_scalar(count)
}

/// DeepDream's term (2015): ½ Σ a², whose gradient at the layer is the activation itself.
pub fn amplify<const D: usize>(activation: Tensor<D>) -> Tensor<1> {
    activation.powi_scalar(2).sum().mul_scalar(0.5)
}

/// A guided dream's term: Σ a·y, whose gradient at the layer is `matched` (y), the guide's
/// best-matching feature at each position.
pub fn guide_match<const D: usize>(activation: Tensor<D>, matched: Tensor<D>) -> Tensor<1> {
    activation.mul(matched).sum()
}

/// Mean squared difference of two tensors of the same shape.
fn mean_squared<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<1> {
    a.sub(b).powi_scalar(2).mean()
}

/// Total variation (squared): the mean over the image of the squared differences between
/// vertical and between horizontal neighbours, each channel on its own.
pub fn total_variation(image: Tensor<4>) -> Tensor<1> {
    let [_, _, height, width] = image.dims();
    let device = image.device();
    let mut parts = Vec::new();
    if height > 1 {
        let down = image.clone().narrow(2, 1, height - 1);
        let up = image.clone().narrow(2, 0, height - 1);
        parts.push(mean_squared(down, up));
    }
    if width > 1 {
        let right = image.clone().narrow(3, 1, width - 1);
        let left = image.narrow(3, 0, width - 1);
        parts.push(mean_squared(right, left));
    }
    parts
        .into_iter()
        .reduce(Tensor::add)
        .unwrap_or_else(|| Tensor::zeros([1], &device))
}

/// Layers' outputs as autodiff leaves: a loss of them, differentiated, gives its gradient
/// with respect to each (for a network that runs the rest of the gradient itself).
pub fn leaves(activations: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
    activations
        .into_iter()
        .map(|a| a.autodiff().require_grad())
        .collect()
}

/// Each of `leaves`' gradient in `gradients`, zeros for a leaf the loss does not reach.
pub fn leaf_gradients(leaves: Vec<Tensor<4>>, gradients: &Gradients) -> Vec<Tensor<4>> {
    leaves
        .into_iter()
        .map(|leaf| {
            leaf.grad(gradients)
                .map(|g| g.inner())
                .unwrap_or_else(|| leaf.inner().zeros_like())
        })
        .collect()
}

/// One part of an objective, to be minimised.
#[derive(Clone, Debug)]
pub enum Term {
    /// The layer's activation should equal `target` (mean squared difference).
    Content {
        /// Index into the network's layers.
        layer: usize,
        /// The wanted activation, `[1, C, H, W]`.
        target: Tensor<4>,
    },
    /// The layer's Gram matrix should equal `target` (mean squared difference).
    Style {
        /// Index into the network's layers.
        layer: usize,
        /// The wanted Gram matrix, `[C, C]`.
        target: Tensor<2>,
    },
    /// The image should be smooth: its [`total_variation`].
    TotalVariation,
    /// The channel's mean activation should grow (its negative is minimised).
    Channel {
        /// Index into the network's layers.
        layer: usize,
        /// The channel.
        channel: usize,
    },
    /// The layer's activations should grow: [`amplify`] divided by their count, negated
    /// (DeepDream's objective on the whole layer).
    Amplify {
        /// Index into the network's layers.
        layer: usize,
    },
    /// The class's logit should grow (its negative is minimised).
    Class {
        /// Index of the network's class-logit layer.
        layer: usize,
        /// The ImageNet class.
        class: usize,
    },
}

impl Term {
    /// What the term measures, for reports.
    pub fn kind(&self) -> TermKind {
        match self {
            Term::Content { .. } => TermKind::Content,
            Term::Style { .. } => TermKind::Style,
            Term::TotalVariation => TermKind::TotalVariation,
            Term::Channel { .. } | Term::Amplify { .. } | Term::Class { .. } => {
                TermKind::Activation
            }
        }
    }

    fn layer(&self) -> Option<usize> {
        match self {
            Term::Content { layer, .. }
            | Term::Style { layer, .. }
            | Term::Channel { layer, .. }
            | Term::Amplify { layer }
            | Term::Class { layer, .. } => Some(*layer),
            Term::TotalVariation => None,
        }
    }
}

/// The kinds of [`Term`], by which [`Losses`] sums them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermKind {
    /// Content matches.
    Content,
    /// Style (Gram) matches.
    Style,
    /// Total variation.
    TotalVariation,
    /// Activations to grow (channels, class logits), negated.
    Activation,
}

/// The value of an objective and of its weighted parts, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    /// The whole objective.
    pub total: f32,
    /// Weighted content terms.
    pub content: f32,
    /// Weighted style terms.
    pub style: f32,
    /// Weighted total variation.
    pub total_variation: f32,
    /// Weighted activations to grow, negated (so lower is better, like the rest).
    pub activation: f32,
}

/// A weighted sum of terms, minimised over the image.
#[derive(Clone, Debug, Default)]
pub struct Objective {
    terms: Vec<(Term, f32)>,
}

impl Objective {
    /// An objective with no terms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `term` with `weight`.
    pub fn with(mut self, term: Term, weight: f32) -> Self {
        self.terms.push((term, weight));
        self
    }

    /// The terms and their weights.
    pub fn terms(&self) -> &[(Term, f32)] {
        &self.terms
    }

    /// The layers the terms read, each once, in the order of first use.
    pub fn layers(&self) -> Vec<usize> {
        let mut layers = Vec::new();
        for layer in self.terms.iter().filter_map(|(term, _)| term.layer()) {
            if !layers.contains(&layer) {
                layers.push(layer);
            }
        }
        layers
    }

    /// The objective's value for `image` (a preprocessed `[1, 3, H, W]` network input, on an
    /// autodiff device for a gradient): the total, to differentiate, and each weighted term.
    pub fn value(
        &self,
        network: &dyn Network,
        image: Tensor<4>,
    ) -> Result<(Tensor<1>, Vec<(TermKind, Tensor<1>)>)> {
        let layers = self.layers();
        let activations = if layers.is_empty() {
            Vec::new()
        } else {
            network.forward(image.clone(), &layers)?
        };
        self.value_of(&activations, image)
    }

    /// The objective's value from the outputs of [`Objective::layers`] (`activations`, in
    /// that order) and the image.
    fn value_of(
        &self,
        activations: &[Tensor<4>],
        image: Tensor<4>,
    ) -> Result<(Tensor<1>, Vec<(TermKind, Tensor<1>)>)> {
        let layers = self.layers();
        let activation = |layer: usize| {
            let index = layers.iter().position(|&l| l == layer).expect("listed");
            activations[index].clone()
        };
        let mut parts = Vec::new();
        for (term, weight) in &self.terms {
            let value = match term {
                Term::Content { layer, target } => {
                    let a = activation(*layer);
                    check_shape(&a.dims(), &target.dims(), "content")?;
                    mean_squared(a, target.clone())
                }
                Term::Style { layer, target } => {
                    let g = gram(activation(*layer));
                    check_shape(&g.dims(), &target.dims(), "style")?;
                    mean_squared(g, target.clone())
                }
                Term::TotalVariation => total_variation(image.clone()),
                Term::Channel { layer, channel } => {
                    let a = activation(*layer);
                    let channels = a.dims()[1];
                    if *channel >= channels {
                        return Err(Error::InvalidParameter(format!(
                            "channel {channel} does not exist (the layer has {channels})"
                        )));
                    }
                    a.narrow(1, *channel, 1).mean().neg()
                }
                Term::Amplify { layer } => {
                    let a = activation(*layer);
                    let count = a.shape().num_elements().max(1) as f32;
                    amplify(a).div_scalar(count).neg()
                }
                Term::Class { layer, class } => activation(*layer).narrow(1, *class, 1).sum().neg(),
            };
            parts.push((term.kind(), value.mul_scalar(*weight)));
        }
        let total = parts
            .iter()
            .map(|(_, value)| value.clone())
            .reduce(Tensor::add)
            .ok_or_else(|| Error::InvalidParameter("the objective has no terms".into()))?;
        Ok((total, parts))
    }

    /// The objective's value for `image` (a preprocessed `[1, 3, H, W]` input on a plain
    /// device) and its gradient with respect to the image.
    pub fn evaluate(&self, network: &dyn Network, image: Tensor<4>) -> Result<(Losses, Tensor<4>)> {
        on_worker(|| self.evaluate_here(network, image))
    }

    /// [`Objective::evaluate`] on the calling thread (for callers already on a worker).
    pub fn evaluate_here(
        &self,
        network: &dyn Network,
        image: Tensor<4>,
    ) -> Result<(Losses, Tensor<4>)> {
        let layers = self.layers();
        if !layers.is_empty() {
            // A network that runs its own gradient (on a GPU) makes the loss's gradient at
            // the layers itself where the terms describe it, else asks for it; terms on the
            // image itself add theirs here.
            let mut host_losses = None;
            let mut image_gradient = None;
            let mut gradients = |activations: Vec<Tensor<4>>| {
                let leaves = leaves(activations);
                let input = image.clone().autodiff().require_grad();
                let (total, parts) = self.value_of(&leaves, input.clone())?;
                host_losses = Some(sum_losses(parts));
                let gradients = total.backward();
                image_gradient = input.grad(&gradients).map(|g| g.inner());
                Ok(leaf_gradients(leaves, &gradients))
            };
            let [_, _, height, width] = image.dims();
            let mut loss = LayerLoss {
                gradients: &mut gradients,
                terms: self.layer_terms(network, &layers, height, width)?,
                values: None,
            };
            if let Some(gradient) = network.input_gradient(image.clone(), &layers, &mut loss) {
                let gradient = gradient?;
                let values = loss.values.take();
                return match values {
                    Some(values) => {
                        let (mut losses, on_image) = self.image_terms(image)?;
                        for value in values {
                            losses.activation += value.quadratic;
                            losses.content += value.content;
                            losses.style += value.style;
                        }
                        losses.total = losses.content
                            + losses.style
                            + losses.total_variation
                            + losses.activation;
                        let gradient = match on_image {
                            Some(on_image) => gradient.add(on_image),
                            None => gradient,
                        };
                        Ok((losses, gradient))
                    }
                    None => {
                        let gradient = match image_gradient {
                            Some(image_gradient) => gradient.add(image_gradient),
                            None => gradient,
                        };
                        Ok((host_losses.unwrap_or_default(), gradient))
                    }
                };
            }
        }
        let input = image.autodiff().require_grad();
        let (total, parts) = self.value(network, input.clone())?;
        let losses = sum_losses(parts);
        let gradients = total.backward();
        let gradient = input.grad(&gradients).ok_or_else(|| {
            Error::InvalidParameter("the objective does not depend on the image".into())
        })?;
        Ok((losses, gradient.inner()))
    }

    /// The terms at `layers` (each read once, in that order) of a `height` x `width` image,
    /// one [`LayerTerms`] per layer, for a device to make their gradients and values
    /// itself; `None` where a term does not fit its layer (the host then says why).
    fn layer_terms(
        &self,
        network: &dyn Network,
        layers: &[usize],
        height: usize,
        width: usize,
    ) -> Result<Option<Vec<LayerTerms>>> {
        let infos = network.layers();
        let mut losses = Vec::with_capacity(layers.len());
        for &layer in layers {
            let Some((h, w)) = network.output_size(layer, height, width) else {
                return Ok(None);
            };
            losses.push(LayerTerms::zero(infos[layer].channels, 0..h, 0..w));
        }
        let values = |tensor: TensorData| {
            tensor
                .try_to_vec::<f32>()
                .map_err(|e| Error::InvalidParameter(format!("cannot read a target: {e:?}")))
        };
        for (term, weight) in &self.terms {
            let Some(layer) = term.layer() else { continue };
            let slot = layers.iter().position(|&l| l == layer).expect("listed");
            let loss = &mut losses[slot];
            let (channels, h, w) = (loss.quadratic.len(), loss.rows.len(), loss.cols.len());
            let count = (channels * h * w).max(1) as f32;
            match term {
                Term::Content { target, .. } => {
                    if target.dims() != [1, channels, h, w] {
                        return Ok(None);
                    }
                    loss.content.push(Match {
                        target: values(target.clone().into_data())?,
                        weight: *weight,
                    });
                }
                Term::Style { target, .. } => {
                    if target.dims() != [channels, channels] {
                        return Ok(None);
                    }
                    loss.style.push(Match {
                        target: values(target.clone().into_data())?,
                        weight: *weight,
                    });
                }
                Term::Channel { channel, .. } if *channel < channels => {
                    loss.linear[*channel] -= weight / (h * w).max(1) as f32;
                }
                Term::Amplify { .. } => {
                    for quadratic in &mut loss.quadratic {
                        *quadratic -= weight / count;
                    }
                }
                Term::Class { class, .. } if *class < channels => {
                    loss.linear[*class] -= weight;
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(losses))
    }

    /// The terms on the image itself (total variation): their values, and their gradient
    /// with respect to `image` where there are any.
    fn image_terms(&self, image: Tensor<4>) -> Result<(Losses, Option<Tensor<4>>)> {
        let input = image.autodiff().require_grad();
        let parts: Vec<(TermKind, Tensor<1>)> = self
            .terms
            .iter()
            .filter(|(term, _)| matches!(term, Term::TotalVariation))
            .map(|(_, weight)| {
                let value = total_variation(input.clone()).mul_scalar(*weight);
                (TermKind::TotalVariation, value)
            })
            .collect();
        let Some(total) = parts.iter().map(|(_, v)| v.clone()).reduce(Tensor::add) else {
            return Ok((Losses::default(), None));
        };
        let gradients = total.backward();
        let gradient = input.grad(&gradients).map(|g| g.inner());
        Ok((sum_losses(parts), gradient))
    }
}

/// The weighted terms' values, summed by kind.
fn sum_losses(parts: Vec<(TermKind, Tensor<1>)>) -> Losses {
    let mut losses = Losses::default();
    for (kind, value) in parts {
        let value: f32 = value.inner().into_scalar();
        match kind {
            TermKind::Content => losses.content += value,
            TermKind::Style => losses.style += value,
            TermKind::TotalVariation => losses.total_variation += value,
            TermKind::Activation => losses.activation += value,
        }
    }
    losses.total = losses.content + losses.style + losses.total_variation + losses.activation;
    losses
}

fn check_shape<const D: usize>(actual: &[usize; D], target: &[usize; D], what: &str) -> Result<()> {
    if actual == target {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "the {what} target has shape {target:?} but the layer gives {actual:?}"
        )))
    }
}
