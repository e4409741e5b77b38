//! `POST /api/visualize`: a picture grown from noise for a channel, a layer or a class.

use deepdream::modes::visualize::{Target, VisualizeParams};
use deepdream::networks::imagenet;
use serde::{Deserialize, Serialize};

use super::common::{as_json, bounded, decimal, shell_quote, software_metadata};
use crate::catalog::ModelInfo;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobSpec, Task};

/// Largest side a request may ask for.
pub const MAX_SIZE: u32 = 1024;
/// Most steps.
pub const MAX_STEPS: usize = 2048;

/// `POST /api/visualize`: `layer` (with an optional `channel`) or `class`; the rest is
/// optional and defaults to the command line's default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VisualizeRequest {
    /// The model's name.
    #[serde(default = "default_model")]
    pub model: String,
    /// The layer to grow (all of it, or `channel`).
    #[serde(default)]
    pub layer: Option<String>,
    /// One channel of `layer`.
    #[serde(default)]
    pub channel: Option<usize>,
    /// An ImageNet class (name or number) instead of a layer.
    #[serde(default)]
    pub class: Option<String>,
    /// Side of the square picture.
    #[serde(default = "defaults::size")]
    pub size: u32,
    /// Optimisation steps.
    #[serde(default = "defaults::steps")]
    pub steps: usize,
    /// Adam's step size.
    #[serde(default = "defaults::learning_rate")]
    pub learning_rate: f64,
    /// The priors (1/f spectrum, decorrelated colours, random transformations); off gives
    /// plain gradient ascent on pixels.
    #[serde(default = "yes")]
    pub priors: bool,
    /// Seed of the noise and transformations; a random one when missing.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_model() -> String {
    deepdream::networks::models::DEFAULT.name.to_string()
}

fn yes() -> bool {
    true
}

mod defaults {
    use super::decimal;
    use deepdream::modes::visualize::VisualizeParams;

    pub fn size() -> u32 {
        VisualizeParams::default().size
    }
    pub fn steps() -> usize {
        VisualizeParams::default().steps
    }
    pub fn learning_rate() -> f64 {
        decimal(VisualizeParams::default().learning_rate)
    }
}

impl VisualizeRequest {
    /// Checks the request against the model, fills in the seed, and makes the job.
    pub fn check(mut self, info: &ModelInfo, random_seed: u64) -> ApiResult<JobSpec> {
        let model = deepdream::networks::models::find(&self.model)?.name;
        bounded("size", self.size, 16..=MAX_SIZE)?;
        bounded("steps", self.steps, 1..=MAX_STEPS)?;
        let target = match (&self.layer, &self.class) {
            (Some(name), None) => {
                let layer = info.layer(name).ok_or_else(|| {
                    ApiError::unprocessable(format!("model '{model}' has no layer '{name}'"))
                })?;
                match self.channel {
                    Some(channel) if channel >= layer.channels => {
                        return Err(ApiError::unprocessable(format!(
                            "layer '{name}' has {} channels, so channel {channel} does not exist",
                            layer.channels
                        )));
                    }
                    Some(channel) => Target::Channel {
                        layer: name.clone(),
                        channel,
                    },
                    None => Target::Layer(name.clone()),
                }
            }
            (None, Some(class)) if self.channel.is_none() => {
                if !info.classifier {
                    return Err(ApiError::unprocessable(format!(
                        "model '{model}' has no ImageNet classifier; choose efficientnet-lite0 for classes"
                    )));
                }
                Target::Class(imagenet::find_class(class)?)
            }
            _ => {
                return Err(ApiError::unprocessable(
                    "give either a layer (and optionally a channel) or a class",
                ));
            }
        };
        let seed = *self.seed.get_or_insert(random_seed);
        let mut params = VisualizeParams {
            size: self.size,
            steps: self.steps,
            learning_rate: self.learning_rate as f32,
            seed,
            ..VisualizeParams::default()
        };
        if !self.priors {
            params = params.without_priors();
        }
        params.validate()?;
        self.model = model.to_string();
        let mut metadata = software_metadata("visualize", model);
        metadata.push(("deepdream:targets".to_string(), target.describe()));
        metadata.extend(params.metadata());
        Ok(JobSpec {
            task: Task::Visualize {
                model,
                target,
                params,
            },
            metadata,
            request: as_json(&self),
            command: self.command_line(),
        })
    }

    /// The `deepdream visualize` command line that makes the same picture.
    pub fn command_line(&self) -> String {
        let mut args = vec![format!(
            "deepdream visualize -o visualization.png --model {}",
            self.model
        )];
        if let Some(layer) = &self.layer {
            args.push(format!("--layer {layer}"));
        }
        if let Some(channel) = self.channel {
            args.push(format!("--channel {channel}"));
        }
        if let Some(class) = &self.class {
            args.push(format!("--class {}", shell_quote(class)));
        }
        if self.size != defaults::size() {
            args.push(format!("--size {}", self.size));
        }
        if self.steps != defaults::steps() {
            args.push(format!("--steps {}", self.steps));
        }
        if self.learning_rate != defaults::learning_rate() {
            args.push(format!("--learning-rate {}", self.learning_rate));
        }
        if !self.priors {
            args.push("--no-priors".into());
        }
        if let Some(seed) = self.seed {
            args.push(format!("--seed {seed}"));
        }
        args.join(" ")
    }
}
