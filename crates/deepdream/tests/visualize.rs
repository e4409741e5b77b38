//! Feature visualisation: the Fourier parameterisation's round trip, the transformations
//! (sizes, gradient), a short visualisation that grows its channel, seeded reproducibility,
//! the contact sheet, and bad input.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use deepdream::Error;
use deepdream::engine::parameterisation::{ImageParameterisation, Parameterisation};
use deepdream::engine::transform::Transforms;
use deepdream::modes::visualize::{Target, VisualizeParams, contact_sheet, visualize};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

#[test]
fn fourier_parameters_round_trip_to_the_image() {
    let device = Device::flex();
    for (h, w) in [(8, 8), (5, 7), (1, 6)] {
        let image = Tensor::<4>::random([1, 3, h, w], Distribution::Uniform(-1.0, 1.0), &device);
        let fourier =
            ImageParameterisation::new(Parameterisation::Fourier { decay: 1.0 }, h, w, &device);
        assert_eq!(fourier.shape(), [2, 3, h, w]);
        let back = fourier.spatial(fourier.parameters_of(image.clone()));
        let error = common::max_error_relative_to_largest(&values(back), &values(image));
        assert!(error < 1e-4, "{h}x{w}: round trip error {error}");
    }
}

#[test]
fn rendered_images_stay_between_0_and_1() {
    let device = Device::flex();
    for kind in [
        Parameterisation::Pixels,
        Parameterisation::Fourier { decay: 1.0 },
    ] {
        let image = ImageParameterisation::new(kind, 6, 9, &device);
        let parameters =
            Tensor::<4>::random(image.shape(), Distribution::Normal(0.0, 50.0), &device);
        let rgb = values(image.render(parameters));
        assert_eq!(rgb.len(), 3 * 6 * 9);
        assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn transforms_pad_and_pass_the_gradient_back() {
    let device = Device::flex().autodiff();
    let image = Tensor::<4>::random([1, 3, 10, 12], Distribution::Uniform(0.0, 1.0), &device)
        .require_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(
        values(Transforms::NONE.apply(image.clone(), &mut rng).inner()),
        values(image.clone().inner()),
        "no transformation is the identity"
    );
    let transformed = Transforms::default().apply(image.clone(), &mut rng);
    assert_eq!(transformed.dims(), [1, 3, 10 + 32, 12 + 32]);
    let grads = transformed.sum().backward();
    let gradient = values(image.grad(&grads).unwrap());
    // Bilinear weights sum to one: pixels that stay in view pass a gradient near 1.
    assert!(gradient.iter().all(|g| g.is_finite() && *g >= 0.0));
    assert!(gradient.iter().sum::<f32>() > 0.5 * gradient.len() as f32);
}

fn quick(seed: u64) -> VisualizeParams {
    VisualizeParams {
        size: 48,
        steps: 12,
        seed,
        ..VisualizeParams::default()
    }
}

#[test]
fn a_short_visualisation_grows_its_channel_and_is_reproducible() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let target = Target::Channel {
        layer: "block3_conv1".into(),
        channel: 7,
    };
    let mut activations = Vec::new();
    let first = visualize(network.as_ref(), &target, &quick(4), &device, |p| {
        activations.push(p.activation)
    })
    .unwrap();
    assert_eq!(first.dimensions(), (48, 48));
    assert_eq!(activations.len(), 12);
    assert!(
        activations[11] > 3.0 * activations[0].max(1e-3),
        "activation {activations:?}"
    );
    let again = visualize(network.as_ref(), &target, &quick(4), &device, |_| {}).unwrap();
    assert_eq!(first, again, "the same seed gives the same image");
    let other = visualize(network.as_ref(), &target, &quick(5), &device, |_| {}).unwrap();
    assert_ne!(first, other);

    // A whole layer: DeepDream's objective grown from noise.
    let mut layer = Vec::new();
    let target = Target::Layer("block2_conv2".into());
    visualize(network.as_ref(), &target, &quick(4), &device, |p| {
        layer.push(p.activation)
    })
    .unwrap();
    assert!(layer[11] > 2.0 * layer[0], "activation {layer:?}");
}

#[test]
fn contact_sheets_lay_images_out_in_a_grid() {
    let tile = |v: u8| image::RgbImage::from_pixel(3, 2, image::Rgb([v, v, v]));
    let sheet = contact_sheet(&[tile(10), tile(20), tile(30)], 2, 1);
    assert_eq!(sheet.dimensions(), (7, 5));
    assert_eq!(sheet.get_pixel(4, 0).0, [20; 3]);
    assert_eq!(sheet.get_pixel(0, 3).0, [30; 3]);
    assert_eq!(sheet.get_pixel(3, 0).0, [255; 3]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let run = |target: Target, params: VisualizeParams| {
        visualize(network.as_ref(), &target, &params, &device, |_| {}).unwrap_err()
    };
    let channel = |layer: &str, channel| Target::Channel {
        layer: layer.into(),
        channel,
    };
    assert!(matches!(
        run(channel("block9_conv1", 0), quick(0)),
        Error::UnknownLayer { .. }
    ));
    assert!(matches!(
        run(channel("block3_conv1", 999), quick(0)),
        Error::UnknownChannel { .. }
    ));
    assert!(matches!(
        run(Target::Class(1), quick(0)),
        Error::NoClassifier { .. }
    ));
    let message = run(
        channel("block3_conv1", 0),
        VisualizeParams {
            size: 0,
            ..quick(0)
        },
    )
    .to_string();
    assert!(message.contains("size"), "{message}");
    let message = run(
        channel("block3_conv1", 0),
        VisualizeParams {
            steps: 0,
            ..quick(0)
        },
    )
    .to_string();
    assert!(message.contains("steps"), "{message}");
}
