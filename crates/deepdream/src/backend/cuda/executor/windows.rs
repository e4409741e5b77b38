//! cuDNN's descriptors of a plan's windowed steps (convolutions and poolings).

use crate::backend::cuda::cudnn::{ConvDesc, ConvGeometry, PoolDesc, TensorDesc};
use crate::backend::graph::{Graph, Operation, Plan, Shape, Step};
use crate::error::{Error, Result};

/// The arithmetic of convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Plain 32-bit floats.
    Fp32,
    /// TF32 tensor cores (10-bit mantissas in the products), PyTorch's default for
    /// convolutions.
    Tf32,
}

/// cuDNN's description of a windowed step (a convolution or a pooling): its input as cuDNN
/// reads it (padded by hand where the padding is asymmetric), its output, and the operation.
pub(super) struct Window {
    pub(super) x: TensorDesc,
    pub(super) y: TensorDesc,
    /// The shape `x` describes.
    pub(super) input: Shape,
    pub(super) operation: WindowOperation,
    /// What the step computes, as text: all that decides which algorithm runs it fastest
    /// (the key of the choices remembered across runs).
    pub(super) describes: String,
}

pub(super) enum WindowOperation {
    Conv(ConvDesc),
    Pool(PoolDesc),
}

impl Window {
    pub(super) fn conv(&self) -> &ConvDesc {
        match &self.operation {
            WindowOperation::Conv(conv) => conv,
            WindowOperation::Pool(_) => unreachable!("a pooling step has no convolution"),
        }
    }

    pub(super) fn pool(&self) -> &PoolDesc {
        match &self.operation {
            WindowOperation::Pool(pool) => pool,
            WindowOperation::Conv(_) => unreachable!("a convolution step has no pooling"),
        }
    }
}

/// cuDNN's descriptors of a plan's windowed steps, by step, made once for the plan.
pub struct Windows(pub(super) Vec<Option<Window>>);

// SAFETY: cuDNN's descriptors are plain host structures that cuDNN reads only during the
// calls they are given to; `Windows` is not `Sync`, so one thread at a time uses them.
unsafe impl Send for Windows {}

/// The cuDNN descriptors of `plan`'s windowed steps in `graph`, convolutions in `precision`,
/// each checked against the plan: cuDNN must compute the planned output shape from them. This
/// needs cuDNN but not a GPU, so the CPU's tests check every network's lowering with it.
pub fn describe(graph: &Graph, plan: &Plan, precision: Precision) -> Result<Windows> {
    let tf32 = precision == Precision::Tf32;
    plan.steps
        .iter()
        .map(|step| describe_step(&graph.nodes[step.node].operation, step, tf32))
        .collect::<Result<Vec<_>>>()
        .map(Windows)
}

fn describe_step(operation: &Operation, step: &Step, tf32: bool) -> Result<Option<Window>> {
    let padding = if step.asymmetric() {
        [0, 0]
    } else {
        [step.padding[0].0, step.padding[1].0]
    };
    let input = step.padded_input().unwrap_or(step.inputs[0]);
    let x = TensorDesc::new(input)?;
    let on = format!("on {}x{}x{}", input.channels, input.height, input.width);
    let (operation, output, describes) = match operation {
        Operation::Conv {
            weight,
            stride,
            dilation,
            groups,
            ..
        } => {
            let geometry = ConvGeometry {
                shape: weight.dims(),
                padding,
                stride: *stride,
                dilation: *dilation,
                groups: *groups,
                tf32,
            };
            let conv = ConvDesc::new(&geometry)?;
            let output = conv.output(&x)?;
            let describes = format!("convolution {geometry:?} {on}");
            (WindowOperation::Conv(conv), output, describes)
        }
        Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
            let (max, count_pad, kernel, stride) = pooling(operation, step);
            let pool = PoolDesc::new(max, count_pad, kernel, padding, stride)?;
            let output = pool.output(&x)?;
            let describes = format!(
                "pooling (max {max}, count padding {count_pad}) {kernel:?} stride {stride:?} padding {padding:?} {on}"
            );
            (WindowOperation::Pool(pool), output, describes)
        }
        _ => return Ok(None),
    };
    let planned = [
        1,
        step.output.channels,
        step.output.height,
        step.output.width,
    ];
    if output != planned {
        return Err(Error::Device(format!(
            "node {}: cuDNN computes an output of {output:?} where the plan has {planned:?}",
            step.node
        )));
    }
    Ok(Some(Window {
        x,
        y: TensorDesc::new(step.output)?,
        input,
        operation,
        describes,
    }))
}

/// A pooling step's (max, count padding, window, stride); a global average pool is one
/// window over the whole input.
pub(super) fn pooling(operation: &Operation, step: &Step) -> (bool, bool, [usize; 2], [usize; 2]) {
    match operation {
        Operation::MaxPool { kernel, stride, .. } => (true, false, *kernel, *stride),
        Operation::AvgPool {
            kernel,
            stride,
            count_pad,
            ..
        } => (false, *count_pad, *kernel, *stride),
        _ => {
            let whole = [step.inputs[0].height, step.inputs[0].width];
            (false, true, whole, whole)
        }
    }
}
