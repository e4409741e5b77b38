//! DeepDream on pretrained CNNs: the original 2015 multi-octave algorithm, with layer,
//! channel and guided objectives, on burn tensors.
//!
//! ```no_run
//! use deepdream::{Device, DreamParams, Dreamer, networks::models};
//!
//! # fn main() -> deepdream::Result<()> {
//! let device = Device::flex();
//! let spec = models::find("vgg16")?;
//! let weights = deepdream::networks::weights::ensure(spec, |_| eprintln!("fetching weights…"))?;
//! let network = (spec.load)(&weights, &device)?;
//! let image = deepdream::media::image_io::load("photo.jpg".as_ref())?;
//! let params = DreamParams { iterations: 5, seed: 7, ..DreamParams::default() };
//! let dreamer = Dreamer::new(network.as_ref(), params, &device)?;
//! let dreamed = dreamer.dream_image(&image, |p| eprintln!("step {}/{}", p.steps_done(), p.steps_total()))?;
//! deepdream::media::image_io::save(&dreamed, "dream.png".as_ref(), &dreamer.params().metadata())?;
//! # Ok(())
//! # }
//! ```
//!
//! On the CPU, 3x3 convolutions run through a Winograd kernel ([`backend::conv3x3`]). Programs that
//! dream large images should use a caching allocator such as mimalloc
//! (`#[global_allocator] static A: mimalloc::MiMalloc = mimalloc::MiMalloc;`, as the CLI
//! does): the system allocator returns every large freed tensor to the kernel and pays for
//! the page faults again on the next step.

pub mod backend;
pub mod control;
pub mod engine;
pub mod error;
pub mod home;
pub mod jobs;
pub mod media;
pub mod modes;
pub mod networks;
pub mod timeline;

pub use burn::tensor::Device;
pub use engine::snapshot::Snapshot;
pub use error::{Error, Result};
pub use modes::dream::{DreamParams, Dreamer, LayerWeight, Progress};
pub use networks::network::{LayerInfo, Network, Preprocess};
pub use networks::onnx::OnnxNetwork;
pub use networks::spec::ModelSpec;

/// The README's code, compiled as a doctest so that its library example keeps compiling as
/// written.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
