//! `POST /api/zoom`: an endless zoom from an uploaded photo.

use std::sync::Arc;

use deepdream::modes::zoom::ZoomParams;
use serde::{Deserialize, Serialize};

use super::common::{as_json, bounded, decimal, direction, software_metadata};
use super::dream::{DreamSettings, SettingsPictures, frame_settings};
use crate::catalog::ModelInfo;
use crate::error::ApiResult;
use crate::jobs::{JobSpec, Task, Upload};

/// Most frames a zoom may have.
pub const MAX_FRAMES: usize = 1000;

/// `POST /api/zoom`: `image`, the dream's settings under `dream` (as for `/api/dream`), and
/// the zoom's own fields, all optional.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomRequest {
    /// The id of the uploaded photo.
    pub image: String,
    /// How each frame is dreamed (the first fully, the others with the per-frame settings).
    #[serde(default = "DreamSettings::standard")]
    pub dream: DreamSettings,
    /// Number of frames.
    #[serde(default = "defaults::frames")]
    pub frames: usize,
    /// Scale from one frame to the next (1.05 zooms in 5 % a frame).
    #[serde(default = "defaults::zoom")]
    pub zoom: f64,
    /// Turn per frame in degrees.
    #[serde(default)]
    pub rotate: f64,
    /// Frames per second.
    #[serde(default = "defaults::fps")]
    pub fps: f64,
    /// An MP4 video (needs FFmpeg) instead of an animated GIF.
    #[serde(default)]
    pub mp4: bool,
    /// Octaves dreamed per frame after the first.
    #[serde(default = "defaults::octaves_per_frame")]
    pub octaves_per_frame: usize,
    /// Steps per octave for the frames after the first.
    #[serde(default = "defaults::iterations_per_frame")]
    pub iterations_per_frame: usize,
    /// Hold the colours to the first frame's.
    #[serde(default = "yes")]
    pub colour_match: bool,
    /// Keyframes (`{"keyframes": [{"frame": 0, "step": 0.5}, …]}`, as the CLI's
    /// `--keyframes` file): numbers, layers and channels over the frames.
    #[serde(default)]
    pub keyframes: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

mod defaults {
    use super::decimal;
    use deepdream::modes::zoom::ZoomParams;

    pub fn frames() -> usize {
        ZoomParams::default().frames
    }
    pub fn zoom() -> f64 {
        decimal(ZoomParams::default().zoom)
    }
    pub fn fps() -> f64 {
        25.0
    }
    pub fn octaves_per_frame() -> usize {
        ZoomParams::default().next.octaves
    }
    pub fn iterations_per_frame() -> usize {
        ZoomParams::default().next.iterations
    }
}

impl ZoomRequest {
    /// Checks the request against the model and the photo, fills in the seed, and makes the
    /// job.
    pub fn check(
        mut self,
        info: &ModelInfo,
        source: Arc<Upload>,
        pictures: &SettingsPictures,
        random_seed: u64,
    ) -> ApiResult<JobSpec> {
        bounded("frames", self.frames, 1..=MAX_FRAMES)?;
        bounded("fps", self.fps, 1.0..=60.0)?;
        let next = frame_settings(self.octaves_per_frame, self.iterations_per_frame)?;
        let size = source.rgb.dimensions();
        let (model, dream) = self.dream.params(info, size, pictures, random_seed)?;
        let params = ZoomParams {
            frames: self.frames,
            zoom: self.zoom as f32,
            rotate: self.rotate as f32,
            pan: [0.0, 0.0],
            next,
            keep_colours: self.colour_match,
            direction: direction(&self.keyframes, self.fps, self.frames)?,
        };
        params.validate()?;
        let mut metadata = software_metadata("zoom", model);
        metadata.extend(dream.metadata());
        Ok(JobSpec {
            task: Task::Zoom {
                model,
                dream,
                params,
                source,
                fps: self.fps,
                mp4: self.mp4,
            },
            metadata,
            request: as_json(&self),
            command: self.command_line(),
        })
    }

    /// The `deepdream zoom` command line that makes the same animation from `photo.png`.
    pub fn command_line(&self) -> String {
        let output = if self.mp4 { "zoom.mp4" } else { "zoom.gif" };
        let mut args = vec![format!("deepdream zoom photo.png -o {output}")];
        args.push(self.dream.options());
        if self.keyframes.is_some() {
            args.push("--keyframes keyframes.json".to_string());
        }
        if self.frames != defaults::frames() {
            args.push(format!("--frames {}", self.frames));
        }
        if self.fps != defaults::fps() {
            args.push(format!("--fps {}", self.fps));
        }
        if self.zoom != defaults::zoom() {
            args.push(format!("--zoom {}", self.zoom));
        }
        if self.rotate != 0.0 {
            args.push(format!("--rotate {}", self.rotate));
        }
        if self.octaves_per_frame != defaults::octaves_per_frame() {
            args.push(format!("--octaves-per-frame {}", self.octaves_per_frame));
        }
        if self.iterations_per_frame != defaults::iterations_per_frame() {
            args.push(format!(
                "--iterations-per-frame {}",
                self.iterations_per_frame
            ));
        }
        if !self.colour_match {
            args.push("--no-colour-match".into());
        }
        args.join(" ")
    }
}
