//! Moving pictures: optical flow between frames.

pub mod flow;
