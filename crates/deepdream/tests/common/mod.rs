//! Helpers shared by the integration tests: fixtures, reference files, the real VGG16.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use deepdream::{Device, Network, OnnxNetwork, Preprocess, models, onnx::raw_layer_name, weights};

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

/// The real VGG16, fetched into the cache on first use.
pub fn vgg16(device: &Device) -> Box<dyn Network> {
    let spec = models::find("vgg16").unwrap();
    let path = weights::ensure(spec, |_| eprintln!("fetching VGG16 weights for the tests"))
        .expect("VGG16 weights");
    (spec.load)(&path, device).expect("VGG16 loads")
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
