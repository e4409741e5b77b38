//! The GPU path: the same gradients and dream on the `wgpu` device as on the CPU. Runs only
//! in a build with the `wgpu` feature and a Vulkan/Metal/DirectX driver (Mesa's lavapipe
//! software driver is enough: `cargo test --release -p deepdream --features wgpu --test gpu`).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::{Distribution, Tensor, TensorData};
use common::{photo_crop, relative_l2_error, test_network, vgg16};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network};

fn gpu() -> Device {
    deepdream::backend::device::by_name("wgpu").expect("wgpu device")
}

fn params(layer: &str) -> DreamParams {
    DreamParams {
        layers: vec![LayerWeight {
            layer: layer.into(),
            weight: 1.0,
        }],
        octaves: 2,
        iterations: 2,
        seed: 5,
        ..DreamParams::default()
    }
}

/// The gradient of `layer` for one random image on `device`.
fn gradient(network: &dyn Network, layer: &str, image: &TensorData, device: &Device) -> Vec<f32> {
    let dreamer = Dreamer::new(network, params(layer), device).unwrap();
    let input = Tensor::<4>::from_data(image.clone(), device);
    let gradient = dreamer.gradient(input).unwrap();
    gradient
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn gradients_match_the_cpu() {
    let cpu = Device::flex();
    let image =
        Tensor::<4>::random([1, 3, 40, 36], Distribution::Uniform(-100.0, 100.0), &cpu).into_data();
    let cases: [(Box<dyn Fn(&Device) -> Box<dyn Network>>, &str); 2] = [
        (Box::new(|d| Box::new(test_network(d))), "mixed"),
        (Box::new(vgg16), "block3_conv3"),
    ];
    for (load, layer) in cases {
        let on_cpu = gradient(load(&cpu).as_ref(), layer, &image, &cpu);
        let on_gpu = gradient(load(&gpu()).as_ref(), layer, &image, &gpu());
        let error = relative_l2_error(&on_gpu, &on_cpu);
        assert!(error < 1e-4, "{layer}: relative error {error:e}");
    }
}

#[test]
fn a_dream_on_the_gpu_matches_the_cpu() {
    let photo = image::DynamicImage::ImageRgb8(photo_crop(100, 40, 64));
    let dream = |device: &Device| {
        let network = vgg16(device);
        let dreamer = Dreamer::new(network.as_ref(), params("block3_conv3"), device).unwrap();
        dreamer.dream_image(&photo, |_| {}).unwrap().to_rgb8()
    };
    let (on_cpu, on_gpu) = (dream(&Device::flex()), dream(&gpu()));
    // Rounding to 8 bits may differ by one level where the two land on either side of .5.
    let worst = on_cpu
        .as_raw()
        .iter()
        .zip(on_gpu.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 2, "largest pixel difference {worst}");
}
