//! A network as a graph of operations, described once and run by every device: on burn's
//! tensors by [`Graph::run`] (through this layer's fast CPU kernels), and on NVIDIA GPUs by
//! the CUDA executor. [`Graph::plan`] works out, for one input size, which nodes run, every
//! value's shape and each window's padding with its odd pixels made explicit.

use burn::tensor::Tensor;
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};

use crate::backend::activation::{clamp, lrn, relu};
use crate::backend::conv::conv2d;
use crate::backend::geometry::{same_padding, window_output};
use crate::backend::pool::{avg_pool2d, max_pool2d};
use crate::error::{Error, Result};

/// Spatial padding: fixed `[(top, bottom), (left, right)]`, or TensorFlow/ONNX `SAME` (the
/// odd pixel at the end when `upper`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Padding {
    /// Fixed padding.
    Fixed([(usize, usize); 2]),
    /// `SAME`: output `ceil(size / stride)`.
    Same {
        /// Whether the odd pixel goes at the end.
        upper: bool,
    },
}

impl Padding {
    /// The padding `[(top, bottom), (left, right)]` of a window on a `size` input.
    pub fn resolve(
        &self,
        size: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [(usize, usize); 2] {
        match self {
            Padding::Fixed(padding) => *padding,
            Padding::Same { upper } => {
                [0, 1].map(|d| same_padding(size[d], kernel[d], stride[d], dilation[d], *upper))
            }
        }
    }
}

/// One operation, on `[1, C, H, W]` values.
#[derive(Clone, Debug)]
pub enum Operation {
    /// Convolution.
    Conv {
        /// The weights, `[out, in / groups, kh, kw]`.
        weight: Tensor<4>,
        /// One per output channel, if any.
        bias: Option<Tensor<1>>,
        /// Stride (rows, columns).
        stride: [usize; 2],
        /// Padding.
        padding: Padding,
        /// Dilation (rows, columns).
        dilation: [usize; 2],
        /// Groups.
        groups: usize,
    },
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, low), high)`.
    Clip {
        /// Lowest value.
        low: f32,
        /// Highest value.
        high: f32,
    },
    /// Max pooling.
    MaxPool {
        /// Window (rows, columns).
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding.
        padding: Padding,
        /// Whether the output size rounds up.
        ceil: bool,
    },
    /// Average pooling.
    AvgPool {
        /// Window (rows, columns).
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding.
        padding: Padding,
        /// Whether the output size rounds up.
        ceil: bool,
        /// Whether padding counts in the average.
        count_pad: bool,
    },
    /// Local response normalisation across channels (ONNX's definition).
    Lrn {
        /// Channels in the window.
        size: usize,
        /// Scale of the sum of squares.
        alpha: f32,
        /// Exponent.
        beta: f32,
        /// Added before the exponent.
        bias: f32,
    },
    /// `x · scale[c] + shift[c]` per channel (an inference batch norm).
    Scale {
        /// Per-channel factor.
        scale: Tensor<1>,
        /// Per-channel offset.
        shift: Tensor<1>,
    },
    /// The values in one column, `[1, C·H·W, 1, 1]` (ONNX's `Flatten`).
    Flatten,
    /// The mean of each channel: `[1, C, 1, 1]`.
    GlobalAvgPool,
    /// A fully connected layer on the flattened input: `[1, outputs, 1, 1]`.
    Linear {
        /// The weights, `[inputs, outputs]`.
        weight: Tensor<2>,
        /// One per output, if any.
        bias: Option<Tensor<1>>,
    },
    /// `x · factor`.
    Multiply {
        /// The factor.
        factor: f32,
    },
    /// The sum of two values of the same shape.
    Add,
    /// Concatenation along channels.
    Concat,
}

/// One node: an operation on earlier values. Value 0 is the input image, value `i + 1` the
/// output of node `i`.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computes.
    pub operation: Operation,
    /// The values it reads.
    pub inputs: Vec<usize>,
}

/// A network as a graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The nodes, each reading only earlier values.
    pub nodes: Vec<Node>,
}

/// A `[1, C, H, W]` shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl Shape {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a node runs at one input size.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The node's index.
    pub node: usize,
    /// Its inputs' shapes.
    pub inputs: Vec<Shape>,
    /// Its output's shape.
    pub output: Shape,
    /// Windowed operations: the padding `[(top, bottom), (left, right)]`, the odd pixels of
    /// asymmetric padding and of rounded-up outputs included.
    pub padding: [(usize, usize); 2],
}

impl Step {
    /// Whether the padding differs between the two sides of an axis (cuDNN pads both sides
    /// alike, so the input is padded by hand first).
    pub fn asymmetric(&self) -> bool {
        self.padding.iter().any(|(a, b)| a != b)
    }

    /// The shape of the input padded by hand, for a step whose padding is asymmetric.
    pub fn padded_input(&self) -> Option<Shape> {
        let [(top, bottom), (left, right)] = self.padding;
        self.asymmetric().then(|| Shape {
            channels: self.inputs[0].channels,
            height: self.inputs[0].height + top + bottom,
            width: self.inputs[0].width + left + right,
        })
    }
}

/// The steps that compute some values of a graph for one input size, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The steps, in graph order; nodes nothing wanted depends on are left out.
    pub steps: Vec<Step>,
    /// The shape of every value (`None` for values not computed).
    pub shapes: Vec<Option<Shape>>,
    /// The values it was made for.
    pub wanted: Vec<usize>,
}

impl Plan {
    /// The shapes of `values`, each one the plan computes.
    pub fn shapes_of(&self, values: &[usize]) -> Vec<Shape> {
        values
            .iter()
            .map(|&value| self.shapes[value].expect("a planned value"))
            .collect()
    }
}

/// The input image's value.
pub const INPUT: usize = 0;

impl Graph {
    /// Adds a node; its output's value.
    pub fn push(&mut self, operation: Operation, inputs: Vec<usize>) -> usize {
        self.nodes.push(Node { operation, inputs });
        self.nodes.len()
    }

    /// Runs the nodes the `wanted` values need on `input` (`[1, C, H, W]`) with burn's
    /// tensors, dropping each value after its last use, and returns the wanted values.
    pub fn run(&self, input: Tensor<4>, wanted: &[usize]) -> Result<Vec<Tensor<4>>> {
        let [_, channels, height, width] = input.dims();
        let plan = self.plan(
            Shape {
                channels,
                height,
                width,
            },
            wanted,
        )?;
        let mut last_use = vec![usize::MAX; self.nodes.len() + 1];
        for step in &plan.steps {
            for &v in &self.nodes[step.node].inputs {
                last_use[v] = step.node;
            }
        }
        for &v in wanted {
            last_use[v] = usize::MAX;
        }
        let mut values: Vec<Option<Tensor<4>>> = vec![None; self.nodes.len() + 1];
        values[INPUT] = Some(input);
        for step in &plan.steps {
            let node = &self.nodes[step.node];
            let inputs: Vec<Tensor<4>> = node
                .inputs
                .iter()
                .map(|&v| {
                    let value = if last_use[v] == step.node
                        && node.inputs.iter().filter(|&&u| u == v).count() == 1
                    {
                        values[v].take()
                    } else {
                        values[v].clone()
                    };
                    value.expect("computed earlier")
                })
                .collect();
            values[step.node + 1] = Some(node.operation.run(inputs, step));
            for &v in &node.inputs {
                if last_use[v] == step.node {
                    values[v] = None;
                }
            }
        }
        Ok(wanted
            .iter()
            .map(|&v| values[v].clone().expect("wanted value computed"))
            .collect())
    }

    /// Plans computing `wanted` values for a `channels`x`height`x`width` input; an error if
    /// a value would be empty or the shapes do not fit.
    pub fn plan(&self, input: Shape, wanted: &[usize]) -> Result<Plan> {
        let values = self.nodes.len() + 1;
        let mut needed = vec![false; values];
        for &value in wanted {
            if value >= values {
                return Err(Error::InvalidParameter(format!(
                    "the graph has no value {value}"
                )));
            }
            needed[value] = true;
        }
        for (index, node) in self.nodes.iter().enumerate().rev() {
            if needed[index + 1] {
                for &input in &node.inputs {
                    needed[input] = true;
                }
            }
        }
        let mut shapes: Vec<Option<Shape>> = vec![None; values];
        shapes[0] = Some(input);
        let mut steps = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if !needed[index + 1] {
                continue;
            }
            let inputs: Vec<Shape> = node
                .inputs
                .iter()
                .map(|&v| shapes[v].expect("inputs come earlier"))
                .collect();
            let (output, padding) = output_shape(&node.operation, &inputs).ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "node {index} ({}) gives no output for inputs {inputs:?}",
                    node.operation.name()
                ))
            })?;
            shapes[index + 1] = Some(output);
            steps.push(Step {
                node: index,
                inputs,
                output,
                padding,
            });
        }
        Ok(Plan {
            steps,
            shapes,
            wanted: wanted.to_vec(),
        })
    }
}

impl Operation {
    /// The operation's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Conv { .. } => "Conv",
            Operation::Relu => "Relu",
            Operation::Clip { .. } => "Clip",
            Operation::MaxPool { .. } => "MaxPool",
            Operation::AvgPool { .. } => "AveragePool",
            Operation::Lrn { .. } => "LRN",
            Operation::Scale { .. } => "BatchNormalization",
            Operation::Multiply { .. } => "Mul",
            Operation::Add => "Add",
            Operation::Concat => "Concat",
            Operation::Flatten => "Flatten",
            Operation::GlobalAvgPool => "GlobalAveragePool",
            Operation::Linear { .. } => "Gemm",
        }
    }

    /// The operation on burn tensors, as `step` plans it.
    fn run(&self, mut inputs: Vec<Tensor<4>>, step: &Step) -> Tensor<4> {
        let x = inputs.remove(0);
        let size = [step.inputs[0].height, step.inputs[0].width];
        match self {
            Operation::Conv {
                weight,
                bias,
                stride,
                padding,
                dilation,
                groups,
            } => {
                let [_, _, kh, kw] = weight.dims();
                let options = ConvOptions {
                    stride: *stride,
                    padding: padding.resolve(size, [kh, kw], *stride, *dilation),
                    dilation: *dilation,
                    groups: *groups,
                };
                conv2d(x, weight.clone(), bias.clone(), options)
            }
            Operation::Relu => relu(x),
            Operation::Clip { low, high } => clamp(x, *low, *high),
            Operation::MaxPool {
                kernel,
                stride,
                padding,
                ceil,
            } => max_pool2d(
                x,
                MaxPoolOptions {
                    kernel_size: *kernel,
                    stride: *stride,
                    padding: padding.resolve(size, *kernel, *stride, [1, 1]),
                    dilation: [1, 1],
                    ceil_mode: *ceil,
                },
            ),
            Operation::AvgPool {
                kernel,
                stride,
                padding,
                ceil,
                count_pad,
            } => avg_pool2d(
                x,
                AvgPoolOptions {
                    kernel_size: *kernel,
                    stride: *stride,
                    padding: padding.resolve(size, *kernel, *stride, [1, 1]),
                    count_include_pad: *count_pad,
                    ceil_mode: *ceil,
                },
            ),
            Operation::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => lrn(x, *size, *alpha, *beta, *bias),
            Operation::Scale { scale, shift } => {
                let channels = scale.dims()[0];
                x.mul(scale.clone().reshape([1, channels, 1, 1]))
                    .add(shift.clone().reshape([1, channels, 1, 1]))
            }
            Operation::Multiply { factor } => x.mul_scalar(*factor),
            Operation::Add => x.add(inputs.remove(0)),
            Operation::Concat => {
                inputs.insert(0, x);
                Tensor::cat(inputs, 1)
            }
            Operation::Flatten => x.reshape([1, step.output.channels, 1, 1]),
            Operation::GlobalAvgPool => x.mean_dim(3).mean_dim(2),
            Operation::Linear { weight, bias } => {
                let [inputs, outputs] = weight.dims();
                let flat = x.reshape([1, inputs]).matmul(weight.clone());
                let flat = match bias {
                    Some(bias) => flat.add(bias.clone().unsqueeze::<2>()),
                    None => flat,
                };
                flat.reshape([1, outputs, 1, 1])
            }
        }
    }
}

/// A window's padding and output size along one axis; `ceil` rounds the output up, the
/// extra pixels padded at the end.
fn window(
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: (usize, usize),
    ceil: bool,
) -> Option<(usize, (usize, usize))> {
    let out = window_output(size, kernel, stride, dilation, padding, ceil)?;
    let span = (out - 1) * stride + (kernel - 1) * dilation + 1;
    let end = span.saturating_sub(size + padding.0).max(padding.1);
    Some((out, (padding.0, end)))
}

/// The output shape and padding of `operation` on inputs of `inputs` shapes.
fn output_shape(operation: &Operation, inputs: &[Shape]) -> Option<(Shape, [(usize, usize); 2])> {
    let first = *inputs.first()?;
    let windowed = |kernel: [usize; 2],
                    stride: [usize; 2],
                    dilation: [usize; 2],
                    padding: &Padding,
                    ceil: bool,
                    channels: usize| {
        let size = [first.height, first.width];
        let resolved = padding.resolve(size, kernel, stride, dilation);
        let (height, rows) = window(
            size[0],
            kernel[0],
            stride[0],
            dilation[0],
            resolved[0],
            ceil,
        )?;
        let (width, columns) = window(
            size[1],
            kernel[1],
            stride[1],
            dilation[1],
            resolved[1],
            ceil,
        )?;
        Some((
            Shape {
                channels,
                height,
                width,
            },
            [rows, columns],
        ))
    };
    let none = [(0, 0); 2];
    match operation {
        Operation::Conv {
            weight,
            stride,
            padding,
            dilation,
            groups,
            ..
        } => {
            let shape = weight.dims();
            if shape[1] * groups != first.channels || shape[0] % groups != 0 {
                return None;
            }
            windowed(
                [shape[2], shape[3]],
                *stride,
                *dilation,
                padding,
                false,
                shape[0],
            )
        }
        Operation::MaxPool {
            kernel,
            stride,
            padding,
            ceil,
        }
        | Operation::AvgPool {
            kernel,
            stride,
            padding,
            ceil,
            ..
        } => windowed(*kernel, *stride, [1, 1], padding, *ceil, first.channels),
        Operation::Relu
        | Operation::Clip { .. }
        | Operation::Lrn { .. }
        | Operation::Multiply { .. } => Some((first, none)),
        Operation::Scale { scale, shift } => (scale.dims()[0] == first.channels
            && shift.dims()[0] == first.channels)
            .then_some((first, none)),
        Operation::Flatten => Some((
            Shape {
                channels: first.len(),
                height: 1,
                width: 1,
            },
            none,
        )),
        Operation::GlobalAvgPool => Some((
            Shape {
                channels: first.channels,
                height: 1,
                width: 1,
            },
            none,
        )),
        Operation::Linear { weight, .. } => {
            let [inputs, outputs] = weight.dims();
            (inputs == first.len()).then_some((
                Shape {
                    channels: outputs,
                    height: 1,
                    width: 1,
                },
                none,
            ))
        }
        Operation::Add => (inputs.len() == 2 && inputs[1] == first).then_some((first, none)),
        Operation::Concat => {
            let same_size = inputs
                .iter()
                .all(|s| (s.height, s.width) == (first.height, first.width));
            same_size.then(|| {
                let channels = inputs.iter().map(|s| s.channels).sum();
                (Shape { channels, ..first }, none)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(out: usize, inp: usize, k: usize, stride: usize, padding: Padding) -> Operation {
        Operation::Conv {
            weight: Tensor::zeros([out, inp, k, k], &burn::tensor::Device::flex()),
            bias: None,
            stride: [stride, stride],
            padding,
            dilation: [1, 1],
            groups: 1,
        }
    }

    fn shape(channels: usize, height: usize, width: usize) -> Shape {
        Shape {
            channels,
            height,
            width,
        }
    }

    #[test]
    fn shapes_and_padding_follow_the_windows() {
        // conv 7x7 s2 p3, max-pool 3x3 s2 ceil (GoogLeNet's stem), a branch, concat.
        let graph = Graph {
            nodes: vec![
                Node {
                    operation: conv(64, 3, 7, 2, Padding::Fixed([(3, 3); 2])),
                    inputs: vec![0],
                },
                Node {
                    operation: Operation::Relu,
                    inputs: vec![1],
                },
                Node {
                    operation: Operation::MaxPool {
                        kernel: [3, 3],
                        stride: [2, 2],
                        padding: Padding::Fixed([(0, 0); 2]),
                        ceil: true,
                    },
                    inputs: vec![2],
                },
                Node {
                    operation: conv(16, 64, 3, 2, Padding::Same { upper: true }),
                    inputs: vec![3],
                },
                Node {
                    operation: Operation::Concat,
                    inputs: vec![3, 3],
                },
            ],
        };
        let plan = graph.plan(shape(3, 224, 224), &[4, 5]).unwrap();
        assert_eq!(plan.shapes[1], Some(shape(64, 112, 112)));
        // 112 → ceil((112 - 3) / 2) + 1 = 56: the last window needs one pixel of padding.
        assert_eq!(plan.shapes[3], Some(shape(64, 56, 56)));
        assert_eq!(plan.steps[2].padding, [(0, 1); 2]);
        assert!(plan.steps[2].asymmetric());
        assert_eq!(plan.steps[2].padded_input(), Some(shape(64, 113, 113)));
        // SAME with stride 2 on 56: output 28, padding (0, 1).
        assert_eq!(plan.shapes[4], Some(shape(16, 28, 28)));
        assert_eq!(plan.steps[3].padding, [(0, 1); 2]);
        assert_eq!(plan.shapes[5], Some(shape(128, 56, 56)));
        assert!(!plan.steps[0].asymmetric());
        assert_eq!(plan.steps[0].padded_input(), None);
    }

    #[test]
    fn only_what_the_wanted_values_need_is_planned() {
        let graph = Graph {
            nodes: vec![
                Node {
                    operation: Operation::Relu,
                    inputs: vec![0],
                },
                Node {
                    operation: Operation::Clip {
                        low: 0.0,
                        high: 6.0,
                    },
                    inputs: vec![0],
                },
            ],
        };
        let plan = graph.plan(shape(3, 8, 8), &[1]).unwrap();
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.shapes[2], None);
        assert!(graph.plan(shape(3, 8, 8), &[3]).is_err());
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let graph = Graph {
            nodes: vec![Node {
                operation: conv(8, 4, 3, 1, Padding::Fixed([(0, 0); 2])),
                inputs: vec![0],
            }],
        };
        let message = graph.plan(shape(3, 8, 8), &[1]).unwrap_err().to_string();
        assert!(message.contains("node 0 (Conv)"), "{message}");
        let graph = Graph {
            nodes: vec![Node {
                operation: conv(8, 3, 3, 1, Padding::Fixed([(0, 0); 2])),
                inputs: vec![0],
            }],
        };
        assert!(graph.plan(shape(3, 2, 2), &[1]).is_err());
    }
}
