//! Where the tensors live and the operations that run on them: the device
//! ([`device::by_name`]), and the CPU kernels that burn's own operations are replaced with,
//! each a backend extension with its own backward pass. Networks call the operations through
//! this door ([`conv2d`], [`max_pool2d`], [`avg_pool2d`], [`relu`], [`relu6`], [`clamp`]),
//! which picks the fastest kernel for each case and falls back to burn's on other devices.
//!
//! Networks are described once, as a [`graph::Graph`] of these operations, which burn's
//! devices run through this door and NVIDIA GPUs through [`cuda`] (with the `cuda` feature).
//!
//! On the CPU, 3x3 convolutions run through a Winograd kernel ([`conv3x3`]), depthwise ones
//! through [`depthwise`], other ungrouped ones as matrix products ([`conv_gemm`]).

pub mod activation;
pub mod ascend;
pub mod conv;
pub mod conv3x3;
pub mod conv_gemm;
pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod depthwise;
pub mod device;
pub mod geometry;
pub mod graph;
pub mod layer_terms;
pub mod pool;
mod tracked;

pub use activation::{clamp, lrn, relu, relu6};
pub use ascend::ascend;
pub use conv::conv2d;
pub(crate) use cpu::on_worker;
pub use pool::{avg_pool2d, max_pool2d};
