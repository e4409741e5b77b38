//! The operators the executor runs, on values of logical rank 1 to 4: their shapes and
//! their forward passes on burn tensors (through the backend's fast kernels).

use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData, activation};

use crate::backend::geometry::window_output;
use crate::backend::graph::Padding;
use crate::backend::{avg_pool2d, conv2d, max_pool2d};

/// A tensor of logical rank 1 to 4, stored as a rank-4 burn tensor (trailing dims of 1).
#[derive(Clone)]
pub(super) struct Value {
    pub(super) tensor: Tensor<4>,
    pub(super) shape: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// The operators the executor runs.
pub(super) enum Op {
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
    pub(super) fn absorbs_constants(&self) -> bool {
        matches!(
            self,
            Op::Conv { .. } | Op::Linear { .. } | Op::BatchNorm { .. }
        )
    }

    /// The output shape for the given input shapes, or `None` if it would be empty or is
    /// undefined.
    pub(super) fn output_shape(&self, inputs: &[&[usize]]) -> Option<Vec<usize>> {
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
    pub(super) fn run(&self, mut inputs: Vec<Value>) -> std::result::Result<Value, String> {
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
                Value::full_rank(crate::backend::lrn(t, *size, *alpha, *beta, *bias))
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
    pub(super) fn full_rank(tensor: Tensor<4>) -> Self {
        let shape = tensor.dims().to_vec();
        Value { tensor, shape }
    }

    pub(super) fn from_data(
        data: TensorData,
        device: &Device,
    ) -> std::result::Result<Self, String> {
        let shape = data.shape().to_vec();
        let values: Vec<f32> = data
            .convert::<f32>()
            .try_to_vec()
            .map_err(|e| format!("unreadable constant: {e:?}"))?;
        let shape = if shape.is_empty() { vec![1] } else { shape };
        let tensor = Tensor::<1>::from_floats(values.as_slice(), device).reshape(padded(&shape)?);
        Ok(Value { tensor, shape })
    }

    pub(super) fn map(self, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Self {
        Value {
            tensor: f(self.tensor),
            shape: self.shape,
        }
    }

    pub(super) fn with_shape(self, shape: Vec<usize>) -> std::result::Result<Self, String> {
        Ok(Value {
            tensor: self.tensor.reshape(padded(&shape)?),
            shape,
        })
    }

    /// The tensor laid out for broadcasting against a tensor of logical rank `rank`.
    pub(super) fn aligned(self, rank: usize) -> Tensor<4> {
        let mut shape = vec![1; rank - self.shape.len()];
        shape.extend_from_slice(&self.shape);
        let full = padded(&shape).expect("rank checked by output_shape");
        self.tensor.reshape(full)
    }

    pub(super) fn into_nchw(self) -> Tensor<4> {
        self.tensor
    }

    pub(super) fn into_vector(self) -> Tensor<1> {
        let len: usize = self.shape.iter().product();
        self.tensor.reshape([len])
    }

    pub(super) fn into_matrix(self) -> std::result::Result<Tensor<2>, String> {
        match self.shape.as_slice() {
            [rows, cols] => Ok(self.tensor.reshape([*rows, *cols])),
            other => Err(format!("expected a matrix, got shape {other:?}")),
        }
    }
}
