//! The GPU memory of a gradient: a graph's weights, and every buffer one plan's steps use.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError};

use crate::backend::graph::{Graph, Plan, Shape};
use crate::error::{Error, Result};

/// A node's constants on the GPU.
#[derive(Default)]
pub(super) struct Weights {
    pub(super) uploaded: bool,
    pub(super) first: Option<CudaSlice<f32>>,
    pub(super) second: Option<CudaSlice<f32>>,
}

pub(super) fn driver(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("CUDA could not {what}: {e}"))
}

/// The raw address of a buffer (the context tracks no events, so nothing waits here).
pub(super) fn address<T>(buffer: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    buffer.device_ptr(stream).0
}

/// `values` copied to a new buffer on the GPU.
pub(super) fn upload<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    values: &[T],
) -> Result<CudaSlice<T>> {
    stream
        .clone_htod(values)
        .map_err(driver("upload to the GPU"))
}

/// A buffer of `len` values (at least one) whose contents are not set.
pub(super) fn alloc<T: DeviceRepr>(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: every buffer is written before it is read (see `Buffers`).
    unsafe { stream.alloc::<T>(len.max(1)) }.map_err(driver("allocate GPU memory"))
}

/// The first `len` values of `buffer` (buffers hold at least one value).
pub(super) fn download(
    stream: &Arc<CudaStream>,
    buffer: &CudaSlice<f32>,
    len: usize,
) -> Result<Vec<f32>> {
    stream
        .clone_dtoh(&buffer.slice(..len))
        .map_err(driver("download from the GPU"))
}

/// Where the values' gradients lie in one block, and the gradient's absolute sum after them:
/// the offsets of the planned values (in floats, each a multiple of 64 floats: 256 bytes, as
/// cudaMalloc aligns), where the sum lies, and the block's length.
///
/// Gradients share the block's memory where their lives do not meet. The backward pass runs
/// the steps from the last, one moment each after the moment the wanted values' gradients are
/// stored; a value's gradient lives from the moment its first contribution is stored (a
/// wanted value's at the start, else at its last reader's step) to the step that made it,
/// which reads it (the input's to the end). Each gradient, largest first, takes the lowest
/// place clear of those placed whose lives meet its own.
pub(super) fn gradient_layout(graph: &Graph, plan: &Plan) -> (Vec<Option<usize>>, usize, usize) {
    const ALIGN: usize = 64;
    let steps = plan.steps.len();
    let end = steps + 1;
    // The moment step `index` runs backwards.
    let moment = |index: usize| steps - index;
    let mut lives: Vec<Option<(usize, usize)>> = vec![None; plan.shapes.len()];
    lives[0] = Some((end, end));
    for (index, step) in plan.steps.iter().enumerate() {
        lives[step.node + 1] = Some((end, moment(index)));
        for &input in &graph.nodes[step.node].inputs {
            if let Some((first, _)) = lives[input].as_mut() {
                *first = (*first).min(moment(index));
            }
        }
    }
    for &value in &plan.wanted {
        if let Some((first, _)) = lives[value].as_mut() {
            *first = 0;
        }
    }
    let lengths: Vec<Option<usize>> = plan
        .shapes
        .iter()
        .map(|shape| shape.map(|shape| shape.len().div_ceil(ALIGN) * ALIGN))
        .collect();
    let mut order: Vec<usize> = (0..plan.shapes.len())
        .filter(|&v| lengths[v].is_some())
        .collect();
    order.sort_by_key(|&v| std::cmp::Reverse(lengths[v]));
    let mut offsets: Vec<Option<usize>> = vec![None; plan.shapes.len()];
    let mut placed: Vec<(usize, usize, (usize, usize))> = Vec::new();
    let mut block = 0;
    for value in order {
        let length = lengths[value].expect("planned");
        let (first, last) = lives[value].expect("planned");
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(_, _, (f, l))| *f <= last && first <= *l)
            .map(|&(offset, length, _)| (offset, offset + length))
            .collect();
        taken.sort_unstable();
        let mut offset = 0;
        for (start, stop) in taken {
            if offset + length <= start {
                break;
            }
            offset = offset.max(stop);
        }
        offsets[value] = Some(offset);
        placed.push((offset, length, (first, last)));
        block = block.max(offset + length);
    }
    (offsets, block, block + ALIGN)
}

/// How many floats [`Buffers::new`] allocates for `plan`.
pub(super) fn floats(graph: &Graph, plan: &Plan) -> usize {
    let values: usize = plan.shapes.iter().flatten().map(Shape::len).sum();
    let padded: Vec<usize> = plan
        .steps
        .iter()
        .filter_map(|step| step.padded_input().map(|shape| shape.len()))
        .collect();
    let scratch = padded.iter().copied().max().unwrap_or(0);
    values + padded.iter().sum::<usize>() + scratch + gradient_layout(graph, plan).2
}

/// Every buffer a gradient of one plan needs: each computed value (the input's included), the
/// copies of inputs padded by hand and the scratch for their gradients, and one block for the
/// values' gradients and the input gradient's absolute sum (the only part a backward pass
/// clears: it stores each gradient over what was there). Made once for a kept image, so that
/// its steps allocate nothing. Values are not zeroed: every step overwrites them before
/// reading them.
pub(super) struct Buffers {
    /// By value index.
    pub(super) values: Vec<Option<CudaSlice<f32>>>,
    /// By step, with the padded shape.
    pub(super) padded: Vec<Option<(CudaSlice<f32>, Shape)>>,
    /// The gradient of a padded input, for whichever step has one (the largest's size).
    pub(super) scratch: Option<CudaSlice<f32>>,
    pub(super) gradients: CudaSlice<f32>,
    /// By value index, in floats from the start of `gradients`.
    pub(super) offsets: Vec<Option<usize>>,
    /// Where the absolute sum lies in `gradients`.
    pub(super) total: usize,
    pub(super) workspace: Option<CudaSlice<u8>>,
}

impl Buffers {
    pub(super) fn new(stream: &Arc<CudaStream>, graph: &Graph, plan: &Plan) -> Result<Buffers> {
        let mut values: Vec<Option<CudaSlice<f32>>> =
            (0..plan.shapes.len()).map(|_| None).collect();
        values[0] = Some(alloc(stream, plan.shapes[0].expect("the input").len())?);
        let mut padded = Vec::new();
        for step in &plan.steps {
            values[step.node + 1] = Some(alloc(stream, step.output.len())?);
            padded.push(match step.padded_input() {
                Some(shape) => Some((alloc(stream, shape.len())?, shape)),
                None => None,
            });
        }
        let scratch = padded
            .iter()
            .flatten()
            .map(|(_, shape)| shape.len())
            .max()
            .map(|len| alloc(stream, len))
            .transpose()?;
        let (offsets, total, len) = gradient_layout(graph, plan);
        Ok(Buffers {
            values,
            padded,
            scratch,
            gradients: alloc(stream, len)?,
            offsets,
            total,
            workspace: None,
        })
    }

    /// The address of the gradients' absolute sum.
    pub(super) fn total_address(&self, stream: &CudaStream) -> u64 {
        address(&self.gradients, stream) + (self.total * 4) as u64
    }

    /// The first `len` values of `value`'s gradient.
    pub(super) fn download_gradient(
        &self,
        stream: &Arc<CudaStream>,
        value: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        let offset = self.offsets[value].expect("planned");
        stream
            .clone_dtoh(&self.gradients.slice(offset..offset + len))
            .map_err(driver("download from the GPU"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::graph::{Operation, Padding};
    use burn::tensor::Tensor;

    fn conv(out: usize, inp: usize) -> Operation {
        Operation::Conv {
            weight: Tensor::zeros([out, inp, 1, 1], &burn::tensor::Device::flex()),
            bias: None,
            stride: [1, 1],
            padding: Padding::Fixed([(0, 0); 2]),
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Gradients whose lives meet never share memory; a chain of layers needs far less than
    /// one gradient each.
    #[test]
    fn gradients_share_memory_only_when_their_lives_do_not_meet() {
        // A chain, two branches joined by a concatenation, a sum reading one value twice, and
        // a wanted value in the middle that later layers read too.
        let mut graph = Graph::default();
        let mut last = 0;
        for (out, inp) in [(8, 3), (8, 8), (16, 8), (16, 16)] {
            last = graph.push(conv(out, inp), vec![last]);
            last = graph.push(Operation::Relu, vec![last]);
        }
        let middle = last;
        let left = graph.push(conv(4, 16), vec![middle]);
        let right = graph.push(conv(12, 16), vec![middle]);
        let joined = graph.push(Operation::Concat, vec![left, right]);
        let doubled = graph.push(Operation::Add, vec![joined, joined]);
        let top = graph.push(conv(2, 16), vec![doubled]);
        let shape = Shape {
            channels: 3,
            height: 9,
            width: 7,
        };
        let plan = graph.plan(shape, &[top, middle]).unwrap();
        let (offsets, total, len) = gradient_layout(&graph, &plan);
        assert_eq!(len, total + 64);
        // Each value's life, step by step, from the first write to the last read.
        let steps = plan.steps.len();
        let mut lives = vec![(usize::MAX, 0usize); plan.shapes.len()];
        lives[0].1 = steps + 1;
        for value in [top, middle] {
            lives[value].0 = 0;
        }
        for (index, step) in plan.steps.iter().enumerate() {
            let moment = steps - index;
            lives[step.node + 1].1 = moment;
            for &input in &graph.nodes[step.node].inputs {
                lives[input].0 = lives[input].0.min(moment);
            }
        }
        let span = |v: usize| {
            let start = offsets[v].unwrap();
            start..start + plan.shapes[v].unwrap().len()
        };
        let mut naive = 0;
        for a in 0..plan.shapes.len() {
            naive += plan.shapes[a].unwrap().len();
            assert!(span(a).end <= total, "value {a} inside the block");
            assert_eq!(offsets[a].unwrap() % 64, 0);
            for b in 0..a {
                let meet = lives[a].0 <= lives[b].1 && lives[b].0 <= lives[a].1;
                let (sa, sb) = (span(a), span(b));
                let share = sa.start < sb.end && sb.start < sa.end;
                assert!(
                    !(meet && share),
                    "values {a} and {b} live together and share memory"
                );
            }
        }
        assert!(total * 2 < naive, "{total} floats for gradients of {naive}");
    }
}
