//! The parts every mode is composed of: objectives over a network's layers, image
//! parameterisations, random transformations and optimisers. Style transfer is an
//! [`Objective`](objective::Objective) of content and Gram-matrix terms minimised over the
//! pixels by L-BFGS; feature visualisation grows a channel or a class through a Fourier
//! [`parameterisation`], under random [`transform`]s, with Adam.

pub mod objective;
pub mod optimizer;
pub mod parameterisation;
pub mod snapshot;
pub mod transform;
