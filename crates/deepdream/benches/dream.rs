//! Speed of DeepDream on the CPU: seconds per gradient step (forward to the model's default
//! layers and back to the image) at 224 and 512 pixels (median) for each model, PyTorch's
//! time for the same step in the same run where torch is installed, and the time of a
//! default VGG16 dream of a 1024x768 photo.
//!
//! ```text
//! cargo bench -p deepdream --bench dream                        # everything
//! cargo bench -p deepdream --bench dream -- --steps             # the steps only
//! cargo bench -p deepdream --bench dream -- --steps --model efficientnet-lite0
//! cargo bench -p deepdream --bench dream --features wgpu -- --device wgpu
//! ```

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use deepdream::{DreamParams, Dreamer, image_io, models, weights};

mod common;

const REPEATS: usize = 3;
const SIZES: [usize; 2] = [224, 512];

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    common::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let steps_only = args.iter().any(|a| a == "--steps");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let device_name = option("--device").unwrap_or("cpu");
    let device = deepdream::device::by_name(device_name).unwrap();
    let names: Vec<&str> = match option("--model") {
        Some(name) => vec![name],
        None => models::ALL.iter().map(|spec| spec.name).collect(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("deepdream benchmark: device {device_name}, {threads} CPU threads");
    for name in names {
        let spec = models::find(name).unwrap();
        let path = weights::ensure(spec, |_| eprintln!("fetching {name} weights")).unwrap();
        let network = (spec.load)(&path, &device).unwrap();
        let dreamer = Dreamer::new(network.as_ref(), DreamParams::default(), &device).unwrap();
        let layers = spec.default_layers.join("+");
        let mut ours = Vec::new();
        for size in SIZES {
            let input = network.preprocess().apply(
                &image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
                    image::Rgb([
                        (x * 7 % 256) as u8,
                        (y * 5 % 256) as u8,
                        ((x + y) % 256) as u8,
                    ])
                }),
                &device,
            );
            let input = input.add(Tensor::<4>::random(
                [1, 3, size, size],
                Distribution::Normal(0.0, 0.1),
                &device,
            ));
            let mut times = Vec::new();
            for repeat in 0..=REPEATS {
                let start = Instant::now();
                let gradient = dreamer.gradient(input.clone()).unwrap();
                let _: f32 = gradient.sum().into_scalar();
                if repeat > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            let seconds = median(times);
            println!(
                "{name} ({layers}) deepdream step {size}x{size}: {seconds:.3} s (median of {REPEATS})"
            );
            ours.push(seconds);
        }
        match torch_baseline(name, &path) {
            Some(torch) => {
                for ((size, ours), theirs) in SIZES.iter().zip(&ours).zip(torch) {
                    println!(
                        "{name} ({layers}) pytorch   step {size}x{size}: {theirs:.3} s; deepdream/pytorch = {:.2}x",
                        ours / theirs
                    );
                }
            }
            None => println!(
                "{name}: pytorch baseline skipped (python3 with torch, torchvision, timm and onnx not found)"
            ),
        }
    }

    if steps_only {
        return;
    }
    let spec = models::find("vgg16").unwrap();
    let path = weights::ensure(spec, |_| eprintln!("fetching VGG16 weights")).unwrap();
    let network = (spec.load)(&path, &device).unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chelsea.png");
    let photo = image_io::load(&photo).unwrap().resize_exact(
        1024,
        768,
        image::imageops::FilterType::Lanczos3,
    );
    let dreamer = Dreamer::new(network.as_ref(), DreamParams::default(), &device).unwrap();
    let start = Instant::now();
    dreamer.dream_image(&photo, |_| {}).unwrap();
    println!(
        "default vgg16 dream (4 octaves x 10 iterations) of 1024x768: {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// PyTorch's median step times for [`SIZES`], from scripts/bench_torch.py: the same
/// architecture (VGG16 with the same weights; Inception v3 and EfficientNet-Lite0 with random
/// weights, which do not change the speed), the same layers and objective.
fn torch_baseline(model: &str, weights: &Path) -> Option<Vec<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_torch.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(weights)
        .arg(REPEATS.to_string())
        .args(SIZES.map(|s| s.to_string()))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let times: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect();
    (times.len() == SIZES.len()).then_some(times)
}
