//! The parts every mode is composed of: objectives over a network's layers, image
//! parameterisations, random transformations, optimisers, the octave pyramid
//! ([`octaves`]), exact tiling of a gradient ([`tiling`]) and what observers see
//! ([`snapshot`]). Style transfer is an
//! [`Objective`](objective::Objective) of content and Gram-matrix terms minimised over the
//! pixels by L-BFGS; feature visualisation grows a channel or a class through a Fourier
//! [`parameterisation`], under random [`transform`]s, with Adam.

pub mod objective;
pub mod octaves;
pub mod optimizer;
pub mod parameterisation;
pub mod snapshot;
pub mod tiling;
pub mod transform;
