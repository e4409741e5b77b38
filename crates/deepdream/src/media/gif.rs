//! Animated GIFs, written without FFmpeg.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage, Frame, RgbImage};

use crate::error::{Error, Result};
use crate::media::ffmpeg::FrameRate;
use crate::media::frames::FrameSink;
use crate::media::image_io;

/// An animated GIF that loops forever (the `image` crate's encoder; no FFmpeg needed).
pub struct GifWriter {
    path: PathBuf,
    encoder: Option<GifEncoder<BufWriter<File>>>,
    temp: tempfile::TempPath,
    delay: Delay,
}

impl GifWriter {
    /// Starts a GIF at `path` showing `frame_rate` frames per second (GIF delays are in
    /// hundredths of a second, so the rate is rounded to one of those).
    pub fn create(path: &Path, frame_rate: FrameRate) -> Result<Self> {
        let bad = |reason: String| Error::VideoWrite {
            path: path.to_path_buf(),
            reason,
        };
        let temp = image_io::temp_file_beside(path, ".gif")
            .map_err(|e| bad(format!("cannot create a file beside it: {e}")))?;
        let file = temp.reopen().map_err(|e| bad(e.to_string()))?;
        let mut encoder = GifEncoder::new_with_speed(BufWriter::new(file), 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| bad(e.to_string()))?;
        let delay = Delay::from_numer_denom_ms(1000 * frame_rate.den, frame_rate.num);
        Ok(GifWriter {
            path: path.to_path_buf(),
            encoder: Some(encoder),
            temp: temp.into_temp_path(),
            delay,
        })
    }
}

impl FrameSink for GifWriter {
    fn write(&mut self, frame: &RgbImage) -> Result<()> {
        let rgba = DynamicImage::ImageRgb8(frame.clone()).into_rgba8();
        self.encoder
            .as_mut()
            .expect("open until finished")
            .encode_frame(Frame::from_parts(rgba, 0, 0, self.delay))
            .map_err(|e| Error::VideoWrite {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let bad = |reason: String| Error::VideoWrite {
            path: self.path.clone(),
            reason,
        };
        // Dropping the encoder writes the GIF trailer and flushes; it cannot report a
        // failure, so check that the file ends with the trailer byte.
        drop(self.encoder.take());
        let bytes = fs::read(&self.temp).map_err(|e| bad(e.to_string()))?;
        if bytes.last() != Some(&0x3B) {
            return Err(bad("the GIF could not be completed (disk full?)".into()));
        }
        let GifWriter { path, temp, .. } = *self;
        temp.persist(&path).map_err(|e| Error::VideoWrite {
            path: path.clone(),
            reason: e.error.to_string(),
        })
    }
}
