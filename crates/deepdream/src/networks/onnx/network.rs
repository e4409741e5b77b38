//! A network read from an ONNX file: its dreamable layers found in the graph, with their
//! channels, stride, context and memory, and forward passes through the executor.

use std::path::Path;

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::networks::layers::BYTES_PER_FLOAT_KEPT;
use crate::networks::network::{LayerInfo, Network, Preprocess};
use crate::networks::onnx::graph;
use crate::networks::onnx::ops::{Binary, Op, Value};
use crate::networks::onnx::program::{Operand, Program};

/// Maps a raw ONNX node name to the layer name users see, or `None` to hide the layer.
pub type LayerNamer = fn(&str) -> Option<String>;

/// Largest square input tried when working out a layer's minimum input size.
const MIN_INPUT_SEARCH_LIMIT: usize = 4096;
/// Input side used to measure each layer's stride.
const STRIDE_PROBE_SIDE: usize = 1024;

/// A network read from an ONNX file.
pub struct OnnxNetwork {
    name: String,
    default_layers: Vec<String>,
    /// Layers that exist but depend on an unsupported operator: (layer, (operator, node)).
    blocked: Vec<(String, (String, String))>,
    program: Program,
    layers: Vec<LayerInfo>,
    layer_slots: Vec<usize>,
    preprocess: Preprocess,
}

impl OnnxNetwork {
    /// Reads an ONNX file. `preprocess` is what the weights expect; `namer` turns raw node
    /// names into layer names (use [`raw_layer_name`] to show them as they are).
    pub fn load(
        path: &Path,
        preprocess: Preprocess,
        namer: LayerNamer,
        device: &Device,
    ) -> Result<Self> {
        let program = graph::read(path, device)?;
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut network = OnnxNetwork {
            name,
            default_layers: Vec::new(),
            blocked: Vec::new(),
            program,
            layers: Vec::new(),
            layer_slots: Vec::new(),
            preprocess,
        };
        network.find_layers(namer);
        if network.layers.is_empty() {
            return Err(Error::Onnx {
                path: path.to_path_buf(),
                reason: "it has no dreamable layers".into(),
            });
        }
        // Drop the steps, with their weights, that no dreamable layer depends on (such as a
        // classifier head the layer namer hides: VGG16's file carries a tumour classifier).
        network.program.keep_only(&network.layer_slots);
        Ok(network)
    }

    /// The number of weight values the network keeps (convolution, batch norm and fully
    /// connected parameters, and constant operands).
    pub fn parameter_count(&self) -> usize {
        let count = |dims: &[usize]| dims.iter().product::<usize>();
        self.program
            .steps
            .iter()
            .map(|step| {
                let op = match &step.op {
                    Op::Conv { weight, bias, .. } => {
                        count(&weight.dims()) + bias.as_ref().map_or(0, |b| count(&b.dims()))
                    }
                    Op::Linear { weight, bias } => {
                        count(&weight.dims()) + bias.as_ref().map_or(0, |b| count(&b.dims()))
                    }
                    Op::BatchNorm { scale, shift } => count(&scale.dims()) + count(&shift.dims()),
                    _ => 0,
                };
                let constants: usize = step
                    .inputs
                    .iter()
                    .map(|input| match input {
                        Operand::Const(value) => count(&value.tensor.dims()),
                        Operand::Slot(_) => 0,
                    })
                    .sum();
                op + constants
            })
            .sum()
    }

    /// Sets the name the network goes by and the layers dreamed by default.
    pub fn with_identity(mut self, name: &str, default_layers: &[&str]) -> Self {
        self.name = name.to_string();
        self.default_layers = default_layers.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Finds the dreamable layers: convolutions (with their batch norm and activation),
    /// poolings, concatenations, LRN, residual additions and fully connected layers whose
    /// whole ancestry the executor supports.
    fn find_layers(&mut self, namer: LayerNamer) {
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); self.program.slot_count];
        for (index, step) in self.program.steps.iter().enumerate() {
            for input in &step.inputs {
                if let Operand::Slot(slot) = input {
                    consumers[*slot].push(index);
                }
            }
        }
        let mut supported = vec![false; self.program.slot_count];
        supported[0] = true;
        for step in &self.program.steps {
            supported[step.output] = !matches!(step.op, Op::Unsupported { .. })
                && step.inputs.iter().all(|input| match input {
                    Operand::Slot(slot) => supported[*slot],
                    Operand::Const(_) => true,
                });
        }

        let mut absorbed = vec![false; self.program.steps.len()];
        for index in 0..self.program.steps.len() {
            let step = &self.program.steps[index];
            let base_kind = match &step.op {
                Op::Conv { .. } => "Conv",
                Op::MaxPool { .. } => "MaxPool",
                Op::AvgPool { .. } => "AvgPool",
                Op::GlobalAvgPool => "GlobalAvgPool",
                Op::Concat { .. } => "Concat",
                Op::Lrn { .. } => "LRN",
                Op::Linear { .. } => "Linear",
                Op::Binary(Binary::Add)
                    if step.inputs.iter().all(|i| matches!(i, Operand::Slot(_))) =>
                {
                    "Add"
                }
                _ => continue,
            };
            if absorbed[index] {
                continue;
            }
            // Follow a single-consumer chain of batch norm and activation.
            let mut kind = base_kind.to_string();
            let mut last = index;
            while let [next] = consumers[self.program.steps[last].output].as_slice() {
                let next = *next;
                let suffix = match self.program.steps[next].op {
                    Op::BatchNorm { .. } => "BatchNorm",
                    Op::Relu => "Relu",
                    Op::Clip { .. } => "Clip",
                    Op::Sigmoid => "Sigmoid",
                    _ => break,
                };
                kind = format!("{kind}+{suffix}");
                absorbed[next] = true;
                last = next;
            }
            let name = namer(&self.program.steps[last].raw_name).or_else(|| namer(&step.raw_name));
            let Some(name) = name else { continue };
            if self.layers.iter().any(|layer| layer.name == name) {
                continue;
            }
            if !supported[self.program.steps[last].output] {
                self.blocked
                    .push((name, self.program.first_unsupported(last)));
                continue;
            }
            let slot = self.program.steps[last].output;
            self.layers.push(LayerInfo {
                name,
                kind,
                channels: 0,
                stride: 1,
                min_input: 1,
                halo: 0,
                bytes_per_pixel: 0.0,
            });
            self.layer_slots.push(slot);
        }

        let probe = self.program.shapes(STRIDE_PROBE_SIDE, STRIDE_PROBE_SIDE);
        let min_inputs = self.min_inputs();
        let halos = self.program.halos();
        let probe_area = (STRIDE_PROBE_SIDE * STRIDE_PROBE_SIDE) as f32;
        let floats: Vec<usize> = self
            .layer_slots
            .iter()
            .map(|&slot| {
                self.program
                    .ancestry(slot)
                    .iter()
                    .filter_map(|&s| {
                        probe[s]
                            .as_ref()
                            .map(|shape| shape.iter().product::<usize>())
                    })
                    .sum()
            })
            .collect();
        for ((layer, &slot), floats) in self.layers.iter_mut().zip(&self.layer_slots).zip(floats) {
            layer.halo = halos[slot];
            layer.bytes_per_pixel = floats as f32 / probe_area * BYTES_PER_FLOAT_KEPT;
        }
        for ((layer, &slot), min_input) in self
            .layers
            .iter_mut()
            .zip(&self.layer_slots)
            .zip(min_inputs)
        {
            if let Some(shape) = &probe[slot] {
                layer.channels = shape.get(1).copied().unwrap_or(1);
                let height = shape.get(2).copied().unwrap_or(1);
                // A layer that is 1x1 even for a large input has no spatial extent.
                layer.stride = if height == 1 {
                    0
                } else {
                    (STRIDE_PROBE_SIDE as f64 / height as f64).round() as usize
                };
            }
            layer.min_input = min_input;
        }
    }

    /// For each layer, the smallest square input that gives it a non-empty output.
    fn min_inputs(&self) -> Vec<usize> {
        let mut result = vec![0; self.layers.len()];
        let mut remaining = self.layers.len();
        let mut side = 1;
        while remaining > 0 && side <= MIN_INPUT_SEARCH_LIMIT {
            let shapes = self.program.shapes(side, side);
            for (found, &slot) in result.iter_mut().zip(&self.layer_slots) {
                if *found == 0 && shapes[slot].is_some() {
                    *found = side;
                    remaining -= 1;
                }
            }
            side += 1;
        }
        result
            .into_iter()
            .map(|side| if side == 0 { usize::MAX } else { side })
            .collect()
    }
}

impl Network for OnnxNetwork {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_layers(&self) -> &[String] {
        &self.default_layers
    }

    fn output_size(&self, layer: usize, height: usize, width: usize) -> Option<(usize, usize)> {
        let shape = self.program.shapes(height, width)[self.layer_slots[layer]].clone()?;
        Some(match shape.as_slice() {
            [_, _, h, w] => (*h, *w),
            _ => (1, 1),
        })
    }

    /// The last fully connected layer, if it has 1000 outputs (an ImageNet classifier).
    fn class_layer(&self) -> Option<usize> {
        let index = self
            .layers
            .iter()
            .rposition(|l| l.kind.starts_with("Linear"))?;
        (self.layers[index].channels == crate::networks::imagenet::CLASS_COUNT).then_some(index)
    }

    fn unknown_layer(&self, name: &str) -> Error {
        match self.blocked.iter().find(|(layer, _)| layer == name) {
            Some((_, (op, node))) => Error::UnsupportedOperator {
                op: op.clone(),
                node: node.clone(),
                detail: format!(" (layer '{name}' depends on it)"),
            },
            None => Error::UnknownLayer {
                model: self.name.clone(),
                layer: name.to_string(),
            },
        }
    }

    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn preprocess(&self) -> Preprocess {
        self.preprocess
    }

    #[cfg(feature = "cuda")]
    fn cuda_graph(&self) -> Option<(crate::backend::graph::Graph, Vec<Option<usize>>)> {
        let (graph, slots) = crate::networks::onnx::lower::lower(&self.program);
        let layers = self.layer_slots.iter().map(|&slot| slots[slot]).collect();
        Some((graph, layers))
    }

    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>> {
        let wanted: Vec<usize> = layer_indices
            .iter()
            .map(|&index| self.layer_slots[index])
            .collect();
        let values = self.program.run(input, &wanted)?;
        Ok(values.into_iter().map(Value::into_nchw).collect())
    }
}

/// A [`LayerNamer`] that shows raw node names unchanged.
pub fn raw_layer_name(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_string())
}

/// The path of the ONNX file and the layers found, for `deepdream layers --weights`.
impl std::fmt::Debug for OnnxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxNetwork")
            .field("steps", &self.program.steps.len())
            .field("layers", &self.layers)
            .finish()
    }
}
