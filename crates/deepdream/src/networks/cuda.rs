//! A network on an NVIDIA GPU: its graph runs forward and back on the CUDA device for every
//! gradient, with the loss's gradients at the layers made there too where the loss is
//! quadratic (DeepDream's own), else by burn on the CPU from copies; plain DeepDream octaves
//! run whole steps there on a kept image. Everything else (layers, sizes, forward passes for
//! guides and targets) is the network's own.

use std::sync::{Arc, OnceLock};

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::cuda::executor::{DeviceImage, DeviceOctaves, Loss, bytes_per_pixel};
use crate::backend::cuda::{Executor, Gpu, KeptSteps, Precision};
use crate::backend::graph::Shape;
use crate::error::{Error, Result};
use crate::media::flow::FlowDevice;
use crate::media::flow::gpu::GpuFlow;
use crate::networks::network::{
    KeptImage, KeptOctaves, LayerInfo, LayerLoss, LayerTerms, Network, NormalisedAscent, Preprocess,
};

/// A network whose gradients run on a GPU.
pub struct CudaNetwork {
    inner: Box<dyn Network>,
    executor: Executor,
    /// The graph value of each layer, `None` where the device cannot compute it.
    values: Vec<Option<usize>>,
    /// The network's layers, each one the GPU computes with the memory a gradient through
    /// it takes there (every value, the gradients' block, the padded copies) instead of
    /// burn's estimate on the CPU.
    layers: Vec<LayerInfo>,
    /// The memory a gradient may use: three quarters of the GPU's free memory when the
    /// network was put there (the rest is for cuDNN's workspace, up to a gibibyte, the
    /// pictures a film keeps for its next frames, and other programs). Taken once: the free
    /// memory drops as the stream's memory pool keeps what the first gradients freed, and a
    /// budget read every step would change the dream's tiling between steps.
    budget: u64,
    /// Farnebäck's flow on the GPU, made when a film first needs it (`None` where it could
    /// not be, or [`FLOW_VARIABLE`] keeps the flow on the CPU).
    flow: OnceLock<Option<GpuFlow>>,
}

/// The environment variable that keeps the optical flow on the CPU when set to `0`.
pub const FLOW_VARIABLE: &str = "DEEPDREAM_CUDA_FLOW";

/// The side of the square input at which the layers' GPU memory per pixel is measured.
const MEMORY_PROBE_SIDE: usize = 512;

impl CudaNetwork {
    /// `network` on `gpu`, convolutions in `precision`; an error if it cannot run there.
    pub fn new(network: Box<dyn Network>, gpu: Arc<Gpu>, precision: Precision) -> Result<Self> {
        let (graph, values) = network.cuda_graph().ok_or_else(|| {
            Error::Device(format!(
                "model '{}' does not run on the CUDA device yet (ONNX networks such as vgg16 do); use --device cpu",
                network.name()
            ))
        })?;
        let budget = gpu.free_memory()? as u64 / 4 * 3;
        let mut layers = network.layers().to_vec();
        for (layer, value) in layers.iter_mut().zip(&values) {
            if let Some(value) = value
                && let Ok(bytes) = bytes_per_pixel(&graph, &[*value], MEMORY_PROBE_SIDE)
            {
                layer.bytes_per_pixel = bytes as f32;
            }
        }
        let executor = Executor::new(gpu, graph, precision);
        Ok(CudaNetwork {
            executor,
            inner: network,
            values,
            layers,
            budget,
            flow: OnceLock::new(),
        })
    }

    /// The graph values of `layers`, if the device computes them all.
    fn graph_values(&self, layers: &[usize]) -> Option<Vec<usize>> {
        layers.iter().map(|&layer| self.values[layer]).collect()
    }
}

impl Network for CudaNetwork {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn default_layers(&self) -> &[String] {
        self.inner.default_layers()
    }

    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn preprocess(&self) -> Preprocess {
        self.inner.preprocess()
    }

    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>> {
        self.inner.forward(input, layer_indices)
    }

    fn class_layer(&self) -> Option<usize> {
        self.inner.class_layer()
    }

    fn output_size(&self, layer: usize, height: usize, width: usize) -> Option<(usize, usize)> {
        self.inner.output_size(layer, height, width)
    }

    fn memory_budget(&self) -> Option<u64> {
        Some(self.budget)
    }

    /// Farnebäck's flows run on the GPU too, on a stream of their own.
    fn flow_device(&self) -> Option<&dyn FlowDevice> {
        let flow = self.flow.get_or_init(|| {
            if std::env::var(FLOW_VARIABLE).is_ok_and(|value| value == "0") {
                return None;
            }
            GpuFlow::new(self.executor.gpu())
                .inspect_err(|error| {
                    eprintln!("deepdream: the optical flow runs on the CPU ({error})")
                })
                .ok()
        });
        flow.as_ref().map(|flow| flow as &dyn FlowDevice)
    }

    /// Whole dreams on the GPU where the network computes every layer asked for.
    fn keep_octaves(
        &self,
        image: &Tensor<4>,
        sizes: &[(usize, usize)],
        layers: &[usize],
        ascent: NormalisedAscent,
    ) -> Option<Result<Box<dyn KeptOctaves + '_>>> {
        let wanted = self.graph_values(layers)?;
        let [batch, channels, height, width] = image.dims();
        if batch != 1 || channels != 3 {
            return None;
        }
        let shape = Shape {
            channels,
            height,
            width,
        };
        let kept = (|| {
            let octaves = self
                .executor
                .upload_octaves(&to_floats(image.clone())?, shape, sizes)?;
            Ok(Box::new(GpuOctaves {
                executor: &self.executor,
                octaves: Some(octaves),
                wanted,
                ascent,
            }) as Box<dyn KeptOctaves + '_>)
        })();
        Some(kept)
    }

    /// cuDNN's algorithms are chosen per shape.
    fn prepares_per_shape(&self) -> bool {
        true
    }

    /// Runs on the GPU when it computes every layer asked for and the input is one image.
    fn input_gradient(
        &self,
        input: Tensor<4>,
        layers: &[usize],
        loss: &mut LayerLoss<'_>,
    ) -> Option<Result<Tensor<4>>> {
        let wanted = self.graph_values(layers)?;
        let [batch, channels, height, width] = input.dims();
        if batch != 1 {
            return None;
        }
        let shape = Shape {
            channels,
            height,
            width,
        };
        Some(gradient(&self.executor, input, shape, &wanted, loss))
    }
}

/// A picture's octaves on the GPU, dreamed there step after step and octave after octave,
/// given back to the executor when done with (for the next picture of the same size).
struct GpuOctaves<'a> {
    executor: &'a Executor,
    octaves: Option<DeviceOctaves>,
    /// The graph values of the steps' losses, and how the steps move the picture.
    wanted: Vec<usize>,
    ascent: NormalisedAscent,
}

impl GpuOctaves<'_> {
    fn octaves(&self) -> &DeviceOctaves {
        self.octaves.as_ref().expect("kept until dropped")
    }

    fn kept(&self) -> Result<&DeviceImage> {
        self.octaves().image().ok_or_else(not_aimed)
    }
}

fn not_aimed() -> Error {
    Error::InvalidParameter("an octave was stepped before its steps were set".into())
}

impl Drop for GpuOctaves<'_> {
    fn drop(&mut self) {
        if let Some(octaves) = self.octaves.take() {
            self.executor.give_back_octaves(octaves);
        }
    }
}

impl KeptOctaves for GpuOctaves<'_> {
    fn next_octave(&mut self) -> Result<()> {
        let octaves = self.octaves.as_mut().expect("kept until dropped");
        self.executor.next_octave(octaves)
    }

    fn aim(&mut self, losses: Vec<LayerTerms>, change: Option<&Tensor<4>>) -> Result<()> {
        let change = change.map(|mask| to_floats(mask.clone())).transpose()?;
        let steps = KeptSteps {
            wanted: &self.wanted,
            losses: &losses,
            ascent: self.ascent,
            change: change.as_deref(),
        };
        let octaves = self.octaves.as_mut().expect("kept until dropped");
        self.executor.aim(octaves, steps)
    }
}

impl KeptImage for GpuOctaves<'_> {
    fn step(&mut self, shift: [i64; 2]) -> Result<()> {
        let octaves = self.octaves.as_mut().expect("kept until dropped");
        let image = octaves.image_mut().ok_or_else(not_aimed)?;
        let shape = image.shape();
        let wrap = |shift: i64, size: usize| shift.rem_euclid(size as i64) as usize;
        let shift = [wrap(shift[0], shape.height), wrap(shift[1], shape.width)];
        self.executor.ascend(image, shift)
    }

    fn finite(&self) -> Result<bool> {
        self.executor.finite(self.kept()?)
    }

    fn image(&self) -> Result<Tensor<4>> {
        let octaves = self.octaves();
        let shape = octaves
            .shape()
            .ok_or_else(|| Error::InvalidParameter("no octave has begun".into()))?;
        let values = self.executor.download_octave(octaves)?;
        Ok(Tensor::<4>::from_data(
            TensorData::new(values, [1, shape.channels, shape.height, shape.width]),
            &Device::flex(),
        ))
    }
}

fn gradient(
    executor: &Executor,
    input: Tensor<4>,
    shape: Shape,
    wanted: &[usize],
    loss: &mut LayerLoss<'_>,
) -> Result<Tensor<4>> {
    let device = input.device();
    let dims = input.dims();
    let host = to_floats(input)?;
    let gradients = &mut *loss.gradients;
    let mut on_host = |outputs: Vec<Vec<f32>>, shapes: &[Shape]| {
        let tensors = outputs
            .into_iter()
            .zip(shapes)
            .map(|(values, s)| {
                Tensor::<4>::from_data(
                    TensorData::new(values, [1, s.channels, s.height, s.width]),
                    &device,
                )
            })
            .collect();
        gradients(tensors)?.into_iter().map(to_floats).collect()
    };
    let described = loss.terms.is_some();
    let terms = match &loss.terms {
        Some(losses) => Loss::Terms(losses),
        None => Loss::Host(&mut on_host),
    };
    let (gradient, values) = executor.gradient(&host, shape, wanted, terms)?;
    if described {
        loss.values = Some(values);
    }
    Ok(Tensor::<4>::from_data(
        TensorData::new(gradient, dims),
        &device,
    ))
}

fn to_floats(tensor: Tensor<4>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::InvalidParameter(format!("cannot read a tensor: {e:?}")))
}
