//! Networks that are a chain of stages, each stage's output one layer users can dream on
//! (Inception v3's blocks, EfficientNet-Lite0's): built once into a [`Graph`] that every
//! device runs, and the [`Network`] answers they share.

use burn::tensor::Tensor;

use crate::backend::graph::{Graph, INPUT};
use crate::error::Result;
use crate::networks::layers::{Window, chain_size};
use crate::networks::network::{LayerInfo, Network, Preprocess};
use crate::networks::spec::ModelSpec;

/// One stage of a chain.
pub trait Stage {
    /// Adds the stage's nodes to `graph` after the value `input`; the stage's output value.
    fn build(&self, graph: &mut Graph, input: usize) -> usize;
}

/// A network made of stages, layer `i` being stage `i`'s output.
pub struct ChainNetwork {
    spec: &'static ModelSpec,
    graph: Graph,
    /// The graph value of each layer.
    outputs: Vec<usize>,
    /// The sliding window of each spatial stage (stages past the last have no extent).
    windows: Vec<Window>,
    layers: Vec<LayerInfo>,
    default_layers: Vec<String>,
    class_layer: Option<usize>,
}

impl ChainNetwork {
    /// The network `spec` names, from its stages and their layers (the same number), the
    /// first `windows.len()` of them spatial; `class_layer` is its ImageNet logits layer.
    pub fn new<S: Stage>(
        spec: &'static ModelSpec,
        stages: Vec<S>,
        windows: Vec<Window>,
        layers: Vec<LayerInfo>,
        class_layer: Option<usize>,
    ) -> Self {
        debug_assert_eq!(stages.len(), layers.len());
        let mut graph = Graph::default();
        let mut outputs = Vec::with_capacity(stages.len());
        let mut value = INPUT;
        for stage in &stages {
            value = stage.build(&mut graph, value);
            outputs.push(value);
        }
        ChainNetwork {
            spec,
            graph,
            outputs,
            windows,
            layers,
            default_layers: spec.default_layers.iter().map(|l| l.to_string()).collect(),
            class_layer,
        }
    }
}

impl Network for ChainNetwork {
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

    /// Runs the graph's nodes that `layer_indices` need.
    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>> {
        let wanted: Vec<usize> = layer_indices.iter().map(|&i| self.outputs[i]).collect();
        self.graph.run(input, &wanted)
    }

    #[cfg(feature = "cuda")]
    fn cuda_graph(&self) -> Option<(Graph, Vec<Option<usize>>)> {
        Some((
            self.graph.clone(),
            self.outputs.iter().copied().map(Some).collect(),
        ))
    }
}
