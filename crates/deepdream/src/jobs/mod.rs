//! Long work over many dreams, as the CLI and the studio run it: animations that plan,
//! resume and finish in one call ([`animation`]), films split into parts for several
//! machines ([`video_parts`], [`shard`]), batches of pictures ([`batch`]), and time
//! estimates ([`eta`]).

pub mod animation;
pub mod batch;
pub mod eta;
pub mod shard;
pub mod video_parts;
