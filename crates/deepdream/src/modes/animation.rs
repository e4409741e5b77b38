//! What the animations share: they dream a first frame fully, then each following frame
//! lightly from a start that carries the previous dream over (zoomed, or moved along the
//! optical flow); frames are kept in a [`WorkDir`](crate::media::work_dir::WorkDir) so an
//! interrupted run resumes.

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use crate::engine::snapshot::Snapshot;
use crate::error::{Error, Result};
use crate::modes::dream::{DreamParams, Dreamer, Progress};
use crate::networks::network::{Network, Preprocess};

/// How the frames after the first are dreamed: usually fewer octaves and iterations, since
/// they start from a picture that is already dreamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSettings {
    /// Octaves per frame.
    pub octaves: usize,
    /// Gradient-ascent steps per octave and frame.
    pub iterations: usize,
}

/// Where an animation is: reported after every step and once per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameProgress {
    /// The frame being made, from 0.
    pub frame: usize,
    /// Number of frames, when known.
    pub frames: Option<usize>,
    /// The dream step within the frame; `None` once the frame is finished.
    pub step: Option<Progress>,
    /// The frame was finished by an earlier, interrupted run and is reused.
    pub resumed: bool,
    /// The frame is dreamed from scratch with the full dream: the first frame, or a video
    /// frame after a scene cut.
    pub fresh: bool,
}

/// The two dreamers of an animation: the full dream for the first frame (and after a scene
/// cut), the lighter one for the frames that follow. Frame `k` is seeded with `seed + k`.
pub struct FrameDreamers<'a> {
    first: Dreamer<'a>,
    next: Dreamer<'a>,
}

impl<'a> FrameDreamers<'a> {
    /// Prepares both dreamers from the same dream parameters.
    pub fn new(
        network: &'a dyn Network,
        params: DreamParams,
        next: FrameSettings,
        device: &Device,
    ) -> Result<Self> {
        if next.octaves == 0 {
            return Err(Error::InvalidParameter(
                "octaves per frame must be at least 1".into(),
            ));
        }
        let next_params = DreamParams {
            octaves: next.octaves,
            iterations: next.iterations,
            ..params.clone()
        };
        Ok(FrameDreamers {
            first: Dreamer::new(network, params, device)?,
            next: Dreamer::new(network, next_params, device)?,
        })
    }

    /// The dreamer of the first frame (its parameters have the defaults filled in).
    pub fn first(&self) -> &Dreamer<'a> {
        &self.first
    }

    /// Dreams frame `index` from `start`, fully when `fresh`.
    pub fn dream(
        &self,
        index: usize,
        start: &RgbImage,
        fresh: bool,
        mut progress: impl FnMut(Progress),
    ) -> Result<RgbImage> {
        self.dream_watched(index, start, fresh, |snapshot| {
            progress(snapshot.progress);
            Ok(())
        })
    }

    /// [`FrameDreamers::dream`] with an observer of every step (see
    /// [`Dreamer::dream_watched`]).
    pub fn dream_watched(
        &self,
        index: usize,
        start: &RgbImage,
        fresh: bool,
        observer: impl FnMut(&Snapshot<Progress>) -> Result<()>,
    ) -> Result<RgbImage> {
        let dreamer = if fresh { &self.first } else { &self.next };
        let seed = dreamer.params().seed.wrapping_add(index as u64);
        dreamer.dream_watched(start, seed, observer)
    }
}

/// An RGB image as a `[1, 3, H, W]` tensor of 0–255 values.
pub fn to_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    Preprocess::PIXELS.apply(image, device)
}

/// A `[1, 3, H, W]` tensor of 0–255 values as an RGB image (rounded, clipped).
pub fn to_image(tensor: Tensor<4>) -> Result<RgbImage> {
    Preprocess::PIXELS.invert(tensor)
}
