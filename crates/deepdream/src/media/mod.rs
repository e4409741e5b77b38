//! Pictures and moving pictures: image files in and out ([`image_io`]), frames in and out
//! ([`frames`]; FFmpeg, GIF), the resumable work folder, optical flow between frames, and
//! colour statistics.

pub mod animation;
pub mod colour;
pub mod ffmpeg;
pub mod flow;
pub mod frames;
pub mod gif;
pub mod image_io;
pub mod live;
pub mod work_dir;
