//! `POST /api/dream`: a DeepDream of an uploaded photo.

use std::sync::Arc;

use deepdream::control::mask::Mask;
use deepdream::{DreamParams, LayerWeight, networks::imagenet, networks::models};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::common::{as_json, bounded, decimal, shell_quote, software_metadata};
use crate::catalog::ModelInfo;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobSpec, Task, Upload};

/// The most octaves, iterations and jitter a request may ask for (bounded so that one
/// request cannot occupy the queue for days).
pub const MAX_OCTAVES: usize = 12;
/// See [`MAX_OCTAVES`].
pub const MAX_ITERATIONS: usize = 500;
/// See [`MAX_OCTAVES`].
pub const MAX_JITTER: u32 = 512;

/// `POST /api/dream`: a dream of an uploaded picture, `{"image": id, …}` with the fields of
/// [`DreamSettings`] beside it.
#[derive(Clone, Debug, Serialize)]
pub struct DreamRequest {
    /// The id of an uploaded picture.
    pub image: String,
    /// How to dream it.
    #[serde(flatten)]
    pub settings: DreamSettings,
}

impl<'de> Deserialize<'de> for DreamRequest {
    /// `image` beside the settings' fields, unknown fields refused (serde's `flatten` would
    /// let them through).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let image = fields
            .remove("image")
            .ok_or_else(|| D::Error::missing_field("image"))?;
        Ok(DreamRequest {
            image: serde_json::from_value(image).map_err(D::Error::custom)?,
            settings: serde_json::from_value(serde_json::Value::Object(fields))
                .map_err(D::Error::custom)?,
        })
    }
}

/// The pictures dream settings name by upload id.
#[derive(Clone, Default)]
pub struct SettingsPictures {
    /// The guide picture.
    pub guide: Option<Arc<Upload>>,
    /// The mask.
    pub mask: Option<Arc<Upload>>,
}

/// How to dream, for a still dream, a zoom or a video. Every field is optional and defaults
/// to the command line's default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DreamSettings {
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
    /// The id of an uploaded mask: where the picture may change (white dreams, black
    /// stays), such as one painted with the studio's brush.
    #[serde(default)]
    pub mask: Option<String>,
    /// How much the mask holds back (0–1).
    #[serde(default = "defaults::mask_strength")]
    pub mask_strength: f64,
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

/// How an animation's frames after the first are dreamed, checked against the dream's
/// bounds.
pub fn frame_settings(
    octaves: usize,
    iterations: usize,
) -> ApiResult<deepdream::modes::animation::FrameSettings> {
    bounded("octaves per frame", octaves, 1..=MAX_OCTAVES)?;
    bounded("iterations per frame", iterations, 1..=MAX_ITERATIONS)?;
    Ok(deepdream::modes::animation::FrameSettings {
        octaves,
        iterations,
    })
}

mod defaults {
    use super::decimal;
    use deepdream::DreamParams;

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
    pub fn mask_strength() -> f64 {
        1.0
    }
}

impl DreamRequest {
    /// Checks the request against the model and the pictures (`guide` is the guide upload
    /// when one was named), fills in the seed, and makes the job.
    pub fn check(
        mut self,
        info: &ModelInfo,
        source: Arc<Upload>,
        pictures: &SettingsPictures,
        random_seed: u64,
    ) -> ApiResult<JobSpec> {
        let size = source.rgb.dimensions();
        let (model, params) = self.settings.params(info, size, pictures, random_seed)?;
        let mut metadata = software_metadata("dream", model);
        metadata.extend(params.metadata());
        Ok(JobSpec {
            task: Task::Dream {
                model,
                params,
                source,
            },
            metadata,
            request: as_json(&self),
            command: format!(
                "deepdream dream photo.png -o dream.png {}",
                self.settings.options()
            ),
        })
    }
}

impl DreamSettings {
    /// Every field at its default.
    pub fn standard() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }

    /// Checks the settings against the model and a picture of `(width, height)` (the guide
    /// upload when one was named), fills in the seed and the model's spelling, and gives
    /// the dream's parameters.
    pub fn params(
        &mut self,
        info: &ModelInfo,
        (width, height): (u32, u32),
        pictures: &SettingsPictures,
        random_seed: u64,
    ) -> ApiResult<(&'static str, DreamParams)> {
        let model = models::find(&self.model)?.name;
        bounded("octaves", self.octaves, 1..=MAX_OCTAVES)?;
        bounded("iterations", self.iterations, 1..=MAX_ITERATIONS)?;
        bounded("jitter", self.jitter, 0..=MAX_JITTER)?;
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
        let short_side = width.min(height) as usize;
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
                    "the picture is {width}x{height}, too small for layer '{name}': it needs at least {m}x{m} pixels",
                    m = layer.min_input
                )));
            }
        }
        let seed = *self.seed.get_or_insert(random_seed);
        let params = DreamParams {
            layers,
            channels: self.channels.clone(),
            class,
            guide: pictures.guide.as_ref().map(|g| g.rgb.clone()),
            mask: match &pictures.mask {
                Some(mask) => Some(
                    Mask::from_image(&DynamicImage::ImageRgb8(mask.rgb.clone()))
                        .with_strength(self.mask_strength as f32)?,
                ),
                None => None,
            },
            octaves: self.octaves,
            octave_scale: self.octave_scale as f32,
            iterations: self.iterations,
            step_size: self.step as f32,
            jitter: self.jitter,
            seed,
            ..DreamParams::default()
        };
        params.validate()?;
        self.model = model.to_string();
        Ok((model, params))
    }

    /// The command-line options that dream the same way (the guide as `guide.png`): those
    /// that differ from the defaults, and the seed.
    pub fn options(&self) -> String {
        let mut args = vec![format!("--model {}", self.model)];
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
        if self.mask.is_some() {
            args.push("--mask mask.png".to_string());
            if self.mask_strength != 1.0 {
                args.push(format!("--mask-strength {}", self.mask_strength));
            }
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
        assert_eq!(request.image, "1");
        assert_eq!(
            request.settings.options(),
            "--model vgg16 --layers block3_conv3:0.5 --class 'tiger shark' --iterations 4 --seed 7"
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
