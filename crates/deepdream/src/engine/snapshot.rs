//! What an observer of a long job sees after each step.

use image::RgbImage;

use crate::error::Result;

/// A long job (a dream, a style transfer, a visualisation) after one of its steps, as its
/// observer sees it: where it is, and the picture so far, rendered only when asked for.
/// An observer that returns an error (such as [`Error::Cancelled`](crate::Error::Cancelled))
/// stops the job at once.
pub struct Snapshot<'a, P> {
    /// Where the job is.
    pub progress: P,
    picture: &'a dyn Fn() -> Result<RgbImage>,
}

impl<'a, P> Snapshot<'a, P> {
    /// A snapshot at `progress` whose picture `picture` renders.
    pub fn new(progress: P, picture: &'a dyn Fn() -> Result<RgbImage>) -> Self {
        Snapshot { progress, picture }
    }

    /// The picture so far (for a dream, at the current octave's size).
    pub fn image(&self) -> Result<RgbImage> {
        (self.picture)()
    }
}
