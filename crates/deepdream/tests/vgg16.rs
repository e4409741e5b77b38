//! The real VGG16: forward pass against onnxruntime, seeded dreams, guided dreams.

mod common;

use common::{assert_matches_reference, fixture, photo_crop, vgg16};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, media::image_io};
use image::RgbImage;

/// The crop of chelsea.png that scripts/make_vgg16_reference.py feeds onnxruntime.
fn reference_crop() -> RgbImage {
    photo_crop(176, 64, 96)
}

#[test]
fn forward_matches_onnxruntime() {
    let device = Device::flex();
    let network = vgg16(&device);
    let layers = [
        "block1_conv2",
        "block3_conv3",
        "block4_conv3",
        "block5_pool",
    ];
    let crop = reference_crop();
    assert_matches_reference(
        network.as_ref(),
        &crop,
        "vgg16_reference.txt",
        &layers,
        1e-4,
        &device,
    );
}

#[test]
fn layers_are_the_keras_ones() {
    let device = Device::flex();
    let network = vgg16(&device);
    let names: Vec<&str> = network.layers().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 18, "13 convolutions and 5 pools: {names:?}");
    let block4 = &network.layers()[network.layer_index("block4_conv3").unwrap()];
    assert_eq!(
        (block4.channels, block4.stride, block4.min_input),
        (512, 8, 8)
    );
    assert_eq!(network.default_layers(), ["block4_conv3".to_string()]);
}

fn small_params(seed: u64) -> DreamParams {
    DreamParams {
        layers: vec![LayerWeight {
            layer: "block3_conv3".into(),
            weight: 1.0,
        }],
        octaves: 2,
        iterations: 2,
        jitter: 8,
        seed,
        ..DreamParams::default()
    }
}

#[test]
fn seeded_dreams_are_reproducible() {
    let device = Device::flex();
    let network = vgg16(&device);
    let image = image::imageops::crop_imm(&reference_crop(), 0, 0, 80, 60).to_image();
    let dream = |seed| {
        Dreamer::new(network.as_ref(), small_params(seed), &device)
            .unwrap()
            .dream(&image, |_| {})
            .unwrap()
    };
    let first = dream(7);
    assert_eq!(first, dream(7), "same seed, same image");
    assert_ne!(first, dream(8), "another seed, another jitter sequence");
    assert_ne!(first, image, "the dream changed the image");
    assert_eq!(first.dimensions(), image.dimensions());
}

#[test]
fn guided_dream_follows_the_guide() {
    let device = Device::flex();
    let network = vgg16(&device);
    let image = image::imageops::crop_imm(&reference_crop(), 0, 0, 64, 64).to_image();
    let guide = image_io::load(&fixture("chelsea.png")).unwrap().to_rgb8();
    let plain = Dreamer::new(network.as_ref(), small_params(3), &device).unwrap();
    let guided = Dreamer::new(
        network.as_ref(),
        DreamParams {
            guide: Some(guide),
            ..small_params(3)
        },
        &device,
    )
    .unwrap();
    let input = network.preprocess().apply(&image, &device);
    let g_plain: Vec<f32> = plain
        .gradient(input.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let g_guided: Vec<f32> = guided
        .gradient(input)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(g_guided.iter().any(|v| *v != 0.0));
    assert_ne!(g_plain, g_guided);
    let dreamed = guided.dream(&image, |_| {}).unwrap();
    assert_eq!(dreamed.dimensions(), image.dimensions());
}

#[test]
fn only_the_convolutions_weights_are_kept() {
    let device = Device::flex();
    let path =
        deepdream::networks::weights::ensure(&deepdream::networks::vgg16::SPEC, |_| {}).unwrap();
    let network = deepdream::networks::vgg16::load_onnx(&path, &device).unwrap();
    // VGG16's 13 convolutions: 14,714,688 weights and biases (Simonyan & Zisserman,
    // Keras's `include_top=False` count); the file's tumour head is dropped.
    assert_eq!(network.parameter_count(), 14_714_688);
}
