//! The networks: the [`Network`](network::Network) trait every mode dreams through, the
//! building blocks they share ([`layers`]), one file per built-in architecture ([`vgg16`],
//! [`inception3`], [`efficientnet_lite0`]), any CNN read from ONNX ([`onnx`]), the
//! catalogue of named models ([`models`]) and their weights ([`weights`], [`checkpoint`]),
//! and the ImageNet classes ([`imagenet`], [`classify`]).

pub mod chain;
pub mod checkpoint;
pub mod classify;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod efficientnet_lite0;
pub mod imagenet;
pub mod inception3;
pub mod layers;
pub mod models;
pub mod network;
pub mod onnx;
pub mod placement;
pub mod spec;
pub mod vgg16;
pub mod weights;
