//! Dreaming frames as they arrive: each frame starts, as in a dream video, from the previous
//! frame's dream carried along the optical flow, and the dreamer takes the newest frame
//! each time, so it never falls behind the source (frames it has no time for are
//! skipped). Every frame, the first too, is dreamed with the per-frame settings
//! ([`LiveSettings::next`]). The settings are read before every frame: a change applies
//! from the next one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use image::RgbImage;

use crate::control::Direction;
use crate::error::{Error, Result};
use crate::media::flow::{DisParams, FlowMethod};
use crate::media::live::LiveSource;
use crate::modes::animation::{FrameDreamers, FrameSettings};
use crate::modes::dream::{DreamParams, LayerWeight};
use crate::modes::video::{Motion, dream_strength, next_start};
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
        }
    }
}

impl LiveSettings {
    /// The settings [`LiveSettings::set`] knows, with what each takes.
    pub const NAMES: [(&'static str, &'static str); 11] = [
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
        next.dream.validate()?;
        if !(next.blend.is_finite() && (0.0..=1.0).contains(&next.blend)) {
            return Err(invalid("blend must be from 0 to 1".into()));
        }
        if next.next.iterations == 0 {
            return Err(invalid("iterations must be at least 1".into()));
        }
        *self = next;
        Ok(())
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
}

/// Dreams the frames of `source` as they come, reading `settings` before each one, and
/// gives each dream to `output` with the feed's report; an error `output` returns (such as
/// [`Error::Cancelled`]) stops the feed. Returns the last report (`None` if no frame came).
pub fn dream_live(
    network: &dyn Network,
    settings: &Mutex<LiveSettings>,
    source: &LiveSource,
    device: &Device,
    mut output: impl FnMut(&RgbImage, &LiveReport) -> Result<()>,
) -> Result<Option<LiveReport>> {
    let mut current: Option<(LiveSettings, FrameDreamers)> = None;
    let mut previous: Option<(RgbImage, RgbImage)> = None;
    let mut report: Option<LiveReport> = None;
    let mut recent: Vec<Instant> = Vec::new();
    let mut changes = 0;
    while let Some(frame) = source.next()? {
        let wanted = settings.lock().map_err(|_| Error::Cancelled)?.clone();
        if current.as_ref().is_none_or(|(used, _)| *used != wanted) {
            if current.is_some() {
                changes += 1;
            }
            // Every frame, the first too, gets the light dream: a live feed must start at
            // once, and the dream builds up from frame to frame through the blend.
            let dream = DreamParams {
                octaves: wanted.next.octaves,
                iterations: wanted.next.iterations,
                ..wanted.dream.clone()
            };
            let dreamers =
                FrameDreamers::new(network, dream, wanted.next, &Direction::default(), device)?;
            current = Some((wanted.clone(), dreamers));
        }
        let (settings, dreamers) = current.as_ref().expect("set above");
        let input = frame.image;
        let (start, fresh) = match previous.take() {
            Some((previous_input, previous_dream))
                if previous_input.dimensions() == input.dimensions() =>
            {
                let motion = Motion::between_scaled(
                    &previous_input,
                    &input,
                    &settings.flow,
                    settings.flow_scale,
                    device,
                );
                let previous = (&previous_input, &previous_dream);
                let (blend, cut) = (settings.blend, settings.cut_threshold);
                next_start(previous, &input, &motion, blend, cut, device)?
            }
            _ => (input.clone(), true),
        };
        let dreamed = dreamers.dream(frame.index as usize, &start, fresh, |_| {})?;
        let now = Instant::now();
        recent.push(now);
        recent.retain(|t| now.duration_since(*t) <= Duration::from_secs(1));
        let span = now.duration_since(recent[0]).as_secs_f64();
        let dreamed_count = report.map_or(0, |r| r.dreamed) + 1;
        let latest = LiveReport {
            frame: frame.index,
            dreamed: dreamed_count,
            dropped: source.dropped(),
            latency: now.duration_since(frame.arrived),
            fps: if span > 0.0 {
                (recent.len() - 1) as f64 / span
            } else {
                0.0
            },
            changes,
            change: dream_strength(&input, &dreamed),
        };
        report = Some(latest);
        output(&dreamed, &latest)?;
        previous = Some((input, dreamed));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
