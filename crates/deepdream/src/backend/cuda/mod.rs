//! NVIDIA GPUs through CUDA, with no CUDA toolkit at build time: NVIDIA's libraries are
//! found and opened at run time ([`libraries`]), the GPU opened with its cuDNN and cuBLAS
//! handles ([`Gpu`]), and deepdream's own kernels compiled for it by NVRTC ([`kernels`]).
//! A network runs there as a [`Graph`](crate::backend::graph::Graph), forward and back to
//! the input, through an [`Executor`].

mod cudnn;
pub mod executor;
mod gpu;
pub mod kernels;
pub mod libraries;

pub use executor::{Depthwise, Executor, KeptSteps, Precision};
pub use gpu::{Gpu, GpuInfo, Handles};
