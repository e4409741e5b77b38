//! What every dreamable network offers the dream algorithm: its layers, the preprocessing its
//! weights expect, and a forward pass that stops at the deepest layer asked for.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

pub use crate::backend::ascend::NormalisedAscent;
pub use crate::backend::layer_terms::{LayerTerms, LossValues};
use crate::error::{Error, Result};
use crate::media::flow::FlowDevice;

/// How a network expects its input pixels: `value = (pixel - mean) / std` per channel (RGB
/// order, pixels 0–255), then optionally reordered to BGR.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// Per-channel mean, RGB order, on the 0–255 scale.
    pub mean: [f32; 3],
    /// Per-channel divisor, RGB order.
    pub std: [f32; 3],
    /// Whether the network takes its channels in BGR order.
    pub bgr: bool,
}

impl Preprocess {
    /// Caffe/Keras "caffe" mode (VGG, the original GoogLeNet): BGR, ImageNet mean, no scaling.
    pub const CAFFE: Preprocess = Preprocess {
        mean: [123.68, 116.779, 103.939],
        std: [1.0, 1.0, 1.0],
        bgr: true,
    };

    /// Torchvision mode: RGB scaled to 0–1, ImageNet mean and standard deviation.
    pub const TORCH: Preprocess = Preprocess {
        mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
        std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
        bgr: false,
    };

    /// TensorFlow mode: RGB scaled to −1…1.
    pub const TF: Preprocess = Preprocess {
        mean: [127.5, 127.5, 127.5],
        std: [127.5, 127.5, 127.5],
        bgr: false,
    };

    /// Plain pixels: RGB, 0–255, unchanged (for image operations outside a network).
    pub const PIXELS: Preprocess = Preprocess {
        mean: [0.0, 0.0, 0.0],
        std: [1.0, 1.0, 1.0],
        bgr: false,
    };

    /// The network's channel order: index `i` of the network input holds RGB channel
    /// `channel_order()[i]`.
    pub fn channel_order(&self) -> [usize; 3] {
        if self.bgr { [2, 1, 0] } else { [0, 1, 2] }
    }

    /// Lowest and highest value each network channel can take for pixels in 0–255.
    pub fn value_range(&self) -> [(f32, f32); 3] {
        self.channel_order().map(|c| {
            (
                (0.0 - self.mean[c]) / self.std[c],
                (255.0 - self.mean[c]) / self.std[c],
            )
        })
    }

    /// How much one pixel level (1/255 of the range) changes each network channel.
    pub fn value_per_pixel_level(&self) -> [f32; 3] {
        self.channel_order().map(|c| 1.0 / self.std[c])
    }

    /// Converts an RGB image to a `[1, 3, height, width]` network input.
    pub fn apply(&self, image: &image::RgbImage, device: &Device) -> Tensor<4> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let mut values = vec![0f32; 3 * height * width];
        for (plane, &c) in values
            .chunks_mut((height * width).max(1))
            .zip(&self.channel_order())
        {
            let (mean, std) = (self.mean[c], self.std[c]);
            plane
                .par_chunks_mut(width.max(1))
                .zip(image.as_raw().par_chunks(3 * width.max(1)))
                .for_each(|(row, pixels)| {
                    for (value, pixel) in row.iter_mut().zip(pixels.chunks_exact(3)) {
                        *value = (pixel[c] as f32 - mean) / std;
                    }
                });
        }
        Tensor::from_data(TensorData::new(values, [1, 3, height, width]), device)
    }

    /// Converts a `[1, 3, height, width]` network input back to an RGB image, rounding and
    /// clipping to 8 bits.
    pub fn invert(&self, input: Tensor<4>) -> Result<image::RgbImage> {
        let [_, _, height, width] = input.dims();
        let values: Vec<f32> = input
            .into_data()
            .try_to_vec()
            .map_err(|e| Error::InvalidParameter(format!("cannot read image tensor: {e:?}")))?;
        let plane = height * width;
        let order = self.channel_order();
        let mut pixels = vec![0u8; 3 * plane];
        pixels
            .par_chunks_mut(3 * width.max(1))
            .enumerate()
            .for_each(|(y, row)| {
                for (x, pixel) in row.chunks_exact_mut(3).enumerate() {
                    for (i, &c) in order.iter().enumerate() {
                        let value = values[i * plane + y * width + x] * self.std[c] + self.mean[c];
                        pixel[c] = value.round().clamp(0.0, 255.0) as u8;
                    }
                }
            });
        image::RgbImage::from_raw(width as u32, height as u32, pixels)
            .ok_or_else(|| Error::InvalidParameter(format!("a {width}x{height} image too large")))
    }
}

/// A layer that can be dreamed on.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// The name users type (`block4_conv3`).
    pub name: String,
    /// The operator that produces it (`Conv+Relu`, `Concat`, `MaxPool`, …).
    pub kind: String,
    /// Its number of channels.
    pub channels: usize,
    /// Input pixels per output pixel along each side (0 for a global layer such as logits).
    pub stride: usize,
    /// Smallest square input that gives this layer at least one output pixel.
    pub min_input: usize,
    /// Input pixels of context an output pixel depends on beyond its own stride cell, on
    /// each side (an upper bound; `usize::MAX` for a global layer).
    pub halo: usize,
    /// Rough memory a gradient through this layer needs per input pixel, in bytes.
    pub bytes_per_pixel: f32,
}

/// A network the dream algorithm can run: layers, preprocessing and a forward pass.
pub trait Network: Send + Sync {
    /// The model's name (`vgg16`, or the file name of a user's ONNX file).
    fn name(&self) -> &str;

    /// The layers dreamed when the user names none.
    fn default_layers(&self) -> &[String];

    /// The dreamable layers, shallowest first.
    fn layers(&self) -> &[LayerInfo];

    /// The preprocessing the network's weights expect.
    fn preprocess(&self) -> Preprocess;

    /// Runs the network on a preprocessed `[1, 3, H, W]` input and returns the outputs of the
    /// layers at `layer_indices` (indices into [`Network::layers`]), each as
    /// `[N, C, H, W]` (a layer without spatial extent comes back as `[N, C, 1, 1]`). Only the
    /// part of the network those layers depend on is run.
    fn forward(&self, input: Tensor<4>, layer_indices: &[usize]) -> Result<Vec<Tensor<4>>>;

    /// The index of the layer holding the 1000 ImageNet class logits, if the network has an
    /// ImageNet classifier.
    fn class_layer(&self) -> Option<usize> {
        None
    }

    /// The spatial size of layer `layer`'s output for a `height`x`width` input, if any.
    fn output_size(&self, layer: usize, height: usize, width: usize) -> Option<(usize, usize)>;

    /// The error for a layer name that [`Network::layers`] does not list.
    fn unknown_layer(&self, name: &str) -> Error {
        Error::UnknownLayer {
            model: self.name().to_string(),
            layer: name.to_string(),
        }
    }

    /// The index of the layer called `name`.
    fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers().iter().position(|layer| layer.name == name)
    }

    /// The gradient with respect to `input` of a loss of the outputs of `layers`, for a
    /// network that computes it itself (on a GPU): `loss` turns those outputs into the loss's
    /// gradient with respect to each. `None` leaves the gradient to burn's autodiff through
    /// [`Network::forward`].
    fn input_gradient(
        &self,
        _input: Tensor<4>,
        _layers: &[usize],
        _loss: &mut LayerLoss<'_>,
    ) -> Option<Result<Tensor<4>>> {
        None
    }

    /// `image` (a preprocessed `[1, 3, H, W]` input) kept on the network's device for a
    /// whole dream over octaves of `sizes` (`(height, width)`, smallest first, the last the
    /// image's own) whose steps' loss is at `layers` and move the picture as `ascent` says,
    /// where the device runs whole steps itself (a GPU): the octaves' bases and starts are
    /// made there and the picture stays there from step to step and octave to octave (see
    /// [`KeptOctaves`]). `None` leaves the octaves and steps to the engine.
    fn keep_octaves(
        &self,
        _image: &Tensor<4>,
        _sizes: &[(usize, usize)],
        _layers: &[usize],
        _ascent: NormalisedAscent,
    ) -> Option<Result<Box<dyn KeptOctaves + '_>>> {
        None
    }

    /// Whether the network's device prepares its work per input shape (chooses, tunes or
    /// compiles kernels: a GPU's), so that inputs of repeated shapes run faster; the tiles
    /// of a tiled gradient then all have one shape. Networks on burn's GPU devices need not
    /// say so: the dream sees their device.
    fn prepares_per_shape(&self) -> bool {
        false
    }

    /// The memory a gradient may use on the network's device, in bytes, when it has its own
    /// (a GPU's free memory); `None` for the host's default budget.
    fn memory_budget(&self) -> Option<u64> {
        None
    }

    /// Where the network's device computes optical flows itself (a GPU), that device.
    fn flow_device(&self) -> Option<&dyn FlowDevice> {
        None
    }

    /// The network as a graph for the CUDA device, with the graph value of each layer
    /// (`None` for layers the device cannot compute); `None` if it cannot be described so.
    #[cfg(feature = "cuda")]
    fn cuda_graph(&self) -> Option<(crate::backend::graph::Graph, Vec<Option<usize>>)> {
        None
    }
}

/// An image kept on a network's device for DeepDream's steps (an octave's, see
/// [`KeptOctaves`]). A device may queue the steps without waiting for them: a gradient that
/// is not finite shows in [`KeptImage::finite`], not in the step's result.
pub trait KeptImage {
    /// One step: the gradient of the loss at the image rolled by `shift` (rows, columns), and
    /// the image moved along it, rolled back, as the image's [`NormalisedAscent`] says. With
    /// a change mask the gradient is weighted by it first and its mean taken over the mask's
    /// weight (three times it, for the channels); a mask of no weight leaves the image as it
    /// is. A step whose gradient is not finite leaves the image as it was.
    fn step(&mut self, shift: [i64; 2]) -> Result<()>;

    /// Whether every step's gradient so far was finite.
    fn finite(&self) -> Result<bool>;

    /// The image as it is now, on the host.
    fn image(&self) -> Result<Tensor<4>>;
}

/// A picture's octaves kept on a network's device for a whole dream
/// ([`Network::keep_octaves`]): each octave begins there from the one before, as
/// [`octaves::start`](crate::engine::octaves::start) begins it, and its steps
/// ([`KeptImage`]) run there once they are set.
pub trait KeptOctaves: KeptImage {
    /// Begins the next octave (the first at the first call): the image becomes its start,
    /// [`octaves::start`](crate::engine::octaves::start). An error after the last octave.
    fn next_octave(&mut self) -> Result<()>;

    /// Sets the steps of the octave under way: their loss, one [`LayerTerms`] per layer,
    /// and where there is one the change mask (`[1, 1, H, W]`, see [`KeptImage::step`]).
    /// Steps before it are an error.
    fn aim(&mut self, losses: Vec<LayerTerms>, change: Option<&Tensor<4>>) -> Result<()>;
}

/// A loss's side of [`Network::input_gradient`].
pub struct LayerLoss<'a> {
    /// From some layers' outputs, the loss's gradient with respect to each (on the host).
    pub gradients: &'a mut dyn FnMut(Vec<Tensor<4>>) -> Result<Vec<Tensor<4>>>,
    /// The same loss as the [`LayerTerms`] at each layer, where it can be so described
    /// (DeepDream's own objective without region masks, style transfer's and feature
    /// visualisation's terms at the layers): a device then makes the gradients itself and
    /// the layers' outputs never leave it.
    pub terms: Option<Vec<LayerTerms>>,
    /// Set by a network that made the gradients from [`LayerLoss::terms`]: the loss's
    /// value at each layer.
    pub values: Option<Vec<LossValues>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pixel level survives the way to a network input and back, in either channel
    /// order and at odd sizes (a single row, a single column); values beyond the range clip.
    #[test]
    fn an_image_comes_back_from_its_network_input() {
        let device = Device::flex();
        for preprocess in [Preprocess::CAFFE, Preprocess::TORCH] {
            for (width, height) in [(37, 23), (1, 9), (9, 1)] {
                let image = image::RgbImage::from_fn(width, height, |x, y| {
                    image::Rgb([(x * 7 + y) as u8, (y * 11) as u8, (x * 255 / width) as u8])
                });
                let input = preprocess.apply(&image, &device);
                assert_eq!(input.dims(), [1, 3, height as usize, width as usize]);
                // The network's first channel at the first pixel.
                let c = preprocess.channel_order()[0];
                let first: f32 = input.clone().slice([0..1, 0..1, 0..1, 0..1]).into_scalar();
                let want =
                    (image.get_pixel(0, 0)[c] as f32 - preprocess.mean[c]) / preprocess.std[c];
                assert_eq!(first, want, "{preprocess:?}");
                let back = preprocess.invert(input).unwrap();
                assert_eq!(back, image, "{preprocess:?} at {width}x{height}");
            }
        }
        // Caffe's channels are blue, green, red: far below, far above, the mean.
        let far = Tensor::<1>::from_floats([-1e4, 1e4, 0.0], &device).reshape([1, 3, 1, 1]);
        let clipped = Preprocess::CAFFE.invert(far).unwrap();
        assert_eq!(clipped.get_pixel(0, 0).0, [124, 255, 0]);
    }
}
