//! Speed of DeepDream on the CPU: seconds per gradient step of VGG16 `block4_conv3` at
//! 224 and 512 pixels (median), PyTorch's time for the same step in the same run where
//! torch is installed, and the time of a default dream of a 1024x768 photo.
//!
//! ```text
//! cargo bench -p deepdream --bench dream            # everything
//! cargo bench -p deepdream --bench dream -- --steps # the steps only
//! cargo bench -p deepdream --bench dream --features wgpu -- --device wgpu
//! ```

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use deepdream::{DreamParams, Dreamer, LayerWeight, image_io, models, weights};

/// The allocator the CLI uses (see its main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPEATS: usize = 3;
const SIZES: [usize; 2] = [224, 512];

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps_only = args.iter().any(|a| a == "--steps");
    let device_name = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .map_or("cpu", String::as_str);
    let device = deepdream::device::by_name(device_name).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "deepdream benchmark: VGG16 block4_conv3, device {device_name}, {threads} CPU threads"
    );
    let spec = models::find("vgg16").unwrap();
    let path = weights::ensure(spec, |_| eprintln!("fetching VGG16 weights")).unwrap();
    let network = (spec.load)(&path, &device).unwrap();
    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "block4_conv3".into(),
            weight: 1.0,
        }],
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), params, &device).unwrap();

    let mut ours = Vec::new();
    for size in SIZES {
        let input = Tensor::<4>::random(
            [1, 3, size, size],
            Distribution::Uniform(-120.0, 130.0),
            &device,
        );
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
        println!("deepdream step {size}x{size}: {seconds:.3} s (median of {REPEATS})");
        ours.push(seconds);
    }

    match torch_baseline(&path) {
        Some(torch) => {
            for ((size, ours), theirs) in SIZES.iter().zip(&ours).zip(torch) {
                println!(
                    "pytorch   step {size}x{size}: {theirs:.3} s; deepdream/pytorch = {:.2}x",
                    ours / theirs
                );
            }
        }
        None => println!("pytorch baseline skipped (python3 with torch and onnx not found)"),
    }

    if steps_only {
        return;
    }
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
        "default dream (4 octaves x 10 iterations) of 1024x768: {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// PyTorch's median step times for [`SIZES`], from scripts/bench_torch.py.
fn torch_baseline(weights: &Path) -> Option<Vec<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_torch.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(weights)
        .arg(REPEATS.to_string())
        .args(SIZES.map(|s| s.to_string()))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let times: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect();
    (times.len() == SIZES.len()).then_some(times)
}
