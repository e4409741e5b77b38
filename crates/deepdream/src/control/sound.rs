//! Sound that drives an animation: the loudness of a band of the soundtrack, frame by
//! frame, moves chosen parameters between a low and a high value.

use std::path::Path;

use realfft::RealFftPlanner;

use crate::control::keyframes::Param;
use crate::error::{Error, Result};
use crate::media::ffmpeg::{self, Segment};

/// Samples a second the sound is analysed at.
pub const SAMPLE_RATE: u32 = 22_050;

/// The shortest analysis window, in samples (about 46 ms): enough for the bass band.
const MIN_WINDOW: usize = 1024;

/// Quietest loudness the envelope tells apart from silence, in decibels below the loudest.
const RANGE_DB: f32 = 50.0;

/// Which frequencies the envelope listens to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Band {
    /// 20–250 Hz: kick drums, bass lines.
    Bass,
    /// 250–4000 Hz: voices, most instruments.
    Mid,
    /// 4000 Hz and up: hi-hats, cymbals.
    Treble,
    /// Every frequency.
    #[default]
    All,
}

impl Band {
    /// The band called `name`; an error listing the bands.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bass" => Ok(Band::Bass),
            "mid" => Ok(Band::Mid),
            "treble" => Ok(Band::Treble),
            "all" => Ok(Band::All),
            other => Err(Error::InvalidParameter(format!(
                "unknown band '{other}' (use bass, mid, treble or all)"
            ))),
        }
    }

    /// The band's frequencies in hertz.
    fn range(self) -> (f32, f32) {
        match self {
            Band::Bass => (20.0, 250.0),
            Band::Mid => (250.0, 4000.0),
            Band::Treble => (4000.0, f32::INFINITY),
            Band::All => (0.0, f32::INFINITY),
        }
    }
}

/// Checks a smoothing time: seconds from 0 to 60.
pub fn check_smooth(seconds: f64) -> Result<()> {
    if seconds.is_finite() && (0.0..=60.0).contains(&seconds) {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "the sound's smoothing must be from 0 to 60 seconds (got {seconds})"
        )))
    }
}

/// A parameter the sound moves: `low` in silence, `high` at the loudest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reaction {
    /// The parameter.
    pub param: Param,
    /// Its value in silence.
    pub low: f32,
    /// Its value at the loudest.
    pub high: f32,
}

impl Reaction {
    /// Parses `step=0.5..3,zoom=1.01..1.06` as the CLI's `--react` takes it.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        let invalid = |what: String| Error::InvalidParameter(format!("--react '{text}': {what}"));
        let reactions = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| {
                let (name, range) = part
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("'{part}' is not PARAM=LOW..HIGH")))?;
                let param = Param::parse(name)?;
                let (low, high) = range
                    .split_once("..")
                    .and_then(|(l, h)| Some((l.trim().parse().ok()?, h.trim().parse().ok()?)))
                    .filter(|(l, h): &(f32, f32)| l.is_finite() && h.is_finite())
                    .ok_or_else(|| {
                        invalid(format!(
                            "'{range}' is not a range of two numbers, LOW..HIGH"
                        ))
                    })?;
                Ok(Reaction { param, low, high })
            })
            .collect::<Result<Vec<_>>>()?;
        if reactions.is_empty() {
            return Err(invalid(
                "name a parameter and its range, step=0.5..3".into(),
            ));
        }
        Ok(reactions)
    }

    /// The value at `level` (0 silence, 1 loudest).
    pub fn at(&self, level: f32) -> f32 {
        self.low + (self.high - self.low) * level
    }
}

/// The loudness of a band of a soundtrack at each frame, from 0 (silence, or 50 dB below
/// the loudest frame) to 1 (the loudest frame).
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    levels: Vec<f32>,
}

impl Envelope {
    /// The envelope of `segment` of the sound in the file at `path`, at `fps` frames a
    /// second, smoothed over `smooth` seconds (a falling level decays with that time
    /// constant; a rising one follows at once, so beats stay sharp).
    pub fn of_file(
        path: &Path,
        segment: Segment,
        fps: f64,
        band: Band,
        smooth: f64,
    ) -> Result<Self> {
        let samples = ffmpeg::decode_audio(path, segment, SAMPLE_RATE)?;
        if samples.is_empty() {
            return Err(Error::AudioRead {
                path: path.to_path_buf(),
                reason: "it has no sound in that stretch".into(),
            });
        }
        Ok(Self::of_samples(&samples, SAMPLE_RATE, fps, band, smooth))
    }

    /// The envelope of mono `samples` at `rate` samples a second (see [`Envelope::of_file`]).
    pub fn of_samples(samples: &[f32], rate: u32, fps: f64, band: Band, smooth: f64) -> Self {
        let hop = rate as f64 / fps;
        let frames = (samples.len() as f64 / hop).ceil().max(1.0) as usize;
        let window = (hop.ceil() as usize).max(MIN_WINDOW).next_power_of_two();
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(window);
        let (mut input, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
        let hann: Vec<f32> = (0..window)
            .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / window as f32).cos())
            .collect();
        let (low, high) = band.range();
        let bin_hz = rate as f32 / window as f32;
        let decibels: Vec<f32> = (0..frames)
            .map(|k| {
                // A window centred on the middle of the frame's stretch of sound.
                let centre = ((k as f64 + 0.5) * hop) as i64;
                let start = centre - window as i64 / 2;
                for (i, value) in input.iter_mut().enumerate() {
                    let at = start + i as i64;
                    let sample = usize::try_from(at)
                        .ok()
                        .and_then(|at| samples.get(at))
                        .copied()
                        .unwrap_or(0.0);
                    *value = sample * hann[i];
                }
                fft.process(&mut input, &mut spectrum)
                    .expect("buffers of the planned length");
                let energy: f32 = spectrum
                    .iter()
                    .enumerate()
                    .filter(|(bin, _)| (low..high).contains(&(*bin as f32 * bin_hz)))
                    .map(|(_, c)| c.norm_sqr())
                    .sum();
                10.0 * (energy + 1e-12).log10()
            })
            .collect();
        let loudest = decibels.iter().copied().fold(f32::MIN, f32::max);
        let floor = loudest - RANGE_DB;
        let decay = if smooth > 0.0 {
            (-1.0 / (smooth * fps)).exp() as f32
        } else {
            0.0
        };
        let mut level = 0.0f32;
        let levels = decibels
            .iter()
            .map(|&db| {
                let raw = ((db - floor) / RANGE_DB).clamp(0.0, 1.0);
                level = raw.max(level * decay + raw * (1.0 - decay));
                level
            })
            .collect();
        Envelope { levels }
    }

    /// The level at `frame` (the last one's past the end).
    pub fn level(&self, frame: usize) -> f32 {
        self.levels
            .get(frame)
            .or(self.levels.last())
            .copied()
            .unwrap_or(0.0)
    }

    /// The number of frames the sound lasts.
    pub fn frames(&self) -> usize {
        self.levels.len()
    }
}

/// Sound driving parameters: an envelope and the parameters it moves.
#[derive(Clone, Debug, PartialEq)]
pub struct Reactions {
    /// The soundtrack's envelope, one level per frame.
    pub envelope: Envelope,
    /// The parameters it moves.
    pub reactions: Vec<Reaction>,
}

impl Reactions {
    /// The value of `param` at `frame`, when the sound moves it.
    pub fn value(&self, param: Param, frame: usize) -> Option<f32> {
        let reaction = self.reactions.iter().find(|r| r.param == param)?;
        let value = reaction.at(self.envelope.level(frame));
        Some(if param.is_whole() {
            value.round()
        } else {
            value
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 440 Hz tone (or 60 Hz), loud for the first half of each half second.
    fn pulses(seconds: f64, hz: f32) -> Vec<f32> {
        let rate = SAMPLE_RATE as f64;
        (0..(seconds * rate) as usize)
            .map(|i| {
                let t = i as f64 / rate;
                let loud = if (t % 0.5) < 0.25 { 1.0 } else { 0.02 };
                loud * (std::f32::consts::TAU * hz * t as f32).sin()
            })
            .collect()
    }

    #[test]
    fn the_envelope_follows_the_pulses_in_their_band() {
        let envelope = Envelope::of_samples(&pulses(2.0, 440.0), SAMPLE_RATE, 20.0, Band::Mid, 0.0);
        assert_eq!(envelope.frames(), 40);
        // Frames 0-4 of each 10 are loud.
        assert!(envelope.level(2) > 0.95, "{:?}", envelope.levels);
        assert!(envelope.level(7) < 0.4, "{:?}", envelope.levels);
        // A 440 Hz tone is nearly silent in the bass band's eyes... but a 60 Hz one is not.
        let bass = Envelope::of_samples(&pulses(2.0, 60.0), SAMPLE_RATE, 20.0, Band::Bass, 0.0);
        assert!(bass.level(2) > 0.95 && bass.level(7) < 0.4);
        // Smoothing keeps the level up after a pulse ends.
        let smooth = Envelope::of_samples(&pulses(2.0, 440.0), SAMPLE_RATE, 20.0, Band::Mid, 0.2);
        assert!(smooth.level(7) > envelope.level(7) + 0.2);
    }

    #[test]
    fn reactions_parse_and_map_levels() {
        let list = Reaction::parse_list("step=0.5..3, zoom=1.01..1.06").unwrap();
        assert_eq!(list[0].param, Param::Step);
        assert_eq!(list[0].at(0.5), 1.75);
        assert_eq!(list[1].param, Param::Zoom);
        for bad in ["step=1", "step=a..b", "speed=1..2", "", "step=1..inf"] {
            assert!(Reaction::parse_list(bad).is_err(), "{bad}");
        }
        assert!(
            Band::parse("sub")
                .unwrap_err()
                .to_string()
                .contains("bass, mid")
        );
    }
}
