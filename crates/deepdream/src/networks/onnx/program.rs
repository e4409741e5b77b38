//! The executor: a network as a flat program of steps, each an operator reading earlier
//! steps' outputs (slots) or constants, and a forward pass that runs only the steps the
//! wanted slots depend on, dropping each value after its last use.

use burn::tensor::Tensor;

use crate::backend::graph::Padding;
use crate::error::{Error, Result};
use crate::networks::onnx::ops::{Op, Value};

/// One node of the program: an operator, where its inputs come from, where its output goes.
pub(super) struct Step {
    pub(super) node: String,
    pub(super) raw_name: String,
    pub(super) op: Op,
    pub(super) inputs: Vec<Operand>,
    pub(super) output: usize,
}

/// An operator input: the output of an earlier step (a slot) or a constant.
pub(super) enum Operand {
    Slot(usize),
    Const(Box<Value>),
}

/// The program of a network: its steps in order, how many slots they write (slot 0 is the
/// input), and whether the input is channels-last.
pub(super) struct Program {
    pub(super) steps: Vec<Step>,
    pub(super) slot_count: usize,
    pub(super) nhwc_input: bool,
}

impl Program {
    /// Which steps the values of the `wanted` slots depend on.
    pub(super) fn needed_steps(&self, wanted: &[usize]) -> Vec<bool> {
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

    /// Drops the steps, with their weights, that none of the `wanted` slots depends on.
    pub(super) fn keep_only(&mut self, wanted: &[usize]) {
        let needed = self.needed_steps(wanted);
        let mut index = 0;
        self.steps.retain(|_| {
            index += 1;
            needed[index - 1]
        });
    }

    /// Runs the steps needed for `wanted` slots and returns their values.
    pub(super) fn run(&self, input: Tensor<4>, wanted: &[usize]) -> Result<Vec<Value>> {
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

    /// The shape of every slot for a `height`x`width` image (`None` where it would be
    /// empty or cannot be computed).
    pub(super) fn shapes(&self, height: usize, width: usize) -> Vec<Option<Vec<usize>>> {
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

    /// The slots that `slot` is computed from, itself included.
    pub(super) fn ancestry(&self, slot: usize) -> Vec<usize> {
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

    /// The first unsupported operator (type, node) that step `index` depends on.
    pub(super) fn first_unsupported(&self, index: usize) -> (String, String) {
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

    /// For each slot, an upper bound of how many input pixels beyond its stride cell an
    /// output pixel depends on (`usize::MAX` once a global operator has mixed all pixels).
    pub(super) fn halos(&self) -> Vec<usize> {
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
                            Padding::Fixed(p) => p[d].0.max(span.saturating_sub(p[d].0)),
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
}
