//! The GPU memory of a gradient: a graph's weights, and every buffer one plan's steps use.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError};

use crate::backend::graph::{Plan, Shape};
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

/// Where the values' gradients lie in one block, each at a multiple of 64 floats (256 bytes,
/// as cudaMalloc aligns), the gradient's absolute sum after them: the offsets of the `shapes`
/// that are planned, and the block's length, in floats.
pub(super) fn gradient_layout(shapes: &[Option<Shape>]) -> (Vec<Option<usize>>, usize, usize) {
    const ALIGN: usize = 64;
    let mut end = 0;
    let offsets = shapes
        .iter()
        .map(|shape| {
            shape.map(|shape| {
                let offset = end;
                end += shape.len().div_ceil(ALIGN) * ALIGN;
                offset
            })
        })
        .collect();
    (offsets, end, end + ALIGN)
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
    /// By step, the padded input's gradient.
    pub(super) scratch: Vec<Option<CudaSlice<f32>>>,
    pub(super) gradients: CudaSlice<f32>,
    /// By value index, in floats from the start of `gradients`.
    pub(super) offsets: Vec<Option<usize>>,
    /// Where the absolute sum lies in `gradients`.
    pub(super) total: usize,
    pub(super) workspace: Option<CudaSlice<u8>>,
}

impl Buffers {
    pub(super) fn new(stream: &Arc<CudaStream>, plan: &Plan) -> Result<Buffers> {
        let mut values: Vec<Option<CudaSlice<f32>>> =
            (0..plan.shapes.len()).map(|_| None).collect();
        values[0] = Some(alloc(stream, plan.shapes[0].expect("the input").len())?);
        let (mut padded, mut scratch) = (Vec::new(), Vec::new());
        for step in &plan.steps {
            values[step.node + 1] = Some(alloc(stream, step.output.len())?);
            let shape = step.padded_input();
            padded.push(match shape {
                Some(shape) => Some((alloc(stream, shape.len())?, shape)),
                None => None,
            });
            scratch.push(shape.map(|shape| alloc(stream, shape.len())).transpose()?);
        }
        let (offsets, total, len) = gradient_layout(&plan.shapes);
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
