//! Dream videos that hold together from frame to frame. Each frame starts from the input
//! frame plus the previous frame's dream difference (dream minus input), carried along the
//! optical flow between the two input frames; pixels where the forward and backward flows
//! disagree (occluded or newly revealed) start without it, so nothing trails behind moving
//! things. A frame that the flow cannot explain (a scene cut) is dreamed from scratch.

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use crate::control::Direction;
use crate::control::keyframes::Param;
use crate::engine::snapshot::Snapshot;
use crate::engine::transform;
use crate::error::{Error, Result};
use crate::media::flow::{
    FlowDevice, FlowMethod, add_carried_difference, consistency_mask, grey_tensor, luma,
    mean_warp_difference, warp,
};
use crate::media::frames::FrameSource;
use crate::media::work_dir::WorkDir;
use crate::modes::animation::{FrameDreamers, FrameProgress, FrameSettings, to_tensor};
use crate::modes::dream::DreamParams;
use crate::networks::network::Network;

/// How a video is dreamed, beyond the dream parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoParams {
    /// Share of the previous frame's dream difference carried into the next frame (0–1).
    pub blend: f32,
    /// How the frames after the first (and after each scene cut) are dreamed.
    pub next: FrameSettings,
    /// How the optical flow is estimated.
    pub flow: FlowMethod,
    /// A frame is a scene cut when the previous input frame, moved along the flow, still
    /// differs from it by more than this mean grey difference (0–255).
    pub cut_threshold: f32,
    /// What changes from frame to frame (keyframes, sound, masks, guides).
    pub direction: Direction,
}

impl Default for VideoParams {
    /// Blend 0.8, 2 octaves of 4 iterations per frame, Farnebäck's flow with OpenCV's usual
    /// settings, scene cuts above a mean difference of 30 grey levels.
    fn default() -> Self {
        VideoParams {
            blend: 0.8,
            next: FrameSettings {
                octaves: 2,
                iterations: 4,
            },
            flow: FlowMethod::default(),
            cut_threshold: 30.0,
            direction: Direction::default(),
        }
    }
}

impl VideoParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if !(self.blend.is_finite() && (0.0..=1.0).contains(&self.blend)) {
            return Err(Error::InvalidParameter(
                "blend must be a number from 0 to 1".into(),
            ));
        }
        if !(self.cut_threshold.is_finite() && self.cut_threshold > 0.0) {
            return Err(Error::InvalidParameter(
                "the scene-cut threshold must be a positive number".into(),
            ));
        }
        for frame in self.direction.key_frames() {
            self.blend_at(frame)?;
        }
        Ok(())
    }

    /// The blend into frame `frame`, as the direction sets it.
    pub fn blend_at(&self, frame: usize) -> Result<f32> {
        let blend = self
            .direction
            .value(Param::Blend, frame)
            .unwrap_or(self.blend);
        if !(blend.is_finite() && (0.0..=1.0).contains(&blend)) {
            return Err(Error::InvalidParameter(format!(
                "blend must be a number from 0 to 1 (got {blend} at frame {frame})"
            )));
        }
        Ok(blend)
    }
}

/// The motion between two consecutive input frames, seen from the second.
pub struct Motion {
    /// Flow from the current frame to the previous one: the previous frame's content at
    /// `p + backward(p)` is at `p` now.
    pub backward: Tensor<4>,
    /// 1 where the forward and backward flows agree, 0 at occlusions (`[1, 1, H, W]`).
    pub mask: Tensor<4>,
    /// Mean grey difference between the current frame and the previous one moved along the
    /// flow (large at a scene cut).
    pub residual: f32,
}

impl Motion {
    /// Estimates the motion from `previous` to `current`, the flows on `flow_device` where
    /// there is one (see [`FlowMethod::estimate_both_on`]).
    pub fn between(
        previous: &RgbImage,
        current: &RgbImage,
        flow: &FlowMethod,
        flow_device: Option<&dyn FlowDevice>,
        device: &Device,
    ) -> Self {
        let a = grey_tensor(&luma(previous), device);
        let b = grey_tensor(&luma(current), device);
        let (forward, backward) = flow.estimate_both_on(&a, &b, flow_device);
        let mask = consistency_mask(&forward, &backward);
        let residual = mean_warp_difference(&a, &b, &backward);
        Motion {
            backward,
            mask,
            residual,
        }
    }

    /// [`Motion::between`] with the flow estimated on the frames scaled by `scale` (0–1)
    /// and scaled back up: about `1/scale²` times faster, for live feeds; the residual is
    /// the scaled frames'.
    pub fn between_scaled(
        previous: &RgbImage,
        current: &RgbImage,
        flow: &FlowMethod,
        flow_device: Option<&dyn FlowDevice>,
        scale: f32,
        device: &Device,
    ) -> Self {
        let (w, h) = current.dimensions();
        let (sw, sh) = (
            ((w as f32 * scale).round() as u32).clamp(8, w.max(8)),
            ((h as f32 * scale).round() as u32).clamp(8, h.max(8)),
        );
        if scale >= 1.0 || (sw, sh) == (w, h) {
            return Self::between(previous, current, flow, flow_device, device);
        }
        let small = |image: &RgbImage| {
            let grey = luma(image);
            grey_tensor(
                &image::imageops::resize(&grey, sw, sh, image::imageops::FilterType::Triangle),
                device,
            )
        };
        let (a, b) = (small(previous), small(current));
        let (forward, backward) = flow.estimate_both_on(&a, &b, flow_device);
        let mask = consistency_mask(&forward, &backward);
        let residual = mean_warp_difference(&a, &b, &backward);
        let up = |t: Tensor<4>| transform::resize(t, h as usize, w as usize, false);
        let factors =
            Tensor::<1>::from_floats([w as f32 / sw as f32, h as f32 / sh as f32], device)
                .reshape([1, 2, 1, 1]);
        Motion {
            backward: up(backward).mul(factors),
            mask: up(mask),
            residual,
        }
    }

    /// [`Motion::between`]'s residual alone (half the work: one flow, not two): what tells
    /// a scene cut.
    pub fn residual(
        previous: &RgbImage,
        current: &RgbImage,
        flow: &FlowMethod,
        device: &Device,
    ) -> f32 {
        let a = grey_tensor(&luma(previous), device);
        let b = grey_tensor(&luma(current), device);
        let backward = flow.estimate(&b, &a);
        mean_warp_difference(&a, &b, &backward)
    }

    /// `image` (a picture on the previous frame's pixels, `[1, C, H, W]`) moved onto the
    /// current frame's pixels.
    pub fn carry(&self, image: Tensor<4>) -> Tensor<4> {
        warp(image, &self.backward)
    }
}

/// The previous frame's dream difference moved onto `input` along `motion`, masked where
/// the flow is unreliable and scaled by `blend`, added to `input`: where the next dream
/// starts.
pub fn carried_start(
    previous_input: &RgbImage,
    previous_dream: &RgbImage,
    input: &RgbImage,
    motion: &Motion,
    blend: f32,
) -> RgbImage {
    add_carried_difference(
        input,
        (previous_dream, previous_input),
        &motion.backward,
        &motion.mask,
        blend,
    )
}

/// Where the dream of `input` starts after the frame `previous` (its input and its dream):
/// the input with the previous dream difference carried along `motion` ([`carried_start`]),
/// or, at a scene cut (a residual over `cut_threshold`), the input alone. The flag says the
/// frame is dreamed afresh.
pub fn next_start(
    (previous_input, previous_dream): (&RgbImage, &RgbImage),
    input: &RgbImage,
    motion: &Motion,
    blend: f32,
    cut_threshold: f32,
) -> (RgbImage, bool) {
    if motion.residual > cut_threshold {
        return (input.clone(), true);
    }
    let start = carried_start(previous_input, previous_dream, input, motion, blend);
    (start, false)
}

/// Dreams the frames of `source` into `work`, reusing the frames an earlier run finished.
/// Returns the number of frames. `frames` (an estimate) only serves the progress reports.
#[allow(clippy::too_many_arguments)]
pub fn dream_video(
    network: &dyn Network,
    dream: DreamParams,
    params: &VideoParams,
    source: &mut dyn FrameSource,
    frames: Option<usize>,
    work: &WorkDir,
    device: &Device,
    mut progress: impl FnMut(FrameProgress),
) -> Result<usize> {
    dream_video_watched(
        network,
        dream,
        params,
        source,
        frames,
        work,
        device,
        |snapshot| {
            progress(snapshot.progress);
            Ok(())
        },
    )
}

/// [`dream_video`] with an observer that sees the dream after every step and each frame once
/// it is finished; an error it returns stops the video (the finished frames stay in `work`).
#[allow(clippy::too_many_arguments)]
pub fn dream_video_watched(
    network: &dyn Network,
    dream: DreamParams,
    params: &VideoParams,
    source: &mut dyn FrameSource,
    frames: Option<usize>,
    work: &WorkDir,
    device: &Device,
    mut observer: impl FnMut(&Snapshot<FrameProgress>) -> Result<()>,
) -> Result<usize> {
    params.validate()?;
    let dreamers = FrameDreamers::new(network, dream, params.next, &params.direction, device)?;
    let report = |frame: usize, step, resumed, fresh| FrameProgress {
        frame,
        frames,
        step,
        resumed,
        fresh,
    };
    // While a frame dreams (on a GPU, mostly waiting for it), the motion towards the next
    // frame is estimated and the frame before is written, on other threads: the results are
    // the same as one after the other.
    std::thread::scope(|scope| {
        // The previous input frame, and its dream once it is needed (finished frames are
        // only read back from the work folder when the next frame must be dreamed).
        let mut previous: Option<(RgbImage, Option<RgbImage>)> = None;
        // The motion from the previous input frame to the next one, being estimated.
        let mut motion_ahead: Option<std::thread::ScopedJoinHandle<'_, Motion>> = None;
        let mut saving: Option<std::thread::ScopedJoinHandle<'_, Result<()>>> = None;
        let mut index = 0;
        let mut upcoming = source.next_frame()?;
        while let Some(input) = upcoming.take() {
            upcoming = source.next_frame()?;
            if let Some(next) = &upcoming
                && next.dimensions() != input.dimensions()
            {
                let [(w, h), (was_w, was_h)] = [next.dimensions(), input.dimensions()];
                return Err(Error::InvalidParameter(format!(
                    "frame {} of the video is {w}x{h}, the frames before it {was_w}x{was_h}: a video's frames must all have one size",
                    index + 1
                )));
            }
            if index == 0 {
                dreamers
                    .first()
                    .octave_sizes(input.width(), input.height())?;
            }
            if work.frame_path(index).is_file() {
                observer(&Snapshot::new(report(index, None, true, false), &|| {
                    work.finished_frame(index)
                }))?;
                previous = Some((input, None));
                index += 1;
                continue;
            }
            let (start, fresh) = match previous.take() {
                None => (input.clone(), true),
                Some((previous_input, previous_dream)) => {
                    let previous_dream = match previous_dream {
                        Some(dream) => dream,
                        None => work.finished_frame(index - 1)?,
                    };
                    let motion = match motion_ahead.take() {
                        Some(estimate) => joined(estimate),
                        None => Motion::between(
                            &previous_input,
                            &input,
                            &params.flow,
                            network.flow_device(),
                            device,
                        ),
                    };
                    let previous = (&previous_input, &previous_dream);
                    let blend = params.blend_at(index)?;
                    next_start(previous, &input, &motion, blend, params.cut_threshold)
                }
            };
            if let Some(next) = upcoming.as_ref()
                && !work.frame_path(index + 1).is_file()
            {
                let (from, to) = (input.clone(), next.clone());
                let flow_device = network.flow_device();
                motion_ahead =
                    Some(scope.spawn(move || {
                        Motion::between(&from, &to, &params.flow, flow_device, device)
                    }));
            }
            let dreamed = dreamers.dream_watched(index, &start, fresh, |s| {
                observer(&Snapshot::new(
                    report(index, Some(s.progress), false, fresh),
                    &|| s.image(),
                ))
            })?;
            if let Some(saved) = saving.take() {
                joined(saved)?;
            }
            let frame = dreamed.clone();
            saving = Some(scope.spawn(move || work.save(index, &frame)));
            observer(&Snapshot::new(report(index, None, false, fresh), &|| {
                Ok(dreamed.clone())
            }))?;
            previous = Some((input, Some(dreamed)));
            index += 1;
        }
        if let Some(saved) = saving.take() {
            joined(saved)?;
        }
        if index == 0 {
            return Err(Error::InvalidParameter("the video has no frames".into()));
        }
        Ok(index)
    })
}

/// What a helper thread returned (its panic goes on in this thread).
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// How much a dream video flickers: over consecutive frames, the mean absolute difference
/// between each frame's dream difference and the previous one's carried along the flow,
/// divided by the mean absolute dream difference. Near 0 for a dream that moves with the
/// picture; around 1 or more for frames dreamed independently.
pub fn flicker(
    inputs: &[RgbImage],
    dreams: &[RgbImage],
    flow: &FlowMethod,
    device: &Device,
) -> f32 {
    let difference = |k: usize| to_tensor(&dreams[k], device).sub(to_tensor(&inputs[k], device));
    let (mut change, mut strength) = (0.0f32, 0.0f32);
    for k in 1..inputs.len().min(dreams.len()) {
        let motion = Motion::between(&inputs[k - 1], &inputs[k], flow, None, device);
        let current = difference(k);
        let carried = motion.carry(difference(k - 1));
        change += current
            .clone()
            .sub(carried)
            .abs()
            .mean()
            .into_scalar::<f32>();
        strength += current.abs().mean().into_scalar::<f32>();
    }
    if strength > 0.0 {
        change / strength
    } else {
        0.0
    }
}

/// The mean absolute change a dream made to its input, per pixel and channel (0–255).
pub fn dream_strength(input: &RgbImage, dream: &RgbImage) -> f32 {
    let total: u64 = input
        .as_raw()
        .iter()
        .zip(dream.as_raw())
        .map(|(&a, &b)| a.abs_diff(b) as u64)
        .sum();
    total as f32 / input.as_raw().len().max(1) as f32
}
