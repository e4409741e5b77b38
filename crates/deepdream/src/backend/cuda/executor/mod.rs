//! Runs a [`Graph`] on the GPU and back: the forward pass to the wanted values, then, from the
//! loss's gradients with respect to them, the gradient with respect to the input, through
//! cuDNN (convolutions forward and backward to the input, pooling, LRN) and deepdream's
//! kernels (activations, per-channel scales, sums, the padding cuDNN cannot do) and cuBLAS
//! (fully connected layers). Weights are uploaded once; no weight gradient is ever computed.
//!
//! An image kept on the GPU ([`DeviceImage`]) keeps every buffer its steps need, so that a
//! step allocates nothing and never waits for the GPU: after its first step, each step is
//! recorded once as a CUDA graph and replayed, one launch instead of one per operation
//! (`DEEPDREAM_CUDA_GRAPHS=0` turns that off, for comparison). A dream's picture stays there
//! from its first octave to its last ([`DeviceOctaves`], `octaves.rs`).
//!
//! `run.rs` runs the steps of one gradient, `buffers.rs` holds its memory, `windows.rs` its
//! cuDNN descriptors, and `choices.rs` what runs each convolution (chosen by timing, once per
//! shape).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice};

use crate::backend::ascend::NormalisedAscent;
use crate::backend::cuda::gpu::{Gpu, Handles};
use crate::backend::graph::{Graph, Operation, Plan, Shape};
use crate::backend::layer_terms::{LayerTerms, LossValues};
use crate::error::{Error, Result};

mod buffers;
mod choices;
mod octaves;
mod run;
mod windows;

use buffers::{Buffers, Weights, address, alloc, download, driver, upload};
pub use choices::{CHOICES_VARIABLE, Depthwise, REMEMBERED_FILE};
use choices::{Choices, Remembered};
use octaves::Pyramid;
pub use run::LossGradients;
use run::{Arg, DeviceLoss, Run, Seeds, biases_in_activations};
pub use windows::{Precision, Windows, describe};

/// The environment variable that turns CUDA graphs off when set to `0`.
pub const GRAPHS_VARIABLE: &str = "DEEPDREAM_CUDA_GRAPHS";

/// Where the loss's gradients at the wanted values come from.
pub enum Loss<'s, 'a> {
    /// The host makes them from copies of the values.
    Host(&'s mut LossGradients<'a>),
    /// The GPU makes them, from the terms at each wanted value: the values stay there.
    Terms(&'s [LayerTerms]),
}

/// What the steps of an image kept on the GPU do (see [`Executor::aim`]).
#[derive(Clone, Copy, Debug)]
pub struct KeptSteps<'a> {
    /// The graph values the losses are of.
    pub wanted: &'a [usize],
    /// The terms at each wanted value.
    pub losses: &'a [LayerTerms],
    /// How the image moves.
    pub ascent: NormalisedAscent,
    /// Where the image may change and how much: a weight per pixel (0–1), or everywhere.
    pub change: Option<&'a [f32]>,
}

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
    /// The plans of recent gradients with their descriptors and buffers, most recent first:
    /// the next gradient of the same size and values (a tile's, a style transfer's or a
    /// visualisation's next step) uses them again.
    prepared: Mutex<Vec<Prepared>>,
}

/// How many kept images [`Executor::give_back`] holds on to (a dream's octaves, a film's
/// two or three).
const SPARE_IMAGES: usize = 4;

/// How many prepared gradients an executor holds on to (a tiled octave's tiles and its edge
/// tiles, a style transfer's one size).
const PREPARED_GRADIENTS: usize = 2;

/// A gradient's plan with its cuDNN descriptors and buffers, made for one size and set of
/// wanted values: a gradient's ([`Executor::gradient`]) or a kept image's.
struct Prepared {
    plan: Plan,
    windows: Windows,
    buffers: Buffers,
    /// By node, the convolutions whose bias the activation after them adds.
    biases_in_activations: Vec<bool>,
}

impl Prepared {
    /// The input's shape.
    fn shape(&self) -> Shape {
        self.plan.shapes[0].expect("a plan has its input's shape")
    }
}

impl Executor {
    /// `graph` on `gpu`, convolutions in `precision`.
    pub fn new(gpu: Arc<Gpu>, graph: Graph, precision: Precision) -> Executor {
        let weights = graph.nodes.iter().map(|_| Weights::default()).collect();
        let file = crate::home::gpu_cache_dir().join(choices::REMEMBERED_FILE);
        let remembered = Remembered::open(Some(file), &gpu.info.identity(), precision);
        Executor {
            gpu,
            graph,
            precision,
            graphs: std::env::var(GRAPHS_VARIABLE).map_or(true, |value| value != "0"),
            depthwise: Depthwise::Fastest,
            weights: Mutex::new(weights),
            choices: Mutex::new(Choices::new(remembered)),
            spare: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
        }
    }

    /// The GPU it runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The executor with kept images' steps replayed as CUDA graphs or not (by default they
    /// are, unless [`GRAPHS_VARIABLE`] is `0`).
    pub fn with_graphs(self, graphs: bool) -> Executor {
        Executor { graphs, ..self }
    }

    /// The executor with the choices of earlier runs read from and new ones added to `file`
    /// (by default the GPU cache's [`REMEMBERED_FILE`]); with `None`, every choice is timed.
    pub fn with_remembered(self, file: Option<PathBuf>) -> Executor {
        let remembered = Remembered::open(file, &self.gpu.info.identity(), self.precision);
        Executor {
            choices: Mutex::new(Choices::new(remembered)),
            ..self
        }
    }

    /// The executor with depthwise convolutions run as `depthwise` says.
    pub fn with_depthwise(self, depthwise: Depthwise) -> Executor {
        Executor { depthwise, ..self }
    }

    /// The gradient with respect to `input` (a `shape` image) of a loss of the `wanted`
    /// values, whose gradients `loss` gives, and where the GPU made them (from terms)
    /// the loss's value at each wanted value.
    pub fn gradient(
        &self,
        input: &[f32],
        shape: Shape,
        wanted: &[usize],
        loss: Loss<'_, '_>,
    ) -> Result<(Vec<f32>, Vec<LossValues>)> {
        check_len(input.len(), shape)?;
        let mut prepared = self.prepare(shape, wanted)?;
        let gradient = self.with_weights(None, |handles, weights| {
            let stream = &handles.stream;
            let input_buffer = prepared.buffers.values[0].as_mut().expect("the input");
            stream
                .memcpy_htod(input, input_buffer)
                .map_err(driver("upload the image"))?;
            let shapes = prepared.plan.shapes_of(wanted);
            let mut run = self.run(handles, weights, &mut prepared, false);
            run.forward()?;
            let mut device_losses = Vec::new();
            let seeds = match loss {
                Loss::Host(loss) => Seeds::Host(run.host_seeds(wanted, loss)?),
                Loss::Terms(losses) => {
                    device_losses = DeviceLoss::upload(stream, losses, &shapes, true)?;
                    Seeds::Device(&device_losses)
                }
            };
            run.backward(wanted, &seeds)?;
            let gradient = run.buffers.download_gradient(stream, 0, shape.len())?;
            let values = device_losses
                .iter()
                .map(|loss| loss.download_values(stream))
                .collect::<Result<Vec<_>>>()?;
            Ok((gradient, values))
        })?;
        let mut held = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(0, prepared);
        held.truncate(PREPARED_GRADIENTS);
        Ok(gradient)
    }

    /// The plan, descriptors and buffers of a gradient of the `wanted` values of a `shape`
    /// image: those of a recent gradient of the same, else new ones (the weights they need
    /// uploaded; if they do not fit, after freeing what the executor holds).
    fn prepare(&self, shape: Shape, wanted: &[usize]) -> Result<Prepared> {
        let found = {
            let mut held = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
            let index = held
                .iter()
                .position(|p| p.plan.shapes[0] == Some(shape) && p.plan.wanted == wanted);
            index.map(|index| held.remove(index))
        };
        if let Some(prepared) = found {
            return Ok(prepared);
        }
        let plan = self.graph.plan(shape, wanted)?;
        self.with_weights(Some(&plan), |_, _| Ok(()))?;
        let biases_in_activations = biases_in_activations(&self.graph, &plan);
        self.fitting(|| {
            self.gpu.with(|handles| {
                Ok(Prepared {
                    windows: describe(&self.graph, &plan, self.precision)?,
                    buffers: Buffers::new(&handles.stream, &self.graph, &plan)?,
                    plan: plan.clone(),
                    biases_in_activations: biases_in_activations.clone(),
                })
            })
        })
    }

    /// What `make` makes, tried again once after freeing what the executor holds for later
    /// and the memory its pool keeps, where either may be what fills the GPU.
    fn fitting<R>(&self, make: impl Fn() -> Result<R>) -> Result<R> {
        make().or_else(|_| {
            self.free_held();
            make()
        })
    }

    /// Frees the kept images and prepared gradients held for later, and hands the memory
    /// pool's unused memory back, for something that did not fit.
    fn free_held(&self) {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.gpu.release_freed_memory();
    }

    /// A kept image of `shape` (3 channels) for [`Executor::ascend`]'s `steps`, its pixels
    /// not set: planned, and its buffers, losses and change mask put on the GPU, once for all
    /// its steps — or a kept image given back for the same size and steps, whose steps replay
    /// from the first.
    fn take_image(&self, shape: Shape, steps: KeptSteps<'_>) -> Result<DeviceImage> {
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
                kept.prepared.shape() == shape
                    && kept.prepared.plan.wanted == steps.wanted
                    && kept.host_losses == steps.losses
                    && kept.ascent == steps.ascent
                    && kept.host_change.as_deref() == steps.change
            });
            found.map(|index| spare.remove(index))
        };
        if let Some(mut kept) = spare {
            self.gpu.with(|handles| {
                handles
                    .stream
                    .memset_zeros(&mut kept.bad)
                    .map_err(driver("clear the image's flag"))
            })?;
            return Ok(kept);
        }
        let prepared = self.prepare(shape, steps.wanted)?;
        // The gradient's mean is over every value, or over the mask's weight in each channel.
        let count = match steps.change {
            None => shape.len() as f32,
            Some(change) => 3.0 * change.iter().sum::<f32>(),
        };
        let shapes = prepared.plan.shapes_of(steps.wanted);
        let (picture, losses, change, shift, bad) = self.fitting(|| {
            self.gpu.with(|handles| {
                let stream = &handles.stream;
                Ok((
                    alloc(stream, shape.len())?,
                    DeviceLoss::upload(stream, steps.losses, &shapes, false)?,
                    steps
                        .change
                        .map(|change| upload(stream, change))
                        .transpose()?,
                    upload(stream, &[0u64, 0])?,
                    upload(stream, &[0u32])?,
                ))
            })
        })?;
        Ok(DeviceImage {
            replay: Replay::Fresh,
            image: picture,
            prepared,
            losses,
            host_losses: steps.losses.to_vec(),
            change,
            host_change: steps.change.map(<[f32]>::to_vec),
            count,
            shift,
            bad,
            ascent: steps.ascent,
        })
    }

    /// `image` (a `shape` picture of 3 channels) put on the GPU for a dream over octaves of
    /// `sizes` (`(height, width)`, smallest first, the last the picture's own): the picture
    /// crosses once, and each smaller base is made there from the next larger one.
    pub fn upload_octaves(
        &self,
        image: &[f32],
        shape: Shape,
        sizes: &[(usize, usize)],
    ) -> Result<DeviceOctaves> {
        check_len(image.len(), shape)?;
        if sizes.last() != Some(&(shape.height, shape.width))
            || sizes
                .iter()
                .any(|&(height, width)| height == 0 || width == 0)
        {
            return Err(Error::InvalidParameter(format!(
                "octaves of {sizes:?} do not end at a {}x{} picture",
                shape.width, shape.height
            )));
        }
        let shapes: Vec<Shape> = sizes
            .iter()
            .map(|&(height, width)| Shape {
                channels: shape.channels,
                height,
                width,
            })
            .collect();
        let pyramid = self.fitting(|| {
            self.gpu
                .with(|handles| Pyramid::upload(handles, image, shapes.clone()))
        })?;
        Ok(DeviceOctaves {
            pyramid,
            current: None,
        })
    }

    /// Begins the next octave of `octaves` (the first at the first call): its start is its
    /// base plus the detail the octave before added (its picture less its base) scaled up to
    /// it. The octave before's kept image is given back for the next picture's octave of its
    /// size. An error after the last octave.
    pub fn next_octave(&self, octaves: &mut DeviceOctaves) -> Result<()> {
        let next = octaves.current.as_ref().map_or(0, |(octave, _)| octave + 1);
        if next == octaves.pyramid.len() {
            return Err(Error::InvalidParameter(format!(
                "a dream of {next} octaves has no octave {}",
                next + 1
            )));
        }
        let before = octaves.current.take();
        let dreamed = before.as_ref().map(|(_, picture)| picture.values());
        let start = self.fitting(|| {
            self.gpu
                .with(|handles| octaves.pyramid.start(handles, next, dreamed))
        })?;
        if let Some((_, Picture::Kept(dreamed))) = before {
            self.give_back(*dreamed);
        }
        octaves.current = Some((next, Picture::Start(start)));
        Ok(())
    }

    /// Sets the steps of the octave under way: its start becomes a kept image for `steps`
    /// (one given back for the same size and steps where there is one, whose steps replay).
    pub fn aim(&self, octaves: &mut DeviceOctaves, steps: KeptSteps<'_>) -> Result<()> {
        let Some((octave, Picture::Start(start))) = &octaves.current else {
            return Err(Error::InvalidParameter(
                "an octave's steps were set before it began, or twice".into(),
            ));
        };
        let octave = *octave;
        let mut image = self.take_image(octaves.pyramid.shape(octave), steps)?;
        self.gpu.with(|handles| {
            handles
                .stream
                .memcpy_dtod(start, &mut image.image)
                .map_err(driver("start the octave's image"))
        })?;
        octaves.current = Some((octave, Picture::Kept(Box::new(image))));
        Ok(())
    }

    /// The picture of the octave under way as it is now (waiting for its steps).
    pub fn download_octave(&self, octaves: &DeviceOctaves) -> Result<Vec<f32>> {
        let Some((octave, picture)) = &octaves.current else {
            return Err(Error::InvalidParameter("no octave has begun".into()));
        };
        let len = octaves.pyramid.shape(*octave).len();
        self.gpu
            .with(|handles| download(&handles.stream, picture.values(), len))
    }

    /// Takes back a picture's octaves that are done with: the last octave's kept image is
    /// lent to the next picture of its size.
    pub fn give_back_octaves(&self, octaves: DeviceOctaves) {
        if let Some((_, Picture::Kept(image))) = octaves.current {
            self.give_back(*image);
        }
    }

    /// Takes back a kept image that is done with, to lend its buffers and recorded steps to
    /// the next image of the same size and objective (the oldest beyond a few are freed).
    pub fn give_back(&self, image: DeviceImage) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.insert(0, image);
        spare.truncate(SPARE_IMAGES);
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
            prepared,
            losses,
            change,
            count,
            shift,
            bad,
            ascent,
            ..
        } = image;
        let shape = prepared.shape();
        let stream = &handles.stream;
        let kernels = &handles.kernels;
        let (height, width) = (shape.height as u64, shape.width as u64);
        let shift = address(shift, stream);
        let input = prepared.buffers.values[0].as_ref().expect("input");
        let args = [
            Arg::Address(address(input, stream)),
            Arg::Address(address(picture, stream)),
            Arg::Address(shift),
            Arg::Count(height),
            Arg::Count(width),
        ];
        let mut run = self.run(handles, weights, prepared, recording);
        // The plan outlives the run's borrow: its wanted values need no copy each step.
        let plan = run.plan;
        run.launch(&kernels.roll, shape.len(), &args)?;
        run.forward()?;
        run.backward(&plan.wanted, &Seeds::Device(losses))?;
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

    /// A gradient's run as `prepared`.
    fn run<'a>(
        &'a self,
        handles: &'a Handles,
        weights: &'a [Weights],
        prepared: &'a mut Prepared,
        recording: bool,
    ) -> Run<'a> {
        let Prepared {
            plan,
            windows,
            buffers,
            biases_in_activations,
        } = prepared;
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
            biases_in_activations,
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

/// A picture's octaves on the GPU for a whole dream (see [`Executor::upload_octaves`]): their
/// bases, and the octave under way with its picture.
pub struct DeviceOctaves {
    pyramid: Pyramid,
    /// The octave under way, once [`Executor::next_octave`] has begun one, and its picture.
    current: Option<(usize, Picture)>,
}

/// The picture of the octave under way.
enum Picture {
    /// Its start, until its steps are set ([`Executor::aim`]).
    Start(CudaSlice<f32>),
    /// Its kept image, stepped.
    Kept(Box<DeviceImage>),
}

impl Picture {
    fn values(&self) -> &CudaSlice<f32> {
        match self {
            Picture::Start(start) => start,
            Picture::Kept(image) => &image.image,
        }
    }
}

impl DeviceOctaves {
    /// The octave under way's shape, once one has begun.
    pub fn shape(&self) -> Option<Shape> {
        let (octave, _) = self.current.as_ref()?;
        Some(self.pyramid.shape(*octave))
    }

    /// The octave under way's kept image, once its steps are set.
    pub fn image(&self) -> Option<&DeviceImage> {
        match &self.current {
            Some((_, Picture::Kept(image))) => Some(image),
            _ => None,
        }
    }

    /// [`DeviceOctaves::image`], to step.
    pub fn image_mut(&mut self) -> Option<&mut DeviceImage> {
        match &mut self.current {
            Some((_, Picture::Kept(image))) => Some(image),
            _ => None,
        }
    }
}

/// An image on the GPU (see [`Executor::ascend`]) with everything its steps need there: the
/// graph's plan for its size with its cuDNN descriptors and buffers, the losses of the wanted
/// values, the shift of the step, the flag of a gradient that was not finite, and the
/// recorded step.
pub struct DeviceImage {
    // The recorded step goes first: it refers to the buffers below.
    replay: Replay,
    image: CudaSlice<f32>,
    prepared: Prepared,
    losses: Vec<DeviceLoss>,
    /// The losses as given, to recognise the same objective when the image is lent again.
    host_losses: Vec<LayerTerms>,
    /// The change mask, a weight per pixel, on the GPU and as given.
    change: Option<CudaSlice<f32>>,
    host_change: Option<Vec<f32>>,
    /// How many values the gradient's mean is over.
    count: f32,
    shift: CudaSlice<u64>,
    bad: CudaSlice<u32>,
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
        self.prepared.shape()
    }

    /// Whether its steps replay a recorded CUDA graph.
    pub fn replays(&self) -> bool {
        matches!(self.replay, Replay::Graph(_))
    }
}

/// The GPU memory a gradient of `graph`'s `wanted` values takes, in bytes per pixel of a
/// `side`x`side` image of 3 channels: every value, the gradients' block and the padded copies
/// (not cuDNN's workspace, at most a gibibyte).
pub fn bytes_per_pixel(graph: &Graph, wanted: &[usize], side: usize) -> Result<f64> {
    let shape = Shape {
        channels: 3,
        height: side,
        width: side,
    };
    let plan = graph.plan(shape, wanted)?;
    Ok(buffers::floats(graph, &plan) as f64 * 4.0 / (side * side) as f64)
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
