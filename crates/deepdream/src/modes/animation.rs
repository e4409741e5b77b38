//! What the animations share: they dream a first frame fully, then each following frame
//! lightly from a start that carries the previous dream over (zoomed, or moved along the
//! optical flow); frames are kept in a [`WorkDir`](crate::media::work_dir::WorkDir) so an
//! interrupted run resumes.

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use crate::control::Direction;
use crate::control::keyframes::Param;
use crate::control::mask::check_strength;
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
/// cut), the lighter one for the frames that follow, each changed frame by frame as the
/// [`Direction`] says. Frame `k` is seeded with `seed + k`.
pub struct FrameDreamers<'a> {
    network: &'a dyn Network,
    device: Device,
    first: Dreamer<'a>,
    next: Dreamer<'a>,
    direction: Direction,
}

impl<'a> FrameDreamers<'a> {
    /// Prepares both dreamers from the same dream parameters, and checks what `direction`
    /// sets at its keyframes and at the sound's extremes.
    pub fn new(
        network: &'a dyn Network,
        params: DreamParams,
        next: FrameSettings,
        direction: &Direction,
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
        let dreamers = FrameDreamers {
            network,
            device: device.clone(),
            first: Dreamer::new(network, params, device)?,
            next: Dreamer::new(network, next_params, device)?,
            direction: direction.clone(),
        };
        dreamers.check_direction()?;
        Ok(dreamers)
    }

    /// Checks the direction before anything is dreamed: each keyframe's parameters and
    /// objective, and the values the sound moves its parameters to.
    fn check_direction(&self) -> Result<()> {
        if self.direction.is_empty() {
            return Ok(());
        }
        let at_frame = |frame: usize| -> Result<()> {
            for dreamer in [&self.first, &self.next] {
                let mut params = dreamer.params().clone();
                direct_numbers(&self.direction, &mut params, frame)?;
                Dreamer::new(self.network, params, &self.device)?;
            }
            Ok(())
        };
        for frame in self.direction.key_frames() {
            at_frame(frame).map_err(|e| at(frame, e))?;
        }
        if let Some(sound) = &self.direction.sound {
            for reaction in &sound.reactions {
                for value in [reaction.low, reaction.high] {
                    let mut params = self.next.params().clone();
                    set(&mut params, reaction.param, value)?;
                    params.validate()?;
                }
            }
        }
        if self.direction.sets(Param::Mask) && self.first.params().mask.is_none() {
            return Err(Error::InvalidParameter(
                "the mask strength is keyframed or moved by the sound, but there is no mask".into(),
            ));
        }
        Ok(())
    }

    /// The dream parameters of frame `index` (fully dreamed when `fresh`) as the direction
    /// sets them.
    pub fn frame_params(&self, index: usize, fresh: bool) -> Result<DreamParams> {
        let dreamer = if fresh { &self.first } else { &self.next };
        let mut params = dreamer.params().clone();
        direct_numbers(&self.direction, &mut params, index)?;
        if let Some(mask) = self.direction.mask(index)? {
            let strength = params.mask.as_ref().map_or(1.0, |m| m.strength);
            params.mask = Some(mask.with_strength(strength)?);
        }
        if let Some(guide) = self.direction.guide(index)? {
            params.guide = Some(guide);
        }
        Ok(params)
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
        if self.direction.is_empty() {
            return dreamer.dream_watched(start, seed, observer);
        }
        let params = self.frame_params(index, fresh)?;
        Dreamer::new(self.network, params, &self.device)?.dream_watched(start, seed, observer)
    }
}

/// `error` said of frame `frame`.
fn at(frame: usize, error: Error) -> Error {
    match error {
        Error::InvalidParameter(what) => {
            Error::InvalidParameter(format!("at frame {frame}: {what}"))
        }
        other => other,
    }
}

/// The numbers and the objective the direction sets at `frame`, put into `params`.
fn direct_numbers(direction: &Direction, params: &mut DreamParams, frame: usize) -> Result<()> {
    for (param, _) in Param::ALL {
        if let Some(value) = direction.value(param, frame) {
            set(params, param, value)?;
        }
    }
    if let Some(parts) = direction.objective(frame) {
        let mut parts = parts.into_iter();
        if let Some(main) = parts.next() {
            if !main.layers.is_empty() {
                params.layers = main.layers;
            }
            if main.channels.is_some() {
                params.channels = main.channels;
                params.auto_channels = None;
            }
        }
        for mut part in parts {
            part.channels = part.channels.or_else(|| params.channels.clone());
            params.regions.push(part);
        }
    }
    Ok(())
}

/// Sets the dream parameter `param` (those of the modes, such as zoom, are left alone).
fn set(params: &mut DreamParams, param: Param, value: f32) -> Result<()> {
    let whole = |v: f32| v.max(0.0).round() as usize;
    match param {
        Param::Step => params.step_size = value,
        Param::Iterations => params.iterations = whole(value),
        Param::Octaves => params.octaves = whole(value),
        Param::OctaveScale => params.octave_scale = value,
        Param::Jitter => params.jitter = whole(value) as u32,
        Param::Mask => {
            check_strength(value)?;
            if let Some(mask) = &mut params.mask {
                mask.strength = value;
            }
        }
        Param::Blend | Param::Zoom | Param::Rotate | Param::PanX | Param::PanY => {}
    }
    Ok(())
}

/// An RGB image as a `[1, 3, H, W]` tensor of 0–255 values.
pub fn to_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    Preprocess::PIXELS.apply(image, device)
}

/// A `[1, 3, H, W]` tensor of 0–255 values as an RGB image (rounded, clipped).
pub fn to_image(tensor: Tensor<4>) -> Result<RgbImage> {
    Preprocess::PIXELS.invert(tensor)
}
