//! Control over where and how the picture dreams: [`mask`]s and [`region`]s with their own
//! objectives, channels picked from the picture ([`channels`]), and for animations a
//! [`Direction`]: numbers and layers over time from [`keyframes`], moved by the
//! soundtrack ([`sound`]), masks and guides from [`footage`].

pub mod channels;
pub mod footage;
pub mod keyframes;
pub mod mask;
pub mod region;
pub mod sound;

use image::RgbImage;

use crate::control::footage::Footage;
use crate::control::keyframes::{Param, Schedule};
use crate::control::mask::Mask;
use crate::control::region::Region;
use crate::control::sound::Reactions;
use crate::error::Result;

/// What changes over an animation's frames. Empty (the default): every frame is dreamed
/// alike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Direction {
    /// Keyframed numbers, layers and channels.
    pub schedule: Option<Schedule>,
    /// Numbers the soundtrack moves (they win over the schedule's).
    pub sound: Option<Reactions>,
    /// A mask per frame.
    pub masks: Option<Footage>,
    /// A guide picture per frame.
    pub guides: Option<Footage>,
    /// The animation's frames per second, which matches the footage's frames to its own.
    pub fps: f64,
    /// The number of the animation's first frame in the schedule, the sound and the
    /// footage (a part of a split video starts later).
    pub offset: usize,
}

impl Direction {
    /// Whether nothing changes from frame to frame.
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none()
            && self.sound.is_none()
            && self.masks.is_none()
            && self.guides.is_none()
    }

    /// The value of `param` at `frame`, if the sound or the schedule set it.
    pub fn value(&self, param: Param, frame: usize) -> Option<f32> {
        let frame = frame + self.offset;
        let sound = self.sound.as_ref().and_then(|s| s.value(param, frame));
        sound.or_else(|| self.schedule.as_ref()?.value(param, frame))
    }

    /// The frames worth checking before anything is dreamed: the keyframes' (in the
    /// animation's own numbering, those before its start left out) and the first.
    pub fn key_frames(&self) -> Vec<usize> {
        let mut frames = vec![0];
        if let Some(schedule) = &self.schedule {
            frames.extend(
                schedule
                    .frames()
                    .into_iter()
                    .filter_map(|f| f.checked_sub(self.offset)),
            );
        }
        frames.sort_unstable();
        frames.dedup();
        frames
    }

    /// Whether the sound or the schedule move `param`.
    pub fn sets(&self, param: Param) -> bool {
        let sound = self.sound.as_ref();
        sound.is_some_and(|s| s.reactions.iter().any(|r| r.param == param))
            || self
                .schedule
                .as_ref()
                .is_some_and(|s| s.params().contains(&param))
    }

    /// The layers and channels at `frame`, when the schedule sets them.
    pub fn objective(&self, frame: usize) -> Option<Vec<Region>> {
        self.schedule.as_ref()?.objective(frame + self.offset)
    }

    /// The mask of `frame`, from the mask video.
    pub fn mask(&self, frame: usize) -> Result<Option<Mask>> {
        let Some(masks) = &self.masks else {
            return Ok(None);
        };
        Ok(Some(Mask::from_image(
            &masks.at(frame + self.offset, self.fps)?,
        )))
    }

    /// The guide picture of `frame`, from the guide video.
    pub fn guide(&self, frame: usize) -> Result<Option<RgbImage>> {
        let Some(guides) = &self.guides else {
            return Ok(None);
        };
        Ok(Some(guides.at(frame + self.offset, self.fps)?.to_rgb8()))
    }
}
