//! Requests for jobs as the page sends them (JSON), each checked against its model and
//! pictures before it is queued, with the command line that makes the same picture.

mod common;
mod dream;
mod style;
mod video;
mod visualize;
mod zoom;

pub use dream::{DreamRequest, DreamSettings, SettingsPictures};
pub use style::{StyleRequest, WeightedImage};
pub use video::VideoRequest;
pub use visualize::VisualizeRequest;
pub use zoom::ZoomRequest;
