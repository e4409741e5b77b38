//! Reading an ONNX file into a [`Program`]: the graph parsed by `onnx-ir`, each node
//! converted into an operator, and each node matched with the raw graph's node it came
//! from, whose name is what users see.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use onnx_ir::{ArgType, Argument, Message, ModelProto, Node, OnnxGraphBuilder};

use crate::backend::graph::Padding;
use crate::error::{Error, Result};
use crate::networks::onnx::ops::{Binary, Op, Value};
use crate::networks::onnx::program::{Operand, Program, Step};

/// Reads the ONNX file at `path` into a program whose constants live on `device`.
pub(super) fn read(path: &Path, device: &Device) -> Result<Program> {
    let onnx_err = |reason: String| Error::Onnx {
        path: path.to_path_buf(),
        reason,
    };
    // The file is mapped, not read: both parses take the tensors' bytes from the page cache
    // without copying them (VGG16's file is half a gigabyte).
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if length == 0 {
        return Err(onnx_err("the file is empty".into()));
    }
    // SAFETY: the mapping is only read, and lives as long as the parsed tensors that refer to
    // it; as with any mapped file (onnx-ir maps it too), the file must not be cut short while
    // it is being read.
    let mapped = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bytes = bytes::Bytes::from_owner(mapped);
    let raw = ModelProto::parse_from_tokio_bytes(&bytes)
        .map_err(|e| onnx_err(format!("not a valid ONNX file ({e})")))?;
    if raw.graph.node.is_empty() {
        return Err(onnx_err(
            "the graph has no nodes (not an ONNX model?)".into(),
        ));
    }
    let graph = OnnxGraphBuilder::new()
        .simplify(false)
        .parse_file(path)
        .map_err(|e| onnx_err(e.to_string()))?;

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
        let op = convert(node, device)
            .map_err(|reason| onnx_err(format!("node '{}' ({raw_name}): {reason}", node.name())))?;
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
    Ok(Program {
        steps,
        slot_count: slots.len(),
        nhwc_input,
    })
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
        AutoPad::Valid => Padding::Fixed([(0, 0), (0, 0)]),
        AutoPad::NotSet => {
            let (top, left, bottom, right) = padding.as_tuple();
            Padding::Fixed([(top, bottom), (left, right)])
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
