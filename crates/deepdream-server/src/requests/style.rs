//! `POST /api/style`: an uploaded photo painted in the manner of uploaded paintings.

use std::sync::Arc;

use deepdream::modes::style::{Init, StyleParams};
use serde::{Deserialize, Serialize};

use super::common::{as_json, bounded, decimal, software_metadata};
use crate::catalog::ModelInfo;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobSpec, STYLE_MODEL, Task, Upload};

/// Largest result side a request may ask for (the command line allows more; a web request
/// should finish in minutes).
pub const MAX_SIZE: u32 = 1024;
/// Most evaluations per scale.
pub const MAX_ITERATIONS: usize = 1000;
/// Most scales.
pub const MAX_SCALES: usize = 4;
/// Most paintings in a blend.
pub const MAX_STYLES: usize = 4;

/// An uploaded picture with its weight in a blend.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedImage {
    /// The upload's id.
    pub image: String,
    /// Its share of the blend (normalised over all paintings).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// `POST /api/style`: every field but `image` and `styles` is optional and defaults to the
/// command line's default. VGG16 does the work.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StyleRequest {
    /// The id of the uploaded photo.
    pub image: String,
    /// The paintings.
    pub styles: Vec<WeightedImage>,
    /// Weight of the content terms.
    #[serde(default = "defaults::content_weight")]
    pub content_weight: f64,
    /// Weight of the style terms.
    #[serde(default = "defaults::style_weight")]
    pub style_weight: f64,
    /// Weight of the smoothness term.
    #[serde(default = "defaults::tv_weight")]
    pub tv_weight: f64,
    /// Evaluations per scale.
    #[serde(default = "defaults::iterations")]
    pub iterations: usize,
    /// Longest side of the result.
    #[serde(default = "defaults::size")]
    pub size: u32,
    /// Number of scales, coarse to fine.
    #[serde(default = "defaults::scales")]
    pub scales: usize,
    /// Start from noise instead of the photo.
    #[serde(default)]
    pub from_noise: bool,
    /// Keep the photo's colours.
    #[serde(default)]
    pub preserve_colors: bool,
    /// Seed of the noise start; a random one when missing.
    #[serde(default)]
    pub seed: Option<u64>,
}

mod defaults {
    use super::decimal;
    use deepdream::modes::style::StyleParams;

    pub fn content_weight() -> f64 {
        decimal(StyleParams::default().content_weight)
    }
    pub fn style_weight() -> f64 {
        decimal(StyleParams::default().style_weight)
    }
    pub fn tv_weight() -> f64 {
        decimal(StyleParams::default().tv_weight)
    }
    pub fn iterations() -> usize {
        StyleParams::default().iterations
    }
    pub fn size() -> u32 {
        StyleParams::default().size
    }
    pub fn scales() -> usize {
        StyleParams::default().scales
    }
}

impl StyleRequest {
    /// Checks the request (`styles` are the paintings' uploads, in order), fills in the
    /// seed, and makes the job.
    pub fn check(
        mut self,
        info: &ModelInfo,
        source: Arc<Upload>,
        styles: Vec<Arc<Upload>>,
        random_seed: u64,
    ) -> ApiResult<JobSpec> {
        bounded("the number of paintings", self.styles.len(), 1..=MAX_STYLES)?;
        bounded("iterations", self.iterations, 1..=MAX_ITERATIONS)?;
        bounded("size", self.size, 16..=MAX_SIZE)?;
        bounded("scales", self.scales, 1..=MAX_SCALES)?;
        if let Some(bad) = self
            .styles
            .iter()
            .find(|s| !(s.weight.is_finite() && s.weight > 0.0))
        {
            return Err(ApiError::unprocessable(format!(
                "a painting's weight must be a positive number (got {})",
                bad.weight
            )));
        }
        let defaults = StyleParams::default();
        for layer in defaults.style_layers.iter().chain(&defaults.content_layers) {
            if info.layer(layer).is_none() {
                return Err(ApiError::unprocessable(format!(
                    "model '{}' has no layer '{layer}'",
                    info.name
                )));
            }
        }
        let seed = *self.seed.get_or_insert(random_seed);
        let params = StyleParams {
            content_weight: self.content_weight as f32,
            style_weight: self.style_weight as f32,
            tv_weight: self.tv_weight as f32,
            init: if self.from_noise {
                Init::Noise
            } else {
                Init::Content
            },
            iterations: self.iterations,
            size: self.size,
            scales: self.scales,
            preserve_colours: self.preserve_colors,
            seed,
            ..defaults
        };
        params.validate()?;
        let mut metadata = software_metadata("style", STYLE_MODEL);
        metadata.extend(params.metadata());
        let styles = styles
            .into_iter()
            .zip(&self.styles)
            .map(|(upload, s)| (upload, s.weight as f32))
            .collect();
        Ok(JobSpec {
            task: Task::Style {
                params,
                source,
                styles,
            },
            metadata,
            request: as_json(&self),
            command: self.command_line(),
        })
    }

    /// The `deepdream style` command line that makes the same picture from `photo.png` and
    /// paintings `painting1.png`, `painting2.png`, …
    pub fn command_line(&self) -> String {
        let paintings: Vec<String> = self
            .styles
            .iter()
            .enumerate()
            .map(|(i, s)| match s.weight {
                1.0 => format!("painting{}.png", i + 1),
                w => format!("painting{}.png:{w}", i + 1),
            })
            .collect();
        let mut args = vec![format!(
            "deepdream style photo.png --style {} -o styled.png",
            paintings.join(",")
        )];
        let numbers = [
            (
                "content-weight",
                self.content_weight,
                defaults::content_weight(),
            ),
            ("style-weight", self.style_weight, defaults::style_weight()),
            ("tv-weight", self.tv_weight, defaults::tv_weight()),
        ];
        for (name, value, default) in numbers {
            if value != default {
                args.push(format!("--{name} {value}"));
            }
        }
        if self.iterations != defaults::iterations() {
            args.push(format!("--iterations {}", self.iterations));
        }
        if self.size != defaults::size() {
            args.push(format!("--size {}", self.size));
        }
        if self.scales != defaults::scales() {
            args.push(format!("--scales {}", self.scales));
        }
        if self.from_noise {
            args.push("--init noise".into());
        }
        if self.preserve_colors {
            args.push("--preserve-colors".into());
        }
        if let Some(seed) = self.seed {
            args.push(format!("--seed {seed}"));
        }
        args.join(" ")
    }
}
