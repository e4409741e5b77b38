//! A dream request as the page sends it, checked against the model before it is queued, and
//! the command line that makes the same picture.

use std::sync::Arc;

use deepdream::{DreamParams, LayerWeight, imagenet, models};
use serde::{Deserialize, Serialize};

use crate::catalog::ModelInfo;
use crate::error::{ApiError, ApiResult};
use crate::jobs::Upload;

/// The most octaves, iterations and jitter a request may ask for (the same work as a
/// command line would allow, but bounded so one request cannot occupy the queue for days).
pub const MAX_OCTAVES: usize = 12;
/// See [`MAX_OCTAVES`].
pub const MAX_ITERATIONS: usize = 500;
/// See [`MAX_OCTAVES`].
pub const MAX_JITTER: u32 = 512;

/// `POST /api/jobs`: a dream of an uploaded picture. Every field but `image` is optional
/// and defaults to the command line's default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DreamRequest {
    /// The id of an uploaded picture.
    pub image: String,
    /// The model's name (`vgg16`, `inception3`, `efficientnet-lite0`).
    #[serde(default = "default_model")]
    pub model: String,
    /// Layers, each `name` or `name:weight`; empty: the model's default layers.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Amplify only these channels.
    #[serde(default)]
    pub channels: Option<Vec<usize>>,
    /// Grow an ImageNet class (name or number).
    #[serde(default)]
    pub class: Option<String>,
    /// The id of an uploaded guide picture.
    #[serde(default)]
    pub guide: Option<String>,
    /// Number of scales.
    #[serde(default = "defaults::octaves")]
    pub octaves: usize,
    /// Size ratio between scales.
    #[serde(default = "defaults::octave_scale")]
    pub octave_scale: f64,
    /// Steps per octave.
    #[serde(default = "defaults::iterations")]
    pub iterations: usize,
    /// Step size.
    #[serde(default = "defaults::step")]
    pub step: f64,
    /// Largest random shift in pixels.
    #[serde(default = "defaults::jitter")]
    pub jitter: u32,
    /// Seed of the jitter; a random one when missing.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_model() -> String {
    models::DEFAULT.name.to_string()
}

mod defaults {
    use deepdream::DreamParams;

    /// The decimal number an `f32` was written as (`1.4`, not `1.399999976158142`).
    pub fn decimal(value: f32) -> f64 {
        value.to_string().parse().unwrap_or(f64::from(value))
    }

    pub fn octaves() -> usize {
        DreamParams::default().octaves
    }
    pub fn octave_scale() -> f64 {
        decimal(DreamParams::default().octave_scale)
    }
    pub fn iterations() -> usize {
        DreamParams::default().iterations
    }
    pub fn step() -> f64 {
        decimal(DreamParams::default().step_size)
    }
    pub fn jitter() -> u32 {
        DreamParams::default().jitter
    }
}

/// A request checked against its model: the parameters to dream with.
pub struct CheckedDream {
    /// The request with the seed filled in.
    pub request: DreamRequest,
    /// The model's name as the library spells it.
    pub model: &'static str,
    /// The dream's parameters.
    pub params: DreamParams,
}

impl DreamRequest {
    /// Checks the request against the model and the pictures (`guide` is the guide upload
    /// when one was named) and fills in the seed.
    pub fn check(
        mut self,
        info: &ModelInfo,
        source: &Upload,
        guide: Option<&Arc<Upload>>,
        random_seed: u64,
    ) -> ApiResult<CheckedDream> {
        let model = models::find(&self.model)?.name;
        if !(1..=MAX_OCTAVES).contains(&self.octaves) {
            return Err(ApiError::unprocessable(format!(
                "octaves must be from 1 to {MAX_OCTAVES}"
            )));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(ApiError::unprocessable(format!(
                "iterations must be from 1 to {MAX_ITERATIONS}"
            )));
        }
        if self.jitter > MAX_JITTER {
            return Err(ApiError::unprocessable(format!(
                "jitter must be at most {MAX_JITTER}"
            )));
        }
        let layers = self
            .layers
            .iter()
            .map(|text| text.parse::<LayerWeight>())
            .collect::<Result<Vec<_>, _>>()?;
        let class = self
            .class
            .as_deref()
            .map(imagenet::find_class)
            .transpose()?;
        if class.is_some() && !info.classifier {
            return Err(ApiError::unprocessable(format!(
                "model '{model}' has no ImageNet classifier; choose efficientnet-lite0 for class dreams"
            )));
        }
        let names: Vec<String> = if layers.is_empty() && class.is_none() {
            info.default_layers.clone()
        } else {
            layers.iter().map(|l| l.layer.clone()).collect()
        };
        let short_side = source.rgb.width().min(source.rgb.height()) as usize;
        for name in &names {
            let layer = info.layer(name).ok_or_else(|| {
                ApiError::unprocessable(format!("model '{model}' has no layer '{name}'"))
            })?;
            if let Some(channel) = self
                .channels
                .iter()
                .flatten()
                .find(|&&c| c >= layer.channels)
            {
                return Err(ApiError::unprocessable(format!(
                    "layer '{name}' has {} channels, so channel {channel} does not exist",
                    layer.channels
                )));
            }
            if short_side < layer.min_input {
                return Err(ApiError::unprocessable(format!(
                    "the picture is {}x{}, too small for layer '{name}': it needs at least {m}x{m} pixels",
                    source.rgb.width(),
                    source.rgb.height(),
                    m = layer.min_input
                )));
            }
        }
        let seed = *self.seed.get_or_insert(random_seed);
        let params = DreamParams {
            layers,
            channels: self.channels.clone(),
            class,
            guide: guide.map(|g| g.rgb.clone()),
            octaves: self.octaves,
            octave_scale: self.octave_scale as f32,
            iterations: self.iterations,
            step_size: self.step as f32,
            jitter: self.jitter,
            seed,
            max_memory: None,
        };
        params.validate()?;
        self.model = model.to_string();
        Ok(CheckedDream {
            request: self,
            model,
            params,
        })
    }

    /// The `deepdream dream` command line that makes the same picture from files named
    /// `photo.png` (and `guide.png`): the options that differ from the defaults, and the seed.
    pub fn command_line(&self) -> String {
        let mut args = vec![
            "deepdream dream photo.png -o dream.png".to_string(),
            format!("--model {}", self.model),
        ];
        if !self.layers.is_empty() {
            args.push(format!("--layers {}", self.layers.join(",")));
        }
        if let Some(channels) = &self.channels {
            let list: Vec<String> = channels.iter().map(usize::to_string).collect();
            args.push(format!("--channels {}", list.join(",")));
        }
        if let Some(class) = &self.class {
            args.push(format!("--class {}", shell_quote(class)));
        }
        if self.guide.is_some() {
            args.push("--guide guide.png".to_string());
        }
        let defaults = DreamParams::default();
        if self.octaves != defaults.octaves {
            args.push(format!("--octaves {}", self.octaves));
        }
        if self.octave_scale != defaults::octave_scale() {
            args.push(format!("--octave-scale {}", self.octave_scale));
        }
        if self.iterations != defaults.iterations {
            args.push(format!("--iterations {}", self.iterations));
        }
        if self.step != defaults::step() {
            args.push(format!("--step {}", self.step));
        }
        if self.jitter != defaults.jitter {
            args.push(format!("--jitter {}", self.jitter));
        }
        if let Some(seed) = self.seed {
            args.push(format!("--seed {seed}"));
        }
        args.join(" ")
    }
}

/// `text` quoted for a POSIX shell when it needs quoting.
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_what_differs_from_the_defaults() {
        let request: DreamRequest = serde_json::from_str(
            r#"{"image": "1", "layers": ["block3_conv3:0.5"], "class": "tiger shark",
                "iterations": 4, "seed": 7}"#,
        )
        .unwrap();
        assert_eq!(
            request.command_line(),
            "deepdream dream photo.png -o dream.png --model vgg16 --layers block3_conv3:0.5 \
             --class 'tiger shark' --iterations 4 --seed 7"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<DreamRequest>(r#"{"image": "1", "octave": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `octave`"), "{error}");
    }
}
