//! Runs ONNX graphs on burn tensors so that autodiff gives the gradient with respect to the
//! input. The graph is parsed by `onnx-ir`; each node becomes one [`Op`] of a flat program,
//! and a forward pass runs only the part of that program the requested layers depend on.
//!
//! Layer names come from the raw graph: `onnx-ir` gives nodes generated names (`conv2d1`),
//! so each node is matched, operator by operator and in order, with the node of the raw
//! graph it came from, whose name (or, if unnamed, whose output name) is what users see.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData, activation};
use onnx_ir::{ArgType, Argument, Message, ModelProto, Node, OnnxGraphBuilder};

use crate::backend::conv2d;
use crate::backend::geometry::window_output;
use crate::backend::{avg_pool2d, max_pool2d};
use crate::error::{Error, Result};
use crate::networks::layers::{BYTES_PER_FLOAT_KEPT, same_padding};
use crate::networks::network::{LayerInfo, Network, Preprocess};

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
    steps: Vec<Step>,
    layers: Vec<LayerInfo>,
    layer_slots: Vec<usize>,
    slot_count: usize,
    nhwc_input: bool,
    preprocess: Preprocess,
}

/// One node of the program: an operator, where its inputs come from, where its output goes.
struct Step {
    node: String,
    raw_name: String,
    op: Op,
    inputs: Vec<Operand>,
    output: usize,
}

/// An operator input: the output of an earlier step (a slot) or a constant.
enum Operand {
    Slot(usize),
    Const(Box<Value>),
}

/// A tensor of logical rank 1 to 4, stored as a rank-4 burn tensor (trailing dims of 1).
#[derive(Clone)]
struct Value {
    tensor: Tensor<4>,
    shape: Vec<usize>,
}

/// Spatial padding: fixed, or ONNX's `SAME_UPPER`/`SAME_LOWER` that depends on the input size.
#[derive(Clone, Copy, Debug)]
enum Padding {
    Explicit([(usize, usize); 2]),
    Same { upper: bool },
}

#[derive(Clone, Copy, Debug)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// The operators the executor runs.
enum Op {
    Conv {
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        groups: usize,
    },
    Relu,
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        ceil: bool,
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        ceil: bool,
        count_pad: bool,
    },
    GlobalAvgPool,
    Lrn {
        alpha: f32,
        beta: f32,
        bias: f32,
        size: usize,
    },
    BatchNorm {
        scale: Tensor<4>,
        shift: Tensor<4>,
    },
    Binary(Binary),
    Concat {
        axis: usize,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Reshape {
        shape: Vec<i64>,
    },
    Flatten {
        axis: usize,
    },
    Linear {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    Softmax {
        axis: usize,
    },
    Identity,
    Unsupported {
        op: String,
        detail: String,
    },
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
        let onnx_err = |reason: String| Error::Onnx {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.is_empty() {
            return Err(onnx_err("the file is empty".into()));
        }
        let raw = ModelProto::parse_from_bytes(&bytes)
            .map_err(|e| onnx_err(format!("not a valid ONNX file ({e})")))?;
        if raw.graph.node.is_empty() {
            return Err(onnx_err(
                "the graph has no nodes (not an ONNX model?)".into(),
            ));
        }
        let graph = OnnxGraphBuilder::new()
            .simplify(false)
            .parse_bytes(&bytes)
            .map_err(|e| onnx_err(e.to_string()))?;
        drop(bytes);

        let input = graph
            .inputs
            .first()
            .ok_or_else(|| onnx_err("the graph has no input".into()))?;
        let nhwc_input = is_nhwc(input);
        let raw_names = match_raw_names(&graph.nodes, &raw);

        let mut slots: HashMap<String, usize> = HashMap::from([(input.name.clone(), 0)]);
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (node, raw_name) in graph.nodes.iter().zip(raw_names) {
            if matches!(node, Node::Constant(_)) {
                continue;
            }
            let inputs = node
                .inputs()
                .iter()
                .filter(|arg| !arg.is_optional())
                .map(|arg| operand(arg, &slots, device))
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(|reason| onnx_err(format!("node '{}': {reason}", node.name())))?;
            let op = convert(node, device).map_err(|reason| {
                onnx_err(format!("node '{}' ({raw_name}): {reason}", node.name()))
            })?;
            let mut inputs = inputs;
            if op.absorbs_constants() {
                // The weights live in the operator; a second copy as operands would double
                // the network's memory.
                inputs.truncate(1);
            }
            let output = slots.len();
            if let Some(out) = node.outputs().first() {
                slots.insert(out.name.clone(), output);
            }
            steps.push(Step {
                node: node.name().to_string(),
                raw_name,
                op,
                inputs,
                output,
            });
        }

        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut network = OnnxNetwork {
            name,
            default_layers: Vec::new(),
            blocked: Vec::new(),
            steps,
            layers: Vec::new(),
            layer_slots: Vec::new(),
            slot_count: slots.len(),
            nhwc_input,
            preprocess,
        };
        network.find_layers(namer);
        if network.layers.is_empty() {
            return Err(onnx_err("it has no dreamable layers".into()));
        }
        network.drop_unused_steps();
        Ok(network)
    }

    /// The number of weight values the network keeps (convolution, batch norm and fully
    /// connected parameters, and constant operands).
    pub fn parameter_count(&self) -> usize {
        let count = |dims: &[usize]| dims.iter().product::<usize>();
        self.steps
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
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); self.slot_count];
        for (index, step) in self.steps.iter().enumerate() {
            for input in &step.inputs {
                if let Operand::Slot(slot) = input {
                    consumers[*slot].push(index);
                }
            }
        }
        let mut supported = vec![false; self.slot_count];
        supported[0] = true;
        for step in &self.steps {
            supported[step.output] = !matches!(step.op, Op::Unsupported { .. })
                && step.inputs.iter().all(|input| match input {
                    Operand::Slot(slot) => supported[*slot],
                    Operand::Const(_) => true,
                });
        }

        let mut absorbed = vec![false; self.steps.len()];
        for index in 0..self.steps.len() {
            let step = &self.steps[index];
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
            while let [next] = consumers[self.steps[last].output].as_slice() {
                let next = *next;
                let suffix = match self.steps[next].op {
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
            let name = namer(&self.steps[last].raw_name).or_else(|| namer(&step.raw_name));
            let Some(name) = name else { continue };
            if self.layers.iter().any(|layer| layer.name == name) {
                continue;
            }
            if !supported[self.steps[last].output] {
                self.blocked.push((name, self.first_unsupported(last)));
                continue;
            }
            let slot = self.steps[last].output;
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

        let probe = self.shapes(STRIDE_PROBE_SIDE, STRIDE_PROBE_SIDE);
        let min_inputs = self.min_inputs();
        let halos = self.halos();
        let probe_area = (STRIDE_PROBE_SIDE * STRIDE_PROBE_SIDE) as f32;
        let floats: Vec<usize> = self
            .layer_slots
            .iter()
            .map(|&slot| {
                self.ancestry(slot)
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

    /// The first unsupported operator (type, node) that step `index` depends on.
    fn first_unsupported(&self, index: usize) -> (String, String) {
        let mut needed = vec![false; self.slot_count];
        needed[self.steps[index].output] = true;
        let mut found = (String::new(), String::new());
        for step in self.steps[..=index].iter().rev() {
            if !needed[step.output] {
                continue;
            }
            if let Op::Unsupported { op, .. } = &step.op {
                found = (op.clone(), step.raw_name.clone());
            }
            for input in &step.inputs {
                if let Operand::Slot(slot) = input {
                    needed[*slot] = true;
                }
            }
        }
        found
    }

    /// The slots that `slot` is computed from, itself included.
    fn ancestry(&self, slot: usize) -> Vec<usize> {
        let mut needed = vec![false; self.slot_count];
        needed[slot] = true;
        for step in self.steps.iter().rev() {
            if needed[step.output] {
                for input in &step.inputs {
                    if let Operand::Slot(s) = input {
                        needed[*s] = true;
                    }
                }
            }
        }
        (0..self.slot_count).filter(|&s| needed[s]).collect()
    }

    /// For each slot, an upper bound of how many input pixels beyond its stride cell an
    /// output pixel depends on (`usize::MAX` once a global operator has mixed all pixels).
    fn halos(&self) -> Vec<usize> {
        let mut reach = vec![(1usize, 0usize); self.slot_count];
        for step in &self.steps {
            let (stride, halo) = step
                .inputs
                .iter()
                .filter_map(|input| match input {
                    Operand::Slot(slot) => Some(reach[*slot]),
                    Operand::Const(_) => None,
                })
                .fold((1, 0), |(s, h), (si, hi)| (s.max(si), h.max(hi)));
            // (reach beyond the stride cell, stride) of windowed operators.
            let reach_of = |padding: &Padding, kernel: [usize; 2], dilation: [usize; 2]| {
                (0..2)
                    .map(|d| {
                        let span = (kernel[d] - 1) * dilation[d];
                        match padding {
                            Padding::Explicit(p) => p[d].0.max(span.saturating_sub(p[d].0)),
                            Padding::Same { .. } => span,
                        }
                    })
                    .max()
                    .unwrap_or(0)
            };
            let window = match &step.op {
                Op::Conv {
                    weight,
                    stride,
                    padding,
                    dilation,
                    ..
                } => {
                    let [_, _, kh, kw] = weight.dims();
                    Some((
                        reach_of(padding, [kh, kw], *dilation),
                        stride[0].max(stride[1]),
                    ))
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                    dilation,
                    ..
                } => Some((
                    reach_of(padding, *kernel, *dilation),
                    stride[0].max(stride[1]),
                )),
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    ..
                } => Some((reach_of(padding, *kernel, [1, 1]), stride[0].max(stride[1]))),
                Op::GlobalAvgPool
                | Op::Linear { .. }
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Unsupported { .. } => None,
                _ => Some((0, 1)),
            };
            reach[step.output] = match window {
                Some(_) if halo == usize::MAX => (stride, usize::MAX),
                Some((extent, step_stride)) => (stride * step_stride, halo + extent * stride),
                None => (stride, usize::MAX),
            };
        }
        reach.into_iter().map(|(_, halo)| halo).collect()
    }

    /// For each layer, the smallest square input that gives it a non-empty output.
    fn min_inputs(&self) -> Vec<usize> {
        let mut result = vec![0; self.layers.len()];
        let mut remaining = self.layers.len();
        let mut side = 1;
        while remaining > 0 && side <= MIN_INPUT_SEARCH_LIMIT {
            let shapes = self.shapes(side, side);
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

    /// The shape of every slot for a `height`x`width` image (`None` where it would be
    /// empty or cannot be computed).
    fn shapes(&self, height: usize, width: usize) -> Vec<Option<Vec<usize>>> {
        let mut shapes: Vec<Option<Vec<usize>>> = vec![None; self.slot_count];
        shapes[0] = Some(if self.nhwc_input {
            vec![1, height, width, 3]
        } else {
            vec![1, 3, height, width]
        });
        for step in &self.steps {
            let inputs: Option<Vec<&[usize]>> = step
                .inputs
                .iter()
                .map(|input| match input {
                    Operand::Slot(slot) => shapes[*slot].as_deref(),
                    Operand::Const(value) => Some(value.shape.as_slice()),
                })
                .collect();
            shapes[step.output] = inputs.and_then(|inputs| step.op.output_shape(&inputs));
        }
        shapes
    }

    /// Which steps the values of the `wanted` slots depend on.
    fn needed_steps(&self, wanted: &[usize]) -> Vec<bool> {
        let mut needed_slots = vec![false; self.slot_count];
        for &slot in wanted {
            needed_slots[slot] = true;
        }
        let mut needed_steps = vec![false; self.steps.len()];
        for (index, step) in self.steps.iter().enumerate().rev() {
            if needed_slots[step.output] {
                needed_steps[index] = true;
                for operand in &step.inputs {
                    if let Operand::Slot(slot) = operand {
                        needed_slots[*slot] = true;
                    }
                }
            }
        }
        needed_steps
    }

    /// Drops the steps, with their weights, that no dreamable layer depends on (such as a
    /// classifier head the layer namer hides: VGG16's file carries a tumour classifier).
    fn drop_unused_steps(&mut self) {
        let needed = self.needed_steps(&self.layer_slots);
        let mut index = 0;
        self.steps.retain(|_| {
            index += 1;
            needed[index - 1]
        });
    }

    /// Runs the steps needed for `wanted` slots and returns their values.
    fn run(&self, input: Tensor<4>, wanted: &[usize]) -> Result<Vec<Value>> {
        let needed_steps = self.needed_steps(wanted);
        let mut last_use = vec![usize::MAX; self.slot_count];
        for (index, step) in self.steps.iter().enumerate() {
            if needed_steps[index] {
                for operand in &step.inputs {
                    if let Operand::Slot(slot) = operand {
                        last_use[*slot] = index;
                    }
                }
            }
        }
        for &slot in wanted {
            last_use[slot] = usize::MAX;
        }

        let input = if self.nhwc_input {
            input.permute([0, 2, 3, 1])
        } else {
            input
        };
        let mut values: Vec<Option<Value>> = vec![None; self.slot_count];
        values[0] = Some(Value::full_rank(input));
        for (index, step) in self.steps.iter().enumerate() {
            if !needed_steps[index] {
                continue;
            }
            // A value used for the last time moves into the operation (the operation may then
            // change it in place), unless the step reads it again further on.
            let inputs: Vec<Value> = (step.inputs.iter().enumerate())
                .map(|(position, operand)| match operand {
                    Operand::Slot(slot) => {
                        let again = step.inputs[position + 1..]
                            .iter()
                            .any(|later| matches!(later, Operand::Slot(s) if s == slot));
                        let value = if last_use[*slot] == index && !again {
                            values[*slot].take()
                        } else {
                            values[*slot].clone()
                        };
                        value.expect("slot computed earlier")
                    }
                    Operand::Const(value) => value.as_ref().clone(),
                })
                .collect();
            let output = step.op.run(inputs).map_err(|detail| match &step.op {
                Op::Unsupported { op, .. } => Error::UnsupportedOperator {
                    op: op.clone(),
                    node: step.raw_name.clone(),
                    detail,
                },
                _ => Error::InvalidParameter(format!(
                    "node '{}' ({}) failed: {detail}",
                    step.raw_name, step.node
                )),
            })?;
            values[step.output] = Some(output);
            for operand in &step.inputs {
                if let Operand::Slot(slot) = operand
                    && last_use[*slot] == index
                {
                    values[*slot] = None;
                }
            }
        }
        Ok(wanted
            .iter()
            .map(|&slot| values[slot].clone().expect("wanted slot computed"))
            .collect())
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
        let shape = self.shapes(height, width)[self.layer_slots[layer]].clone()?;
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

    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>> {
        let wanted: Vec<usize> = layer_indices
            .iter()
            .map(|&index| self.layer_slots[index])
            .collect();
        let values = self.run(input, &wanted)?;
        Ok(values.into_iter().map(Value::into_nchw).collect())
    }
}

/// A [`LayerNamer`] that shows raw node names unchanged.
pub fn raw_layer_name(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_string())
}

/// Whether the graph input is declared channels-last (`[N, H, W, 3]`).
fn is_nhwc(input: &Argument) -> bool {
    match &input.ty {
        ArgType::Tensor(tensor) => match tensor.static_shape.as_deref() {
            Some([_, c1, _, c3]) => *c3 == Some(3) && *c1 != Some(3),
            _ => false,
        },
        _ => false,
    }
}

/// The raw ONNX operator type that an `onnx-ir` node comes from, where it maps one to one.
/// `Linear` nodes come from `Gemm` or `MatMul` (+`Add`), whichever the raw graph uses.
fn raw_op_type(node: &Node, raw_linear: Option<&'static str>) -> Option<String> {
    let node_type = node.node_type().to_string();
    Some(match node_type.as_str() {
        "Conv2d" => "Conv".into(),
        "MaxPool2d" => "MaxPool".into(),
        "AveragePool2d" => "AveragePool".into(),
        "Lrn" => "LRN".into(),
        "Linear" => raw_linear?.into(),
        "Constant" => return None,
        _ => node_type,
    })
}

/// For each `onnx-ir` node, the name of the raw graph node it came from (matched by operator
/// type and order), else its first raw output name, else the `onnx-ir` name.
fn match_raw_names(nodes: &[Node], raw: &ModelProto) -> Vec<String> {
    let mut raw_by_type: HashMap<&str, Vec<String>> = HashMap::new();
    for node in &raw.graph.node {
        let name = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        raw_by_type
            .entry(node.op_type.as_str())
            .or_default()
            .push(name);
    }
    let raw_linear = match (
        raw_by_type.contains_key("Gemm"),
        raw_by_type.contains_key("MatMul"),
    ) {
        (true, false) => Some("Gemm"),
        (false, true) => Some("MatMul"),
        _ => None,
    };
    let mut ir_counts: HashMap<String, usize> = HashMap::new();
    for node in nodes {
        if let Some(op) = raw_op_type(node, raw_linear) {
            *ir_counts.entry(op).or_default() += 1;
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    nodes
        .iter()
        .map(|node| {
            let fallback = node.name().to_string();
            let Some(op) = raw_op_type(node, raw_linear) else {
                return fallback;
            };
            let index = seen.entry(op.clone()).or_default();
            let position = *index;
            *index += 1;
            match raw_by_type.get(op.as_str()) {
                Some(names) if names.len() == ir_counts[&op] => names[position].clone(),
                _ => fallback,
            }
        })
        .collect()
}

/// Turns a node input into an operand: a slot for values computed at run time, a constant
/// for initializers and constant nodes.
fn operand(
    arg: &Argument,
    slots: &HashMap<String, usize>,
    device: &Device,
) -> std::result::Result<Operand, String> {
    if let Some(&slot) = slots.get(&arg.name)
        && arg.is_dynamic()
    {
        return Ok(Operand::Slot(slot));
    }
    match arg.value() {
        Some(data) => Ok(Operand::Const(Box::new(Value::from_data(data, device)?))),
        None => slots
            .get(&arg.name)
            .map(|&slot| Operand::Slot(slot))
            .ok_or_else(|| format!("input '{}' is not produced by any node", arg.name)),
    }
}

/// The constant tensor of input `index`, if it is one.
fn constant(node: &Node, index: usize, device: &Device) -> std::result::Result<Value, String> {
    let arg = node
        .inputs()
        .get(index)
        .filter(|arg| !arg.is_optional())
        .ok_or_else(|| format!("missing input {index}"))?;
    let data = arg
        .value()
        .ok_or_else(|| format!("input {index} ('{}') must be a constant", arg.name))?;
    Value::from_data(data, device)
}

fn optional_constant(
    node: &Node,
    index: usize,
    device: &Device,
) -> std::result::Result<Option<Value>, String> {
    match node.inputs().get(index) {
        Some(arg) if !arg.is_optional() => constant(node, index, device).map(Some),
        _ => Ok(None),
    }
}

fn padding_of(
    padding: &onnx_ir::node::padding::PaddingConfig2d,
    auto: &onnx_ir::node::padding::AutoPad,
) -> Padding {
    use onnx_ir::node::padding::AutoPad;
    match auto {
        AutoPad::SameUpper => Padding::Same { upper: true },
        AutoPad::SameLower => Padding::Same { upper: false },
        AutoPad::Valid => Padding::Explicit([(0, 0), (0, 0)]),
        AutoPad::NotSet => {
            let (top, left, bottom, right) = padding.as_tuple();
            Padding::Explicit([(top, bottom), (left, right)])
        }
    }
}

/// Converts one `onnx-ir` node into an [`Op`]. Operators the executor does not run become
/// [`Op::Unsupported`], an error only if a forward pass needs them.
fn convert(node: &Node, device: &Device) -> std::result::Result<Op, String> {
    let unsupported = |detail: &str| Op::Unsupported {
        op: node.node_type().to_string(),
        detail: detail.to_string(),
    };
    Ok(match node {
        Node::Conv2d(conv) => {
            let c = &conv.config;
            Op::Conv {
                weight: constant(node, 1, device)?.into_nchw(),
                bias: optional_constant(node, 2, device)?.map(Value::into_vector),
                stride: c.stride,
                padding: padding_of(&c.padding, &c.auto_pad),
                dilation: c.dilation,
                groups: c.groups,
            }
        }
        Node::Relu(_) => Op::Relu,
        Node::Sigmoid(_) => Op::Sigmoid,
        Node::Clip(clip) => {
            use onnx_ir::node::clip::ClipInput;
            let bound = |input: &Option<ClipInput>, default: f32| match input {
                None => Ok(default),
                Some(ClipInput::Static(value)) => Ok(*value as f32),
                Some(ClipInput::Runtime(_)) => Err(()),
            };
            match (
                bound(&clip.config.min, f32::NEG_INFINITY),
                bound(&clip.config.max, f32::INFINITY),
            ) {
                (Ok(min), Ok(max)) => Op::Clip { min, max },
                _ => unsupported(" (bounds computed at run time)"),
            }
        }
        Node::MaxPool2d(pool) => {
            let c = &pool.config;
            Op::MaxPool {
                kernel: c.kernel_size,
                stride: c.strides,
                padding: padding_of(&c.padding, &c.auto_pad),
                dilation: c.dilation,
                ceil: c.ceil_mode,
            }
        }
        Node::AveragePool2d(pool) => {
            let c = &pool.config;
            if c.dilation != [1, 1] {
                return Ok(unsupported(" (dilated average pooling)"));
            }
            Op::AvgPool {
                kernel: c.kernel_size,
                stride: c.strides,
                padding: padding_of(&c.padding, &c.auto_pad),
                ceil: c.ceil_mode,
                count_pad: c.count_include_pad,
            }
        }
        Node::GlobalAveragePool(_) => Op::GlobalAvgPool,
        Node::Lrn(lrn) => {
            let c = &lrn.config;
            Op::Lrn {
                alpha: c.alpha,
                beta: c.beta,
                bias: c.bias,
                size: c.size.max(1) as usize,
            }
        }
        Node::BatchNormalization(bn) => {
            use onnx_ir::node::batch_norm::BatchNormConfig;
            let epsilon = match &bn.config {
                BatchNormConfig::Static(c) => c.epsilon,
                BatchNormConfig::Runtime(c) => c.epsilon,
            } as f32;
            let [gamma, beta, mean, var] =
                [1, 2, 3, 4].map(|i| constant(node, i, device).map(Value::into_vector));
            let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
            let scale = gamma.div(var.add_scalar(epsilon).sqrt());
            let shift = beta.sub(mean.mul(scale.clone()));
            let channels = scale.dims()[0];
            Op::BatchNorm {
                scale: scale.reshape([1, channels, 1, 1]),
                shift: shift.reshape([1, channels, 1, 1]),
            }
        }
        Node::Add(_) => Op::Binary(Binary::Add),
        Node::Sub(_) => Op::Binary(Binary::Sub),
        Node::Mul(_) => Op::Binary(Binary::Mul),
        Node::Div(_) => Op::Binary(Binary::Div),
        Node::Concat(concat) => Op::Concat {
            axis: concat.config.axis,
        },
        Node::Transpose(transpose) => Op::Transpose {
            perm: transpose.config.perm.iter().map(|&p| p as usize).collect(),
        },
        Node::Reshape(reshape) => {
            use onnx_ir::node::reshape::ReshapeInput;
            match &reshape.config.shape {
                ReshapeInput::Static(shape) => Op::Reshape {
                    shape: shape.clone(),
                },
                ReshapeInput::Runtime(_) => unsupported(" (shape computed at run time)"),
            }
        }
        Node::Flatten(flatten) => Op::Flatten {
            axis: flatten.config.axis,
        },
        Node::Linear(linear) => {
            let weight = constant(node, 1, device)?.into_matrix()?;
            let weight = if linear.config.transpose_weight {
                weight.transpose()
            } else {
                weight
            };
            Op::Linear {
                weight,
                bias: optional_constant(node, 2, device)?.map(Value::into_vector),
            }
        }
        Node::Gemm(gemm) => {
            let c = &gemm.config;
            if c.trans_a != 0 {
                return Ok(unsupported(" (transA)"));
            }
            let weight = constant(node, 1, device)?.into_matrix()?;
            let weight = if c.trans_b != 0 {
                weight.transpose()
            } else {
                weight
            };
            Op::Linear {
                weight: weight.mul_scalar(c.alpha),
                bias: optional_constant(node, 2, device)?
                    .map(|bias| bias.into_vector().mul_scalar(c.beta)),
            }
        }
        Node::MatMul(_) => match constant(node, 1, device) {
            Ok(weight) => Op::Linear {
                weight: weight.into_matrix()?,
                bias: None,
            },
            Err(_) => unsupported(" (both operands computed at run time)"),
        },
        Node::Softmax(softmax) => Op::Softmax {
            axis: softmax.config.axis,
        },
        Node::Dropout(_) | Node::Identity(_) => Op::Identity,
        _ => unsupported(""),
    })
}

impl Padding {
    fn resolve(
        &self,
        size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [(usize, usize); 2] {
        match self {
            Padding::Explicit(padding) => *padding,
            Padding::Same { upper } => {
                [0, 1].map(|d| same_padding(size[d], kernel[d], stride[d], dilation[d], *upper))
            }
        }
    }
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |shape: &[usize], i: usize| {
        let offset = rank - shape.len();
        if i < offset { 1 } else { shape[i - offset] }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Resolves an ONNX `Reshape` target (0 copies a dimension, −1 is inferred).
fn reshape_target(input: &[usize], target: &[i64]) -> Option<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut shape: Vec<usize> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &dim) in target.iter().enumerate() {
        match dim {
            0 => shape.push(*input.get(i)?),
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            d if d > 0 => shape.push(d as usize),
            _ => return None,
        }
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return None;
        }
        shape[i] = total / known;
    }
    (shape.iter().product::<usize>() == total).then_some(shape)
}

impl Op {
    /// Whether the operator holds its constant inputs itself (convolution weights, fully
    /// connected weights, batch-norm statistics) and reads only its first input.
    fn absorbs_constants(&self) -> bool {
        matches!(
            self,
            Op::Conv { .. } | Op::Linear { .. } | Op::BatchNorm { .. }
        )
    }

    /// The output shape for the given input shapes, or `None` if it would be empty or is
    /// undefined.
    fn output_shape(&self, inputs: &[&[usize]]) -> Option<Vec<usize>> {
        let first = inputs.first()?;
        let spatial = |kernel: [usize; 2],
                       stride: [usize; 2],
                       dilation: [usize; 2],
                       padding: &Padding,
                       ceil: bool,
                       channels: usize| {
            let [n, _, h, w] = <[usize; 4]>::try_from(*first).ok()?;
            let pad = padding.resolve([h, w], kernel, stride, dilation);
            let oh = window_output(h, kernel[0], stride[0], dilation[0], pad[0], ceil)?;
            let ow = window_output(w, kernel[1], stride[1], dilation[1], pad[1], ceil)?;
            Some(vec![n, channels, oh, ow])
        };
        match self {
            Op::Conv {
                weight,
                stride,
                padding,
                dilation,
                ..
            } => {
                let [out, _, kh, kw] = weight.dims();
                spatial([kh, kw], *stride, *dilation, padding, false, out)
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
                dilation,
                ceil,
            } => spatial(*kernel, *stride, *dilation, padding, *ceil, *first.get(1)?),
            Op::AvgPool {
                kernel,
                stride,
                padding,
                ceil,
                ..
            } => spatial(*kernel, *stride, [1, 1], padding, *ceil, *first.get(1)?),
            Op::GlobalAvgPool => (first.len() == 4).then(|| vec![first[0], first[1], 1, 1]),
            Op::Relu
            | Op::Clip { .. }
            | Op::Sigmoid
            | Op::Lrn { .. }
            | Op::BatchNorm { .. }
            | Op::Softmax { .. }
            | Op::Identity => Some(first.to_vec()),
            Op::Binary(_) => broadcast_shape(first, inputs.get(1)?),
            Op::Concat { axis } => {
                let mut shape = first.to_vec();
                shape[*axis] = inputs
                    .iter()
                    .map(|s| s.get(*axis).copied())
                    .sum::<Option<usize>>()?;
                Some(shape)
            }
            Op::Transpose { perm } => perm.iter().map(|&p| first.get(p).copied()).collect(),
            Op::Reshape { shape } => reshape_target(first, shape),
            Op::Flatten { axis } => Some(vec![
                first[..*axis].iter().product(),
                first[*axis..].iter().product(),
            ]),
            Op::Linear { weight, .. } => {
                let mut shape = first.to_vec();
                *shape.last_mut()? = weight.dims()[1];
                Some(shape)
            }
            Op::Unsupported { .. } => None,
        }
    }

    /// Runs the operator.
    fn run(&self, mut inputs: Vec<Value>) -> std::result::Result<Value, String> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| v.shape.clone()).collect();
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let out_shape = self.output_shape(&shape_refs);
        let x = inputs.remove(0);
        let spatial_input = || -> std::result::Result<(Tensor<4>, [usize; 2]), String> {
            if x.shape.len() != 4 {
                return Err(format!("expects a 4-D input, got shape {:?}", x.shape));
            }
            Ok((x.tensor.clone(), [x.shape[2], x.shape[3]]))
        };
        let empty = || format!("input of shape {:?} gives an empty output", shapes[0]);
        Ok(match self {
            Op::Conv {
                weight,
                bias,
                stride,
                padding,
                dilation,
                groups,
            } => {
                let (t, size) = spatial_input()?;
                out_shape.ok_or_else(empty)?;
                let [_, _, kh, kw] = weight.dims();
                let pad = padding.resolve(size, [kh, kw], *stride, *dilation);
                let options = ConvOptions {
                    stride: *stride,
                    padding: pad,
                    dilation: *dilation,
                    groups: *groups,
                };
                Value::full_rank(conv2d(t, weight.clone(), bias.clone(), options))
            }
            Op::Relu => x.map(crate::backend::relu),
            Op::Clip { min, max } => x.map(|t| crate::backend::clamp(t, *min, *max)),
            Op::Sigmoid => x.map(activation::sigmoid),
            Op::MaxPool {
                kernel,
                stride,
                padding,
                dilation,
                ceil,
            } => {
                let (t, size) = spatial_input()?;
                out_shape.ok_or_else(empty)?;
                let padding = padding.resolve(size, *kernel, *stride, *dilation);
                let options = MaxPoolOptions {
                    kernel_size: *kernel,
                    stride: *stride,
                    padding,
                    dilation: *dilation,
                    ceil_mode: *ceil,
                };
                Value::full_rank(max_pool2d(t, options))
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
                ceil,
                count_pad,
            } => {
                let (t, size) = spatial_input()?;
                out_shape.ok_or_else(empty)?;
                let padding = padding.resolve(size, *kernel, *stride, [1, 1]);
                let options = AvgPoolOptions {
                    kernel_size: *kernel,
                    stride: *stride,
                    padding,
                    count_include_pad: *count_pad,
                    ceil_mode: *ceil,
                };
                Value::full_rank(avg_pool2d(t, options))
            }
            Op::GlobalAvgPool => {
                let (t, _) = spatial_input()?;
                Value::full_rank(t.mean_dim(3).mean_dim(2))
            }
            Op::Lrn {
                alpha,
                beta,
                bias,
                size,
            } => {
                let (t, _) = spatial_input()?;
                let [n, c, h, w] = t.dims();
                // The sum of squares over a window of channels, as an average pool over the
                // channel axis that counts the zero padding.
                let squares = t.clone().powi_scalar(2).reshape([n, 1, c, h * w]);
                let lo = (size - 1) / 2;
                let options = AvgPoolOptions {
                    kernel_size: [*size, 1],
                    stride: [1, 1],
                    padding: [(lo, size - 1 - lo), (0, 0)],
                    count_include_pad: true,
                    ceil_mode: false,
                };
                let mean = avg_pool2d(squares, options).reshape([n, c, h, w]);
                let denominator = mean.mul_scalar(*alpha).add_scalar(*bias).powf_scalar(*beta);
                Value::full_rank(t.div(denominator))
            }
            Op::BatchNorm { scale, shift } => {
                let (t, _) = spatial_input()?;
                Value::full_rank(t.mul(scale.clone()).add(shift.clone()))
            }
            Op::Binary(kind) => {
                let y = inputs.remove(0);
                let shape = out_shape.ok_or_else(|| {
                    format!("shapes {:?} and {:?} do not broadcast", x.shape, y.shape)
                })?;
                let rank = shape.len();
                let (a, b) = (x.aligned(rank), y.aligned(rank));
                let tensor = match kind {
                    Binary::Add => a.add(b),
                    Binary::Sub => a.sub(b),
                    Binary::Mul => a.mul(b),
                    Binary::Div => a.div(b),
                };
                Value { tensor, shape }
            }
            Op::Concat { axis } => {
                let shape = out_shape.ok_or_else(|| "inputs of different shapes".to_string())?;
                let mut tensors = vec![x.tensor];
                tensors.extend(inputs.into_iter().map(|v| v.tensor));
                Value {
                    tensor: Tensor::cat(tensors, *axis),
                    shape,
                }
            }
            Op::Transpose { perm } => {
                let shape = out_shape.ok_or_else(|| format!("bad permutation {perm:?}"))?;
                let mut full = [0, 1, 2, 3];
                full[..perm.len()].copy_from_slice(perm);
                Value {
                    tensor: x.tensor.permute(full),
                    shape,
                }
            }
            Op::Reshape { shape } => {
                let target = out_shape
                    .ok_or_else(|| format!("cannot reshape {:?} to {shape:?}", x.shape))?;
                x.with_shape(target)?
            }
            Op::Flatten { .. } => x.with_shape(out_shape.ok_or_else(empty)?)?,
            Op::Linear { weight, bias } => {
                let shape = out_shape.ok_or_else(empty)?;
                let inner = *x.shape.last().ok_or_else(empty)?;
                let rows = x.shape.iter().product::<usize>() / inner;
                if inner != weight.dims()[0] {
                    return Err(format!(
                        "input has {inner} features, the weight expects {}",
                        weight.dims()[0]
                    ));
                }
                let mut y = x.tensor.reshape([rows, inner]).matmul(weight.clone());
                if let Some(bias) = bias {
                    y = y.add(bias.clone().unsqueeze::<2>());
                }
                Value {
                    tensor: y.reshape(padded(&shape)?),
                    shape,
                }
            }
            Op::Softmax { axis } => {
                let axis = *axis;
                x.map(|t| activation::softmax(t, axis))
            }
            Op::Identity => x,
            Op::Unsupported { detail, .. } => return Err(detail.clone()),
        })
    }
}

/// A shape padded with trailing ones to rank 4.
fn padded(shape: &[usize]) -> std::result::Result<[usize; 4], String> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(format!("tensors of rank {} are not supported", shape.len()));
    }
    let mut full = [1; 4];
    full[..shape.len()].copy_from_slice(shape);
    Ok(full)
}

impl Value {
    fn full_rank(tensor: Tensor<4>) -> Self {
        let shape = tensor.dims().to_vec();
        Value { tensor, shape }
    }

    fn from_data(data: TensorData, device: &Device) -> std::result::Result<Self, String> {
        let shape = data.shape().to_vec();
        let values: Vec<f32> = data
            .convert::<f32>()
            .try_to_vec()
            .map_err(|e| format!("unreadable constant: {e:?}"))?;
        let shape = if shape.is_empty() { vec![1] } else { shape };
        let tensor = Tensor::<1>::from_floats(values.as_slice(), device).reshape(padded(&shape)?);
        Ok(Value { tensor, shape })
    }

    fn map(self, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Self {
        Value {
            tensor: f(self.tensor),
            shape: self.shape,
        }
    }

    fn with_shape(self, shape: Vec<usize>) -> std::result::Result<Self, String> {
        Ok(Value {
            tensor: self.tensor.reshape(padded(&shape)?),
            shape,
        })
    }

    /// The tensor laid out for broadcasting against a tensor of logical rank `rank`.
    fn aligned(self, rank: usize) -> Tensor<4> {
        let mut shape = vec![1; rank - self.shape.len()];
        shape.extend_from_slice(&self.shape);
        let full = padded(&shape).expect("rank checked by output_shape");
        self.tensor.reshape(full)
    }

    fn into_nchw(self) -> Tensor<4> {
        self.tensor
    }

    fn into_vector(self) -> Tensor<1> {
        let len: usize = self.shape.iter().product();
        self.tensor.reshape([len])
    }

    fn into_matrix(self) -> std::result::Result<Tensor<2>, String> {
        match self.shape.as_slice() {
            [rows, cols] => Ok(self.tensor.reshape([*rows, *cols])),
            other => Err(format!("expected a matrix, got shape {other:?}")),
        }
    }
}

/// The path of the ONNX file and the layers found, for `deepdream layers --weights`.
impl std::fmt::Debug for OnnxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxNetwork")
            .field("steps", &self.steps.len())
            .field("layers", &self.layers)
            .finish()
    }
}
