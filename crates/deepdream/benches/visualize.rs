//! Feature visualisation figures: for five channels of VGG16's block4_conv3, the channel's
//! mean activation on its visualisation against its largest mean activation over the three
//! test photos, and the share of spectral energy above half the Nyquist frequency with the
//! priors (Fourier parameterisation, decorrelated colours, transformations) and without
//! (plain gradient ascent on pixels); then EfficientNet-Lite0's verdict on a goldfish
//! visualisation.
//!
//! ```text
//! cargo bench -p deepdream --bench visualize                 # 224 pixels, 256 steps
//! cargo bench -p deepdream --bench visualize -- --save DIR   # also write the images
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Tensor;
use deepdream::modes::visualize::{Target, VisualizeParams, visualize};
use deepdream::{
    Network, media::image_io, networks::classify, networks::models, networks::weights,
};
use image::RgbImage;

mod common;

const LAYER: &str = "block4_conv3";
const CHANNELS: [usize; 5] = [0, 1, 2, 3, 4];

fn load(name: &str, device: &deepdream::Device) -> Box<dyn Network> {
    let spec = models::find(name).unwrap();
    let path = weights::ensure(spec, |_| eprintln!("fetching {name} weights")).unwrap();
    (spec.load)(&path, device).unwrap()
}

/// The mean activation of `channel` of layer `layer` on `image`.
fn mean_activation(network: &dyn Network, layer: usize, channel: usize, image: &RgbImage) -> f32 {
    let device = deepdream::Device::flex();
    let input = network.preprocess().apply(image, &device);
    let activation: Tensor<4> = network.forward(input, &[layer]).unwrap().remove(0);
    activation.narrow(1, channel, 1).mean().into_scalar()
}

/// The share of the grey image's spectral energy (mean removed) at radial frequencies above
/// half the Nyquist frequency (0.25 cycles per pixel).
fn high_frequency_share(image: &RgbImage) -> f64 {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let grey: Vec<f64> = image
        .pixels()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = grey.iter().sum::<f64>() / grey.len() as f64;
    // Separable DFT: rows first, then columns.
    let dft = |n: usize| -> Vec<(f64, f64)> {
        (0..n * n)
            .map(|k| {
                let angle = -2.0 * std::f64::consts::PI * ((k / n) * (k % n) % n) as f64 / n as f64;
                (angle.cos(), angle.sin())
            })
            .collect()
    };
    let (row_basis, col_basis) = (dft(w), dft(h));
    let mut rows = vec![(0.0, 0.0); h * w];
    for y in 0..h {
        for v in 0..w {
            let mut sum = (0.0, 0.0);
            for x in 0..w {
                let (c, s) = row_basis[v * w + x];
                let value = grey[y * w + x] - mean;
                sum = (sum.0 + value * c, sum.1 + value * s);
            }
            rows[y * w + v] = sum;
        }
    }
    let (mut high, mut total) = (0.0, 0.0);
    for u in 0..h {
        for v in 0..w {
            let mut sum = (0.0, 0.0);
            for y in 0..h {
                let (c, s) = col_basis[u * h + y];
                let (re, im) = rows[y * w + v];
                sum = (sum.0 + re * c - im * s, sum.1 + re * s + im * c);
            }
            let energy = sum.0 * sum.0 + sum.1 * sum.1;
            let fy = u.min(h - u) as f64 / h as f64;
            let fx = v.min(w - v) as f64 / w as f64;
            total += energy;
            if fy.hypot(fx) > 0.25 {
                high += energy;
            }
        }
    }
    high / total.max(1e-12)
}

fn main() {
    common::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let save: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--save")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    if let Some(dir) = &save {
        std::fs::create_dir_all(dir).unwrap();
    }
    let device = deepdream::backend::device::by_name("cpu").unwrap();
    let vgg = load("vgg16", &device);
    let layer = vgg.layer_index(LAYER).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let photos: Vec<RgbImage> = ["astronaut.png", "chelsea.png", "coffee.png"]
        .iter()
        .map(|name| image_io::load(&fixtures.join(name)).unwrap().to_rgb8())
        .collect();
    let params = VisualizeParams {
        seed: 1,
        ..VisualizeParams::default()
    };
    println!(
        "feature visualisation of vgg16 {LAYER}, {}x{} pixels, {} Adam steps",
        params.size, params.size, params.steps
    );
    for channel in CHANNELS {
        let target = Target::Channel {
            layer: LAYER.into(),
            channel,
        };
        let start = Instant::now();
        let with = visualize(vgg.as_ref(), &target, &params, &device, |_| {}).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        let without = visualize(
            vgg.as_ref(),
            &target,
            &params.clone().without_priors(),
            &device,
            |_| {},
        )
        .unwrap();
        let on_photos = photos
            .iter()
            .map(|p| mean_activation(vgg.as_ref(), layer, channel, p))
            .fold(f32::MIN, f32::max);
        let on_visualisation = mean_activation(vgg.as_ref(), layer, channel, &with);
        println!(
            "channel {channel}: mean activation {on_visualisation:.2} vs at most {on_photos:.2} on the photos ({:.1}x); energy above half Nyquist {:.1}% with the priors, {:.1}% without; {seconds:.0} s",
            on_visualisation / on_photos.max(1e-6),
            100.0 * high_frequency_share(&with),
            100.0 * high_frequency_share(&without)
        );
        if let Some(dir) = &save {
            with.save(dir.join(format!("{LAYER}-{channel}.png")))
                .unwrap();
            without
                .save(dir.join(format!("{LAYER}-{channel}-no-priors.png")))
                .unwrap();
        }
    }

    let lite = load("efficientnet-lite0", &device);
    let goldfish = deepdream::networks::imagenet::find_class("goldfish").unwrap();
    for (name, params) in [
        ("with the priors", params.clone()),
        ("without", params.clone().without_priors()),
    ] {
        let image = visualize(
            lite.as_ref(),
            &Target::Class(goldfish),
            &params,
            &device,
            |_| {},
        )
        .unwrap();
        let top = classify::classify(lite.as_ref(), &image.clone().into(), 1, &device).unwrap();
        println!(
            "goldfish {name}: efficientnet-lite0 sees '{}' ({:.1}%); energy above half Nyquist {:.1}%",
            top[0].name,
            100.0 * top[0].probability,
            100.0 * high_frequency_share(&image)
        );
        if let Some(dir) = &save {
            let file = if name == "without" {
                "goldfish-no-priors.png"
            } else {
                "goldfish.png"
            };
            image.save(dir.join(file)).unwrap();
        }
    }
}
