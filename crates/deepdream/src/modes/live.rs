//! Dreaming frames as they arrive: each frame starts, as in a dream video, from the previous
//! frame's dream carried along the optical flow, and the dreamer takes the newest frame
//! each time, so it never falls behind the source (frames it has no time for are
//! skipped). Every frame, the first too, is dreamed with the per-frame settings
//! ([`LiveSettings::next`]). The settings are read before every frame: a change applies
//! from the next one. With a frame rate to hold ([`LiveSettings::fps`]), [`Adaptive`] lowers
//! the steps, then the size dreamed, while frames take too long, and raises them again when
//! there is time to spare.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use image::RgbImage;

use crate::control::Direction;
use crate::error::{Error, Result};
use crate::media::flow::{DisParams, FlowMethod};
use crate::media::live::{LiveFrame, LiveSource};
use crate::modes::animation::{FrameDreamers, FrameSettings};
use crate::modes::dream::{DreamParams, LayerWeight};
use crate::modes::video::{Motion, dream_strength, next_start};
use crate::networks::models;
use crate::networks::network::Network;

/// How a live feed is dreamed; it may change while the feed runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSettings {
    /// The objective of every frame (its octaves and iterations are `next`'s).
    pub dream: DreamParams,
    /// How every frame is dreamed.
    pub next: FrameSettings,
    /// Share of the previous frame's dream carried into the next (0–1).
    pub blend: f32,
    /// How the optical flow is estimated.
    pub flow: FlowMethod,
    /// The flow is estimated on the frames scaled by this (0–1), for speed.
    pub flow_scale: f32,
    /// Mean grey difference after following the flow above which a frame is dreamed
    /// afresh (a cut, or the camera turned).
    pub cut_threshold: f32,
    /// Dreamed frames a second to hold by lowering the steps and the size (none: every
    /// frame gets the settings as they are).
    pub fps: Option<f64>,
    /// The model to dream with, when another than the feed's first (its canonical name).
    pub model: Option<String>,
}

impl Default for LiveSettings {
    /// One octave of two steps per frame (a live feed must keep up), blend 0.8, DIS flow
    /// (its ultrafast preset) at full size.
    fn default() -> Self {
        LiveSettings {
            dream: DreamParams::default(),
            next: FrameSettings {
                octaves: 1,
                iterations: 2,
            },
            blend: 0.8,
            flow: FlowMethod::Dis(DisParams::default()),
            flow_scale: 1.0,
            cut_threshold: 30.0,
            fps: None,
            model: None,
        }
    }
}

impl LiveSettings {
    /// The settings [`LiveSettings::set`] knows, with what each takes.
    pub const NAMES: [(&'static str, &'static str); 13] = [
        ("step", "step size, a number"),
        ("iterations", "steps per frame, a whole number"),
        ("octaves", "octaves per frame, a whole number"),
        ("octave_scale", "size ratio between octaves, above 1"),
        ("jitter", "largest random shift in pixels"),
        ("blend", "share of the previous dream carried, 0-1"),
        (
            "layers",
            "layers with optional weights, \"block4_conv3:1,block5_conv1:0.5\"",
        ),
        ("channels", "channel numbers, \"12,57\", or \"all\""),
        ("mask_strength", "how much the mask holds back, 0-1"),
        ("flow", "optical flow method, dis or farneback"),
        ("model", "the network, by name (with its default layers)"),
        (
            "fps",
            "frames a second to hold by lowering steps and size, or off",
        ),
        (
            "cut_threshold",
            "mean grey difference that starts the dream afresh",
        ),
    ];

    /// Sets the setting `name` (one of [`LiveSettings::NAMES`]; `layer` is `layers`) from
    /// its text `value`; the settings stay as they were when the value does not fit.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let invalid = |what: String| Error::InvalidParameter(what);
        let number = || -> Result<f32> {
            value
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(format!("{name} takes a number, not '{value}'")))
        };
        let whole = || -> Result<usize> {
            let v = number()?;
            if v < 0.0 || v.fract() != 0.0 {
                return Err(invalid(format!(
                    "{name} takes a whole number, not '{value}'"
                )));
            }
            Ok(v as usize)
        };
        let mut next = self.clone();
        match name {
            "step" => next.dream.step_size = number()?,
            "iterations" => next.next.iterations = whole()?,
            "octaves" => next.next.octaves = whole()?.max(1),
            "octave_scale" => next.dream.octave_scale = number()?,
            "jitter" => next.dream.jitter = whole()? as u32,
            "blend" => next.blend = number()?,
            "cut_threshold" => next.cut_threshold = number()?,
            "flow" => next.flow = FlowMethod::parse(value)?,
            "model" => {
                // Another network's layers and channels: its defaults until set.
                next.model = Some(models::find(value.trim())?.name.to_string());
                next.dream.layers.clear();
                next.dream.channels = None;
                next.dream.auto_channels = None;
                next.dream.class = None;
            }
            "fps" => {
                next.fps = match value.trim() {
                    "off" | "" | "0" => None,
                    _ => Some(number()? as f64),
                }
            }
            "mask_strength" => match &mut next.dream.mask {
                Some(mask) => mask.strength = number()?,
                None => return Err(invalid("there is no mask to set the strength of".into())),
            },
            "layers" | "layer" => {
                next.dream.layers = LayerWeight::parse_list(value)?;
            }
            "channels" => {
                next.dream.auto_channels = None;
                next.dream.channels = match value.trim() {
                    "all" | "" => None,
                    list => Some(
                        list.split(',')
                            .map(|c| c.trim().parse::<usize>())
                            .collect::<std::result::Result<_, _>>()
                            .map_err(|_| {
                                invalid(format!(
                                    "channels takes channel numbers or all, not '{value}'"
                                ))
                            })?,
                    ),
                };
            }
            other => {
                let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                return Err(invalid(format!(
                    "unknown setting '{other}' (known: {})",
                    known.join(", ")
                )));
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// Checks the settings: the dream's, a blend from 0 to 1, at least one octave and one
    /// step per frame, the frame rate to hold.
    pub fn validate(&self) -> Result<()> {
        self.dream.validate()?;
        if !(self.blend.is_finite() && (0.0..=1.0).contains(&self.blend)) {
            return Err(Error::InvalidParameter(
                "blend must be a number from 0 to 1".into(),
            ));
        }
        if self.next.octaves == 0 || self.next.iterations == 0 {
            return Err(Error::InvalidParameter(
                "a live frame needs at least one octave and one step".into(),
            ));
        }
        self.check_fps()
    }
}

impl LiveSettings {
    /// Checks the frame rate to hold.
    pub fn check_fps(&self) -> Result<()> {
        match self.fps {
            Some(fps) if !(fps.is_finite() && (0.1..=240.0).contains(&fps)) => Err(
                Error::InvalidParameter(format!("fps must be from 0.1 to 240 (got {fps})")),
            ),
            _ => Ok(()),
        }
    }
}

/// Frames seen after a change before the next one is considered.
const SETTLE_FRAMES: usize = 3;
/// How much one change shrinks the side of the dreamed picture.
const SCALE_STEP: f32 = 0.85;
/// The smallest share of the frame's side that is dreamed.
const MIN_SCALE: f32 = 0.25;

/// Holds a frame rate: while frames take longer than the rate allows, fewer steps per
/// frame (down to one), then a smaller picture dreamed (its change scaled up onto the
/// frame), as many as the overrun calls for; when a frame would fit the budget even with one step or one size more, that
/// comes back (size first). Decides from a moving average of each frame's seconds, a few
/// frames after each change.
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    /// Seconds a frame may take.
    budget: f64,
    /// The steps the settings ask for.
    wanted_steps: usize,
    /// Steps per frame now.
    pub steps: usize,
    /// Share of the frame's side dreamed now (1: the whole frame).
    pub scale: f32,
    average: Option<f64>,
    seen: usize,
}

impl Adaptive {
    /// Holding `fps` frames a second with at most `steps` steps a frame.
    pub fn new(fps: f64, steps: usize) -> Self {
        Adaptive {
            budget: 1.0 / fps,
            wanted_steps: steps,
            steps,
            scale: 1.0,
            average: None,
            seen: 0,
        }
    }

    /// Counts a frame that took `seconds`; returns whether the steps or the scale changed.
    pub fn observe(&mut self, seconds: f64) -> bool {
        let average = match self.average {
            None => seconds,
            Some(average) => 0.6 * average + 0.4 * seconds,
        };
        self.average = Some(average);
        self.seen += 1;
        if self.seen < SETTLE_FRAMES {
            return false;
        }
        // What a frame would take with one step or one size more (steps and area scale
        // the dreaming; the rest of a frame's work is counted in, so this errs high).
        let more_steps = (self.steps + 1) as f64 / self.steps as f64;
        let larger = 1.0 / (SCALE_STEP as f64).powi(2);
        // Far over the budget, straight to what should fit it.
        let fits = self.budget / average;
        let changed = if average > self.budget * 1.05 {
            if self.steps > 1 {
                self.steps = ((self.steps as f64 * fits) as usize).clamp(1, self.steps - 1);
                true
            } else if self.scale > MIN_SCALE {
                let fitting = self.scale * fits.sqrt() as f32;
                // At least one size step down, never below the smallest.
                self.scale = fitting.min(self.scale * SCALE_STEP).max(MIN_SCALE);
                true
            } else {
                false
            }
        } else if self.scale < 1.0 && average * larger < self.budget * 0.95 {
            self.scale = (self.scale / SCALE_STEP).min(1.0);
            true
        } else if self.scale >= 1.0
            && self.steps < self.wanted_steps
            && average * more_steps < self.budget * 0.95
        {
            self.steps += 1;
            true
        } else {
            false
        };
        if changed {
            self.average = None;
            self.seen = 0;
        }
        changed
    }
}

/// How the feed is going, after each dreamed frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveReport {
    /// The source's number of the frame just dreamed.
    pub frame: u64,
    /// Frames dreamed so far.
    pub dreamed: u64,
    /// Frames of the source skipped so far (they came while a frame was dreamed).
    pub dropped: u64,
    /// From the frame's arrival to its dream.
    pub latency: Duration,
    /// Dreamed frames a second over the last second or so.
    pub fps: f64,
    /// Times the settings changed so far (the first settings not counted): a frame with a
    /// higher count than before was dreamed with the change.
    pub changes: u64,
    /// Mean difference between the dream and its frame, in levels (0–255).
    pub change: f32,
    /// Steps the frame got (fewer than the settings' while holding a frame rate).
    pub steps: usize,
    /// Share of the frame's side dreamed (below 1 while holding a frame rate).
    pub scale: f32,
}

/// Loads the network a live feed switches to, by model name.
pub type LoadNetwork<'a> = dyn FnMut(&str) -> Result<Arc<dyn Network>> + 'a;

/// What a live feed carries from frame to frame (and across a change of network).
#[derive(Default)]
struct LiveState {
    /// The settings the last frame was dreamed with.
    used: Option<LiveSettings>,
    adaptive: Option<Adaptive>,
    /// The last input frame and its dream.
    previous: Option<(RgbImage, RgbImage)>,
    report: Option<LiveReport>,
    recent: Vec<Instant>,
    changes: u64,
    /// A frame taken but not dreamed yet (it asked for another network).
    pending: Option<LiveFrame>,
}

/// Dreams the frames of `source` as they come on `network`, reading `settings` before each
/// one, and gives each dream to `output` with the feed's report; an error `output` returns
/// (such as [`Error::Cancelled`]) stops the feed. When the settings name another model,
/// `load` gives its network and the feed goes on with it. Returns the last report (`None`
/// if no frame came).
pub fn dream_live(
    network: Arc<dyn Network>,
    load: &mut LoadNetwork<'_>,
    settings: &Mutex<LiveSettings>,
    source: &LiveSource,
    device: &Device,
    mut output: impl FnMut(&RgbImage, &LiveReport) -> Result<()>,
) -> Result<Option<LiveReport>> {
    let mut state = LiveState::default();
    let mut network = network;
    loop {
        match dream_on(
            network.as_ref(),
            settings,
            source,
            device,
            &mut output,
            &mut state,
        )? {
            Some(model) => {
                network = load(&model)?;
                if network.name() != model {
                    return Err(Error::InvalidParameter(format!(
                        "asked for model '{model}', the live feed was given '{}'",
                        network.name()
                    )));
                }
            }
            None => return Ok(state.report),
        }
    }
}

/// [`dream_live`] on one network: returns the model the settings name when it is another
/// (`None` once the source ended).
fn dream_on(
    network: &dyn Network,
    settings: &Mutex<LiveSettings>,
    source: &LiveSource,
    device: &Device,
    output: &mut impl FnMut(&RgbImage, &LiveReport) -> Result<()>,
    state: &mut LiveState,
) -> Result<Option<String>> {
    // The steps the dreamers were made for, and the dreamers.
    let mut current: Option<(usize, FrameDreamers)> = None;
    loop {
        let frame = match state.pending.take() {
            Some(frame) => frame,
            None => match source.next()? {
                Some(frame) => frame,
                None => return Ok(None),
            },
        };
        let work = Instant::now();
        let wanted = settings.lock().map_err(|_| Error::Cancelled)?.clone();
        if let Some(model) = &wanted.model
            && model != network.name()
        {
            state.pending = Some(frame);
            return Ok(Some(model.clone()));
        }
        let settings_changed = state.used.as_ref().is_some_and(|used| *used != wanted);
        if settings_changed {
            state.changes += 1;
        }
        if state.used.is_none() || settings_changed {
            state.adaptive = wanted.fps.map(|fps| match state.adaptive.take() {
                // Keep what was learnt; the steps may not exceed the new settings'.
                Some(mut kept) if kept.budget == 1.0 / fps => {
                    kept.wanted_steps = wanted.next.iterations;
                    kept.steps = kept.steps.min(wanted.next.iterations);
                    kept
                }
                _ => Adaptive::new(fps, wanted.next.iterations),
            });
        }
        let steps = state
            .adaptive
            .as_ref()
            .map_or(wanted.next.iterations, |a| a.steps);
        if settings_changed
            || current
                .as_ref()
                .is_none_or(|(used_steps, _)| *used_steps != steps)
        {
            // Every frame, the first too, gets the light dream: a live feed must start at
            // once, and the dream builds up from frame to frame through the blend.
            let next = FrameSettings {
                iterations: steps,
                ..wanted.next
            };
            let dream = DreamParams {
                octaves: next.octaves,
                iterations: next.iterations,
                ..wanted.dream.clone()
            };
            let dreamers = FrameDreamers::new(network, dream, next, &Direction::default(), device)?;
            current = Some((steps, dreamers));
        }
        if settings_changed || state.used.is_none() {
            state.used = Some(wanted.clone());
        }
        let (_, dreamers) = current.as_ref().expect("set above");
        let input = frame.image;
        let (start, fresh) = match state.previous.take() {
            Some((previous_input, previous_dream))
                if previous_input.dimensions() == input.dimensions() =>
            {
                let motion = Motion::between_scaled(
                    &previous_input,
                    &input,
                    &wanted.flow,
                    network.flow_device(),
                    wanted.flow_scale,
                    device,
                );
                let previous = (&previous_input, &previous_dream);
                let (blend, cut) = (wanted.blend, wanted.cut_threshold);
                next_start(previous, &input, &motion, blend, cut)
            }
            _ => (input.clone(), true),
        };
        let scale = state.adaptive.as_ref().map_or(1.0, |a| a.scale);
        let index = frame.index as usize;
        let dreamed = if scale < 1.0 {
            dream_smaller(&start, scale, |small| {
                dreamers.dream(index, small, fresh, |_| {})
            })?
        } else {
            dreamers.dream(index, &start, fresh, |_| {})?
        };
        let now = Instant::now();
        state.recent.push(now);
        state
            .recent
            .retain(|t| now.duration_since(*t) <= Duration::from_secs(1));
        let span = now.duration_since(state.recent[0]).as_secs_f64();
        let latest = LiveReport {
            frame: frame.index,
            dreamed: state.report.map_or(0, |r| r.dreamed) + 1,
            dropped: source.dropped(),
            latency: now.duration_since(frame.arrived),
            fps: if span > 0.0 {
                (state.recent.len() - 1) as f64 / span
            } else {
                0.0
            },
            changes: state.changes,
            change: dream_strength(&input, &dreamed),
            steps,
            scale,
        };
        state.report = Some(latest);
        output(&dreamed, &latest)?;
        state.previous = Some((input, dreamed));
        if let Some(adaptive) = state.adaptive.as_mut() {
            adaptive.observe(work.elapsed().as_secs_f64());
        }
    }
}

/// `start` dreamed at `scale` of its size by `dream`, the change scaled back up and added
/// to `start` (so the frame keeps its own detail).
fn dream_smaller(
    start: &RgbImage,
    scale: f32,
    dream: impl FnOnce(&RgbImage) -> Result<RgbImage>,
) -> Result<RgbImage> {
    use image::imageops::{FilterType, resize};
    let (w, h) = start.dimensions();
    let side = |n: u32| ((n as f32 * scale).round() as u32).clamp(16.min(n), n);
    let small = resize(start, side(w), side(h), FilterType::Triangle);
    let dreamed = dream(&small)?;
    let (before, after) = (
        resize(&small, w, h, FilterType::Triangle),
        resize(&dreamed, w, h, FilterType::Triangle),
    );
    let mut out = start.clone();
    for ((o, b), a) in out.iter_mut().zip(before.iter()).zip(after.iter()) {
        *o = (*o as i16 + *a as i16 - *b as i16).clamp(0, 255) as u8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_lowers_steps_then_size_and_raises_them_back() {
        // 10 fps: 0.1 s a frame. A frame costs 0.05 s a step at full size.
        let cost = |a: &Adaptive| 0.05 * a.steps as f64 * (a.scale as f64).powi(2);
        let mut adaptive = Adaptive::new(10.0, 4);
        for _ in 0..40 {
            adaptive.observe(cost(&adaptive));
        }
        assert_eq!((adaptive.steps, adaptive.scale), (2, 1.0));
        // Slower frames: down to one step, then a smaller picture.
        let slow = |a: &Adaptive| 0.3 * a.steps as f64 * (a.scale as f64).powi(2);
        for _ in 0..60 {
            adaptive.observe(slow(&adaptive));
        }
        assert_eq!(adaptive.steps, 1);
        assert!(
            adaptive.scale < 0.6 && adaptive.scale > 0.45,
            "{}",
            adaptive.scale
        );
        assert!(slow(&adaptive) <= 0.1 * 1.05);
        // Fast again: the size comes back first, then the steps (never past the settings').
        for _ in 0..100 {
            adaptive.observe(cost(&adaptive) / 10.0);
        }
        assert_eq!((adaptive.steps, adaptive.scale), (4, 1.0));
    }

    /// Just above the smallest size, an overrun takes the picture to the smallest size (one
    /// size step down would go below it).
    #[test]
    fn adaptive_stops_at_the_smallest_size() {
        let mut adaptive = Adaptive::new(10.0, 1);
        adaptive.scale = MIN_SCALE / SCALE_STEP * 0.99;
        for _ in 0..SETTLE_FRAMES {
            adaptive.observe(0.11);
        }
        assert_eq!(adaptive.scale, MIN_SCALE);
        for _ in 0..2 * SETTLE_FRAMES {
            adaptive.observe(1.0);
        }
        assert_eq!(adaptive.scale, MIN_SCALE);
    }

    #[test]
    fn a_smaller_dream_changes_the_frame_by_its_scaled_up_change() {
        let start = RgbImage::from_fn(40, 32, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 7) as u8, 90])
        });
        let brighter = dream_smaller(&start, 0.5, |small| {
            assert_eq!(small.dimensions(), (20, 16));
            Ok(RgbImage::from_fn(20, 16, |x, y| {
                let p = small.get_pixel(x, y).0;
                image::Rgb(p.map(|v| v.saturating_add(10)))
            }))
        })
        .unwrap();
        // Every pixel 10 levels up, the frame's own detail kept.
        for (before, after) in start.pixels().zip(brighter.pixels()) {
            for c in 0..3 {
                assert!((after[c] as i16 - before[c] as i16 - 10).abs() <= 1);
            }
        }
    }

    #[test]
    fn settings_change_by_name_and_bad_values_leave_them_as_they_were() {
        let mut settings = LiveSettings::default();
        settings.set("step", "2.5").unwrap();
        settings.set("layer", "block5_conv3").unwrap();
        settings.set("channels", "3, 9").unwrap();
        settings.set("iterations", "4").unwrap();
        assert_eq!(settings.dream.step_size, 2.5);
        assert_eq!(settings.dream.layers[0].layer, "block5_conv3");
        assert_eq!(settings.dream.channels, Some(vec![3, 9]));
        assert_eq!(settings.next.iterations, 4);
        let before = settings.clone();
        for (name, value) in [
            ("step", "fast"),
            ("blend", "2"),
            ("iterations", "1.5"),
            ("speed", "1"),
            ("mask_strength", "0.5"),
            ("channels", "x"),
        ] {
            assert!(settings.set(name, value).is_err(), "{name} {value}");
        }
        assert_eq!(settings, before);
        settings.set("channels", "all").unwrap();
        assert_eq!(settings.dream.channels, None);
        // Another model: its default layers until set.
        assert!(settings.set("model", "alexnet").is_err());
        settings.set("model", "EfficientNet-Lite0").unwrap();
        assert_eq!(settings.model.as_deref(), Some("efficientnet-lite0"));
        assert!(settings.dream.layers.is_empty());
        settings.set("fps", "12").unwrap();
        assert_eq!(settings.fps, Some(12.0));
        assert!(settings.set("fps", "1000").is_err());
        settings.set("fps", "off").unwrap();
        assert_eq!(settings.fps, None);
    }
}
