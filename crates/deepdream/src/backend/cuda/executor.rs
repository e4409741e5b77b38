//! Runs a [`Graph`] on the GPU and back: the forward pass to the wanted values, then, from the
//! loss's gradients with respect to them, the gradient with respect to the input, through
//! cuDNN (convolutions forward and backward to the input, pooling, LRN) and deepdream's
//! kernels (activations, per-channel scales, sums, the padding cuDNN cannot do) and cuBLAS
//! (fully connected layers). Weights are uploaded once; no weight gradient is ever computed.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::sys as cudnn_sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DriverError, PushKernelArg};

use crate::backend::cuda::cudnn::{
    ConvDesc, ConvGeometry, LrnDesc, PoolDesc, TensorDesc, check, failed,
};
use crate::backend::cuda::gpu::{Gpu, Handles};
use crate::backend::cuda::kernels::elementwise;
use crate::backend::graph::{Graph, Operation, Plan, Shape, Step};
use crate::backend::quadratic_loss::QuadraticLoss;
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

/// The most workspace one convolution may take.
const MAX_WORKSPACE: usize = 1 << 30;

/// The loss's side of a gradient made on the host: given the wanted values (host copies,
/// with their shapes), the loss's gradient with respect to each (same lengths).
pub type LossGradients<'a> = dyn FnMut(Vec<Vec<f32>>, &[Shape]) -> Result<Vec<Vec<f32>>> + 'a;

/// Where the loss's gradients at the wanted values come from.
pub enum Loss<'s, 'a> {
    /// The host makes them from copies of the values.
    Host(&'s mut LossGradients<'a>),
    /// The GPU makes them, one quadratic loss per wanted value: the values stay there.
    Quadratic(&'s [QuadraticLoss]),
}

/// The loss's gradients at the wanted values, ready for the backward pass.
enum Seeds<'s> {
    Host(Vec<Vec<f32>>),
    Quadratic(&'s [QuadraticLoss]),
}

/// A graph ready to run on one GPU.
pub struct Executor {
    gpu: Arc<Gpu>,
    graph: Graph,
    precision: Precision,
    weights: Mutex<Option<Vec<Weights>>>,
    choices: Mutex<Choices>,
}

/// A node's constants on the GPU.
#[derive(Default)]
struct Weights {
    first: Option<CudaSlice<f32>>,
    second: Option<CudaSlice<f32>>,
}

fn driver(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("CUDA could not {what}: {e}"))
}

/// The raw address of a buffer (the context tracks no events, so nothing waits here).
fn address(buffer: &CudaSlice<f32>, stream: &CudaStream) -> u64 {
    buffer.device_ptr(stream).0
}

/// A kernel argument.
enum Arg {
    Address(u64),
    Count(u64),
    Float(f32),
}

impl Executor {
    /// `graph` on `gpu`, convolutions in `precision`.
    pub fn new(gpu: Arc<Gpu>, graph: Graph, precision: Precision) -> Executor {
        Executor {
            gpu,
            graph,
            precision,
            weights: Mutex::new(None),
            choices: Mutex::new(Choices::default()),
        }
    }

    /// The gradient with respect to `input` (a `shape` image) of a loss of the `wanted`
    /// values, whose gradients `loss` gives.
    pub fn gradient(
        &self,
        input: &[f32],
        shape: Shape,
        wanted: &[usize],
        loss: Loss<'_, '_>,
    ) -> Result<Vec<f32>> {
        check_len(input.len(), shape)?;
        let plan = self.graph.plan(shape, wanted)?;
        self.run(&plan, |run| {
            let input = run
                .stream()
                .clone_htod(input)
                .map_err(driver("upload the image"))?;
            let gradient = run.gradient(input, wanted, loss)?;
            download(run.stream(), &gradient, shape.len())
        })
    }

    /// `image` (a `shape` image of 3 channels) put on the GPU for [`Executor::ascend`] with
    /// a loss of the `wanted` values, planned once for all its steps.
    pub fn upload_image(
        &self,
        image: &[f32],
        shape: Shape,
        wanted: &[usize],
    ) -> Result<DeviceImage> {
        check_len(image.len(), shape)?;
        if shape.channels != 3 {
            return Err(Error::InvalidParameter(format!(
                "an image of {} channels cannot be dreamed on the GPU",
                shape.channels
            )));
        }
        let plan = self.graph.plan(shape, wanted)?;
        let buffer = self.gpu.with(|handles| {
            handles
                .stream
                .clone_htod(image)
                .map_err(driver("upload the image"))
        })?;
        Ok(DeviceImage {
            buffer,
            shape,
            wanted: wanted.to_vec(),
            plan,
        })
    }

    /// The values of an image on the GPU.
    pub fn download_image(&self, image: &DeviceImage) -> Result<Vec<f32>> {
        self.gpu
            .with(|handles| download(&handles.stream, &image.buffer, image.shape.len()))
    }

    /// One DeepDream step on an image kept on the GPU, all of it there: the image rolled by
    /// `ascent.shift`, the gradient of the `losses` of its wanted values at it, its mean
    /// absolute value, which `factors` turns into each channel's step (or an error, which
    /// leaves the image as it was); the image moved by them along the gradient rolled back,
    /// each channel clamped to its range. Only the mean crosses to the host.
    pub fn ascend(
        &self,
        image: &mut DeviceImage,
        losses: &[QuadraticLoss],
        ascent: DeviceAscent,
        factors: &mut dyn FnMut(f32) -> Result<[f32; 3]>,
    ) -> Result<()> {
        let shape = image.shape;
        self.run(&image.plan, |run| {
            let handles = run.handles;
            let kernels = &handles.kernels;
            let [rows, cols] = ascent.shift;
            let (height, width) = (shape.height as u64, shape.width as u64);
            let rolled = run.alloc(shape.len())?;
            let args = [
                Arg::Address(address(&rolled, run.stream())),
                Arg::Address(address(&image.buffer, run.stream())),
                Arg::Count(height),
                Arg::Count(width),
                Arg::Count(rows as u64),
                Arg::Count(cols as u64),
            ];
            run.launch(&kernels.roll, shape.len(), &args)?;
            let gradient = run.gradient(rolled, &image.wanted, Loss::Quadratic(losses))?;
            let total = run.alloc(1)?;
            let args = [
                Arg::Address(address(&total, run.stream())),
                Arg::Address(address(&gradient, run.stream())),
            ];
            run.launch(&kernels.abs_sum, shape.len(), &args)?;
            let total = download(run.stream(), &total, 1)?[0];
            let factors = factors(total / shape.len() as f32)?;
            let [(low0, high0), (low1, high1), (low2, high2)] = ascent.ranges;
            let args = [
                Arg::Address(address(&image.buffer, run.stream())),
                Arg::Address(address(&gradient, run.stream())),
                Arg::Count(height),
                Arg::Count(width),
                Arg::Count(rows as u64),
                Arg::Count(cols as u64),
                Arg::Float(factors[0]),
                Arg::Float(factors[1]),
                Arg::Float(factors[2]),
                Arg::Float(low0),
                Arg::Float(high0),
                Arg::Float(low1),
                Arg::Float(high1),
                Arg::Float(low2),
                Arg::Float(high2),
            ];
            run.launch(&kernels.ascend, shape.len(), &args)
        })
    }

    /// Runs `work` with the graph's weights on the GPU, for one input size's `plan`.
    fn run<R>(&self, plan: &Plan, work: impl FnOnce(&mut Run<'_>) -> Result<R>) -> Result<R> {
        self.gpu.with(|handles| {
            let mut weights = self.weights.lock().unwrap_or_else(|p| p.into_inner());
            if weights.is_none() {
                *weights = Some(self.upload_weights(handles)?);
            }
            let weights = weights.as_ref().expect("uploaded");
            let mut run = Run {
                handles,
                graph: &self.graph,
                weights,
                plan,
                tf32: self.precision == Precision::Tf32,
                choices: &self.choices,
                values: Vec::new(),
                padded: Vec::new(),
                workspace: None,
            };
            work(&mut run)
        })
    }

    fn upload_weights(&self, handles: &Handles) -> Result<Vec<Weights>> {
        let upload = |tensor: burn::tensor::TensorData| {
            let values = tensor
                .try_to_vec::<f32>()
                .map_err(|e| Error::Device(format!("cannot read weights: {e:?}")))?;
            handles
                .stream
                .clone_htod(&values)
                .map_err(driver("upload weights"))
        };
        self.graph
            .nodes
            .iter()
            .map(|node| {
                Ok(match &node.operation {
                    Operation::Conv { weight, bias, .. } => Weights {
                        first: Some(upload(weight.to_data())?),
                        second: bias.as_ref().map(|b| upload(b.to_data())).transpose()?,
                    },
                    Operation::Linear { weight, bias } => Weights {
                        first: Some(upload(weight.to_data())?),
                        second: bias.as_ref().map(|b| upload(b.to_data())).transpose()?,
                    },
                    Operation::Scale { scale, shift } => Weights {
                        first: Some(upload(scale.to_data())?),
                        second: Some(upload(shift.to_data())?),
                    },
                    _ => Weights::default(),
                })
            })
            .collect()
    }
}

/// An image on the GPU (see [`Executor::ascend`]), with the values its loss is of and the
/// graph's plan for its size.
pub struct DeviceImage {
    buffer: CudaSlice<f32>,
    shape: Shape,
    wanted: Vec<usize>,
    plan: Plan,
}

impl DeviceImage {
    /// The image's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
}

/// How [`Executor::ascend`] rolls and clamps the image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceAscent {
    /// The roll (rows, columns) of the image the gradient is taken on, each below the
    /// image's side: its pixel `(y, x)` is the image's `(y − rows, x − columns)`, wrapping.
    pub shift: [usize; 2],
    /// The lowest and highest value of each channel.
    pub ranges: [(f32, f32); 3],
}

/// The first `len` values of `buffer` (buffers hold at least one value).
fn download(stream: &Arc<CudaStream>, buffer: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>> {
    let mut host = stream
        .clone_dtoh(buffer)
        .map_err(driver("download from the GPU"))?;
    host.truncate(len);
    Ok(host)
}

/// An error unless `len` values make a `shape` image.
fn check_len(len: usize, shape: Shape) -> Result<()> {
    if len == shape.len() {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!(
            "an input of {len} values is not {shape:?}"
        )))
    }
}

/// An error unless `losses` holds one loss per wanted value, with one weight per channel.
fn check_quadratic(losses: &[QuadraticLoss], shapes: &[Shape]) -> Result<()> {
    let fits = losses.len() == shapes.len()
        && losses.iter().zip(shapes).all(|(loss, shape)| {
            loss.quadratic.len() == shape.channels && loss.linear.len() == shape.channels
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

/// One gradient's state on the GPU.
struct Run<'a> {
    handles: &'a Handles,
    graph: &'a Graph,
    weights: &'a [Weights],
    plan: &'a Plan,
    tf32: bool,
    choices: &'a Mutex<Choices>,
    /// Every computed value, by value index.
    values: Vec<Option<CudaSlice<f32>>>,
    /// Each step's input padded by hand (asymmetric padding), by step.
    padded: Vec<Option<(CudaSlice<f32>, Shape)>>,
    workspace: Option<CudaSlice<u8>>,
}

const ONE: f32 = 1.0;
const ZERO: f32 = 0.0;

fn scalar(value: &f32) -> *const c_void {
    (value as *const f32).cast()
}

impl Run<'_> {
    fn stream(&self) -> &Arc<CudaStream> {
        &self.handles.stream
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream()
            .alloc_zeros::<f32>(len.max(1))
            .map_err(driver("allocate GPU memory"))
    }

    fn address_of(&self, value: usize) -> u64 {
        address(
            self.values[value].as_ref().expect("value computed"),
            self.stream(),
        )
    }

    fn launch(
        &self,
        function: &cudarc::driver::CudaFunction,
        n: usize,
        args: &[Arg],
    ) -> Result<()> {
        let n = n as u64;
        let mut builder = self.stream().launch_builder(function);
        for arg in args {
            match arg {
                Arg::Address(a) | Arg::Count(a) => builder.arg(a),
                Arg::Float(f) => builder.arg(f),
            };
        }
        builder.arg(&n);
        // SAFETY: every kernel takes the arguments listed in kernels.cu, in this order, with
        // `n` last, and touches elements below `n` of buffers at least that long.
        unsafe { builder.launch(elementwise(n as usize)) }
            .map(|_| ())
            .map_err(driver("run a kernel"))
    }

    /// A workspace of at least `bytes`, its address.
    fn workspace(&mut self, bytes: usize) -> Result<u64> {
        if self.workspace.as_ref().is_none_or(|w| w.len() < bytes) {
            self.workspace = Some(
                self.stream()
                    .alloc_zeros::<u8>(bytes.max(1))
                    .map_err(driver("allocate a workspace"))?,
            );
        }
        let workspace = self.workspace.as_ref().expect("allocated");
        Ok(workspace.device_ptr(self.stream()).0)
    }

    fn download(&self, value: usize) -> Result<Vec<f32>> {
        let buffer = self.values[value].as_ref().expect("value computed");
        download(
            self.stream(),
            buffer,
            self.plan.shapes[value].expect("planned").len(),
        )
    }

    /// The gradient with respect to `input` (on the GPU, of the plan's input shape) of a loss
    /// of the `wanted` values, whose gradients `loss` gives; on the GPU.
    fn gradient(
        &mut self,
        input: CudaSlice<f32>,
        wanted: &[usize],
        loss: Loss<'_, '_>,
    ) -> Result<CudaSlice<f32>> {
        self.forward(input)?;
        let shapes: Vec<Shape> = wanted
            .iter()
            .map(|&v| self.plan.shapes[v].expect("planned"))
            .collect();
        let seeds = match loss {
            Loss::Host(loss) => {
                let outputs = wanted
                    .iter()
                    .map(|&v| self.download(v))
                    .collect::<Result<Vec<_>>>()?;
                Seeds::Host(loss(outputs, &shapes)?)
            }
            Loss::Quadratic(losses) => {
                check_quadratic(losses, &shapes)?;
                Seeds::Quadratic(losses)
            }
        };
        self.backward(wanted, seeds)
    }

    fn forward(&mut self, input: CudaSlice<f32>) -> Result<()> {
        self.values = (0..self.plan.shapes.len()).map(|_| None).collect();
        self.padded = (0..self.plan.steps.len()).map(|_| None).collect();
        self.values[0] = Some(input);
        for index in 0..self.plan.steps.len() {
            let step = &self.plan.steps[index];
            let output = self.alloc(step.output.len())?;
            self.values[step.node + 1] = Some(output);
            self.forward_step(index)?;
        }
        Ok(())
    }

    /// The address and shape a windowed step reads: its input, or a copy padded by hand
    /// (with `fill`) when the padding is asymmetric; and the padding left for cuDNN.
    fn window_input(&mut self, index: usize, fill: f32) -> Result<(u64, Shape, [usize; 2])> {
        let step = &self.plan.steps[index];
        let input = self.graph.nodes[step.node].inputs[0];
        let shape = step.inputs[0];
        if !step.asymmetric() {
            let padding = [step.padding[0].0, step.padding[1].0];
            return Ok((self.address_of(input), shape, padding));
        }
        let [(top, bottom), (left, right)] = step.padding;
        let padded_shape = Shape {
            channels: shape.channels,
            height: shape.height + top + bottom,
            width: shape.width + left + right,
        };
        let padded = self.alloc(padded_shape.len())?;
        let args = [
            Arg::Address(address(&padded, self.stream())),
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
        let address = address(&padded, self.stream());
        self.padded[index] = Some((padded, padded_shape));
        Ok((address, padded_shape, [0, 0]))
    }

    fn forward_step(&mut self, index: usize) -> Result<()> {
        let step = self.plan.steps[index].clone();
        let node = &self.graph.nodes[step.node];
        let y = self.address_of(step.node + 1);
        let n = step.output.len();
        let handle = self.handles.cudnn.0;
        let kernels = &self.handles.kernels;
        match &node.operation {
            Operation::Conv {
                weight,
                stride,
                dilation,
                groups,
                ..
            } => {
                let shape = weight.dims();
                let (x, x_shape, padding) = self.window_input(index, 0.0)?;
                let conv = ConvDesc::new(&ConvGeometry {
                    shape,
                    padding,
                    stride: *stride,
                    dilation: *dilation,
                    groups: *groups,
                    tf32: self.tf32,
                })?;
                let (x_desc, y_desc) = (TensorDesc::new(x_shape)?, TensorDesc::new(step.output)?);
                let weights = &self.weights[step.node];
                let w = address(weights.first.as_ref().expect("conv weights"), self.stream());
                let (algo, bytes, math) = kept(
                    &mut self
                        .choices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forward,
                    (step.node, x_shape),
                    || forward_algorithm(handle, &x_desc, &conv, &y_desc),
                )?;
                use_math(&conv, math, self.tf32)?;
                let workspace = self.workspace(bytes)?;
                // SAFETY: descriptors match the buffers' shapes; the workspace is `bytes` long.
                unsafe {
                    check(
                        "run a convolution",
                        cudnn_sys::cudnnConvolutionForward(
                            handle,
                            scalar(&ONE),
                            x_desc.0,
                            x as *const c_void,
                            conv.filter,
                            w as *const c_void,
                            conv.conv,
                            algo,
                            workspace as *mut c_void,
                            bytes,
                            scalar(&ZERO),
                            y_desc.0,
                            y as *mut c_void,
                        ),
                    )?;
                    if let Some(bias) = &weights.second {
                        let bias_desc = TensorDesc::nchw(1, shape[0], 1, 1)?;
                        check(
                            "add a bias",
                            cudnn_sys::cudnnAddTensor(
                                handle,
                                scalar(&ONE),
                                bias_desc.0,
                                address(bias, self.stream()) as *const c_void,
                                scalar(&ONE),
                                y_desc.0,
                                y as *mut c_void,
                            ),
                        )?;
                    }
                }
            }
            Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
                let (max, count_pad, kernel, stride) = pooling(&node.operation, &step);
                if !max && !count_pad && step.asymmetric() {
                    return Err(Error::Device(format!(
                        "node {} (an average pool that leaves out padding) has uneven padding, which the CUDA device does not run",
                        step.node
                    )));
                }
                let fill = if max { f32::NEG_INFINITY } else { 0.0 };
                let (x, x_shape, padding) = self.window_input(index, fill)?;
                let pool = PoolDesc::new(max, count_pad, kernel, padding, stride)?;
                let (x_desc, y_desc) = (TensorDesc::new(x_shape)?, TensorDesc::new(step.output)?);
                // SAFETY: descriptors match the buffers.
                check("pool", unsafe {
                    cudnn_sys::cudnnPoolingForward(
                        handle,
                        pool.0,
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
            Operation::Relu => {
                let x = self.address_of(node.inputs[0]);
                self.launch(&kernels.relu, n, &[Arg::Address(y), Arg::Address(x)])?;
            }
            Operation::Clip { low, high } => {
                let x = self.address_of(node.inputs[0]);
                let args = [
                    Arg::Address(y),
                    Arg::Address(x),
                    Arg::Float(*low),
                    Arg::Float(*high),
                ];
                self.launch(&kernels.clip, n, &args)?;
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
                    Arg::Count((step.output.height * step.output.width) as u64),
                    Arg::Count(step.output.channels as u64),
                ];
                self.launch(&kernels.scale_shift, n, &args)?;
            }
            Operation::Multiply { factor } => {
                // y starts at zero: y += factor · x.
                let x = self.address_of(node.inputs[0]);
                let args = [Arg::Address(y), Arg::Address(x), Arg::Float(*factor)];
                self.launch(&kernels.axpy, n, &args)?;
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
    fn gemv(
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
    /// input; the input's gradient, on the GPU.
    fn backward(&mut self, wanted: &[usize], seeds: Seeds<'_>) -> Result<CudaSlice<f32>> {
        let count = self.plan.shapes.len();
        let mut grads: Vec<Option<CudaSlice<f32>>> = (0..count).map(|_| None).collect();
        for (value, shape) in self.plan.shapes.iter().enumerate() {
            if let Some(shape) = shape {
                grads[value] = Some(self.alloc(shape.len())?);
            }
        }
        let mut touched = vec![false; count];
        for (index, &value) in wanted.iter().enumerate() {
            let dy = address(grads[value].as_ref().expect("allocated"), self.stream());
            self.seed(value, dy, &seeds, index)?;
            touched[value] = true;
        }
        let grad_address =
            |grads: &[Option<CudaSlice<f32>>], v: usize, stream: &CudaStream| -> u64 {
                address(grads[v].as_ref().expect("allocated"), stream)
            };
        for index in (0..self.plan.steps.len()).rev() {
            let step = self.plan.steps[index].clone();
            if !touched[step.node + 1] {
                continue;
            }
            let dy = grad_address(&grads, step.node + 1, self.stream());
            let dxs: Vec<u64> = self.graph.nodes[step.node]
                .inputs
                .iter()
                .map(|&v| grad_address(&grads, v, self.stream()))
                .collect();
            self.backward_step(index, &step, dy, &dxs)?;
            for &input in &self.graph.nodes[step.node].inputs {
                touched[input] = true;
            }
        }
        Ok(grads[0].take().expect("allocated"))
    }

    /// Adds the loss's gradient with respect to `value` (the `index`th wanted value) to its
    /// gradient buffer at `dy`.
    fn seed(&self, value: usize, dy: u64, seeds: &Seeds<'_>, index: usize) -> Result<()> {
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
                let upload = self
                    .stream()
                    .clone_htod(seed)
                    .map_err(driver("upload a gradient"))?;
                let args = [
                    Arg::Address(dy),
                    Arg::Address(address(&upload, self.stream())),
                    Arg::Float(1.0),
                ];
                self.launch(&self.handles.kernels.axpy, shape.len(), &args)
            }
            Seeds::Quadratic(losses) => {
                let loss = &losses[index];
                let upload = |values: &[f32]| {
                    self.stream()
                        .clone_htod(values)
                        .map_err(driver("upload a loss"))
                };
                let (quadratic, linear) = (upload(&loss.quadratic)?, upload(&loss.linear)?);
                let args = [
                    Arg::Address(dy),
                    Arg::Address(self.address_of(value)),
                    Arg::Address(address(&quadratic, self.stream())),
                    Arg::Address(address(&linear, self.stream())),
                    Arg::Count(shape.channels as u64),
                    Arg::Count(shape.height as u64),
                    Arg::Count(shape.width as u64),
                    Arg::Count(loss.rows.start as u64),
                    Arg::Count(loss.rows.end as u64),
                    Arg::Count(loss.cols.start as u64),
                    Arg::Count(loss.cols.end as u64),
                ];
                self.launch(&self.handles.kernels.quadratic_seed, shape.len(), &args)
            }
        }
    }

    /// Adds step `index`'s contribution to its inputs' gradients `dxs`, from its output's
    /// gradient `dy`.
    fn backward_step(&mut self, index: usize, step: &Step, dy: u64, dxs: &[u64]) -> Result<()> {
        let node = &self.graph.nodes[step.node];
        let handle = self.handles.cudnn.0;
        let kernels = &self.handles.kernels;
        let n = step.output.len();
        let y = self.address_of(step.node + 1);
        // A windowed step with hand-made padding writes its gradient to a padded scratch
        // buffer, then adds the part that covers the input.
        let padded = self.padded[index]
            .as_ref()
            .map(|(buffer, shape)| (address(buffer, self.stream()), *shape));
        let scratch = match padded {
            Some((_, shape)) => Some(self.alloc(shape.len())?),
            None => None,
        };
        let (dx, beta) = match &scratch {
            Some(buffer) => (address(buffer, self.stream()), ZERO),
            None => (dxs[0], ONE),
        };
        let input_shape = step.inputs[0];
        let (x, x_shape, cudnn_padding) = match padded {
            Some((address, shape)) => (address, shape, [0, 0]),
            None => (
                self.address_of(node.inputs[0]),
                input_shape,
                [step.padding[0].0, step.padding[1].0],
            ),
        };
        match &node.operation {
            Operation::Conv {
                weight,
                stride,
                dilation,
                groups,
                ..
            } => {
                let conv = ConvDesc::new(&ConvGeometry {
                    shape: weight.dims(),
                    padding: cudnn_padding,
                    stride: *stride,
                    dilation: *dilation,
                    groups: *groups,
                    tf32: self.tf32,
                })?;
                let (x_desc, y_desc) = (TensorDesc::new(x_shape)?, TensorDesc::new(step.output)?);
                let w = address(
                    self.weights[step.node]
                        .first
                        .as_ref()
                        .expect("conv weights"),
                    self.stream(),
                );
                let (algo, bytes, math) = kept(
                    &mut self
                        .choices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .backward_data,
                    (step.node, x_shape),
                    || backward_data_algorithm(handle, &conv, &y_desc, &x_desc),
                )?;
                use_math(&conv, math, self.tf32)?;
                let workspace = self.workspace(bytes)?;
                // SAFETY: descriptors match the buffers; the workspace is `bytes` long.
                check("run a convolution backwards", unsafe {
                    cudnn_sys::cudnnConvolutionBackwardData(
                        handle,
                        scalar(&ONE),
                        conv.filter,
                        w as *const c_void,
                        y_desc.0,
                        dy as *const c_void,
                        conv.conv,
                        algo,
                        workspace as *mut c_void,
                        bytes,
                        scalar(&beta),
                        x_desc.0,
                        dx as *mut c_void,
                    )
                })?;
            }
            Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
                let (max, count_pad, kernel, stride) = pooling(&node.operation, step);
                let pool = PoolDesc::new(max, count_pad, kernel, cudnn_padding, stride)?;
                let (x_desc, y_desc) = (TensorDesc::new(x_shape)?, TensorDesc::new(step.output)?);
                // SAFETY: descriptors match the buffers.
                check("pool backwards", unsafe {
                    cudnn_sys::cudnnPoolingBackward(
                        handle,
                        pool.0,
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
                        scalar(&ONE),
                        desc.0,
                        dxs[0] as *mut c_void,
                    )
                })?;
            }
            Operation::Relu => {
                let args = [Arg::Address(dxs[0]), Arg::Address(dy), Arg::Address(y)];
                self.launch(&kernels.relu_backward_add, n, &args)?;
            }
            Operation::Clip { low, high } => {
                let args = [
                    Arg::Address(dxs[0]),
                    Arg::Address(dy),
                    Arg::Address(y),
                    Arg::Float(*low),
                    Arg::Float(*high),
                ];
                self.launch(&kernels.clip_backward_add, n, &args)?;
            }
            Operation::Scale { .. } => {
                let scale = self.weights[step.node].first.as_ref().expect("scale");
                let args = [
                    Arg::Address(dxs[0]),
                    Arg::Address(dy),
                    Arg::Address(address(scale, self.stream())),
                    Arg::Count((step.output.height * step.output.width) as u64),
                    Arg::Count(step.output.channels as u64),
                ];
                self.launch(&kernels.scale_backward_add, n, &args)?;
            }
            Operation::Multiply { factor } => {
                let args = [Arg::Address(dxs[0]), Arg::Address(dy), Arg::Float(*factor)];
                self.launch(&kernels.axpy, n, &args)?;
            }
            Operation::Add => {
                for &dx in dxs {
                    let args = [Arg::Address(dx), Arg::Address(dy), Arg::Float(1.0)];
                    self.launch(&kernels.axpy, n, &args)?;
                }
            }
            Operation::Concat => {
                let mut offset = 0u64;
                for (&dx, shape) in dxs.iter().zip(&step.inputs) {
                    let args = [Arg::Address(dx), Arg::Address(dy + offset), Arg::Float(1.0)];
                    self.launch(&kernels.axpy, shape.len(), &args)?;
                    offset += (shape.len() * 4) as u64;
                }
            }
            Operation::Flatten => {
                let args = [Arg::Address(dxs[0]), Arg::Address(dy), Arg::Float(1.0)];
                self.launch(&kernels.axpy, n, &args)?;
            }
            Operation::Linear { weight, .. } => {
                let w = address(
                    self.weights[step.node].first.as_ref().expect("weights"),
                    self.stream(),
                );
                self.gemv(true, w, weight.dims(), dy, dxs[0], ONE)?;
            }
        }
        if let (Some(scratch), Some((_, padded_shape))) = (&scratch, padded) {
            let [(top, _), (left, _)] = step.padding;
            let args = [
                Arg::Address(dxs[0]),
                Arg::Address(address(scratch, self.stream())),
                Arg::Count(input_shape.height as u64),
                Arg::Count(input_shape.width as u64),
                Arg::Count(top as u64),
                Arg::Count(left as u64),
                Arg::Count(padded_shape.height as u64),
                Arg::Count(padded_shape.width as u64),
            ];
            self.launch(&kernels.crop_add, input_shape.len(), &args)?;
        }
        Ok(())
    }
}

/// A pooling step's (max, count padding, window, stride); a global average pool is one
/// window over the whole input.
fn pooling(operation: &Operation, step: &Step) -> (bool, bool, [usize; 2], [usize; 2]) {
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

/// One of cuDNN's heuristic results: whether it works, its workspace, the algorithm and the
/// math type cuDNN chose it for.
type Candidate<A> = (
    cudnn_sys::cudnnStatus_t,
    usize,
    A,
    cudnn_sys::cudnnMathType_t,
);

/// A convolution algorithm cuDNN chose, its workspace size, and the math type it chose it
/// for.
type Choice<A> = (A, usize, cudnn_sys::cudnnMathType_t);

/// The first working candidate (cuDNN lists the fastest first) within [`MAX_WORKSPACE`].
fn pick<A>(candidates: impl IntoIterator<Item = Candidate<A>>, what: &str) -> Result<Choice<A>> {
    candidates
        .into_iter()
        .find(|(status, memory, _, _)| {
            *status == cudnn_sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS && *memory <= MAX_WORKSPACE
        })
        .map(|(_, memory, algo, math)| (algo, memory, math))
        .ok_or_else(|| failed(what, cudnn_sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED))
}

/// In TF32 a convolution runs with the math type cuDNN chose its algorithm for; in fp32 the
/// descriptor keeps `CUDNN_FMA_MATH` (cuDNN's default math allows TF32 on Ampere and later).
fn use_math(conv: &ConvDesc, math: cudnn_sys::cudnnMathType_t, tf32: bool) -> Result<()> {
    if !tf32 {
        return Ok(());
    }
    // SAFETY: the descriptor is alive.
    check("set the math type", unsafe {
        cudnn_sys::cudnnSetConvolutionMathType(conv.conv, math)
    })
}

/// cuDNN's choices for the convolutions of a graph, by node and input shape: asked for once
/// per shape, not at every step.
#[derive(Default)]
struct Choices {
    forward: HashMap<(usize, Shape), Choice<cudnn_sys::cudnnConvolutionFwdAlgo_t>>,
    backward_data: HashMap<(usize, Shape), Choice<cudnn_sys::cudnnConvolutionBwdDataAlgo_t>>,
}

/// The choice kept in `map` under `key`, else `choose`'s, kept.
fn kept<A: Copy>(
    map: &mut HashMap<(usize, Shape), Choice<A>>,
    key: (usize, Shape),
    choose: impl FnOnce() -> Result<Choice<A>>,
) -> Result<Choice<A>> {
    if let Some(choice) = map.get(&key) {
        return Ok(*choice);
    }
    let choice = choose()?;
    map.insert(key, choice);
    Ok(choice)
}

/// How many heuristic results to ask cuDNN for.
const CANDIDATES: usize = 8;

/// The fastest forward algorithm cuDNN's heuristics offer (see [`pick`]).
fn forward_algorithm(
    handle: cudnn_sys::cudnnHandle_t,
    x: &TensorDesc,
    conv: &ConvDesc,
    y: &TensorDesc,
) -> Result<Choice<cudnn_sys::cudnnConvolutionFwdAlgo_t>> {
    // SAFETY: an array of plain structs cuDNN fills; zero is a valid bit pattern for them.
    let mut results: [cudnn_sys::cudnnConvolutionFwdAlgoPerf_t; CANDIDATES] =
        unsafe { std::mem::zeroed() };
    let mut returned = 0;
    // SAFETY: the descriptors are alive; `results` holds CANDIDATES entries.
    check("choose a convolution algorithm", unsafe {
        cudnn_sys::cudnnGetConvolutionForwardAlgorithm_v7(
            handle,
            x.0,
            conv.filter,
            conv.conv,
            y.0,
            CANDIDATES as i32,
            &mut returned,
            results.as_mut_ptr(),
        )
    })?;
    let candidates = results[..returned as usize]
        .iter()
        .map(|r| (r.status, r.memory, r.algo, r.mathType));
    pick(candidates, "find a convolution algorithm")
}

/// The same for the convolution's gradient with respect to its input.
fn backward_data_algorithm(
    handle: cudnn_sys::cudnnHandle_t,
    conv: &ConvDesc,
    dy: &TensorDesc,
    dx: &TensorDesc,
) -> Result<Choice<cudnn_sys::cudnnConvolutionBwdDataAlgo_t>> {
    // SAFETY: as in `forward_algorithm`.
    let mut results: [cudnn_sys::cudnnConvolutionBwdDataAlgoPerf_t; CANDIDATES] =
        unsafe { std::mem::zeroed() };
    let mut returned = 0;
    // SAFETY: the descriptors are alive; `results` holds CANDIDATES entries.
    check("choose a backward convolution algorithm", unsafe {
        cudnn_sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
            handle,
            conv.filter,
            dy.0,
            conv.conv,
            dx.0,
            CANDIDATES as i32,
            &mut returned,
            results.as_mut_ptr(),
        )
    })?;
    let candidates = results[..returned as usize]
        .iter()
        .map(|r| (r.status, r.memory, r.algo, r.mathType));
    pick(candidates, "find a backward convolution algorithm")
}
