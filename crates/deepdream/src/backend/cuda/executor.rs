//! Runs a [`Graph`] on the GPU and back: the forward pass to the wanted values, then, from the
//! loss's gradients with respect to them, the gradient with respect to the input, through
//! cuDNN (convolutions forward and backward to the input, pooling, LRN) and deepdream's
//! kernels (activations, per-channel scales, sums, the padding cuDNN cannot do) and cuBLAS
//! (fully connected layers). Weights are uploaded once; no weight gradient is ever computed.
//!
//! An image kept on the GPU ([`DeviceImage`]) keeps every buffer its steps need, so that a
//! step allocates nothing and never waits for the GPU: after its first step, each step is
//! recorded once as a CUDA graph and replayed, one launch instead of one per operation
//! (`DEEPDREAM_CUDA_GRAPHS=0` turns that off, for comparison).

use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::Range;
use std::sync::{Arc, Mutex, Once};

use cudarc::cudnn::sys as cudnn_sys;
use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError, PushKernelArg,
};

use crate::backend::ascend::NormalisedAscent;
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

/// The environment variable that turns CUDA graphs off when set to `0`.
pub const GRAPHS_VARIABLE: &str = "DEEPDREAM_CUDA_GRAPHS";

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

/// What the steps of an image kept on the GPU do (see [`Executor::upload_image`]).
#[derive(Clone, Copy, Debug)]
pub struct KeptSteps<'a> {
    /// The graph values the losses are of.
    pub wanted: &'a [usize],
    /// One quadratic loss per wanted value.
    pub losses: &'a [QuadraticLoss],
    /// How the image moves.
    pub ascent: NormalisedAscent,
    /// Where the image may change and how much: a weight per pixel (0–1), or everywhere.
    pub change: Option<&'a [f32]>,
}

/// A quadratic loss with its weights on the GPU.
struct DeviceLoss {
    quadratic: CudaSlice<f32>,
    linear: CudaSlice<f32>,
    rows: Range<usize>,
    cols: Range<usize>,
}

impl DeviceLoss {
    /// `losses` uploaded, after checking that they fit the wanted values' `shapes`.
    fn upload(
        stream: &Arc<CudaStream>,
        losses: &[QuadraticLoss],
        shapes: &[Shape],
    ) -> Result<Vec<DeviceLoss>> {
        check_quadratic(losses, shapes)?;
        losses
            .iter()
            .map(|loss| {
                Ok(DeviceLoss {
                    quadratic: upload(stream, &loss.quadratic)?,
                    linear: upload(stream, &loss.linear)?,
                    rows: loss.rows.clone(),
                    cols: loss.cols.clone(),
                })
            })
            .collect()
    }
}

/// The loss's gradients at the wanted values, ready for the backward pass.
enum Seeds<'s> {
    Host(Vec<Vec<f32>>),
    Device(&'s [DeviceLoss]),
}

/// How depthwise convolutions (one filter per channel, as in EfficientNet) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depthwise {
    /// By whichever of cuDNN and deepdream's own kernels was faster, each timed on the step's
    /// own buffers when its shape first runs (the default).
    Fastest,
    /// By cuDNN, as a grouped convolution.
    Cudnn,
    /// By deepdream's own kernels.
    Own,
}

/// Prints each timed choice between cuDNN and deepdream's own kernels when `1`.
pub const CHOICES_VARIABLE: &str = "DEEPDREAM_CUDA_CHOICES";

/// A graph ready to run on one GPU.
pub struct Executor {
    gpu: Arc<Gpu>,
    graph: Graph,
    precision: Precision,
    /// Whether kept images replay their steps as CUDA graphs.
    graphs: bool,
    depthwise: Depthwise,
    /// By node, uploaded when a plan first needs them.
    weights: Mutex<Vec<Weights>>,
    choices: Mutex<Choices>,
    /// Kept images given back, most recent first, with their buffers and recorded steps:
    /// the next picture of the same size and objective (a film's next frame, a zoom's, a
    /// batch's) takes one over and replays its steps from the first.
    spare: Mutex<Vec<DeviceImage>>,
}

/// How many kept images [`Executor::give_back`] holds on to (a dream's octaves, a film's
/// two or three).
const SPARE_IMAGES: usize = 4;

/// A node's constants on the GPU.
#[derive(Default)]
struct Weights {
    uploaded: bool,
    first: Option<CudaSlice<f32>>,
    second: Option<CudaSlice<f32>>,
}

fn driver(what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
    move |e| Error::Device(format!("CUDA could not {what}: {e}"))
}

/// The raw address of a buffer (the context tracks no events, so nothing waits here).
fn address<T>(buffer: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    buffer.device_ptr(stream).0
}

/// `values` copied to a new buffer on the GPU.
fn upload<T: DeviceRepr>(stream: &Arc<CudaStream>, values: &[T]) -> Result<CudaSlice<T>> {
    stream
        .clone_htod(values)
        .map_err(driver("upload to the GPU"))
}

/// A buffer of `len` values (at least one) whose contents are not set.
fn alloc<T: DeviceRepr>(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: every buffer is written before it is read (see `Buffers`).
    unsafe { stream.alloc::<T>(len.max(1)) }.map_err(driver("allocate GPU memory"))
}

/// A kernel argument.
enum Arg {
    Address(u64),
    Count(u64),
    Float(f32),
}

/// Where a gradient goes: its address, and whether it is added to what is there (another
/// contribution to the same value was stored first) or stored over it.
#[derive(Clone, Copy, Debug)]
struct Target {
    address: u64,
    accumulate: bool,
}

impl Target {
    /// No target (the forward pass's).
    const NONE: Target = Target {
        address: 0,
        accumulate: false,
    };

    /// The kernels' `accumulate` argument.
    fn accumulate(&self) -> Arg {
        Arg::Count(self.accumulate as u64)
    }

    /// cuDNN's and cuBLAS's `beta`: 1 adds, 0 overwrites (without reading what is there).
    fn beta(&self) -> f32 {
        if self.accumulate { ONE } else { ZERO }
    }
}

impl Executor {
    /// `graph` on `gpu`, convolutions in `precision`.
    pub fn new(gpu: Arc<Gpu>, graph: Graph, precision: Precision) -> Executor {
        let weights = graph.nodes.iter().map(|_| Weights::default()).collect();
        Executor {
            gpu,
            graph,
            precision,
            graphs: std::env::var(GRAPHS_VARIABLE).map_or(true, |value| value != "0"),
            depthwise: Depthwise::Fastest,
            weights: Mutex::new(weights),
            choices: Mutex::new(Choices::default()),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// The executor with kept images' steps replayed as CUDA graphs or not (by default they
    /// are, unless [`GRAPHS_VARIABLE`] is `0`).
    pub fn with_graphs(self, graphs: bool) -> Executor {
        Executor { graphs, ..self }
    }

    /// The executor with depthwise convolutions run as `depthwise` says.
    pub fn with_depthwise(self, depthwise: Depthwise) -> Executor {
        Executor { depthwise, ..self }
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
        self.with_weights(Some(&plan), |handles, weights| {
            let stream = &handles.stream;
            let windows = describe(&self.graph, &plan, self.precision)?;
            let mut buffers = Buffers::new(stream, &plan)?;
            stream
                .memcpy_htod(input, buffers.values[0].as_mut().expect("the input"))
                .map_err(driver("upload the image"))?;
            let mut run = self.run(handles, weights, &plan, &windows, &mut buffers, false);
            run.forward()?;
            let device_losses;
            let seeds = match loss {
                Loss::Host(loss) => Seeds::Host(run.host_seeds(wanted, loss)?),
                Loss::Quadratic(losses) => {
                    device_losses = DeviceLoss::upload(stream, losses, &plan.shapes_of(wanted))?;
                    Seeds::Device(&device_losses)
                }
            };
            run.backward(wanted, &seeds)?;
            buffers.download_gradient(stream, 0, shape.len())
        })
    }

    /// `image` (a `shape` image of 3 channels) put on the GPU for [`Executor::ascend`]'s
    /// `steps`: planned, and its buffers, losses and change mask put there, once for all its
    /// steps — or the pixels put into a kept image given back for the same size and steps,
    /// whose steps replay from the first.
    pub fn upload_image(
        &self,
        image: &[f32],
        shape: Shape,
        steps: KeptSteps<'_>,
    ) -> Result<DeviceImage> {
        check_len(image.len(), shape)?;
        if shape.channels != 3 {
            return Err(Error::InvalidParameter(format!(
                "an image of {} channels cannot be dreamed on the GPU",
                shape.channels
            )));
        }
        if let Some(change) = steps.change
            && change.len() != shape.height * shape.width
        {
            return Err(Error::InvalidParameter(format!(
                "a change mask of {} values for a {}x{} image",
                change.len(),
                shape.width,
                shape.height
            )));
        }
        let spare = {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            let found = spare.iter().position(|kept| {
                kept.shape == shape
                    && kept.wanted == steps.wanted
                    && kept.host_losses == steps.losses
                    && kept.ascent == steps.ascent
                    && kept.host_change.as_deref() == steps.change
            });
            found.map(|index| spare.remove(index))
        };
        if let Some(mut kept) = spare {
            self.gpu.with(|handles| {
                let stream = &handles.stream;
                stream
                    .memcpy_htod(image, &mut kept.image)
                    .map_err(driver("upload the image"))?;
                stream
                    .memset_zeros(&mut kept.bad)
                    .map_err(driver("clear the image's flag"))
            })?;
            return Ok(kept);
        }
        let plan = self.graph.plan(shape, steps.wanted)?;
        self.with_weights(Some(&plan), |_, _| Ok(()))?;
        // The gradient's mean is over every value, or over the mask's weight in each channel.
        let count = match steps.change {
            None => shape.len() as f32,
            Some(change) => 3.0 * change.iter().sum::<f32>(),
        };
        let prepare = || {
            self.gpu.with(|handles| {
                let stream = &handles.stream;
                let shapes = plan.shapes_of(steps.wanted);
                Ok(DeviceImage {
                    image: upload(stream, image)?,
                    windows: describe(&self.graph, &plan, self.precision)?,
                    buffers: Buffers::new(stream, &plan)?,
                    losses: DeviceLoss::upload(stream, steps.losses, &shapes)?,
                    host_losses: steps.losses.to_vec(),
                    change: steps
                        .change
                        .map(|change| upload(stream, change))
                        .transpose()?,
                    host_change: steps.change.map(<[f32]>::to_vec),
                    count,
                    shift: upload(stream, &[0u64, 0])?,
                    bad: upload(stream, &[0u32])?,
                    shape,
                    wanted: steps.wanted.to_vec(),
                    plan: plan.clone(),
                    ascent: steps.ascent,
                    replay: Replay::Fresh,
                })
            })
        };
        prepare().or_else(|error| {
            // The images held for later may be what fills the GPU: free them and try again.
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.is_empty() {
                return Err(error);
            }
            spare.clear();
            drop(spare);
            prepare()
        })
    }

    /// Takes back a kept image that is done with, to lend its buffers and recorded steps to
    /// the next image of the same size and objective (the oldest beyond a few are freed).
    pub fn give_back(&self, image: DeviceImage) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.insert(0, image);
        spare.truncate(SPARE_IMAGES);
    }

    /// The values of an image on the GPU (waiting for its steps).
    pub fn download_image(&self, image: &DeviceImage) -> Result<Vec<f32>> {
        self.gpu
            .with(|handles| download(&handles.stream, &image.image, image.shape.len()))
    }

    /// Whether every step of an image on the GPU so far had a finite gradient (waiting for
    /// its steps).
    pub fn finite(&self, image: &DeviceImage) -> Result<bool> {
        self.gpu.with(|handles| {
            let bad = handles
                .stream
                .clone_dtoh(&image.bad)
                .map_err(driver("download from the GPU"))?;
            Ok(bad[0] == 0)
        })
    }

    /// One DeepDream step on an image kept on the GPU, queued there without waiting for it:
    /// the image rolled by `shift` (rows, columns, each below the image's side), the gradient
    /// of its losses at it, its mean absolute value, and the image moved along the gradient
    /// rolled back as its ascent says (a gradient that is not finite leaves the image and
    /// sets its flag, see [`Executor::finite`]). After the first step the steps replay a
    /// CUDA graph; where recording one fails, they go on one launch at a time.
    pub fn ascend(&self, image: &mut DeviceImage, shift: [usize; 2]) -> Result<()> {
        if image.count <= 0.0 {
            // A change mask of no weight: the engine leaves such a picture as it is.
            return Ok(());
        }
        // The image's weights went up with it.
        self.with_weights(None, |handles, weights| {
            let stream = &handles.stream;
            let shift = shift.map(|s| s as u64);
            stream
                .memcpy_htod(&shift[..], &mut image.shift)
                .map_err(driver("upload the shift"))?;
            if let Replay::Graph(graph) = &image.replay {
                return graph.launch().map_err(driver("replay a step"));
            }
            if matches!(image.replay, Replay::Warm) {
                match self.record(handles, weights, image) {
                    Ok(graph) => {
                        graph.launch().map_err(driver("replay a step"))?;
                        image.replay = Replay::Graph(graph);
                        return Ok(());
                    }
                    Err(error) => {
                        static ONCE: Once = Once::new();
                        ONCE.call_once(|| {
                            eprintln!(
                                "deepdream: CUDA graphs are off ({error}); each step runs one launch at a time"
                            )
                        });
                        image.replay = Replay::Off;
                    }
                }
            }
            self.step(handles, weights, image, false)?;
            if matches!(image.replay, Replay::Fresh) {
                image.replay = if self.graphs {
                    Replay::Warm
                } else {
                    Replay::Off
                };
            }
            Ok(())
        })
    }

    /// A step of `image` recorded as a CUDA graph (nothing runs); the stream is back to
    /// normal afterwards, whatever happened.
    fn record(
        &self,
        handles: &Handles,
        weights: &[Weights],
        image: &mut DeviceImage,
    ) -> Result<CudaGraph> {
        let stream = &handles.stream;
        stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver("start recording a step"))?;
        let recorded = self.step(handles, weights, image, true);
        let ended = stream.end_capture(CUgraphInstantiate_flags(0));
        recorded?;
        ended
            .map_err(driver("record a step"))?
            .ok_or_else(|| Error::Device("CUDA recorded an empty step".into()))
    }

    /// Queues one step of `image` (see [`Executor::ascend`]), `recording` it or not.
    fn step(
        &self,
        handles: &Handles,
        weights: &[Weights],
        image: &mut DeviceImage,
        recording: bool,
    ) -> Result<()> {
        let DeviceImage {
            image: picture,
            windows,
            buffers,
            losses,
            change,
            count,
            shift,
            bad,
            shape,
            wanted,
            plan,
            ascent,
            ..
        } = image;
        let stream = &handles.stream;
        let kernels = &handles.kernels;
        let (height, width) = (shape.height as u64, shape.width as u64);
        let shift = address(shift, stream);
        let args = [
            Arg::Address(address(buffers.values[0].as_ref().expect("input"), stream)),
            Arg::Address(address(picture, stream)),
            Arg::Address(shift),
            Arg::Count(height),
            Arg::Count(width),
        ];
        let mut run = self.run(handles, weights, plan, windows, buffers, recording);
        run.launch(&kernels.roll, shape.len(), &args)?;
        run.forward()?;
        run.backward(wanted, &Seeds::Device(losses))?;
        let (total, gradient) = (run.buffers.total_address(stream), run.gradient_address(0));
        // No mask is a null address: every pixel weighs 1.
        let mask = change.as_ref().map_or(0, |mask| address(mask, stream));
        let args = [
            Arg::Address(total),
            Arg::Address(gradient),
            Arg::Address(mask),
            Arg::Address(shift),
            Arg::Count(height),
            Arg::Count(width),
        ];
        run.launch(&kernels.abs_sum, shape.len(), &args)?;
        let [(low0, high0), (low1, high1), (low2, high2)] = ascent.ranges;
        let args = [
            Arg::Address(address(picture, stream)),
            Arg::Address(gradient),
            Arg::Address(total),
            Arg::Address(address(bad, stream)),
            Arg::Address(shift),
            Arg::Address(mask),
            Arg::Float(*count),
            Arg::Count(height),
            Arg::Count(width),
            Arg::Float(ascent.step_size),
            Arg::Float(ascent.units[0]),
            Arg::Float(ascent.units[1]),
            Arg::Float(ascent.units[2]),
            Arg::Float(low0),
            Arg::Float(high0),
            Arg::Float(low1),
            Arg::Float(high1),
            Arg::Float(low2),
            Arg::Float(high2),
        ];
        run.launch(&kernels.ascend, shape.len(), &args)
    }

    /// Runs `work` with the GPU's handles and the graph's weights there, those of `plan`'s
    /// steps uploaded if they are not yet (a dream never uploads VGG16's classifier).
    fn with_weights<R>(
        &self,
        plan: Option<&Plan>,
        work: impl FnOnce(&Handles, &[Weights]) -> Result<R>,
    ) -> Result<R> {
        self.gpu.with(|handles| {
            let mut weights = self.weights.lock().unwrap_or_else(|p| p.into_inner());
            for step in plan.iter().flat_map(|plan| &plan.steps) {
                if !weights[step.node].uploaded {
                    weights[step.node] = self.upload_weights(handles, step.node)?;
                }
            }
            work(handles, &weights)
        })
    }

    /// A gradient's run of `plan` in `buffers`.
    fn run<'a>(
        &'a self,
        handles: &'a Handles,
        weights: &'a [Weights],
        plan: &'a Plan,
        windows: &'a Windows,
        buffers: &'a mut Buffers,
        recording: bool,
    ) -> Run<'a> {
        Run {
            handles,
            graph: &self.graph,
            weights,
            plan,
            tf32: self.precision == Precision::Tf32,
            depthwise: self.depthwise,
            choices: &self.choices,
            windows,
            buffers,
            recording,
        }
    }

    /// Node `node`'s constants, uploaded.
    fn upload_weights(&self, handles: &Handles, node: usize) -> Result<Weights> {
        let upload = |tensor: burn::tensor::TensorData| {
            let values = tensor
                .try_to_vec::<f32>()
                .map_err(|e| Error::Device(format!("cannot read weights: {e:?}")))?;
            upload(&handles.stream, &values)
        };
        let (first, second) = match &self.graph.nodes[node].operation {
            Operation::Conv { weight, bias, .. } => (
                Some(upload(weight.to_data())?),
                bias.as_ref().map(|b| upload(b.to_data())).transpose()?,
            ),
            Operation::Linear { weight, bias } => (
                Some(upload(weight.to_data())?),
                bias.as_ref().map(|b| upload(b.to_data())).transpose()?,
            ),
            Operation::Scale { scale, shift } => (
                Some(upload(scale.to_data())?),
                Some(upload(shift.to_data())?),
            ),
            _ => (None, None),
        };
        Ok(Weights {
            uploaded: true,
            first,
            second,
        })
    }
}

/// An image on the GPU (see [`Executor::ascend`]) with everything its steps need there: the
/// graph's plan for its size with its cuDNN descriptors and buffers, the losses of the wanted values, the
/// shift of the step, the flag of a gradient that was not finite, and the recorded step.
pub struct DeviceImage {
    // The recorded step goes first: it refers to the buffers below.
    replay: Replay,
    image: CudaSlice<f32>,
    windows: Windows,
    buffers: Buffers,
    losses: Vec<DeviceLoss>,
    /// The losses as given, to recognise the same objective when the image is lent again.
    host_losses: Vec<QuadraticLoss>,
    /// The change mask, a weight per pixel, on the GPU and as given.
    change: Option<CudaSlice<f32>>,
    host_change: Option<Vec<f32>>,
    /// How many values the gradient's mean is over.
    count: f32,
    shift: CudaSlice<u64>,
    bad: CudaSlice<u32>,
    shape: Shape,
    wanted: Vec<usize>,
    plan: Plan,
    ascent: NormalisedAscent,
}

// SAFETY: a kept image is used only through its executor's methods, which hold the GPU's
// lock, so its recorded graph (which CUDA does not synchronise) is never touched by two
// threads at once; its cuDNN descriptors are plain host structures.
unsafe impl Send for DeviceImage {}

/// How a kept image's steps run.
enum Replay {
    /// No step yet: the first runs one launch at a time (choosing cuDNN's algorithms and
    /// loading kernels outside any recording).
    Fresh,
    /// One step done: the next is recorded as a graph.
    Warm,
    /// Replaying the recorded step.
    Graph(CudaGraph),
    /// One launch at a time, for good (recording failed or graphs are off).
    Off,
}

impl DeviceImage {
    /// The image's shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Whether its steps replay a recorded CUDA graph.
    pub fn replays(&self) -> bool {
        matches!(self.replay, Replay::Graph(_))
    }
}

/// The first `len` values of `buffer` (buffers hold at least one value).
fn download(stream: &Arc<CudaStream>, buffer: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>> {
    stream
        .clone_dtoh(&buffer.slice(..len))
        .map_err(driver("download from the GPU"))
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

/// Where the values' gradients lie in one block, each at a multiple of 64 floats (256 bytes,
/// as cudaMalloc aligns), the gradient's absolute sum after them: the offsets of the `shapes`
/// that are planned, and the block's length, in floats.
fn gradient_layout(shapes: &[Option<Shape>]) -> (Vec<Option<usize>>, usize, usize) {
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
struct Buffers {
    /// By value index.
    values: Vec<Option<CudaSlice<f32>>>,
    /// By step, with the padded shape.
    padded: Vec<Option<(CudaSlice<f32>, Shape)>>,
    /// By step, the padded input's gradient.
    scratch: Vec<Option<CudaSlice<f32>>>,
    gradients: CudaSlice<f32>,
    /// By value index, in floats from the start of `gradients`.
    offsets: Vec<Option<usize>>,
    /// Where the absolute sum lies in `gradients`.
    total: usize,
    workspace: Option<CudaSlice<u8>>,
}

impl Buffers {
    fn new(stream: &Arc<CudaStream>, plan: &Plan) -> Result<Buffers> {
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
    fn total_address(&self, stream: &CudaStream) -> u64 {
        address(&self.gradients, stream) + (self.total * 4) as u64
    }

    /// The first `len` values of `value`'s gradient.
    fn download_gradient(
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

/// One gradient's work on the GPU, in buffers made for its plan.
struct Run<'a> {
    handles: &'a Handles,
    graph: &'a Graph,
    weights: &'a [Weights],
    plan: &'a Plan,
    tf32: bool,
    depthwise: Depthwise,
    choices: &'a Mutex<Choices>,
    windows: &'a Windows,
    buffers: &'a mut Buffers,
    /// Whether the work is being recorded as a CUDA graph: nothing may be allocated.
    recording: bool,
}

const ONE: f32 = 1.0;
const ZERO: f32 = 0.0;

fn scalar(value: &f32) -> *const c_void {
    (value as *const f32).cast()
}

impl<'a> Run<'a> {
    fn stream(&self) -> &Arc<CudaStream> {
        &self.handles.stream
    }

    fn address_of(&self, value: usize) -> u64 {
        address(
            self.buffers.values[value].as_ref().expect("value computed"),
            self.stream(),
        )
    }

    fn gradient_address(&self, value: usize) -> u64 {
        address(&self.buffers.gradients, self.stream())
            + (self.buffers.offsets[value].expect("planned") * 4) as u64
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

    /// A workspace of at least `bytes`, its address; it grows only outside a recording.
    fn workspace(&mut self, bytes: usize) -> Result<u64> {
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
    fn host_seeds(&self, wanted: &[usize], loss: &mut LossGradients<'_>) -> Result<Vec<Vec<f32>>> {
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
    fn forward(&mut self) -> Result<()> {
        for index in 0..self.plan.steps.len() {
            self.forward_step(index)?;
        }
        Ok(())
    }

    /// The address a windowed step reads: its input, or, when the padding is asymmetric, a
    /// copy padded by hand with `fill` (made here).
    fn window_input(&self, index: usize, fill: f32) -> Result<u64> {
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
    fn window(&self, index: usize) -> &'a Window {
        self.windows.0[index].as_ref().expect("a windowed step")
    }

    /// Runs step `index` forward.
    fn forward_step(&mut self, index: usize) -> Result<()> {
        if self.route(index, Pass::Forward, 0)? == Route::Own {
            return self.own_depthwise(index, Pass::Forward, 0, Target::NONE);
        }
        self.forward_operation(index)
    }

    /// Runs step `index` forward through cuDNN, cuBLAS or an element-wise kernel.
    fn forward_operation(&mut self, index: usize) -> Result<()> {
        let step = self.plan.steps[index].clone();
        let node = &self.graph.nodes[step.node];
        let y = self.address_of(step.node + 1);
        let n = step.output.len();
        let handle = self.handles.cudnn.0;
        let kernels = &self.handles.kernels;
        match &node.operation {
            Operation::Conv { weight, .. } => {
                let shape = weight.dims();
                let x = self.window_input(index, 0.0)?;
                let window = self.window(index);
                let conv = window.conv();
                let (x_desc, y_desc) = (&window.x, &window.y);
                let weights = &self.weights[step.node];
                let w = address(weights.first.as_ref().expect("conv weights"), self.stream());
                let (algo, bytes, math) = kept(
                    &mut self
                        .choices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forward,
                    (step.node, window.input),
                    || forward_algorithm(handle, x_desc, conv, y_desc),
                )?;
                use_math(conv, math, self.tf32)?;
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
    /// input, into the buffers' block of gradients, the absolute sum after them cleared. No
    /// gradient is cleared: the first contribution to each overwrites it, the later ones
    /// add to it, and only the gradients of values something wanted depends on are read.
    fn backward(&mut self, wanted: &[usize], seeds: &Seeds<'_>) -> Result<()> {
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
    fn target(&self, value: usize, written: &mut [bool]) -> Target {
        let accumulate = std::mem::replace(&mut written[value], true);
        Target {
            address: self.gradient_address(value),
            accumulate,
        }
    }

    /// Stores the loss's gradient with respect to `value` (the `index`th wanted value) in its
    /// gradient buffer.
    fn seed(&self, value: usize, dy: Target, seeds: &Seeds<'_>, index: usize) -> Result<()> {
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
                let args = [
                    Arg::Address(dy.address),
                    Arg::Address(self.address_of(value)),
                    Arg::Address(address(&loss.quadratic, self.stream())),
                    Arg::Address(address(&loss.linear, self.stream())),
                    Arg::Count(shape.channels as u64),
                    Arg::Count(shape.height as u64),
                    Arg::Count(shape.width as u64),
                    Arg::Count(loss.rows.start as u64),
                    Arg::Count(loss.rows.end as u64),
                    Arg::Count(loss.cols.start as u64),
                    Arg::Count(loss.cols.end as u64),
                    dy.accumulate(),
                ];
                self.launch(&self.handles.kernels.quadratic_seed, shape.len(), &args)
            }
        }
    }

    /// `a·x` (`n` values at `x`) stored at `target`.
    fn copy(&self, target: Target, x: u64, a: f32, n: usize) -> Result<()> {
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
    fn backward_step(&mut self, index: usize, step: &Step, dy: u64, dxs: &[Target]) -> Result<()> {
        if self.route(index, Pass::Backward, dy)? == Route::Own {
            return self.own_depthwise(index, Pass::Backward, dy, dxs[0]);
        }
        self.backward_operation(index, step, dy, dxs)
    }

    /// [`Run::backward_step`] through cuDNN, cuBLAS or an element-wise kernel.
    fn backward_operation(
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
        let scratch = self.buffers.scratch[index]
            .as_ref()
            .map(|buffer| address(buffer, self.stream()));
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
            Operation::Conv { .. } => {
                let window = self.window(index);
                let conv = window.conv();
                let (x_desc, y_desc) = (&window.x, &window.y);
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
                    (step.node, window.input),
                    || backward_data_algorithm(handle, conv, y_desc, x_desc),
                )?;
                use_math(conv, math, self.tf32)?;
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
                    Arg::Count((step.output.height * step.output.width) as u64),
                    Arg::Count(step.output.channels as u64),
                    dxs[0].accumulate(),
                ];
                self.launch(&kernels.scale_backward, n, &args)?;
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

/// The pass of a gradient a step runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pass {
    Forward,
    Backward,
}

/// What runs a step: cuDNN (or whatever runs the operation in general), or deepdream's own
/// depthwise kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Cudnn,
    Own,
}

/// How many times each route runs when timed, after one run to warm it up.
const TIMED_RUNS: usize = 3;

impl Run<'_> {
    /// The geometry arguments of deepdream's depthwise kernels for step `index`, if it is a
    /// depthwise convolution they run (one filter per channel, every count within an `i32`).
    fn depthwise_geometry(&self, index: usize) -> Option<[Arg; 12]> {
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
    fn route(&mut self, index: usize, pass: Pass, dy: u64) -> Result<Route> {
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
        let chosen = self
            .choices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .depthwise
            .get(&key)
            .copied();
        if let Some(route) = chosen {
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
                self.timed(|run| run.own_depthwise(index, pass, 0, Target::NONE))?,
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
                    self.timed(|run| run.own_depthwise(index, pass, dy, dx))?,
                )
            }
        };
        let route = match cudnn {
            Ok(cudnn) if cudnn <= own => Route::Cudnn,
            _ => Route::Own,
        };
        if std::env::var(CHOICES_VARIABLE).is_ok_and(|v| v == "1") {
            let cudnn = cudnn.map_or_else(|e| e.to_string(), |ms| format!("{ms:.4} ms"));
            let input = step.inputs[0];
            eprintln!(
                "deepdream: depthwise node {} {pass:?} on {}x{}x{}: cuDNN {cudnn}, own {own:.4} ms: {route:?}",
                step.node, input.channels, input.height, input.width
            );
        }
        self.choices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .depthwise
            .insert(key, route);
        Ok(route)
    }

    /// The time in milliseconds `work` takes on the GPU, over [`TIMED_RUNS`] runs after one.
    fn timed(&mut self, mut work: impl FnMut(&mut Self) -> Result<()>) -> Result<f32> {
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

    /// Step `index`, a depthwise convolution, by deepdream's kernels: forward into its value,
    /// or backward, storing the input's gradient at `dx` from the output's at `dy`.
    fn own_depthwise(&self, index: usize, pass: Pass, dy: u64, dx: Target) -> Result<()> {
        let step = &self.plan.steps[index];
        let geometry = self.depthwise_geometry(index).expect("a depthwise step");
        let weights = &self.weights[step.node];
        let w = Arg::Address(address(
            weights.first.as_ref().expect("conv weights"),
            self.stream(),
        ));
        let kernels = &self.handles.kernels;
        let mut args = match pass {
            Pass::Forward => vec![
                Arg::Address(self.address_of(step.node + 1)),
                Arg::Address(self.address_of(self.graph.nodes[step.node].inputs[0])),
                w,
                // No bias is a null address.
                Arg::Address(
                    weights
                        .second
                        .as_ref()
                        .map_or(0, |b| address(b, self.stream())),
                ),
            ],
            Pass::Backward => vec![
                Arg::Address(dx.address),
                Arg::Address(dy),
                w,
                dx.accumulate(),
            ],
        };
        args.extend(geometry);
        match pass {
            Pass::Forward => self.launch(&kernels.depthwise, step.output.len(), &args),
            Pass::Backward => self.launch(&kernels.depthwise_backward, step.inputs[0].len(), &args),
        }
    }
}

/// cuDNN's description of a windowed step (a convolution or a pooling): its input as cuDNN
/// reads it (padded by hand where the padding is asymmetric), its output, and the operation.
struct Window {
    x: TensorDesc,
    y: TensorDesc,
    /// The shape `x` describes.
    input: Shape,
    operation: WindowOperation,
}

enum WindowOperation {
    Conv(ConvDesc),
    Pool(PoolDesc),
}

impl Window {
    fn conv(&self) -> &ConvDesc {
        match &self.operation {
            WindowOperation::Conv(conv) => conv,
            WindowOperation::Pool(_) => unreachable!("a pooling step has no convolution"),
        }
    }

    fn pool(&self) -> &PoolDesc {
        match &self.operation {
            WindowOperation::Pool(pool) => pool,
            WindowOperation::Conv(_) => unreachable!("a convolution step has no pooling"),
        }
    }
}

/// cuDNN's descriptors of a plan's windowed steps, by step, made once for the plan.
pub struct Windows(Vec<Option<Window>>);

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
    let (operation, output) = match operation {
        Operation::Conv {
            weight,
            stride,
            dilation,
            groups,
            ..
        } => {
            let conv = ConvDesc::new(&ConvGeometry {
                shape: weight.dims(),
                padding,
                stride: *stride,
                dilation: *dilation,
                groups: *groups,
                tf32,
            })?;
            let output = conv.output(&x)?;
            (WindowOperation::Conv(conv), output)
        }
        Operation::MaxPool { .. } | Operation::AvgPool { .. } | Operation::GlobalAvgPool => {
            let (max, count_pad, kernel, stride) = pooling(operation, step);
            let pool = PoolDesc::new(max, count_pad, kernel, padding, stride)?;
            let output = pool.output(&x)?;
            (WindowOperation::Pool(pool), output)
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
    }))
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

/// cuDNN's choices for the convolutions of a graph, by node and input shape, and the timed
/// choices between cuDNN and deepdream's own kernels: made once per shape, not at every step.
#[derive(Default)]
struct Choices {
    forward: HashMap<(usize, Shape), Choice<cudnn_sys::cudnnConvolutionFwdAlgo_t>>,
    backward_data: HashMap<(usize, Shape), Choice<cudnn_sys::cudnnConvolutionBwdDataAlgo_t>>,
    /// What runs each depthwise convolution, by node, input shape and pass.
    depthwise: HashMap<(usize, Shape, Pass), Route>,
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
