//! Footage that steers a film frame by frame: a mask video or a guide video, decoded once
//! and kept compressed, its frames matched to the animation's by time.

use std::path::Path;

use image::DynamicImage;

use crate::error::{Error, Result};
use crate::media::ffmpeg::{self, Segment, VideoReader};
use crate::media::image_io;

/// What a film shorter than the animation shows after its last frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ending {
    /// It starts again.
    #[default]
    Loop,
    /// Its last frame stays.
    Hold,
}

impl Ending {
    /// `loop` or `hold`; an error naming both.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "loop" => Ok(Ending::Loop),
            "hold" => Ok(Ending::Hold),
            other => Err(Error::InvalidParameter(format!(
                "'{other}' is not an ending of footage: use loop or hold"
            ))),
        }
    }
}

/// A video's frames, each scaled to fit `max_side` and kept as PNG.
#[derive(Clone, Debug, PartialEq)]
pub struct Footage {
    frames: Vec<Vec<u8>>,
    fps: f64,
    ending: Ending,
}

impl Footage {
    /// Decodes the video at `path`, each frame scaled down to fit within `max_side` pixels
    /// (kept as they are when `None`); an error if it has no frames.
    pub fn load(path: &Path, max_side: Option<u32>, ending: Ending) -> Result<Self> {
        let info = ffmpeg::probe(path)?;
        let mut reader = VideoReader::open(path, Segment::default())?;
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame()? {
            let mut image = DynamicImage::ImageRgb8(frame);
            if let Some(side) = max_side
                && image.width().max(image.height()) > side
            {
                image = image.resize(side, side, image::imageops::FilterType::Triangle);
            }
            frames.push(image_io::png_bytes(&image, &[])?);
        }
        if frames.is_empty() {
            return Err(Error::VideoRead {
                path: path.to_path_buf(),
                reason: "it has no frames".into(),
            });
        }
        Ok(Footage {
            frames,
            fps: info.frame_rate.fps(),
            ending,
        })
    }

    /// Footage from pictures in memory, at `fps` frames a second.
    pub fn from_pictures(pictures: &[DynamicImage], fps: f64, ending: Ending) -> Result<Self> {
        if pictures.is_empty() {
            return Err(Error::InvalidParameter("the footage has no frames".into()));
        }
        let frames = pictures
            .iter()
            .map(|p| image_io::png_bytes(p, &[]))
            .collect::<Result<_>>()?;
        Ok(Footage {
            frames,
            fps,
            ending,
        })
    }

    /// The number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there are no frames (never, for loaded footage).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame shown at frame `frame` of an animation at `fps` frames a second.
    pub fn at(&self, frame: usize, fps: f64) -> Result<DynamicImage> {
        let index = match fps > 0.0 {
            true => (frame as f64 / fps * self.fps + 1e-6).floor() as usize,
            false => frame,
        };
        let index = match self.ending {
            Ending::Loop => index % self.frames.len(),
            Ending::Hold => index.min(self.frames.len() - 1),
        };
        image_io::decode(&self.frames[index])
    }
}
