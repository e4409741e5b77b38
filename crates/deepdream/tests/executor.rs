//! The ONNX executor against onnxruntime, and its gradient against finite differences.

mod common;

use burn::tensor::Tensor;
use common::{fixture, max_relative_error, read_reference, test_network};
use deepdream::{
    Device, DreamParams, Dreamer, Error, LayerWeight, Network, OnnxNetwork, Preprocess,
    networks::onnx::raw_layer_name,
};

fn reference_input(device: &Device) -> Tensor<4> {
    let reference = read_reference("test_network_reference.txt");
    let (dims, values) = &reference["input"];
    Tensor::<1>::from_floats(values.as_slice(), device)
        .reshape([dims[0], dims[1], dims[2], dims[3]])
}

#[test]
fn lists_layers_with_channels_and_stride() {
    let device = Device::flex();
    let network = test_network(&device);
    let summary: Vec<(String, String, usize, usize)> = network
        .layers()
        .iter()
        .map(|l| (l.name.clone(), l.kind.clone(), l.channels, l.stride))
        .collect();
    let expect = |name: &str, kind: &str, channels: usize, stride: usize| {
        (name.to_string(), kind.to_string(), channels, stride)
    };
    assert_eq!(
        summary,
        vec![
            expect("conv1_relu", "Conv+BatchNorm+Relu", 8, 1),
            expect("norm1", "LRN", 8, 1),
            expect("pool1", "MaxPool", 8, 2),
            expect("branch_a_relu", "Conv+Relu", 4, 2),
            expect("branch_b_relu", "Conv+Relu", 4, 2),
            expect("branch_c_pool", "AvgPool", 8, 2),
            expect("branch_c_relu", "Conv+Relu", 4, 2),
            expect("mixed", "Concat", 12, 2),
            expect("residual", "Add", 12, 2),
            expect("conv_same_relu", "Conv+Relu", 6, 4),
            expect("gap", "GlobalAvgPool", 6, 0),
            expect("fc", "Linear", 5, 0),
        ]
    );
}

#[test]
fn forward_matches_onnxruntime() {
    let device = Device::flex();
    let network = test_network(&device);
    let reference = read_reference("test_network_reference.txt");
    let pairs = [
        ("conv1_relu", "conv1_out"),
        ("norm1", "norm1"),
        ("pool1", "pool1"),
        ("mixed", "mixed"),
        ("residual", "residual"),
        ("conv_same_relu", "s"),
    ];
    let indices: Vec<usize> = pairs
        .iter()
        .map(|(layer, _)| network.layer_index(layer).expect(layer))
        .collect();
    let outputs = network.forward(reference_input(&device), &indices).unwrap();
    for ((layer, reference_name), output) in pairs.iter().zip(outputs) {
        let (dims, expected) = &reference[*reference_name];
        assert_eq!(&output.dims().to_vec(), dims, "shape of {layer}");
        let actual: Vec<f32> = output.into_data().try_to_vec().unwrap();
        let error = max_relative_error(&actual, expected);
        assert!(error < 1e-4, "{layer}: relative error {error}");
    }

    // The classifier: Gemm, then softmax gives onnxruntime's probabilities.
    let fc = network.layer_index("fc").unwrap();
    let logits = network
        .forward(reference_input(&device), &[fc])
        .unwrap()
        .remove(0);
    let probabilities = burn::tensor::activation::softmax(logits.reshape([1, 5]), 1);
    let actual: Vec<f32> = probabilities.into_data().try_to_vec().unwrap();
    let error = max_relative_error(&actual, &reference["prob"].1);
    assert!(error < 1e-5, "softmax(fc): relative error {error}");
}

/// ½ Σ a² / numel of a layer, the objective the dreamer differentiates.
fn objective(network: &OnnxNetwork, layers: &[(usize, f32)], input: Tensor<4>) -> f64 {
    let indices: Vec<usize> = layers.iter().map(|(i, _)| *i).collect();
    let outputs = network.forward(input, &indices).unwrap();
    outputs
        .into_iter()
        .zip(layers)
        .map(|(a, (_, w))| {
            let values: Vec<f32> = a.into_data().try_to_vec().unwrap();
            let sum: f64 = values.iter().map(|&v| 0.5 * (v as f64).powi(2)).sum();
            *w as f64 * sum / values.len() as f64
        })
        .sum()
}

/// Relative error between the dreamer's gradient and central differences of the objective
/// for `layers` (name, weight), on every 37th input value.
fn finite_difference_error(layer_weights: &[(&str, f32)]) -> f64 {
    let device = Device::flex();
    let network = test_network(&device);
    let params = DreamParams {
        layers: layer_weights
            .iter()
            .map(|(layer, weight)| LayerWeight {
                layer: layer.to_string(),
                weight: *weight,
            })
            .collect(),
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(&network, params, &device).unwrap();
    // A rough input: on a smooth one, neighbouring values are so close that the finite
    // differences' steps change which value wins a max-pool window.
    let dims = [1, 3, 23, 17];
    let rough: Vec<f32> = (0..3 * 23 * 17)
        .map(|i| ((i * 7919 + 13) % 1009) as f32 / 1009.0 * 4.0 - 2.0)
        .collect();
    let input = Tensor::<1>::from_floats(rough.as_slice(), &device).reshape(dims);
    let gradient: Vec<f32> = dreamer
        .gradient(input.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let layers: Vec<(usize, f32)> = layer_weights
        .iter()
        .map(|(layer, weight)| (network.layer_index(layer).unwrap(), *weight))
        .collect();
    let base = rough;
    let eps = 1e-2f32;
    let objective_at = |index: usize, delta: f32| {
        let mut values = base.clone();
        values[index] += delta;
        let tensor = Tensor::<1>::from_floats(values.as_slice(), &device).reshape(dims);
        objective(&network, &layers, tensor)
    };
    let (mut diff, mut norm, mut compared) = (0.0f64, 0.0f64, 0);
    for index in (0..base.len()).step_by(5) {
        let (up, centre, down) = (
            objective_at(index, eps),
            objective_at(index, 0.0),
            objective_at(index, -eps),
        );
        let (right, left) = ((up - centre) / eps as f64, (centre - down) / eps as f64);
        // Skip coordinates where a ReLU or max-pool kink lies within the step: there the
        // one-sided slopes disagree and no finite difference is meaningful.
        if (right - left).abs() > 0.01 * (right.abs() + left.abs()) + 1e-6 {
            continue;
        }
        let numeric = (up - down) / (2.0 * eps as f64);
        diff += (numeric - gradient[index] as f64).powi(2);
        norm += (gradient[index] as f64).powi(2);
        compared += 1;
    }
    assert!(
        compared > 40,
        "only {compared} coordinates were smooth enough to compare"
    );
    assert!(norm > 0.0, "the gradient is zero");
    (diff / norm).sqrt()
}

#[test]
fn gradient_matches_finite_differences() {
    // Before the first max pool the network is smooth and finite differences agree to
    // about 1e-5.
    for layer in ["conv1_relu", "norm1"] {
        let error = finite_difference_error(&[(layer, 1.0)]);
        assert!(
            error < 1e-3,
            "{layer}: gradient vs finite differences: relative error {error}"
        );
    }
    // Past it, ReLU and max-pool kinks near the sampled points and the f32 objective leave
    // a few percent (measured 0.2–3.5%); a wrong gradient gives errors of order one.
    for layer in [
        "pool1",
        "branch_b_relu",
        "branch_c_relu",
        "mixed",
        "conv_same_relu",
        "fc",
    ] {
        let error = finite_difference_error(&[(layer, 1.0)]);
        assert!(
            error < 5e-2,
            "{layer}: gradient vs finite differences: relative error {error}"
        );
    }
    let error = finite_difference_error(&[("residual", 1.0), ("conv_same_relu", 0.5)]);
    assert!(
        error < 5e-2,
        "gradient vs finite differences: relative error {error}"
    );
}

#[test]
fn channel_objective_uses_only_those_channels() {
    let device = Device::flex();
    let network = test_network(&device);
    let input = reference_input(&device);
    let gradient = |channels: Option<Vec<usize>>| -> Vec<f32> {
        let params = DreamParams {
            layers: vec![LayerWeight {
                layer: "mixed".into(),
                weight: 1.0,
            }],
            channels,
            ..DreamParams::default()
        };
        let dreamer = Dreamer::new(&network, params, &device).unwrap();
        dreamer
            .gradient(input.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    // Channels 0..4 come from branch_a alone, so their gradient is branch_a's.
    let from_channels = gradient(Some(vec![0, 1, 2, 3]));
    let branch_a = {
        let params = DreamParams {
            layers: vec![LayerWeight {
                layer: "branch_a_relu".into(),
                weight: 1.0,
            }],
            ..DreamParams::default()
        };
        let dreamer = Dreamer::new(&network, params, &device).unwrap();
        let g: Vec<f32> = dreamer
            .gradient(input.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        g
    };
    assert!(max_relative_error(&from_channels, &branch_a) < 1e-5);
    assert!(max_relative_error(&from_channels, &gradient(None)) > 1e-4);

    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        channels: Some(vec![12]),
        ..DreamParams::default()
    };
    let error = Dreamer::new(&network, params, &device)
        .err()
        .expect("channel 12 is out of range");
    assert!(
        matches!(
            error,
            Error::UnknownChannel {
                channel: 12,
                channels: 12,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn unsupported_operator_is_named() {
    let device = Device::flex();
    let network = OnnxNetwork::load(
        &fixture("unsupported_op.onnx"),
        Preprocess::TF,
        raw_layer_name,
        &device,
    )
    .unwrap();
    assert_eq!(network.layers().len(), 1, "only conv_a_relu is runnable");
    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "conv_b_relu".into(),
            weight: 1.0,
        }],
        ..DreamParams::default()
    };
    let error = Dreamer::new(&network, params, &device)
        .err()
        .expect("Erf is unsupported");
    let message = error.to_string();
    assert!(
        message.contains("Erf") && message.contains("conv_b_relu"),
        "{message}"
    );
}

#[test]
fn corrupt_onnx_files_are_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("test_network.onnx")).unwrap();
    for (name, content) in [
        ("empty.onnx", &[][..]),
        ("truncated.onnx", &bytes[..bytes.len() / 2]),
        ("text.onnx", b"this is not a model".as_slice()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let result = OnnxNetwork::load(&path, Preprocess::TF, raw_layer_name, &device);
        assert!(
            matches!(result, Err(Error::Onnx { .. })),
            "{name}: {:?}",
            result.err()
        );
    }
}
