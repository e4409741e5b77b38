//! The parts every mode is composed of: objectives over a network's layers and optimisers.
//! Style transfer is an [`Objective`](objective::Objective) of content and Gram-matrix terms
//! minimised by [`Optimizer::LBFGS`](optimizer::Optimizer::LBFGS).

pub mod objective;
pub mod optimizer;
