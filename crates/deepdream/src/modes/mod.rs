//! The modes: each one optimises an image for an objective on a network, composed from the
//! [`engine`](crate::engine)'s parts. The still [`dream`] (Google's 2015 algorithm), style
//! transfer ([`style`]), feature visualisation ([`visualize`]), and the animations built
//! from the dream ([`animation`]): recursive [`zoom`]s and dream [`video`]s.

pub mod animation;
pub mod dream;
pub mod live;
pub mod style;
pub mod video;
pub mod visualize;
pub mod zoom;
