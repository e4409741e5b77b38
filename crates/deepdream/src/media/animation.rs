//! Animation files: a GIF or a video, chosen by the file's extension.

use std::path::Path;

use crate::error::{Error, Result};
use crate::media::ffmpeg::{AudioSource, FrameRate, VideoFormat, VideoWriter};
use crate::media::frames::FrameSink;
use crate::media::gif::GifWriter;
use crate::media::image_io;

/// Kinds of animation output, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnimationFormat {
    /// An animated GIF (written without FFmpeg).
    Gif,
    /// A video file through FFmpeg.
    Video(VideoFormat),
}

impl AnimationFormat {
    /// The format for `path`'s extension: `.gif`, or one of [`VideoFormat`]'s.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = image_io::extension(path);
        if ext == "gif" {
            return Ok(Self::Gif);
        }
        VideoFormat::from_path(path)
            .map(Self::Video)
            .map_err(|_| Error::VideoWrite {
                path: path.to_path_buf(),
                reason: format!(
                    "'.{ext}' cannot hold video or animation (use .gif, .mp4, .mov, .mkv or .webm)"
                ),
            })
    }
}

/// Opens the sink for `path`: a GIF or a video by extension (a video with `audio` and the
/// metadata `tags`, which a GIF has no room for).
pub fn open_sink(
    path: &Path,
    width: u32,
    height: u32,
    frame_rate: FrameRate,
    frames: u64,
    audio: Option<AudioSource>,
    tags: &[(&str, &str)],
) -> Result<Box<dyn FrameSink>> {
    Ok(match AnimationFormat::from_path(path)? {
        AnimationFormat::Gif => Box::new(GifWriter::create(path, frame_rate)?),
        AnimationFormat::Video(_) => Box::new(VideoWriter::create_tagged(
            path, width, height, frame_rate, frames, audio, tags,
        )?),
    })
}
