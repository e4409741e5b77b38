//! One gradient's work on the GPU: the forward pass, the loss's gradients and the backward pass,
//! step by step, in the buffers of a plan.

use std::ffi::c_void;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::sys as cudnn_sys;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, PushKernelArg};

use super::buffers::{Buffers, Weights, address, alloc, download, driver, upload};
use super::choices::{
    Algorithm, Choice, Choices, Depthwise, Pass, Route, TIMED_RUNS, candidates, print_choices,
    remembered_name, route_name, route_named, use_math,
};
use super::windows::{Window, Windows, pooling};
use crate::backend::cuda::cudnn::{LrnDesc, TensorDesc, check};
use crate::backend::cuda::gpu::Handles;
use crate::backend::cuda::kernels::{elementwise, per_plane};
use crate::backend::graph::{Graph, Operation, Plan, Shape, Step};
use crate::backend::layer_terms::{LayerTerms, LossValues, Match};
use crate::error::{Error, Result};

/// The loss's side of a gradient made on the host: given the wanted values (host copies,
/// with their shapes), the loss's gradient with respect to each (same lengths).
pub type LossGradients<'a> = dyn FnMut(Vec<Vec<f32>>, &[Shape]) -> Result<Vec<Vec<f32>>> + 'a;

/// A layer's terms on the GPU: the quadratic's weights and mask, guides and matches.
pub(super) struct DeviceLoss {
    quadratic: CudaSlice<f32>,
    linear: CudaSlice<f32>,
    rows: Range<usize>,
    cols: Range<usize>,
    mask: Option<CudaSlice<f32>>,
    guides: Vec<DeviceGuide>,
    /// Room for the scores of the value's positions against the largest guide's.
    scores: Option<CudaSlice<f32>>,
    content: Vec<DeviceMatch>,
    style: Vec<DeviceMatch>,
    /// Room for a style match's Gram matrix.
    gram: Option<CudaSlice<f32>>,
    /// Where the loss's values go, by part (see [`LossValues`]), where they are wanted.
    values: Option<CudaSlice<f32>>,
}

/// A guide's features on the GPU (see [`Guide`](crate::backend::layer_terms::Guide)).
struct DeviceGuide {
    features: CudaSlice<f32>,
    positions: usize,
    weight: f32,
}

/// A match's target on the GPU (see [`Match`](crate::backend::layer_terms::Match)).
struct DeviceMatch {
    target: CudaSlice<f32>,
    weight: f32,
}

impl DeviceLoss {
    /// `losses` uploaded, after checking that they fit the wanted values' `shapes`, with
    /// room for their values where `with_values`.
    pub(super) fn upload(
        stream: &Arc<CudaStream>,
        losses: &[LayerTerms],
        shapes: &[Shape],
        with_values: bool,
    ) -> Result<Vec<DeviceLoss>> {
        check_terms(losses, shapes)?;
        let matches = |matches: &[Match]| {
            matches
                .iter()
                .map(|m| {
                    Ok(DeviceMatch {
                        target: upload(stream, &m.target)?,
                        weight: m.weight,
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        losses
            .iter()
            .zip(shapes)
            .map(|(loss, shape)| {
                let guides = loss
                    .guides
                    .iter()
                    .map(|guide| {
                        Ok(DeviceGuide {
                            features: upload(stream, &guide.features)?,
                            positions: guide.positions,
                            weight: guide.weight,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let most = loss.guides.iter().map(|g| g.positions).max();
                let plane = shape.height * shape.width;
                Ok(DeviceLoss {
                    quadratic: upload(stream, &loss.quadratic)?,
                    linear: upload(stream, &loss.linear)?,
                    rows: loss.rows.clone(),
                    cols: loss.cols.clone(),
                    mask: loss.mask.as_ref().map(|m| upload(stream, m)).transpose()?,
                    guides,
                    scores: most.map(|most| alloc(stream, plane * most)).transpose()?,
                    content: matches(&loss.content)?,
                    style: matches(&loss.style)?,
                    gram: (!loss.style.is_empty())
                        .then(|| alloc(stream, shape.channels * shape.channels))
                        .transpose()?,
                    values: with_values.then(|| alloc(stream, 3)).transpose()?,
                })
            })
            .collect()
    }

    /// The values of the loss made by the last gradient (waiting for it), where they were
    /// wanted.
    pub(super) fn download_values(&self, stream: &Arc<CudaStream>) -> Result<LossValues> {
        let Some(values) = &self.values else {
            return Ok(LossValues::default());
        };
        match download(stream, values, 3)?[..] {
            [quadratic, content, style] => Ok(LossValues {
                quadratic,
                content,
                style,
            }),
            _ => Err(Error::Device("a loss's values did not come back".into())),
        }
    }
}

/// The loss's gradients at the wanted values, ready for the backward pass.
pub(super) enum Seeds<'s> {
    Host(Vec<Vec<f32>>),
    Device(&'s [DeviceLoss]),
}

/// An error unless `losses` holds one loss per wanted value, with one weight per channel.
fn check_terms(losses: &[LayerTerms], shapes: &[Shape]) -> Result<()> {
    let fits = losses.len() == shapes.len()
        && losses.iter().zip(shapes).all(|(loss, shape)| {
            loss.quadratic.len() == shape.channels
                && loss.linear.len() == shape.channels
                && loss.guides.iter().all(|guide| {
                    guide.positions > 0
                        && guide.features.len() == shape.channels * guide.positions
                        && guide.positions < i32::MAX as usize
                })
                && loss
                    .mask
                    .as_ref()
                    .is_none_or(|mask| mask.len() == shape.height * shape.width)
                && loss.content.iter().all(|m| m.target.len() == shape.len())
                && loss
                    .style
                    .iter()
                    .all(|m| m.target.len() == shape.channels.pow(2))
                && [shape.channels, shape.height * shape.width]
                    .iter()
                    .all(|&side| side < i32::MAX as usize)
        });
    if fits {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "{} losses do not fit the values {shapes:?}",
            losses.len()
        )))
    }
}

/// A kernel argument.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Address(u64),
    Count(u64),
    Float(f32),
}

/// Where a gradient goes: its address, and whether it is added to what is there (another
/// contribution to the same value was stored first) or stored over it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub(super) address: u64,
    pub(super) accumulate: bool,
}

impl Target {
    /// The kernels' `accumulate` argument.
    pub(super) fn accumulate(&self) -> Arg {
        Arg::Count(self.accumulate as u64)
    }

    /// cuDNN's and cuBLAS's `beta`: 1 adds, 0 overwrites (without reading what is there).
    pub(super) fn beta(&self) -> f32 {
        if self.accumulate { ONE } else { ZERO }
    }
}

/// One gradient's work on the GPU, in buffers made for its plan.
pub(super) struct Run<'a> {
    pub(super) handles: &'a Handles,
    pub(super) graph: &'a Graph,
    pub(super) weights: &'a [Weights],
    pub(super) plan: &'a Plan,
    pub(super) tf32: bool,
    pub(super) depthwise: Depthwise,
    pub(super) choices: &'a Mutex<Choices>,
    pub(super) windows: &'a Windows,
    pub(super) buffers: &'a mut Buffers,
    /// Whether the work is being recorded as a CUDA graph: nothing may be allocated.
    pub(super) recording: bool,
    /// By node, the convolutions whose bias the activation after them adds (see
    /// [`biases_in_activations`]).
    pub(super) biases_in_activations: &'a [bool],
}

/// By node, the convolutions of `plan` whose bias the activation after them adds, in one
/// pass over the values instead of two: those with a bias whose output only a ReLU or a clip
/// reads, and is not wanted itself.
pub(super) fn biases_in_activations(graph: &Graph, plan: &Plan) -> Vec<bool> {
    let mut readers = vec![0usize; graph.nodes.len() + 1];
    for step in &plan.steps {
        for &input in &graph.nodes[step.node].inputs {
            readers[input] += 1;
        }
    }
    let mut deferred = vec![false; graph.nodes.len()];
    for step in &plan.steps {
        let node = &graph.nodes[step.node];
        if !matches!(node.operation, Operation::Relu | Operation::Clip { .. }) {
            continue;
        }
        let input = node.inputs[0];
        if input == 0 || readers[input] != 1 || plan.wanted.contains(&input) {
            continue;
        }
        if let Operation::Conv { bias: Some(_), .. } = graph.nodes[input - 1].operation {
            deferred[input - 1] = true;
        }
    }
    deferred
}

const ONE: f32 = 1.0;
const ZERO: f32 = 0.0;

fn scalar(value: &f32) -> *const c_void {
    (value as *const f32).cast()
}

impl<'a> Run<'a> {
    pub(super) fn stream(&self) -> &Arc<CudaStream> {
        &self.handles.stream
    }

    pub(super) fn address_of(&self, value: usize) -> u64 {
        address(
            self.buffers.values[value].as_ref().expect("value computed"),
            self.stream(),
        )
    }

    pub(super) fn gradient_address(&self, value: usize) -> u64 {
        address(&self.buffers.gradients, self.stream())
            + (self.buffers.offsets[value].expect("planned") * 4) as u64
    }

    /// Launches an element-wise kernel over `n` elements: `args`, then `n`.
    pub(super) fn launch(
        &self,
        function: &cudarc::driver::CudaFunction,
        n: usize,
        args: &[Arg],
    ) -> Result<()> {
        let mut all = args.to_vec();
        all.push(Arg::Count(n as u64));
        // SAFETY: every element-wise kernel takes the arguments listed in kernels.cu, in this
        // order, with `n` last, and touches elements below `n` of buffers at least that long.
        unsafe { self.launch_as(function, elementwise(n), &all) }
    }

    /// Launches a kernel over the planes of a `shape` value: `args`, then the plane's size and
    /// the channels.
    fn launch_planes(
        &self,
        function: &cudarc::driver::CudaFunction,
        shape: Shape,
        args: &[Arg],
    ) -> Result<()> {
        let plane = shape.height * shape.width;
        let mut all = args.to_vec();
        all.extend([plane, shape.channels].map(|v| Arg::Count(v as u64)));
        // SAFETY: every per-plane kernel takes the arguments listed in kernels.cu, in this
        // order, the plane and the channels last, and touches only the value's elements.
        unsafe { self.launch_as(function, per_plane(plane, shape.channels), &all) }
    }

    /// Launches `function` with `args` in `config`.
    ///
    /// # Safety
    /// `args` must be the kernel's arguments, and `config` within what its buffers hold.
    unsafe fn launch_as(
        &self,
        function: &cudarc::driver::CudaFunction,
        config: cudarc::driver::LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        let mut builder = self.stream().launch_builder(function);
        for arg in args {
            match arg {
                Arg::Address(a) | Arg::Count(a) => builder.arg(a),
                Arg::Float(f) => builder.arg(f),
            };
        }
        // SAFETY: the caller's promise.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(driver("run a kernel"))
    }

    /// A workspace of at least `bytes`, its address; it grows only outside a recording.
    pub(super) fn workspace(&mut self, bytes: usize) -> Result<u64> {
        if self
            .buffers
            .workspace
            .as_ref()
            .is_none_or(|w| w.len() < bytes)
        {
            if self.recording {
                return Err(Error::Device(
                    "a convolution asked for a larger workspace while its step was recorded".into(),
                ));
            }
            self.buffers.workspace = Some(alloc(self.stream(), bytes)?);
        }
        let workspace = self.buffers.workspace.as_ref().expect("allocated");
        Ok(address(workspace, self.stream()))
    }

    /// The loss's gradients at the `wanted` values from `loss` on the host.
    pub(super) fn host_seeds(
        &self,
        wanted: &[usize],
        loss: &mut LossGradients<'_>,
    ) -> Result<Vec<Vec<f32>>> {
        let outputs = wanted
            .iter()
            .map(|&v| {
                let buffer = self.buffers.values[v].as_ref().expect("value computed");
                download(
                    self.stream(),
                    buffer,
                    self.plan.shapes[v].expect("planned").len(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        loss(outputs, &self.plan.shapes_of(wanted))
    }

    /// The forward pass from the input (value 0, in place).
    pub(super) fn forward(&mut self) -> Result<()> {
        for index in 0..self.plan.steps.len() {
            self.forward_step(index)?;
        }
        Ok(())
    }

    /// The address a windowed step reads: its input, or, when the padding is asymmetric, a
    /// copy padded by hand with `fill` (made here).
    pub(super) fn window_input(&self, index: usize, fill: f32) -> Result<u64> {
        let step = &self.plan.steps[index];
        let input = self.graph.nodes[step.node].inputs[0];
        let Some((padded, padded_shape)) = &self.buffers.padded[index] else {
            return Ok(self.address_of(input));
        };
        let shape = step.inputs[0];
        let [(top, _), (left, _)] = step.padding;
        let padded = address(padded, self.stream());
        let args = [
            Arg::Address(padded),
            Arg::Address(self.address_of(input)),
            Arg::Count(shape.height as u64),
            Arg::Count(shape.width as u64),
            Arg::Count(top as u64),
            Arg::Count(left as u64),
            Arg::Count(padded_shape.height as u64),
            Arg::Count(padded_shape.width as u64),
            Arg::Float(fill),
        ];
        self.launch(&self.handles.kernels.pad, padded_shape.len(), &args)?;
        Ok(padded)
    }

    /// Step `index`'s cuDNN descriptors (a windowed step's).
    pub(super) fn window(&self, index: usize) -> &'a Window {
        self.windows.0[index].as_ref().expect("a windowed step")
    }

    /// Runs step `index` forward.
    pub(super) fn forward_step(&mut self, index: usize) -> Result<()> {
        if self.route(index, Pass::Forward, 0)? == Route::Own {
            return self.own_depthwise_forward(index);
        }
        self.forward_operation(index)
    }

    /// Runs step `index` forward through cuDNN, cuBLAS or an element-wise kernel.
    pub(super) fn forward_operation(&mut self, index: usize) -> Result<()> {
        let step = self.plan.steps[index].clone();
        let node = &self.graph.nodes[step.node];
        let y = self.address_of(step.node + 1);
        let n = step.output.len();
        let handle = self.handles.cudnn.0;
        let kernels = &self.handles.kernels;
        match &node.operation {
            Operation::Conv { weight, .. } => {
                let x = self.window_input(index, 0.0)?;
                self.convolution(index, Pass::Forward, x, y, ZERO)?;
                if let Some(bias) = &self.weights[step.node].second
                    && !self.biases_in_activations[step.node]
                {
                    let bias_desc = TensorDesc::nchw(1, weight.dims()[0], 1, 1)?;
                    // SAFETY: the bias holds one value per output channel; `y` is the output.
                    check("add a bias", unsafe {
                        cudnn_sys::cudnnAddTensor(
                            handle,
                            scalar(&ONE),
                            bias_desc.0,
                            address(bias, self.stream()) as *const c_void,
                            scalar(&ONE),
                            self.window(index).y.0,
                            y as *mut c_void,
                        )
                    })?;
                }
            }
            Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
                let (max, count_pad, _, _) = pooling(&node.operation, &step);
                if !max && !count_pad && step.asymmetric() {
                    return Err(Error::Device(format!(
                        "node {} (an average pool that leaves out padding) has uneven padding, which the CUDA device does not run",
                        step.node
                    )));
                }
                let fill = if max { f32::NEG_INFINITY } else { 0.0 };
                let x = self.window_input(index, fill)?;
                let window = self.window(index);
                let (x_desc, y_desc) = (&window.x, &window.y);
                // SAFETY: descriptors match the buffers.
                check("pool", unsafe {
                    cudnn_sys::cudnnPoolingForward(
                        handle,
                        window.pool().0,
                        scalar(&ONE),
                        x_desc.0,
                        x as *const c_void,
                        scalar(&ZERO),
                        y_desc.0,
                        y as *mut c_void,
                    )
                })?;
            }
            Operation::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                let x = self.address_of(node.inputs[0]);
                let lrn = LrnDesc::new(*size, *alpha, *beta, *bias)?;
                let desc = TensorDesc::new(step.output)?;
                // SAFETY: input and output share the descriptor's shape.
                check("normalise (LRN)", unsafe {
                    cudnn_sys::cudnnLRNCrossChannelForward(
                        handle,
                        lrn.0,
                        cudnn_sys::cudnnLRNMode_t::CUDNN_LRN_CROSS_CHANNEL_DIM1,
                        scalar(&ONE),
                        desc.0,
                        x as *const c_void,
                        scalar(&ZERO),
                        desc.0,
                        y as *mut c_void,
                    )
                })?;
            }
            Operation::Relu | Operation::Clip { .. } => {
                let input = node.inputs[0];
                let x = self.address_of(input);
                let bias = self.activation_bias(input);
                match (&node.operation, bias) {
                    (Operation::Clip { low, high }, Some(bias)) => {
                        let args = [
                            Arg::Address(y),
                            Arg::Address(x),
                            Arg::Address(bias),
                            Arg::Float(*low),
                            Arg::Float(*high),
                        ];
                        self.launch_planes(&kernels.clip_bias, step.output, &args)?;
                    }
                    (Operation::Clip { low, high }, None) => {
                        let args = [
                            Arg::Address(y),
                            Arg::Address(x),
                            Arg::Float(*low),
                            Arg::Float(*high),
                        ];
                        self.launch(&kernels.clip, n, &args)?;
                    }
                    (_, Some(bias)) => {
                        let args = [Arg::Address(y), Arg::Address(x), Arg::Address(bias)];
                        self.launch_planes(&kernels.relu_bias, step.output, &args)?;
                    }
                    (_, None) => {
                        self.launch(&kernels.relu, n, &[Arg::Address(y), Arg::Address(x)])?
                    }
                }
            }
            Operation::Scale { .. } => {
                let x = self.address_of(node.inputs[0]);
                let weights = &self.weights[step.node];
                let args = [
                    Arg::Address(y),
                    Arg::Address(x),
                    Arg::Address(address(
                        weights.first.as_ref().expect("scale"),
                        self.stream(),
                    )),
                    Arg::Address(address(
                        weights.second.as_ref().expect("shift"),
                        self.stream(),
                    )),
                ];
                self.launch_planes(&kernels.scale_shift, step.output, &args)?;
            }
            Operation::Multiply { factor } => {
                let x = self.address_of(node.inputs[0]);
                let args = [Arg::Address(y), Arg::Address(x), Arg::Float(*factor)];
                self.launch(&kernels.scale, n, &args)?;
            }
            Operation::Add => {
                let (a, b) = (
                    self.address_of(node.inputs[0]),
                    self.address_of(node.inputs[1]),
                );
                let args = [Arg::Address(y), Arg::Address(a), Arg::Address(b)];
                self.launch(&kernels.add, n, &args)?;
            }
            Operation::Concat => {
                let mut offset = 0u64;
                for (input, shape) in node.inputs.iter().zip(&step.inputs) {
                    let bytes = shape.len() * 4;
                    // SAFETY: the output holds the inputs one after another.
                    unsafe {
                        cudarc::driver::result::memcpy_dtod_async(
                            y + offset,
                            self.address_of(*input),
                            bytes,
                            self.stream().cu_stream(),
                        )
                    }
                    .map_err(driver("concatenate"))?;
                    offset += bytes as u64;
                }
            }
            Operation::Flatten => {
                // SAFETY: input and output hold the same `n` floats.
                unsafe {
                    cudarc::driver::result::memcpy_dtod_async(
                        y,
                        self.address_of(node.inputs[0]),
                        n * 4,
                        self.stream().cu_stream(),
                    )
                }
                .map_err(driver("flatten"))?;
            }
            Operation::Linear { weight, .. } => {
                let [inputs, outputs] = weight.dims();
                let weights = &self.weights[step.node];
                let w = address(weights.first.as_ref().expect("weights"), self.stream());
                let x = self.address_of(node.inputs[0]);
                self.gemv(false, w, [inputs, outputs], x, y, ZERO)?;
                if let Some(bias) = &weights.second {
                    let args = [
                        Arg::Address(y),
                        Arg::Address(address(bias, self.stream())),
                        Arg::Float(1.0),
                    ];
                    self.launch(&kernels.axpy, outputs, &args)?;
                }
            }
        }
        Ok(())
    }

    /// A fully connected layer's product with its row-major `[inputs, outputs]` weights `w`:
    /// `y = x·W + beta·y` (`x` has `inputs` values, `y` `outputs`), or, `transposed`, the
    /// gradient's `y = W·x + beta·y` (`x` has `outputs` values, `y` `inputs`).
    pub(super) fn gemv(
        &self,
        transposed: bool,
        w: u64,
        [inputs, outputs]: [usize; 2],
        x: u64,
        y: u64,
        beta: f32,
    ) -> Result<()> {
        use cudarc::cublas::sys as blas;
        // Column-major, W is an `outputs` x `inputs` matrix with leading dimension `outputs`.
        let operation = if transposed {
            blas::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas::cublasOperation_t::CUBLAS_OP_N
        };
        // SAFETY: the matrix and vectors hold the sizes given.
        let status = unsafe {
            blas::cublasSgemv_v2(
                *self.handles.cublas.handle(),
                operation,
                outputs as i32,
                inputs as i32,
                &ONE,
                w as *const f32,
                outputs as i32,
                x as *const f32,
                1,
                &beta,
                y as *mut f32,
                1,
            )
        };
        if status == blas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(Error::Device(format!(
                "cuBLAS could not multiply: {status:?}"
            )))
        }
    }

    /// The backward pass from `seeds` (the loss's gradients at the `wanted` values) to the
    /// input, into the buffers' block of gradients, the absolute sum after them cleared. No
    /// gradient is cleared: the first contribution to each overwrites it, the later ones
    /// add to it, and only the gradients of values something wanted depends on are read.
    pub(super) fn backward(&mut self, wanted: &[usize], seeds: &Seeds<'_>) -> Result<()> {
        // SAFETY: the sum is one float inside the block.
        unsafe {
            cudarc::driver::result::memset_d8_async(
                self.buffers.total_address(self.stream()),
                0,
                4,
                self.stream().cu_stream(),
            )
        }
        .map_err(driver("clear the gradient's sum"))?;
        let mut written = vec![false; self.plan.shapes.len()];
        for (index, &value) in wanted.iter().enumerate() {
            let dy = self.target(value, &mut written);
            self.seed(value, dy, seeds, index)?;
        }
        for index in (0..self.plan.steps.len()).rev() {
            let step = self.plan.steps[index].clone();
            if !written[step.node + 1] {
                continue;
            }
            let dy = self.gradient_address(step.node + 1);
            let inputs = &self.graph.nodes[step.node].inputs;
            let dxs: Vec<Target> = inputs
                .iter()
                .map(|&v| self.target(v, &mut written))
                .collect();
            self.backward_step(index, &step, dy, &dxs)?;
        }
        Ok(())
    }

    /// Where the next contribution to `value`'s gradient goes: added, if one was `written`
    /// there before, else stored; it is marked written.
    pub(super) fn target(&self, value: usize, written: &mut [bool]) -> Target {
        let accumulate = std::mem::replace(&mut written[value], true);
        Target {
            address: self.gradient_address(value),
            accumulate,
        }
    }

    /// Stores the loss's gradient with respect to `value` (the `index`th wanted value) in its
    /// gradient buffer.
    pub(super) fn seed(
        &self,
        value: usize,
        dy: Target,
        seeds: &Seeds<'_>,
        index: usize,
    ) -> Result<()> {
        let shape = self.plan.shapes[value].expect("planned");
        match seeds {
            Seeds::Host(seeds) => {
                let seed = &seeds[index];
                if seed.len() != shape.len() {
                    return Err(Error::InvalidParameter(format!(
                        "a gradient of {} values for a value of shape {shape:?}",
                        seed.len()
                    )));
                }
                let upload = upload(self.stream(), seed)?;
                self.copy(dy, address(&upload, self.stream()), 1.0, shape.len())
            }
            Seeds::Device(losses) => {
                let loss = &losses[index];
                // The window the loss covers: its rows, then its columns.
                let window = [
                    loss.rows.start,
                    loss.rows.end,
                    loss.cols.start,
                    loss.cols.end,
                ]
                .map(|v| Arg::Count(v as u64));
                // The quadratic's kernels read the value, its weights, its shape and window.
                let mask = loss.mask.as_ref();
                let mut quadratic = vec![
                    Arg::Address(self.address_of(value)),
                    Arg::Address(address(&loss.quadratic, self.stream())),
                    Arg::Address(address(&loss.linear, self.stream())),
                    Arg::Address(mask.map_or(0, |mask| address(mask, self.stream()))),
                    Arg::Count(shape.channels as u64),
                    Arg::Count(shape.height as u64),
                    Arg::Count(shape.width as u64),
                ];
                quadratic.extend(window);
                let mut args = vec![Arg::Address(dy.address)];
                args.extend(quadratic.iter().copied());
                args.push(dy.accumulate());
                self.launch(&self.handles.kernels.quadratic_seed, shape.len(), &args)?;
                let total = |part: u64| {
                    let values = loss.values.as_ref();
                    values.map_or(0, |values| address(values, self.stream()) + 4 * part)
                };
                if let Some(values) = &loss.values {
                    // SAFETY: the three values are floats in that buffer.
                    unsafe {
                        cudarc::driver::result::memset_d8_async(
                            address(values, self.stream()),
                            0,
                            3 * 4,
                            self.stream().cu_stream(),
                        )
                    }
                    .map_err(driver("clear a loss's values"))?;
                    let mut args = vec![Arg::Address(total(0))];
                    args.extend(quadratic.iter().copied());
                    self.launch(&self.handles.kernels.quadratic_value, shape.len(), &args)?;
                }
                let count = shape.len() as f32;
                for content in &loss.content {
                    let args = [
                        Arg::Address(dy.address),
                        Arg::Address(total(1)),
                        Arg::Address(self.address_of(value)),
                        Arg::Address(address(&content.target, self.stream())),
                        Arg::Float(2.0 * content.weight / count),
                        Arg::Float(content.weight / count),
                    ];
                    self.launch(&self.handles.kernels.content_seed, shape.len(), &args)?;
                }
                for style in &loss.style {
                    let gram = loss.gram.as_ref().expect("room for a Gram matrix");
                    self.style_seed(
                        value,
                        shape,
                        style,
                        address(gram, self.stream()),
                        total(2),
                        dy,
                    )?;
                }
                for guide in &loss.guides {
                    let scores = loss.scores.as_ref().expect("room for a guide's scores");
                    let scores = address(scores, self.stream());
                    self.guide_scores(value, shape, guide, scores)?;
                    let mut args = vec![
                        Arg::Address(dy.address),
                        Arg::Address(scores),
                        Arg::Address(address(&guide.features, self.stream())),
                        Arg::Count(guide.positions as u64),
                        Arg::Count(shape.channels as u64),
                        Arg::Count(shape.width as u64),
                    ];
                    args.extend(window);
                    args.push(Arg::Float(guide.weight));
                    let plane = shape.height * shape.width;
                    self.launch(&self.handles.kernels.guide_seed, plane, &args)?;
                }
                Ok(())
            }
        }
    }

    /// A style match's gradient added to `dy` and its value to `total` (none: 0): the Gram
    /// matrix of `value`'s features (of `shape`) at `gram` by cuBLAS, less the target, then
    /// its product with the features, scaled, by cuBLAS again.
    fn style_seed(
        &self,
        value: usize,
        shape: Shape,
        style: &DeviceMatch,
        gram: u64,
        total: u64,
        dy: Target,
    ) -> Result<()> {
        let (channels, plane) = (shape.channels, shape.height * shape.width);
        let (count, squares) = (shape.len() as f32, (channels * channels) as f32);
        let features = self.address_of(value);
        // Column-major, the features are a plane x channels matrix F' (leading dimension the
        // plane): the Gram matrix is F'ᵀ F', and the gradient's plane x channels matrix F' D.
        self.gemm(
            [true, false],
            [channels, channels, plane],
            1.0,
            (features, plane),
            (features, plane),
            0.0,
            (gram, channels),
        )?;
        let args = [
            Arg::Address(gram),
            Arg::Address(total),
            Arg::Address(address(&style.target, self.stream())),
            Arg::Float(1.0 / count),
            Arg::Float(style.weight / squares),
        ];
        let kernels = &self.handles.kernels;
        self.launch(&kernels.style_difference, channels * channels, &args)?;
        self.gemm(
            [false, false],
            [plane, channels, channels],
            4.0 * style.weight / squares / count,
            (features, plane),
            (gram, channels),
            1.0,
            (dy.address, plane),
        )
    }

    /// cuBLAS's `c = alpha·op(a)·op(b) + beta·c` on column-major matrices (each its address
    /// and leading dimension), `op` transposing where `transposed` says; `op(a)` is `m` x `k`
    /// and `op(b)` `k` x `n`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        transposed: [bool; 2],
        [m, n, k]: [usize; 3],
        alpha: f32,
        (a, lda): (u64, usize),
        (b, ldb): (u64, usize),
        beta: f32,
        (c, ldc): (u64, usize),
    ) -> Result<()> {
        use cudarc::cublas::sys as blas;
        let operation = |transposed| {
            if transposed {
                blas::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas::cublasOperation_t::CUBLAS_OP_N
            }
        };
        // SAFETY: the matrices hold the sizes given, each side below i32::MAX (checked when
        // the loss was uploaded).
        let status = unsafe {
            blas::cublasSgemm_v2(
                *self.handles.cublas.handle(),
                operation(transposed[0]),
                operation(transposed[1]),
                m as i32,
                n as i32,
                k as i32,
                &alpha,
                a as *const f32,
                lda as i32,
                b as *const f32,
                ldb as i32,
                &beta,
                c as *mut f32,
                ldc as i32,
            )
        };
        if status == blas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(Error::Device(format!(
                "cuBLAS could not multiply matrices: {status:?}"
            )))
        }
    }

    /// The scores of `value`'s (of `shape`) features at each position against `guide`'s at
    /// each of its positions, row-major `[positions, guide positions]`, stored at `scores`:
    /// one matrix product on cuBLAS.
    fn guide_scores(
        &self,
        value: usize,
        shape: Shape,
        guide: &DeviceGuide,
        scores: u64,
    ) -> Result<()> {
        let plane = shape.height * shape.width;
        let features = address(&guide.features, self.stream());
        // Column-major: the guide's features are a positions x channels matrix, the value a
        // plane x channels one; the scores, positions x plane, are the features times the
        // value's transpose.
        self.gemm(
            [false, true],
            [guide.positions, plane, shape.channels],
            1.0,
            (features, guide.positions),
            (self.address_of(value), plane),
            0.0,
            (scores, guide.positions),
        )
    }

    /// `a·x` (`n` values at `x`) stored at `target`.
    pub(super) fn copy(&self, target: Target, x: u64, a: f32, n: usize) -> Result<()> {
        let kernels = &self.handles.kernels;
        let kernel = if target.accumulate {
            &kernels.axpy
        } else {
            &kernels.scale
        };
        let args = [Arg::Address(target.address), Arg::Address(x), Arg::Float(a)];
        self.launch(kernel, n, &args)
    }

    /// Stores step `index`'s contribution to its inputs' gradients `dxs`, from its output's
    /// gradient `dy`.
    pub(super) fn backward_step(
        &mut self,
        index: usize,
        step: &Step,
        dy: u64,
        dxs: &[Target],
    ) -> Result<()> {
        if self.route(index, Pass::Backward, dy)? == Route::Own {
            return self.own_depthwise_backward(index, dy, dxs[0]);
        }
        self.backward_operation(index, step, dy, dxs)
    }

    /// [`Run::backward_step`] through cuDNN, cuBLAS or an element-wise kernel.
    pub(super) fn backward_operation(
        &mut self,
        index: usize,
        step: &Step,
        dy: u64,
        dxs: &[Target],
    ) -> Result<()> {
        let node = &self.graph.nodes[step.node];
        let handle = self.handles.cudnn.0;
        let kernels = &self.handles.kernels;
        let n = step.output.len();
        let y = self.address_of(step.node + 1);
        // A windowed step with hand-made padding writes its gradient to a padded scratch
        // buffer, then stores the part that covers the input.
        let padded = self.buffers.padded[index]
            .as_ref()
            .map(|(buffer, shape)| (address(buffer, self.stream()), *shape));
        let scratch = padded.map(|_| {
            let scratch = self.buffers.scratch.as_ref().expect("a scratch buffer");
            address(scratch, self.stream())
        });
        let (dx, beta) = match scratch {
            Some(scratch) => (scratch, ZERO),
            None => (dxs[0].address, dxs[0].beta()),
        };
        let input_shape = step.inputs[0];
        let x = match padded {
            Some((address, _)) => address,
            None => self.address_of(node.inputs[0]),
        };
        match &node.operation {
            Operation::Conv { .. } => self.convolution(index, Pass::Backward, dy, dx, beta)?,
            Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
                let window = self.window(index);
                let (x_desc, y_desc) = (&window.x, &window.y);
                // SAFETY: descriptors match the buffers.
                check("pool backwards", unsafe {
                    cudnn_sys::cudnnPoolingBackward(
                        handle,
                        window.pool().0,
                        scalar(&ONE),
                        y_desc.0,
                        y as *const c_void,
                        y_desc.0,
                        dy as *const c_void,
                        x_desc.0,
                        x as *const c_void,
                        scalar(&beta),
                        x_desc.0,
                        dx as *mut c_void,
                    )
                })?;
            }
            Operation::Lrn {
                size,
                alpha,
                beta: exponent,
                bias,
            } => {
                let lrn = LrnDesc::new(*size, *alpha, *exponent, *bias)?;
                let desc = TensorDesc::new(step.output)?;
                // SAFETY: every buffer has the descriptor's shape.
                check("normalise (LRN) backwards", unsafe {
                    cudnn_sys::cudnnLRNCrossChannelBackward(
                        handle,
                        lrn.0,
                        cudnn_sys::cudnnLRNMode_t::CUDNN_LRN_CROSS_CHANNEL_DIM1,
                        scalar(&ONE),
                        desc.0,
                        y as *const c_void,
                        desc.0,
                        dy as *const c_void,
                        desc.0,
                        x as *const c_void,
                        scalar(&dxs[0].beta()),
                        desc.0,
                        dxs[0].address as *mut c_void,
                    )
                })?;
            }
            Operation::Relu => {
                let args = [
                    Arg::Address(dxs[0].address),
                    Arg::Address(dy),
                    Arg::Address(y),
                    dxs[0].accumulate(),
                ];
                self.launch(&kernels.relu_backward, n, &args)?;
            }
            Operation::Clip { low, high } => {
                let args = [
                    Arg::Address(dxs[0].address),
                    Arg::Address(dy),
                    Arg::Address(y),
                    Arg::Float(*low),
                    Arg::Float(*high),
                    dxs[0].accumulate(),
                ];
                self.launch(&kernels.clip_backward, n, &args)?;
            }
            Operation::Scale { .. } => {
                let scale = self.weights[step.node].first.as_ref().expect("scale");
                let args = [
                    Arg::Address(dxs[0].address),
                    Arg::Address(dy),
                    Arg::Address(address(scale, self.stream())),
                    dxs[0].accumulate(),
                ];
                self.launch_planes(&kernels.scale_backward, step.output, &args)?;
            }
            Operation::Multiply { factor } => self.copy(dxs[0], dy, *factor, n)?,
            Operation::Add => {
                for &dx in dxs {
                    self.copy(dx, dy, 1.0, n)?;
                }
            }
            Operation::Concat => {
                let mut offset = 0u64;
                for (&dx, shape) in dxs.iter().zip(&step.inputs) {
                    self.copy(dx, dy + offset, 1.0, shape.len())?;
                    offset += (shape.len() * 4) as u64;
                }
            }
            Operation::Flatten => self.copy(dxs[0], dy, 1.0, n)?,
            Operation::Linear { weight, .. } => {
                let w = address(
                    self.weights[step.node].first.as_ref().expect("weights"),
                    self.stream(),
                );
                self.gemv(true, w, weight.dims(), dy, dxs[0].address, dxs[0].beta())?;
            }
        }
        if let (Some(scratch), Some((_, padded_shape))) = (scratch, padded) {
            let [(top, _), (left, _)] = step.padding;
            let args = [
                Arg::Address(dxs[0].address),
                Arg::Address(scratch),
                Arg::Count(input_shape.height as u64),
                Arg::Count(input_shape.width as u64),
                Arg::Count(top as u64),
                Arg::Count(left as u64),
                Arg::Count(padded_shape.height as u64),
                Arg::Count(padded_shape.width as u64),
                dxs[0].accumulate(),
            ];
            self.launch(&kernels.crop, input_shape.len(), &args)?;
        }
        Ok(())
    }
}

impl Run<'_> {
    /// The choices made for the graph so far.
    fn choices(&self) -> std::sync::MutexGuard<'_, Choices> {
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key under which step `index`'s choice in `pass` is remembered across runs, and
    /// the choice an earlier run remembered there, by name.
    fn remembered(&self, index: usize, pass: Pass) -> (String, Option<String>) {
        let choices = self.choices();
        let key = choices.remembered.key(&self.window(index).describes, pass);
        let name = choices.remembered.get(&key).map(str::to_string);
        (key, name)
    }

    /// The address of the bias an activation reading `input` adds: the bias of the
    /// convolution that made it, where that convolution left it to the activation.
    fn activation_bias(&self, input: usize) -> Option<u64> {
        let node = input.checked_sub(1)?;
        if !self.biases_in_activations[node] {
            return None;
        }
        let bias = self.weights[node].second.as_ref().expect("a bias");
        Some(address(bias, self.stream()))
    }

    /// Step `index`'s convolution in `pass`, from `input` (the image, or the output's
    /// gradient) to `output` (the output, or the input's gradient, `beta` times what is there
    /// added), by the algorithm chosen for it.
    fn convolution(
        &mut self,
        index: usize,
        pass: Pass,
        input: u64,
        output: u64,
        beta: f32,
    ) -> Result<()> {
        let choice = self.convolution_choice(index, pass, input)?;
        self.convolve(index, choice, input, output, beta)
    }

    /// The algorithm kept for step `index`'s convolution in `pass`, else chosen now: cuDNN's
    /// heuristics' first, or where they offer others worth trying, the fastest when each
    /// runs from `input` into a buffer of its own (nothing is timed while recording).
    fn convolution_choice(&mut self, index: usize, pass: Pass, input: u64) -> Result<Choice> {
        let window = self.window(index);
        let key = (self.plan.steps[index].node, window.input, pass);
        let kept = self.choices().convolutions.get(&key).copied();
        if let Some(choice) = kept {
            return Ok(choice);
        }
        let candidates = candidates(self.handles.cudnn.0, window, pass)?;
        let (remembered_key, remembered) = self.remembered(index, pass);
        let remembered = remembered
            .and_then(|name| candidates.iter().find(|c| remembered_name(c) == name))
            .copied();
        let choice = if let Some(choice) = remembered {
            if print_choices() {
                let rank = candidates.iter().position(|c| *c == choice).unwrap_or(0);
                eprintln!(
                    "deepdream: convolution node {} {pass:?} on {:?}: remembered {:?}; kept #{}",
                    key.0,
                    key.1,
                    choice.algorithm,
                    rank + 1
                );
            }
            choice
        } else if self.recording || candidates.len() == 1 {
            candidates[0]
        } else {
            let len = match pass {
                Pass::Forward => self.plan.steps[index].output.len(),
                Pass::Backward => window.input.len(),
            };
            let scratch = alloc::<f32>(self.stream(), len)?;
            let output = address(&scratch, self.stream());
            let times: Vec<Result<f32>> = candidates
                .iter()
                .map(|&c| self.timed(|run| run.convolve(index, c, input, output, ZERO)))
                .collect();
            let fastest = times
                .iter()
                .enumerate()
                .filter_map(|(index, time)| time.as_ref().ok().map(|ms| (*ms, index)))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, index)| index);
            if print_choices() {
                let times: Vec<String> = candidates
                    .iter()
                    .zip(&times)
                    .map(|(c, time)| match time {
                        Ok(ms) => format!("{:?} {ms:.4} ms", c.algorithm),
                        Err(error) => format!("{:?} {error}", c.algorithm),
                    })
                    .collect();
                let kept = fastest.map_or("none".into(), |index| format!("#{}", index + 1));
                eprintln!(
                    "deepdream: convolution node {} {pass:?} on {:?}: {}; kept {kept}",
                    key.0,
                    key.1,
                    times.join(", ")
                );
            }
            let choice = match fastest {
                Some(index) => candidates[index],
                None => return Err(times.into_iter().find_map(Result::err).expect("an error")),
            };
            let name = remembered_name(&choice);
            self.choices().remembered.remember(remembered_key, name);
            choice
        };
        self.choices().convolutions.insert(key, choice);
        Ok(choice)
    }

    /// Step `index`'s convolution by `choice` (see [`Run::convolution`]).
    fn convolve(
        &mut self,
        index: usize,
        choice: Choice,
        input: u64,
        output: u64,
        beta: f32,
    ) -> Result<()> {
        let step = &self.plan.steps[index];
        let weights = &self.weights[step.node];
        let w = address(weights.first.as_ref().expect("conv weights"), self.stream());
        let handle = self.handles.cudnn.0;
        let tf32 = self.tf32;
        let workspace = self.workspace(choice.workspace)?;
        let window = self.window(index);
        let conv = window.conv();
        use_math(conv, choice.math, tf32)?;
        let bytes = choice.workspace;
        // SAFETY: the descriptors match the buffers' shapes; the workspace is `bytes` long.
        match choice.algorithm {
            Algorithm::Forward(algo) => check("run a convolution", unsafe {
                cudnn_sys::cudnnConvolutionForward(
                    handle,
                    scalar(&ONE),
                    window.x.0,
                    input as *const c_void,
                    conv.filter,
                    w as *const c_void,
                    conv.conv,
                    algo,
                    workspace as *mut c_void,
                    bytes,
                    scalar(&beta),
                    window.y.0,
                    output as *mut c_void,
                )
            }),
            Algorithm::BackwardData(algo) => check("run a convolution backwards", unsafe {
                cudnn_sys::cudnnConvolutionBackwardData(
                    handle,
                    scalar(&ONE),
                    conv.filter,
                    w as *const c_void,
                    window.y.0,
                    input as *const c_void,
                    conv.conv,
                    algo,
                    workspace as *mut c_void,
                    bytes,
                    scalar(&beta),
                    window.x.0,
                    output as *mut c_void,
                )
            }),
        }
    }

    /// The geometry arguments of deepdream's depthwise kernels for step `index`, if it is a
    /// depthwise convolution they run (one filter per channel, every count within an `i32`).
    pub(super) fn depthwise_geometry(&self, index: usize) -> Option<[Arg; 12]> {
        let step = &self.plan.steps[index];
        let Operation::Conv {
            weight,
            stride,
            dilation,
            groups,
            ..
        } = &self.graph.nodes[step.node].operation
        else {
            return None;
        };
        let [outputs, per_group, kh, kw] = weight.dims();
        let input = step.inputs[0];
        let fits = |len: usize| len < i32::MAX as usize;
        let depthwise = per_group == 1 && *groups == input.channels && outputs == input.channels;
        (depthwise && fits(input.len()) && fits(step.output.len())).then(|| {
            [
                input.height,
                input.width,
                step.output.height,
                step.output.width,
                kh,
                kw,
                stride[0],
                stride[1],
                step.padding[0].0,
                step.padding[1].0,
                dilation[0],
                dilation[1],
            ]
            .map(|v| Arg::Count(v as u64))
        })
    }

    /// What runs step `index` in `pass`: deepdream's depthwise kernels where the step is a
    /// depthwise convolution and they are asked for or, by default, were faster than cuDNN
    /// when both were timed at the step's first run of this shape (`dy`, in the backward
    /// pass, is the output's gradient to time them on); else cuDNN.
    pub(super) fn route(&mut self, index: usize, pass: Pass, dy: u64) -> Result<Route> {
        if self.depthwise_geometry(index).is_none() {
            return Ok(Route::Cudnn);
        }
        match self.depthwise {
            Depthwise::Cudnn => return Ok(Route::Cudnn),
            Depthwise::Own => return Ok(Route::Own),
            Depthwise::Fastest => {}
        }
        let step = self.plan.steps[index].clone();
        let key = (step.node, step.inputs[0], pass);
        let chosen = self.choices().depthwise.get(&key).copied();
        if let Some(route) = chosen {
            return Ok(route);
        }
        let (remembered_key, remembered) = self.remembered(index, pass);
        if let Some(route) = remembered.as_deref().and_then(route_named) {
            if print_choices() {
                let input = step.inputs[0];
                eprintln!(
                    "deepdream: depthwise node {} {pass:?} on {}x{}x{}: remembered: {route:?}",
                    step.node, input.channels, input.height, input.width
                );
            }
            self.choices().depthwise.insert(key, route);
            return Ok(route);
        }
        if self.recording {
            // Nothing can be timed while recording (the first step, never recorded, times
            // every shape): the own kernels need no workspace.
            return Ok(Route::Own);
        }
        let (cudnn, own) = match pass {
            Pass::Forward => (
                self.timed(|run| run.forward_operation(index)),
                self.timed(|run| run.own_depthwise_forward(index))?,
            ),
            Pass::Backward => {
                // Both store a gradient of their own, so that the pass's is left alone.
                let target = alloc::<f32>(self.stream(), step.inputs[0].len())?;
                let dx = Target {
                    address: address(&target, self.stream()),
                    accumulate: false,
                };
                (
                    self.timed(|run| run.backward_operation(index, &step, dy, &[dx])),
                    self.timed(|run| run.own_depthwise_backward(index, dy, dx))?,
                )
            }
        };
        let route = match cudnn {
            Ok(cudnn) if cudnn <= own => Route::Cudnn,
            _ => Route::Own,
        };
        if print_choices() {
            let cudnn = cudnn.map_or_else(|e| e.to_string(), |ms| format!("{ms:.4} ms"));
            let input = step.inputs[0];
            eprintln!(
                "deepdream: depthwise node {} {pass:?} on {}x{}x{}: cuDNN {cudnn}, own {own:.4} ms: {route:?}",
                step.node, input.channels, input.height, input.width
            );
        }
        let mut choices = self.choices();
        choices.depthwise.insert(key, route);
        choices
            .remembered
            .remember(remembered_key, route_name(route).into());
        Ok(route)
    }

    /// The time in milliseconds `work` takes on the GPU, over [`TIMED_RUNS`] runs after one.
    pub(super) fn timed(&mut self, mut work: impl FnMut(&mut Self) -> Result<()>) -> Result<f32> {
        work(self)?;
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .stream()
            .record_event(timing)
            .map_err(driver("time a kernel"))?;
        for _ in 0..TIMED_RUNS {
            work(self)?;
        }
        let end = self
            .stream()
            .record_event(timing)
            .map_err(driver("time a kernel"))?;
        let total = start.elapsed_ms(&end).map_err(driver("time a kernel"))?;
        Ok(total / TIMED_RUNS as f32)
    }

    /// Step `index`, a depthwise convolution, forward into its value by deepdream's kernel.
    pub(super) fn own_depthwise_forward(&self, index: usize) -> Result<()> {
        let step = &self.plan.steps[index];
        let (w, geometry) = self.depthwise_arguments(index);
        let bias = match &self.weights[step.node].second {
            Some(bias) if !self.biases_in_activations[step.node] => address(bias, self.stream()),
            // No bias (or one the activation after adds) is a null address.
            _ => 0,
        };
        let mut args = vec![
            Arg::Address(self.address_of(step.node + 1)),
            Arg::Address(self.address_of(self.graph.nodes[step.node].inputs[0])),
            w,
            Arg::Address(bias),
        ];
        args.extend(geometry);
        let kernel = &self.handles.kernels.depthwise;
        self.launch(kernel, step.output.len(), &args)
    }

    /// Step `index`, a depthwise convolution, backward by deepdream's kernel: the input's
    /// gradient stored at `dx` from the output's at `dy`.
    pub(super) fn own_depthwise_backward(&self, index: usize, dy: u64, dx: Target) -> Result<()> {
        let (w, geometry) = self.depthwise_arguments(index);
        let mut args = vec![
            Arg::Address(dx.address),
            Arg::Address(dy),
            w,
            dx.accumulate(),
        ];
        args.extend(geometry);
        let kernel = &self.handles.kernels.depthwise_backward;
        self.launch(kernel, self.plan.steps[index].inputs[0].len(), &args)
    }

    /// The filters' address and the geometry of step `index`, a depthwise convolution, as
    /// deepdream's kernels take them.
    fn depthwise_arguments(&self, index: usize) -> (Arg, [Arg; 12]) {
        let weights = self.weights[self.plan.steps[index].node].first.as_ref();
        let w = address(weights.expect("conv weights"), self.stream());
        let geometry = self.depthwise_geometry(index).expect("a depthwise step");
        (Arg::Address(w), geometry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::graph::Padding;
    use burn::tensor::Tensor;

    fn conv(bias: bool) -> Operation {
        let device = burn::tensor::Device::flex();
        Operation::Conv {
            weight: Tensor::zeros([2, 2, 1, 1], &device),
            bias: bias.then(|| Tensor::zeros([2], &device)),
            stride: [1, 1],
            padding: Padding::Fixed([(0, 0); 2]),
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Only a convolution with a bias, read by one ReLU or clip alone and not wanted itself,
    /// leaves its bias to the activation.
    #[test]
    fn biases_go_into_the_activation_that_alone_reads_them() {
        let mut graph = Graph::default();
        let first = graph.push(conv(true), vec![0]);
        let relu = graph.push(Operation::Relu, vec![first]);
        let read_twice = graph.push(conv(true), vec![relu]);
        let relu = graph.push(Operation::Relu, vec![read_twice]);
        let sum = graph.push(Operation::Add, vec![read_twice, relu]);
        let no_bias = graph.push(conv(false), vec![sum]);
        let relu = graph.push(Operation::Relu, vec![no_bias]);
        let clipped = graph.push(conv(true), vec![relu]);
        let clip = graph.push(
            Operation::Clip {
                low: 0.0,
                high: 6.0,
            },
            vec![clipped],
        );
        let wanted = graph.push(conv(true), vec![clip]);
        let last = graph.push(Operation::Relu, vec![wanted]);
        let shape = Shape {
            channels: 2,
            height: 3,
            width: 3,
        };
        let plan = graph.plan(shape, &[last, wanted]).unwrap();
        let deferred = biases_in_activations(&graph, &plan);
        let by_value = |value: usize| deferred[value - 1];
        assert!(by_value(first));
        assert!(!by_value(read_twice));
        assert!(!by_value(no_bias));
        assert!(by_value(clipped));
        assert!(!by_value(wanted));
        let plan = graph.plan(shape, &[last]).unwrap();
        assert!(biases_in_activations(&graph, &plan)[wanted - 1]);
    }
}
