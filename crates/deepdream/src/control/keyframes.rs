//! Keyframes: an animation's numbers (step, iterations, zoom, …) given at chosen frames or
//! seconds and interpolated between them, and its layers and channels switched or
//! cross-faded from one keyframe to the next (DeepDreamVideo's layer sweeps).
//!
//! A schedule is a TOML or JSON file:
//!
//! ```toml
//! interpolation = "smooth"   # linear (default), smooth (ease in and out) or hold
//! transition = "fade"        # how layers and channels change: switch (default) or fade
//!
//! [[keyframes]]
//! frame = 0                  # or: time = 0.0 (seconds)
//! step = 0.5
//! layers = "block3_conv3"
//!
//! [[keyframes]]
//! time = 4.0
//! step = 3.0
//! zoom = 1.06
//! layers = "block5_conv3:1,block4_conv3:0.5"
//! channels = [12, 57]
//! interpolation = "linear"   # for the stretch after this keyframe
//! ```
//!
//! A number holds its first keyframe's value before it and its last one's after it.

use std::path::Path;

use serde::Deserialize;

use crate::control::region::Region;
use crate::engine::objective::LayerWeight;
use crate::error::{Error, Result};

/// A number of an animation that keyframes (and sound) can move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Param {
    /// Step size.
    Step,
    /// Gradient-ascent steps per octave.
    Iterations,
    /// Octaves.
    Octaves,
    /// Size ratio between octaves.
    OctaveScale,
    /// Largest random shift.
    Jitter,
    /// Share of the previous frame's dream carried into a video frame.
    Blend,
    /// A zoom's scale per frame.
    Zoom,
    /// A zoom's turn per frame, in degrees.
    Rotate,
    /// A zoom's movement per frame to the right, in pixels.
    PanX,
    /// A zoom's movement per frame downwards, in pixels.
    PanY,
    /// The mask's strength (0–1).
    Mask,
}

impl Param {
    /// Every parameter with its name in schedules and on the command line.
    pub const ALL: [(Param, &'static str); 11] = [
        (Param::Step, "step"),
        (Param::Iterations, "iterations"),
        (Param::Octaves, "octaves"),
        (Param::OctaveScale, "octave_scale"),
        (Param::Jitter, "jitter"),
        (Param::Blend, "blend"),
        (Param::Zoom, "zoom"),
        (Param::Rotate, "rotate"),
        (Param::PanX, "pan_x"),
        (Param::PanY, "pan_y"),
        (Param::Mask, "mask"),
    ];

    /// The parameter's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(p, _)| *p == self)
            .expect("listed")
            .1
    }

    /// The parameter called `name` (`-` and `_` alike); an error listing the known ones.
    pub fn parse(name: &str) -> Result<Self> {
        let wanted = name.trim().replace('-', "_");
        Self::ALL
            .iter()
            .find(|(_, n)| *n == wanted)
            .map(|(p, _)| *p)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                Error::InvalidParameter(format!(
                    "unknown parameter '{name}' (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// Whether the parameter is a whole number (rounded after interpolation).
    pub fn is_whole(self) -> bool {
        matches!(self, Param::Iterations | Param::Octaves | Param::Jitter)
    }
}

/// How values move from one keyframe to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// In a straight line.
    #[default]
    Linear,
    /// Easing in and out (smoothstep).
    Smooth,
    /// Holding the earlier keyframe's value until the next keyframe.
    Hold,
}

impl Interpolation {
    /// The share (0–1) of the way from one keyframe to the next at `t` (0–1) of the time.
    fn ease(self, t: f32) -> f32 {
        match self {
            Interpolation::Linear => t,
            Interpolation::Smooth => t * t * (3.0 - 2.0 * t),
            Interpolation::Hold => 0.0,
        }
    }
}

/// How layers and channels change at keyframes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// At once, on the keyframe.
    #[default]
    Switch,
    /// Cross-faded over the stretch between two keyframes.
    Fade,
}

/// Where a keyframe is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum At {
    Frame(usize),
    Seconds(f64),
}

/// One keyframe as read from the file.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    at: At,
    values: Vec<(Param, f32)>,
    layers: Option<Vec<LayerWeight>>,
    channels: Option<Vec<usize>>,
    interpolation: Option<Interpolation>,
}

/// A keyframe placed on a frame.
#[derive(Clone, Debug, PartialEq)]
struct Placed {
    frame: usize,
    values: Vec<(Param, f32)>,
    layers: Option<Vec<LayerWeight>>,
    channels: Option<Vec<usize>>,
    interpolation: Interpolation,
}

/// A schedule read from a file, its keyframes not yet placed on frames (times need the
/// frame rate).
#[derive(Clone, Debug, PartialEq)]
pub struct Keyframes {
    keys: Vec<Key>,
    interpolation: Interpolation,
    transition: Transition,
}

/// The schedule file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    interpolation: Interpolation,
    #[serde(default)]
    transition: Transition,
    keyframes: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Keyframes {
    /// Reads a schedule from a `.toml` or `.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, json).map_err(|e| {
            Error::InvalidParameter(format!(
                "keyframes {}: {}",
                path.display(),
                e.to_string().trim_start_matches("invalid parameter: ")
            ))
        })
    }

    /// Reads a schedule from TOML text, or JSON text when `json`.
    pub fn parse(text: &str, json: bool) -> Result<Self> {
        let file: File = if json {
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| format!(" (line {})", text[..s.start].lines().count().max(1)));
                invalid(format!(
                    "{}{}",
                    e.message().trim(),
                    line.unwrap_or_default()
                ))
            })?
        };
        if file.keyframes.is_empty() {
            return Err(invalid("there are no keyframes".into()));
        }
        let keys = file
            .keyframes
            .iter()
            .enumerate()
            .map(|(n, entries)| {
                read_key(entries).map_err(|e| {
                    invalid(format!(
                        "keyframe {}: {}",
                        n + 1,
                        e.to_string().trim_start_matches("invalid parameter: ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Keyframes {
            keys,
            interpolation: file.interpolation,
            transition: file.transition,
        })
    }

    /// Places the keyframes on the frames of an animation at `fps` frames a second, of
    /// `frames` frames when known; an error for keyframes out of order or past the end.
    pub fn place(&self, fps: f64, frames: Option<usize>) -> Result<Schedule> {
        let mut placed: Vec<Placed> = Vec::new();
        for (n, key) in self.keys.iter().enumerate() {
            let frame = match key.at {
                At::Frame(frame) => frame,
                At::Seconds(seconds) => (seconds * fps).round() as usize,
            };
            let describe = || match key.at {
                At::Frame(f) => format!("keyframe {} (frame {f})", n + 1),
                At::Seconds(s) => format!("keyframe {} ({s} s, frame {frame})", n + 1),
            };
            if let Some(previous) = placed.last()
                && frame <= previous.frame
            {
                return Err(invalid(format!(
                    "{} is not after the keyframe before it (frame {}): keyframes must be in order",
                    describe(),
                    previous.frame
                )));
            }
            if let Some(frames) = frames
                && frame >= frames
            {
                return Err(invalid(format!(
                    "{} is beyond the last frame ({})",
                    describe(),
                    frames.saturating_sub(1)
                )));
            }
            placed.push(Placed {
                frame,
                values: key.values.clone(),
                layers: key.layers.clone(),
                channels: key.channels.clone(),
                interpolation: key.interpolation.unwrap_or(self.interpolation),
            });
        }
        Ok(Schedule {
            keys: placed,
            transition: self.transition,
        })
    }
}

/// A schedule placed on frames: what each frame's numbers and objective are.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    keys: Vec<Placed>,
    transition: Transition,
}

impl Schedule {
    /// The parameters the schedule sets.
    pub fn params(&self) -> Vec<Param> {
        let mut params: Vec<Param> = self
            .keys
            .iter()
            .flat_map(|k| k.values.iter().map(|(p, _)| *p))
            .collect();
        params.sort();
        params.dedup();
        params
    }

    /// The frames the keyframes are on.
    pub fn frames(&self) -> Vec<usize> {
        self.keys.iter().map(|k| k.frame).collect()
    }

    /// The value of `param` at `frame`, if the schedule sets it.
    pub fn value(&self, param: Param, frame: usize) -> Option<f32> {
        let keys: Vec<(&Placed, f32)> = self
            .keys
            .iter()
            .filter_map(|k| k.values.iter().find(|(p, _)| *p == param).map(|v| (k, v.1)))
            .collect();
        let value = match keys.iter().position(|(k, _)| k.frame > frame) {
            None => keys.last()?.1,
            Some(0) => keys[0].1,
            Some(next) => {
                let ((a, va), (b, vb)) = (keys[next - 1], keys[next]);
                let t = (frame - a.frame) as f32 / (b.frame - a.frame) as f32;
                va + (vb - va) * a.interpolation.ease(t)
            }
        };
        Some(if param.is_whole() {
            value.round()
        } else {
            value
        })
    }

    /// The objective at `frame` when the schedule sets layers or channels: one part
    /// (layers with their weights and channels) when switching or between keyframes alike,
    /// two cross-fading parts otherwise. `None` when no keyframe sets layers or channels.
    pub fn objective(&self, frame: usize) -> Option<Vec<Region>> {
        // Each keyframe that sets layers or channels, with the other inherited.
        let mut states: Vec<(&Placed, Region)> = Vec::new();
        for key in &self.keys {
            if key.layers.is_none() && key.channels.is_none() {
                continue;
            }
            let previous = states.last().map(|(_, r)| r.clone());
            let region = Region {
                mask: None,
                layers: key
                    .layers
                    .clone()
                    .or_else(|| previous.as_ref().map(|r| r.layers.clone()))
                    .unwrap_or_default(),
                channels: match (&key.channels, &key.layers, &previous) {
                    (Some(channels), _, _) => Some(channels.clone()),
                    (None, _, Some(previous)) => previous.channels.clone(),
                    (None, _, None) => None,
                },
            };
            states.push((key, region));
        }
        let next = states.iter().position(|(k, _)| k.frame > frame);
        let (a, b) = match next {
            None => return states.last().map(|(_, r)| vec![r.clone()]),
            Some(0) => return Some(vec![states[0].1.clone()]),
            Some(next) => (&states[next - 1], &states[next]),
        };
        if self.transition == Transition::Switch {
            return Some(vec![a.1.clone()]);
        }
        let t =
            a.0.interpolation
                .ease((frame - a.0.frame) as f32 / (b.0.frame - a.0.frame) as f32);
        let scaled = |region: &Region, by: f32| Region {
            layers: region
                .layers
                .iter()
                .map(|l| LayerWeight {
                    layer: l.layer.clone(),
                    weight: l.weight * by,
                })
                .collect(),
            ..region.clone()
        };
        if a.1.channels == b.1.channels {
            // One part: the layers' weights summed.
            let mut merged = scaled(&a.1, 1.0 - t);
            for layer in scaled(&b.1, t).layers {
                match merged.layers.iter_mut().find(|l| l.layer == layer.layer) {
                    Some(same) => same.weight += layer.weight,
                    None => merged.layers.push(layer),
                }
            }
            return Some(vec![merged]);
        }
        Some(vec![scaled(&a.1, 1.0 - t), scaled(&b.1, t)])
    }

    /// Every objective the schedule reaches, for checking the layers and channels before
    /// anything is dreamed.
    pub fn objectives(&self) -> Vec<Region> {
        self.keys
            .iter()
            .filter_map(|k| self.objective(k.frame))
            .flatten()
            .collect()
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidParameter(message)
}

/// A keyframe's entries: where it is, its numbers, layers, channels and interpolation.
fn read_key(entries: &serde_json::Map<String, serde_json::Value>) -> Result<Key> {
    let mut key = Key {
        at: At::Frame(0),
        values: Vec::new(),
        layers: None,
        channels: None,
        interpolation: None,
    };
    let mut placed = false;
    for (name, value) in entries {
        let number = || {
            value
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| invalid(format!("{name} must be a number (got {value})")))
        };
        match name.as_str() {
            "frame" | "time" if placed => {
                return Err(invalid("give either frame or time, not both".into()));
            }
            "frame" => {
                let frame = value.as_u64().ok_or_else(|| {
                    invalid(format!("frame must be a frame number (got {value})"))
                })?;
                key.at = At::Frame(frame as usize);
                placed = true;
            }
            "time" => {
                let seconds = number()?;
                if seconds < 0.0 {
                    return Err(invalid(format!(
                        "time must not be negative (got {seconds})"
                    )));
                }
                key.at = At::Seconds(seconds);
                placed = true;
            }
            "layers" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| invalid("layers must be text, \"layer:weight,…\"".into()))?;
                key.layers = Some(LayerWeight::parse_list(text)?);
            }
            "channels" => {
                let list: Option<Vec<usize>> = match value {
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|c| c.as_u64().map(|c| c as usize))
                        .collect(),
                    serde_json::Value::String(text) => {
                        text.split(',').map(|c| c.trim().parse().ok()).collect()
                    }
                    _ => None,
                };
                match list {
                    Some(list) if !list.is_empty() => key.channels = Some(list),
                    _ => {
                        return Err(invalid(format!(
                            "channels must be a list of channel numbers, [12, 57] (got {value})"
                        )));
                    }
                }
            }
            "interpolation" => {
                key.interpolation = Some(serde_json::from_value(value.clone()).map_err(|_| {
                    invalid(format!(
                        "interpolation must be linear, smooth or hold (got {value})"
                    ))
                })?);
            }
            other => {
                let param = Param::parse(other)?;
                key.values.push((param, number()? as f32));
            }
        }
    }
    if !placed {
        return Err(invalid(
            "say where it is: frame = N or time = SECONDS".into(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"
        interpolation = "linear"
        [[keyframes]]
        frame = 0
        step = 0.5
        layers = "a"
        [[keyframes]]
        frame = 10
        step = 3
        iterations = 4
        layers = "b"
        interpolation = "smooth"
        [[keyframes]]
        time = 1.0
        step = 1
        iterations = 8
    "#;

    #[test]
    fn values_are_interpolated_between_keyframes_and_held_beyond() {
        let schedule = Keyframes::parse(SWEEP, false)
            .unwrap()
            .place(20.0, Some(40))
            .unwrap();
        assert_eq!(schedule.value(Param::Step, 0), Some(0.5));
        assert_eq!(schedule.value(Param::Step, 5), Some(1.75));
        // Smooth from frame 10 (3) to frame 20 (1): halfway is halfway, a quarter eases.
        assert_eq!(schedule.value(Param::Step, 15), Some(2.0));
        assert!(schedule.value(Param::Step, 12).unwrap() > 3.0 - 0.25 * 2.0);
        assert_eq!(schedule.value(Param::Step, 39), Some(1.0));
        // Iterations: held before their first keyframe, rounded.
        assert_eq!(schedule.value(Param::Iterations, 3), Some(4.0));
        assert_eq!(schedule.value(Param::Iterations, 13), Some(5.0));
        assert_eq!(schedule.value(Param::Zoom, 3), None);
        assert_eq!(schedule.params(), vec![Param::Step, Param::Iterations]);
    }

    #[test]
    fn layers_switch_or_fade() {
        let schedule = Keyframes::parse(SWEEP, false)
            .unwrap()
            .place(20.0, None)
            .unwrap();
        let names = |f| {
            schedule.objective(f).unwrap()[0]
                .layers
                .iter()
                .map(|l| (l.layer.clone(), l.weight))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(9), vec![("a".to_string(), 1.0)]);
        assert_eq!(names(10), vec![("b".to_string(), 1.0)]);
        let fading = SWEEP.replace("interpolation = \"linear\"", "transition = \"fade\"");
        let schedule = Keyframes::parse(&fading, false)
            .unwrap()
            .place(20.0, None)
            .unwrap();
        let parts = schedule.objective(5).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].layers[0].weight, 0.5);
        assert_eq!(parts[0].layers[1].layer, "b");
    }

    #[test]
    fn json_reads_like_toml() {
        let json = r#"{"keyframes": [{"frame": 0, "zoom": 1.01, "channels": [3]}, {"time": 2, "zoom": 1.05}]}"#;
        let schedule = Keyframes::parse(json, true)
            .unwrap()
            .place(10.0, Some(21))
            .unwrap();
        assert_eq!(schedule.value(Param::Zoom, 10), Some(1.03));
        assert_eq!(schedule.objective(4).unwrap()[0].channels, Some(vec![3]));
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        let cases = [
            (
                "[[keyframes]]\nframe = 0\nstepp = 1",
                "unknown parameter 'stepp'",
            ),
            ("[[keyframes]]\nstep = 1", "frame = N"),
            ("[[keyframes]]\nframe = 0\nstep = \"x\"", "must be a number"),
            ("speed = 1\n[[keyframes]]\nframe = 0", "unknown field"),
            (
                "[[keyframes]]\nframe = 0\ninterpolation = \"cubic\"",
                "linear, smooth or hold",
            ),
            ("keyframes = []", "no keyframes"),
            ("[[keyframes]\n", "line 1"),
        ];
        for (text, expected) in cases {
            let error = Keyframes::parse(text, false).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let order = "[[keyframes]]\nframe = 5\n[[keyframes]]\nframe = 3";
        let error = Keyframes::parse(order, false)
            .unwrap()
            .place(25.0, None)
            .unwrap_err();
        assert!(error.to_string().contains("in order"), "{error}");
        let beyond = "[[keyframes]]\nframe = 0\n[[keyframes]]\ntime = 3";
        let error = Keyframes::parse(beyond, false)
            .unwrap()
            .place(25.0, Some(50))
            .unwrap_err();
        assert!(
            error.to_string().contains("beyond the last frame (49)"),
            "{error}"
        );
    }
}
