//! Helpers shared by the integration tests: fixtures, reference files, the real VGG16.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use deepdream::{
    Device, Network, OnnxNetwork, Preprocess, networks::models, networks::onnx::raw_layer_name,
    networks::weights,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The fixtures directory.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A reference file: `name dims… : values…` lines (see scripts/make_test_network.py).
pub fn read_reference(name: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let text = std::fs::read_to_string(fixture(name)).expect("reference file");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (head, values) = line.split_once(" : ").expect("name dims : values");
            let mut head = head.split_whitespace();
            let name = head.next().unwrap().to_string();
            let dims = head.map(|d| d.parse().unwrap()).collect();
            let values = values
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            (name, (dims, values))
        })
        .collect()
}

/// Relative L2 error of `actual` against `expected`, which must not be all zero.
pub fn relative_l2_error(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "lengths");
    let diff: f64 = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| ((a - e) as f64).powi(2))
        .sum();
    let norm: f64 = expected.iter().map(|e| (*e as f64).powi(2)).sum();
    assert!(norm > 0.0, "the expected values are all zero");
    (diff / norm).sqrt()
}

/// The small GoogLeNet-shaped test network (random weights), with raw node names as layers.
pub fn test_network(device: &Device) -> OnnxNetwork {
    OnnxNetwork::load(
        &fixture("test_network.onnx"),
        Preprocess::TF,
        raw_layer_name,
        device,
    )
    .expect("test network loads")
}

/// A named model with its real weights, fetched into the cache on first use; on a machine
/// without network access (a GPU machine), the stand-in weight files of scripts/
/// random_weights.py in the folder `DEEPDREAM_TEST_WEIGHTS` names, unchecked.
pub fn model(name: &str, device: &Device) -> Box<dyn Network> {
    let spec = models::find(name).unwrap();
    let path = match std::env::var_os("DEEPDREAM_TEST_WEIGHTS") {
        Some(folder) => PathBuf::from(folder).join(spec.file_name),
        None => weights::ensure(spec, |_| eprintln!("fetching {name} weights for the tests"))
            .expect("weights"),
    };
    (spec.load)(&path, device).expect("model loads")
}

/// The real VGG16.
pub fn vgg16(device: &Device) -> Box<dyn Network> {
    model("vgg16", device)
}

/// The `x`, `y`, `size` square crop of the fixture photo chelsea.png.
pub fn photo_crop(x: u32, y: u32, size: u32) -> image::RgbImage {
    let photo = deepdream::media::image_io::load(&fixture("chelsea.png"))
        .unwrap()
        .to_rgb8();
    image::imageops::crop_imm(&photo, x, y, size, size).to_image()
}

/// Checks a network's activations on `image` against a reference file with `shape`,
/// `channel_means` and `centre` lines per layer (written by the scripts in scripts/): each
/// value within `tolerance` of the layer's largest reference value.
pub fn assert_matches_reference(
    network: &dyn Network,
    image: &image::RgbImage,
    reference: &str,
    layers: &[&str],
    tolerance: f32,
    device: &Device,
) {
    let text = std::fs::read_to_string(fixture(reference)).unwrap();
    let values = |layer: &str, what: &str| -> Vec<f32> {
        let prefix = format!("{layer} {what} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .expect("reference line");
        line[prefix.len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let indices: Vec<usize> = layers
        .iter()
        .map(|l| network.layer_index(l).expect(l))
        .collect();
    let input = network.preprocess().apply(image, device);
    let outputs = network.forward(input, &indices).unwrap();
    for (layer, output) in layers.iter().zip(outputs) {
        let dims: Vec<usize> = values(layer, "shape").iter().map(|&d| d as usize).collect();
        assert_eq!(output.dims().to_vec(), dims, "{layer} shape");
        let [_, c, h, w] = output.dims();
        let means: Vec<f32> = output
            .clone()
            .mean_dim(3)
            .mean_dim(2)
            .into_data()
            .try_to_vec()
            .unwrap();
        let centre: Vec<f32> = output
            .narrow(2, h / 2, 1)
            .narrow(3, w / 2, 1)
            .reshape([c])
            .into_data()
            .try_to_vec()
            .unwrap();
        for (what, actual) in [("channel_means", means), ("centre", centre)] {
            let expected = values(layer, what);
            let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let error = actual
                .iter()
                .zip(&expected)
                .map(|(a, e)| (a - e).abs() / scale)
                .fold(0.0, f32::max);
            assert!(
                error < tolerance,
                "{layer} {what}: error {error} (relative to max {scale})"
            );
        }
    }
}

/// Largest absolute difference, relative to 1 + |reference|.
pub fn max_relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs() / (1.0 + e.abs()))
        .fold(0.0, f32::max)
}

/// The values of `f(x)` and the gradient of `Σ f(x)·probe` with respect to `x` (a random
/// probe gives every output position its own weight).
pub fn output_and_input_grad<const D: usize>(
    x: &Tensor<D>,
    probe: &Tensor<D>,
    f: impl Fn(Tensor<D>) -> Tensor<D>,
) -> (Vec<f32>, Vec<f32>) {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let values = y.clone().into_data().try_to_vec::<f32>().unwrap();
    let grads = (y * probe.clone()).sum().backward();
    let grad = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    (values, grad)
}

/// Outputs and input gradients of `fast` and of `reference` at `x` against the same
/// `probe`: `[fast output, fast gradient, reference output, reference gradient]`.
pub fn fast_and_reference<const D: usize>(
    x: &Tensor<D>,
    probe: &Tensor<D>,
    fast: impl Fn(Tensor<D>) -> Tensor<D>,
    reference: impl Fn(Tensor<D>) -> Tensor<D>,
) -> [Vec<f32>; 4] {
    let (fast_y, fast_grad) = output_and_input_grad(x, probe, fast);
    let (ref_y, ref_grad) = output_and_input_grad(x, probe, reference);
    [fast_y, fast_grad, ref_y, ref_grad]
}

/// [`max_error_relative_to_largest`] of the output and of the input gradient of `fast`
/// against `reference` (see [`fast_and_reference`]).
pub fn relative_errors<const D: usize>(
    x: &Tensor<D>,
    probe: &Tensor<D>,
    fast: impl Fn(Tensor<D>) -> Tensor<D>,
    reference: impl Fn(Tensor<D>) -> Tensor<D>,
) -> (f32, f32) {
    let [fast_y, fast_grad, ref_y, ref_grad] = fast_and_reference(x, probe, fast, reference);
    (
        max_error_relative_to_largest(&fast_y, &ref_y),
        max_error_relative_to_largest(&fast_grad, &ref_grad),
    )
}

/// The largest absolute difference between `actual` and `expected`, relative to the largest
/// absolute value of `expected`.
pub fn max_error_relative_to_largest(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "lengths");
    let diff = actual
        .iter()
        .zip(expected)
        .fold(0.0f32, |m, (a, e)| m.max((a - e).abs()));
    diff / expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()))
}

/// A tensor of values drawn uniformly from `-limit..limit` by `rng`, so that a case's values
/// are the same at every run (burn's own random tensors share one unseeded generator).
pub fn uniform<const D: usize>(
    rng: &mut ChaCha8Rng,
    shape: [usize; D],
    limit: f32,
    device: &burn::tensor::Device,
) -> Tensor<D> {
    let values = (0..shape.iter().product())
        .map(|_| rng.random_range(-limit..limit))
        .collect::<Vec<f32>>();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The `Network` methods every test wrapper passes on to its inner network, the field
/// named: name, layers, preprocessing, forward pass, output sizes and class layer.
#[macro_export]
macro_rules! pass_network_on {
    ($field:ident) => {
        fn name(&self) -> &str {
            self.$field.name()
        }
        fn default_layers(&self) -> &[String] {
            self.$field.default_layers()
        }
        fn layers(&self) -> &[deepdream::networks::network::LayerInfo] {
            self.$field.layers()
        }
        fn preprocess(&self) -> deepdream::Preprocess {
            self.$field.preprocess()
        }
        fn forward(
            &self,
            input: burn::tensor::Tensor<4>,
            layers: &[usize],
        ) -> deepdream::Result<Vec<burn::tensor::Tensor<4>>> {
            self.$field.forward(input, layers)
        }
        fn output_size(&self, layer: usize, height: usize, width: usize) -> Option<(usize, usize)> {
            self.$field.output_size(layer, height, width)
        }
        fn class_layer(&self) -> Option<usize> {
            self.$field.class_layer()
        }
    };
}
