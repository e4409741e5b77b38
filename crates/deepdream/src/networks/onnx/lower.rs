//! Lowering a program to the graph the CUDA device runs. Steps the graph has no operation for
//! (a softmax, general reshapes and transposes) are left out with everything that depends on
//! them; their layers stay with burn.

use crate::backend::graph::{Graph, Node, Operation};
use crate::networks::onnx::ops::{Binary, Op};
use crate::networks::onnx::program::{Operand, Program, Step};

/// The graph of `program`, and for each slot the graph value holding it (`None` for slots
/// left out).
pub(super) fn lower(program: &Program) -> (Graph, Vec<Option<usize>>) {
    let mut values: Vec<Option<usize>> = vec![None; program.slot_count];
    if !program.nhwc_input {
        values[0] = Some(0);
    }
    let mut graph = Graph::default();
    for step in &program.steps {
        // A channels-last input turned back to channels-first is the image itself.
        if program.nhwc_input
            && matches!(&step.op, Op::Transpose { perm } if perm == &[0, 3, 1, 2])
            && matches!(step.inputs.as_slice(), [Operand::Slot(0)])
        {
            values[step.output] = Some(0);
            continue;
        }
        if let Some((input, factor)) = scalar_product(step, &values) {
            graph.nodes.push(Node {
                operation: Operation::Multiply { factor },
                inputs: vec![input],
            });
            values[step.output] = Some(graph.nodes.len());
            continue;
        }
        let inputs: Option<Vec<usize>> = step
            .inputs
            .iter()
            .map(|operand| match operand {
                Operand::Slot(slot) => values[*slot],
                Operand::Const(_) => None,
            })
            .collect();
        let Some(inputs) = inputs else { continue };
        if let Op::Identity = step.op {
            values[step.output] = inputs.first().copied();
            continue;
        }
        let Some(operation) = operation(&step.op, inputs.len()) else {
            continue;
        };
        graph.nodes.push(Node { operation, inputs });
        values[step.output] = Some(graph.nodes.len());
    }
    (graph, values)
}

/// A product of a lowered value and a one-element constant: the value and the factor.
fn scalar_product(step: &Step, values: &[Option<usize>]) -> Option<(usize, f32)> {
    let Op::Binary(Binary::Mul) = step.op else {
        return None;
    };
    let mut slot = None;
    let mut factor = None;
    for operand in &step.inputs {
        match operand {
            Operand::Slot(s) => slot = values[*s],
            Operand::Const(value) if value.shape.iter().product::<usize>() == 1 => {
                let values = value.tensor.to_data().try_to_vec::<f32>().ok()?;
                factor = values.first().copied();
            }
            Operand::Const(_) => return None,
        }
    }
    Some((slot?, factor?))
}

/// The graph operation of `op` with `inputs` slot inputs, if the device has one.
fn operation(op: &Op, inputs: usize) -> Option<Operation> {
    Some(match op {
        Op::Conv {
            weight,
            bias,
            stride,
            padding: pad,
            dilation,
            groups,
        } if inputs == 1 => Operation::Conv {
            weight: weight.clone(),
            bias: bias.clone(),
            stride: *stride,
            padding: *pad,
            dilation: *dilation,
            groups: *groups,
        },
        Op::Relu => Operation::Relu,
        Op::Clip { min, max } => Operation::Clip {
            low: *min,
            high: *max,
        },
        Op::MaxPool {
            kernel,
            stride,
            padding: pad,
            dilation: [1, 1],
            ceil,
        } => Operation::MaxPool {
            kernel: *kernel,
            stride: *stride,
            padding: *pad,
            ceil: *ceil,
        },
        Op::AvgPool {
            kernel,
            stride,
            padding: pad,
            ceil,
            count_pad,
        } => Operation::AvgPool {
            kernel: *kernel,
            stride: *stride,
            padding: *pad,
            ceil: *ceil,
            count_pad: *count_pad,
        },
        Op::Lrn {
            alpha,
            beta,
            bias,
            size,
        } => Operation::Lrn {
            size: *size,
            alpha: *alpha,
            beta: *beta,
            bias: *bias,
        },
        Op::BatchNorm { scale, shift } => {
            let channels = scale.dims()[1];
            Operation::Scale {
                scale: scale.clone().reshape([channels]),
                shift: shift.clone().reshape([channels]),
            }
        }
        Op::GlobalAvgPool => Operation::GlobalAvgPool,
        Op::Flatten { axis: 1 } => Operation::Flatten,
        Op::Reshape { shape } if matches!(shape.as_slice(), [0 | 1, -1]) => Operation::Flatten,
        Op::Linear { weight, bias } if inputs == 1 => Operation::Linear {
            weight: weight.clone(),
            bias: bias.clone(),
        },
        Op::Binary(Binary::Add) if inputs == 2 => Operation::Add,
        Op::Concat { axis: 1 } => Operation::Concat,
        _ => return None,
    })
}
