//! `POST /api/video`: an uploaded video dreamed frame by frame along its motion.

use std::sync::Arc;

use deepdream::media::ffmpeg::Segment;
use deepdream::media::flow::FlowMethod;
use deepdream::modes::video::VideoParams;
use serde::{Deserialize, Serialize};

use super::common::{as_json, decimal, direction, software_metadata};
use super::dream::{DreamSettings, SettingsPictures, frame_settings};
use crate::catalog::ModelInfo;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobSpec, Task, VideoUpload};

/// Most frames a request may dream (a minute at 25 fps takes hours on a CPU).
pub const MAX_FRAMES: usize = 3000;

/// `POST /api/video`: `video` (an id from `POST /api/videos`), the dream's settings under
/// `dream`, and the video's own fields, all optional.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    /// The id of the uploaded video.
    pub video: String,
    /// How each frame is dreamed (the first fully, the others with the per-frame settings).
    #[serde(default = "DreamSettings::standard")]
    pub dream: DreamSettings,
    /// Share of the previous frame's dream carried into the next (0–1).
    #[serde(default = "defaults::blend")]
    pub blend: f64,
    /// Seconds into the video to start.
    #[serde(default)]
    pub start: f64,
    /// Seconds to dream (the rest when missing).
    #[serde(default)]
    pub duration: Option<f64>,
    /// Octaves dreamed per frame after the first.
    #[serde(default = "defaults::octaves_per_frame")]
    pub octaves_per_frame: usize,
    /// Steps per octave for the frames after the first.
    #[serde(default = "defaults::iterations_per_frame")]
    pub iterations_per_frame: usize,
    /// The optical flow: `farneback` or `dis`.
    #[serde(default = "defaults::flow")]
    pub flow: String,
    /// Keyframes (`{"keyframes": [{"frame": 0, "step": 0.5}, …]}`, as the CLI's
    /// `--keyframes` file): numbers, layers and channels over the frames.
    #[serde(default)]
    pub keyframes: Option<serde_json::Value>,
}

mod defaults {
    use super::decimal;
    use deepdream::modes::video::VideoParams;

    pub fn blend() -> f64 {
        decimal(VideoParams::default().blend)
    }
    pub fn octaves_per_frame() -> usize {
        VideoParams::default().next.octaves
    }
    pub fn iterations_per_frame() -> usize {
        VideoParams::default().next.iterations
    }
    pub fn flow() -> String {
        VideoParams::default().flow.name().to_string()
    }
}

impl VideoRequest {
    /// Checks the request against the model and the video, fills in the seed, and makes the
    /// job.
    pub fn check(
        mut self,
        info: &ModelInfo,
        video: Arc<VideoUpload>,
        pictures: &SettingsPictures,
        random_seed: u64,
    ) -> ApiResult<JobSpec> {
        if !(self.start.is_finite() && self.start >= 0.0) {
            return Err(ApiError::unprocessable("start must be 0 or more seconds"));
        }
        if let Some(duration) = self.duration
            && !(duration.is_finite() && duration > 0.0)
        {
            return Err(ApiError::unprocessable(
                "duration must be a positive number of seconds",
            ));
        }
        let next = frame_settings(self.octaves_per_frame, self.iterations_per_frame)?;
        let flow = FlowMethod::parse(&self.flow)?;
        let segment = Segment {
            start: self.start,
            duration: self.duration,
        };
        let frames = video.info.frames_in(&segment).unwrap_or(0);
        if frames == 0 {
            return Err(ApiError::unprocessable(
                "the video has no frames after start",
            ));
        }
        if frames > MAX_FRAMES {
            return Err(ApiError::unprocessable(format!(
                "that is about {frames} frames; dream at most {MAX_FRAMES} at a time (set start and duration)"
            )));
        }
        let size = (video.info.width, video.info.height);
        let (model, dream) = self.dream.params(info, size, pictures, random_seed)?;
        let params = VideoParams {
            blend: self.blend as f32,
            next,
            flow,
            direction: direction(&self.keyframes, video.info.frame_rate.fps(), frames)?,
            ..VideoParams::default()
        };
        params.validate()?;
        let mut metadata = software_metadata("video", model);
        metadata.extend(dream.metadata());
        Ok(JobSpec {
            task: Task::Video {
                model,
                dream,
                params,
                video,
                segment,
            },
            metadata,
            request: as_json(&self),
            command: self.command_line(),
        })
    }

    /// The `deepdream video` command line that makes the same video from `clip.mp4`.
    pub fn command_line(&self) -> String {
        let mut args = vec!["deepdream video clip.mp4 -o dream.mp4".to_string()];
        args.push(self.dream.options());
        if self.keyframes.is_some() {
            args.push("--keyframes keyframes.json".to_string());
        }
        if self.blend != defaults::blend() {
            args.push(format!("--blend {}", self.blend));
        }
        if self.start != 0.0 {
            args.push(format!("--start {}", self.start));
        }
        if let Some(duration) = self.duration {
            args.push(format!("--duration {duration}"));
        }
        if self.flow != defaults::flow() {
            args.push(format!("--flow {}", self.flow));
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
        args.join(" ")
    }
}
