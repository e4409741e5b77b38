//! Networks that are a chain of stages, each stage's output one layer users can dream on
//! (Inception v3's blocks, EfficientNet-Lite0's): the [`Network`] answers they share.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::networks::layers::{Window, chain_size};
use crate::networks::network::{LayerInfo, Network, Preprocess};
use crate::networks::spec::ModelSpec;

/// One stage of a chain.
pub trait Stage: Send + Sync {
    /// The stage's output for its input.
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
}

/// A network made of `stages`, layer `i` being stage `i`'s output.
pub struct ChainNetwork<S> {
    spec: &'static ModelSpec,
    stages: Vec<S>,
    /// The sliding window of each spatial stage (stages past the last have no extent).
    windows: Vec<Window>,
    layers: Vec<LayerInfo>,
    default_layers: Vec<String>,
    class_layer: Option<usize>,
}

impl<S: Stage> ChainNetwork<S> {
    /// The network `spec` names, from its stages and their layers (the same number), the
    /// first `windows.len()` of them spatial; `class_layer` is its ImageNet logits layer.
    pub fn new(
        spec: &'static ModelSpec,
        stages: Vec<S>,
        windows: Vec<Window>,
        layers: Vec<LayerInfo>,
        class_layer: Option<usize>,
    ) -> Self {
        debug_assert_eq!(stages.len(), layers.len());
        ChainNetwork {
            spec,
            stages,
            windows,
            layers,
            default_layers: spec.default_layers.iter().map(|l| l.to_string()).collect(),
            class_layer,
        }
    }
}

impl<S: Stage> Network for ChainNetwork<S> {
    fn name(&self) -> &str {
        self.spec.name
    }

    fn default_layers(&self) -> &[String] {
        &self.default_layers
    }

    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn preprocess(&self) -> Preprocess {
        self.spec.preprocess
    }

    fn output_size(&self, layer: usize, height: usize, width: usize) -> Option<(usize, usize)> {
        if layer >= self.windows.len() {
            return Some((1, 1));
        }
        chain_size(&self.windows[..=layer], height, width)
    }

    fn class_layer(&self) -> Option<usize> {
        self.class_layer
    }

    /// Runs the stages up to the deepest of `layer_indices` and returns those layers'
    /// outputs in the order asked for.
    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>> {
        let last = layer_indices.iter().copied().max().unwrap_or(0);
        let mut outputs: Vec<Option<Tensor<4>>> = vec![None; self.stages.len()];
        let mut x = input;
        for (index, stage) in self.stages.iter().enumerate().take(last + 1) {
            x = stage.forward(x);
            if layer_indices.contains(&index) {
                outputs[index] = Some(x.clone());
            }
        }
        Ok(layer_indices
            .iter()
            .map(|&i| outputs[i].clone().expect("stage computed"))
            .collect())
    }
}
