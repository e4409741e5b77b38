//! DeepDream on pretrained CNNs: the original 2015 multi-octave algorithm, with layer,
//! channel and guided objectives, on burn tensors.
//!
//! ```no_run
//! use deepdream::{Device, DreamParams, Dreamer, models};
//!
//! # fn main() -> deepdream::Result<()> {
//! let device = Device::flex();
//! let spec = models::find("vgg16")?;
//! let weights = deepdream::weights::ensure(spec, |_| eprintln!("fetching weights…"))?;
//! let network = (spec.load)(&weights, &device)?;
//! let image = deepdream::image_io::load("photo.jpg".as_ref())?;
//! let params = DreamParams { iterations: 5, seed: 7, ..DreamParams::default() };
//! let dreamer = Dreamer::new(network.as_ref(), params, &device)?;
//! let dreamed = dreamer.dream_image(&image, |p| eprintln!("step {}/{}", p.steps_done(), p.steps_total()))?;
//! deepdream::image_io::save(&dreamed, "dream.png".as_ref(), &dreamer.params().metadata())?;
//! # Ok(())
//! # }
//! ```
//!
//! On the CPU, 3x3 convolutions run through a Winograd kernel ([`conv3x3`]). Programs that
//! dream large images should use a caching allocator such as mimalloc
//! (`#[global_allocator] static A: mimalloc::MiMalloc = mimalloc::MiMalloc;`, as the CLI
//! does): the system allocator returns every large freed tensor to the kernel and pays for
//! the page faults again on the next step.

pub mod activation;
pub mod batch;
pub mod checkpoint;
pub mod classify;
pub mod conv;
pub mod conv3x3;
pub mod conv_gemm;
mod cpu;
pub mod depthwise;
pub mod device;
pub mod dream;
pub mod engine;
pub mod error;
pub mod eta;
pub mod image_io;
pub mod imagenet;
pub mod layers;
pub mod media;
pub mod models;
pub mod modes;
pub mod network;
pub mod onnx;
pub mod pool;
pub mod shard;
mod tracked;
pub mod weights;

pub use burn::tensor::Device;
pub use dream::{DreamParams, Dreamer, LayerWeight, Progress};
pub use engine::Snapshot;
pub use error::{Error, Result};
pub use models::ModelSpec;
pub use network::{LayerInfo, Network, Preprocess};
pub use onnx::OnnxNetwork;
