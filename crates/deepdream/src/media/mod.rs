//! Moving pictures: frames in and out (FFmpeg, GIF), the resumable work
//! folder, optical flow between frames, and colour statistics.

pub mod colour;
pub mod ffmpeg;
pub mod flow;
pub mod frames;
