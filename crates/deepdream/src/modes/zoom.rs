//! The endless zoom of Google's notebook: each frame is the previous one, zoomed (and
//! optionally turned and panned) a little, then dreamed again.

use burn::tensor::Device;
use image::RgbImage;

use crate::control::Direction;
use crate::control::keyframes::Param;
use crate::engine::snapshot::Snapshot;
use crate::error::{Error, Result};
use crate::media::colour::{ColourStats, match_colours};
use crate::media::flow::resample;
use crate::media::work_dir::WorkDir;
use crate::modes::animation::{FrameDreamers, FrameProgress, FrameSettings};
use crate::modes::dream::DreamParams;
use crate::networks::network::Network;

/// The motion and length of a zoom.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoomParams {
    /// Number of frames, the first (the dream of the photo) included.
    pub frames: usize,
    /// Scale about the centre from one frame to the next (> 1 zooms in).
    pub zoom: f32,
    /// Turn per frame in degrees, counter-clockwise.
    pub rotate: f32,
    /// Camera movement per frame in pixels, `[right, down]`.
    pub pan: [f32; 2],
    /// How the frames after the first are dreamed.
    pub next: FrameSettings,
    /// Keep each frame's per-channel colour mean and spread equal to the first frame's.
    pub keep_colours: bool,
    /// What changes from frame to frame (keyframes, sound, masks, guides).
    pub direction: Direction,
}

impl Default for ZoomParams {
    /// 100 frames zooming 5% a frame, each dreamed with 2 octaves of 5 iterations,
    /// colours held.
    fn default() -> Self {
        ZoomParams {
            frames: 100,
            zoom: 1.05,
            rotate: 0.0,
            pan: [0.0, 0.0],
            next: FrameSettings {
                octaves: 2,
                iterations: 5,
            },
            keep_colours: true,
            direction: Direction::default(),
        }
    }
}

impl ZoomParams {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::InvalidParameter(what.to_string()));
        if self.frames == 0 {
            return invalid("the number of frames must be at least 1");
        }
        if !(self.zoom.is_finite() && self.zoom > 0.0 && self.zoom <= 10.0) {
            return invalid(
                "zoom must be a number above 0 and at most 10 (1.05 zooms in 5% a frame)",
            );
        }
        if !self.rotate.is_finite() || self.rotate.abs() > 360.0 {
            return invalid("rotation must be a number of degrees between -360 and 360");
        }
        if self.pan.iter().any(|p| !p.is_finite()) {
            return invalid("pan must be two numbers of pixels, DX,DY");
        }
        Ok(())
    }

    /// The motion into frame `frame` (from the one before), as the direction sets it.
    pub fn motion_at(&self, frame: usize) -> Result<ZoomParams> {
        let value = |param, default| self.direction.value(param, frame).unwrap_or(default);
        let motion = ZoomParams {
            zoom: value(Param::Zoom, self.zoom),
            rotate: value(Param::Rotate, self.rotate),
            pan: [
                value(Param::PanX, self.pan[0]),
                value(Param::PanY, self.pan[1]),
            ],
            direction: Direction::default(),
            ..self.clone()
        };
        motion.validate().map_err(|e| match e {
            Error::InvalidParameter(what) if !self.direction.is_empty() => {
                Error::InvalidParameter(format!("at frame {frame}: {what}"))
            }
            other => other,
        })?;
        Ok(motion)
    }
}

/// `image` moved by one frame of the zoom: the output pixel `p` shows the input at
/// `c + R(p − c) / zoom + pan`, `c` the centre and `R` the turn (bilinear, edges repeated).
pub fn transform(image: &RgbImage, params: &ZoomParams) -> RgbImage {
    let (w, h) = image.dimensions();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (sin, cos) = params.rotate.to_radians().sin_cos();
    let scale = 1.0 / params.zoom;
    resample(image, |x, y| {
        let (x, y) = (x - cx, y - cy);
        (
            cx + (cos * x - sin * y) * scale + params.pan[0],
            cy + (sin * x + cos * y) * scale + params.pan[1],
        )
    })
}

/// Makes the zoom's frames from `source` into `work`, dreaming only those an earlier run did
/// not finish. `dream` sets the first frame's dream (and the layers, seed, … of all frames).
pub fn zoom(
    network: &dyn Network,
    dream: DreamParams,
    params: &ZoomParams,
    source: &RgbImage,
    work: &WorkDir,
    device: &Device,
    mut progress: impl FnMut(FrameProgress),
) -> Result<()> {
    zoom_watched(network, dream, params, source, work, device, |snapshot| {
        progress(snapshot.progress);
        Ok(())
    })
}

/// [`zoom`] with an observer that sees the dream after every step and each frame once it is
/// finished; an error it returns stops the zoom (the finished frames stay in `work`).
pub fn zoom_watched(
    network: &dyn Network,
    dream: DreamParams,
    params: &ZoomParams,
    source: &RgbImage,
    work: &WorkDir,
    device: &Device,
    mut observer: impl FnMut(&Snapshot<FrameProgress>) -> Result<()>,
) -> Result<()> {
    params.validate()?;
    let dreamers = FrameDreamers::new(network, dream, params.next, &params.direction, device)?;
    for frame in params.direction.key_frames() {
        params.motion_at(frame)?;
    }
    let frames = Some(params.frames);
    let report = |frame: usize, step, resumed| FrameProgress {
        frame,
        frames,
        step,
        resumed,
        fresh: frame == 0,
    };
    let first = match work.load(0)? {
        Some(frame) => {
            observer(&Snapshot::new(report(0, None, true), &|| Ok(frame.clone())))?;
            frame
        }
        None => {
            let frame = dreamers.dream_watched(0, source, true, |s| {
                observer(&Snapshot::new(report(0, Some(s.progress), false), &|| {
                    s.image()
                }))
            })?;
            work.save(0, &frame)?;
            observer(&Snapshot::new(
                report(0, None, false),
                &|| Ok(frame.clone()),
            ))?;
            frame
        }
    };
    let colours = ColourStats::of(&first);
    let done = work.finished().min(params.frames);
    for index in 1..done {
        observer(&Snapshot::new(report(index, None, true), &|| {
            work.finished_frame(index)
        }))?;
    }
    let mut previous = match done {
        0 | 1 => first,
        n => work.finished_frame(n - 1)?,
    };
    for index in done.max(1)..params.frames {
        let start = transform(&previous, &params.motion_at(index)?);
        let mut frame = dreamers.dream_watched(index, &start, false, |s| {
            observer(&Snapshot::new(
                report(index, Some(s.progress), false),
                &|| s.image(),
            ))
        })?;
        if params.keep_colours {
            frame = match_colours(&frame, &colours);
        }
        work.save(index, &frame)?;
        observer(&Snapshot::new(report(index, None, false), &|| {
            Ok(frame.clone())
        }))?;
        previous = frame;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zooming_by_two_shows_the_centre_twice_as_large() {
        let image = RgbImage::from_fn(9, 9, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 7]));
        let params = ZoomParams {
            zoom: 2.0,
            ..ZoomParams::default()
        };
        let zoomed = transform(&image, &params);
        // The centre stays; a pixel 2 to the right of it shows the pixel 1 to the right.
        assert_eq!(zoomed.get_pixel(4, 4), image.get_pixel(4, 4));
        assert_eq!(zoomed.get_pixel(6, 4), image.get_pixel(5, 4));
        assert_eq!(zoomed.get_pixel(4, 0), image.get_pixel(4, 2));
    }

    #[test]
    fn a_quarter_turn_and_a_pan_move_pixels_where_expected() {
        let image = RgbImage::from_fn(9, 9, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 7]));
        let turn = ZoomParams {
            zoom: 1.0,
            rotate: 90.0,
            ..ZoomParams::default()
        };
        let turned = transform(&image, &turn);
        // Counter-clockwise: what was below the centre is now to its right.
        assert_eq!(turned.get_pixel(6, 4), image.get_pixel(4, 6));
        let pan = ZoomParams {
            zoom: 1.0,
            pan: [2.0, -1.0],
            ..ZoomParams::default()
        };
        let panned = transform(&image, &pan);
        assert_eq!(panned.get_pixel(3, 5), image.get_pixel(5, 4));
    }
}
