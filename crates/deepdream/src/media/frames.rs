//! Frame sources and sinks: where an animation's frames come from and where they go.

use image::RgbImage;

use crate::error::Result;

/// Where frames come from, one after another.
pub trait FrameSource {
    /// The next frame, or `None` after the last.
    fn next_frame(&mut self) -> Result<Option<RgbImage>>;
}

/// At most `count` frames of another source.
pub struct TakeFrames<S> {
    source: S,
    left: usize,
}

impl<S: FrameSource> TakeFrames<S> {
    /// The first `count` frames of `source`.
    pub fn new(source: S, count: usize) -> Self {
        TakeFrames {
            source,
            left: count,
        }
    }
}

impl<S: FrameSource> FrameSource for TakeFrames<S> {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.source.next_frame()
    }
}

/// Frames from any iterator of images (frames already in memory, generated ones, …).
pub struct IterSource<I>(pub I);

impl<I: Iterator<Item = RgbImage>> FrameSource for IterSource<I> {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        Ok(self.0.next())
    }
}

/// Where frames go, one after another. Nothing appears at the destination until
/// [`FrameSink::finish`] succeeds.
pub trait FrameSink {
    /// Appends a frame.
    fn write(&mut self, frame: &RgbImage) -> Result<()>;
    /// Completes the output and moves it into place.
    fn finish(self: Box<Self>) -> Result<()>;
}
