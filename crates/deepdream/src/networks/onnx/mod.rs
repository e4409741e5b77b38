//! Runs ONNX graphs on burn tensors so that autodiff gives the gradient with respect to the
//! input. The graph is parsed by `onnx-ir`; each node becomes one operator ([`ops`]) of a flat program ([`program`]),
//! and a forward pass runs only the part of that program the requested layers depend on.
//!
//! Layer names come from the raw graph: `onnx-ir` gives nodes generated names (`conv2d1`),
//! so each node is matched, operator by operator and in order, with the node of the raw
//! graph it came from, whose name (or, if unnamed, whose output name) is what users see.
//!
//! [`graph`] reads the file, [`network`] finds the layers and answers as a
//! [`Network`](crate::networks::network::Network).

mod graph;
#[cfg(feature = "cuda")]
mod lower;
pub mod network;
mod ops;
mod program;

pub use network::{LayerNamer, OnnxNetwork, raw_layer_name};
