//! Speed of DeepDream on the CPU: seconds per gradient step (forward to the model's default
//! layers and back to the image) at 224 and 512 pixels (median) for each model, PyTorch's
//! time for the same step in the same run where torch is installed, and the time of a
//! default VGG16 dream of a 1024x768 photo.
//!
//! ```text
//! cargo bench -p deepdream --bench dream                        # everything
//! cargo bench -p deepdream --bench dream -- --steps             # the steps only
//! cargo bench -p deepdream --bench dream -- --steps --model efficientnet-lite0
//! cargo bench -p deepdream --bench dream -- --dream --max-memory 4000000000   # the dream only
//! cargo bench -p deepdream --bench dream -- --overhead --model inception3     # step vs gradient
//! cargo bench -p deepdream --bench dream --features wgpu -- --device wgpu --warmup 5 --repeats 10
//! cargo bench -p deepdream --bench dream -- --device cuda [--precision fp32] --warmup 5 --repeats 10
//! ```
//!
//! `--weights DIR` loads the weight files from DIR unchecked instead of the cache: stand-ins
//! made by scripts/random_weights.py on a machine that cannot download the real ones. On a GPU
//! device each step's gradient is also compared with the CPU's on the same input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use deepdream::backend::ascend;
use deepdream::{
    DreamParams, Dreamer, LayerWeight, ModelSpec, Network, OnnxNetwork, Preprocess,
    media::image_io, networks::models, networks::onnx, networks::weights,
};

mod common;

const REPEATS: usize = 3;
/// torchvision's GoogLeNet as ONNX, run by the ONNX executor.
const GOOGLENET: &str = "googlenet";
const SIZES: [usize; 2] = [224, 512];

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    common::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let steps_only = args.iter().any(|a| a == "--steps");
    let overhead_only = args.iter().any(|a| a == "--overhead");
    let dream_only = args.iter().any(|a| a == "--dream");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let device_name = option("--device").unwrap_or("cpu");
    let precision_tf32 = option("--precision") != Some("fp32");
    let placement =
        deepdream::backend::device::open(device_name, precision_tf32).unwrap_or_else(|error| {
            eprintln!("{device_name}: {error}");
            std::process::exit(1)
        });
    let device = placement.tensors();
    // The network as it runs on the device (on cuda: wrapped to run its gradients there).
    let place = |network| deepdream::networks::placement::place(network, &placement);
    let repeats = option("--repeats").map_or(REPEATS, |n| n.parse().unwrap());
    // GPU backends tune and compile their kernels over the first runs of each shape.
    let warmup = option("--warmup").map_or(1, |n| n.parse().unwrap());
    let weight_file = |spec: &ModelSpec| match option("--weights") {
        Some(dir) => Path::new(dir).join(spec.file_name),
        None => weights::ensure(spec, |_| eprintln!("fetching {} weights", spec.name)).unwrap(),
    };
    let names: Vec<&str> = match option("--model") {
        _ if dream_only => Vec::new(),
        Some(name) => vec![name],
        None => models::ALL
            .iter()
            .map(|spec| spec.name)
            .chain([GOOGLENET])
            .collect(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("deepdream benchmark: device {device_name}, {threads} CPU threads");
    if overhead_only {
        for name in names {
            let spec = models::find(name).unwrap();
            let network = place(load(name, &weight_file(spec), &device)).unwrap();
            step_overhead(network.as_ref(), &device, repeats.max(5));
        }
        return;
    }
    let mut timed = Vec::new();
    for name in names {
        let path = match models::find(name) {
            Ok(spec) => weight_file(spec),
            Err(_) if name == GOOGLENET => match export_googlenet() {
                Some(path) => path,
                None => {
                    println!(
                        "{name}: skipped (exporting it needs python3 with torch and torchvision)"
                    );
                    continue;
                }
            },
            Err(error) => panic!("{error}"),
        };
        let network = match place(load(name, &path, &device)) {
            Ok(network) => network,
            Err(error) => {
                println!("{name}: skipped on {device_name}: {error}");
                continue;
            }
        };
        let layers = match name {
            // The classic DeepDream layer, the output of the block's concatenation.
            GOOGLENET => vec![LayerWeight {
                layer: "/inception4c/Concat".into(),
                weight: 1.0,
            }],
            _ => Vec::new(),
        };
        let params = DreamParams {
            layers,
            ..DreamParams::default()
        };
        let dreamer = Dreamer::new(network.as_ref(), params.clone(), &device).unwrap();
        let cpu = Device::flex();
        let cpu_network = (device_name != "cpu").then(|| load(name, &path, &cpu));
        let layers = match params.layers.as_slice() {
            [] => network.default_layers().join("+"),
            named => named
                .iter()
                .map(|l| l.layer.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        };
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
            for repeat in 0..warmup + repeats {
                let start = Instant::now();
                let gradient = dreamer.gradient(input.clone()).unwrap();
                let _: f32 = gradient.sum().into_scalar();
                if repeat >= warmup {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            let seconds = median(times);
            println!(
                "{name} ({layers}) deepdream step {size}x{size}: {seconds:.3} s (median of {repeats})"
            );
            if let Some(seconds) = kept_steps(&dreamer, &input, warmup, repeats) {
                println!(
                    "{name} ({layers}) deepdream kept-image step {size}x{size}: {seconds:.4} s (mean of {repeats} queued steps: jitter, gradient, update, all on the device)"
                );
            }
            if let Some(cpu_network) = &cpu_network {
                let difference =
                    difference_from_cpu(&dreamer, cpu_network.as_ref(), &params, input, &cpu);
                println!(
                    "{name} {size}x{size}: gradient's relative difference from the CPU's: {difference:.2e}"
                );
            }
            ours.push(seconds);
        }
        timed.push((name, layers, path, ours));
    }
    // PyTorch's processes run after every network of ours is timed: on a machine that
    // reclaims idle memory, one of them in between slowed the next network's steps by 15 %.
    for (name, layers, path, ours) in timed {
        match torch_baseline(name, &path, repeats) {
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
    let path = weight_file(models::find("vgg16").unwrap());
    let network = place(load("vgg16", &path, &device)).unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chelsea.png");
    let photo = image_io::load(&photo).unwrap().resize_exact(
        1024,
        768,
        image::imageops::FilterType::Lanczos3,
    );
    let params = DreamParams {
        max_memory: option("--max-memory").map(|bytes| bytes.parse().unwrap()),
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), params, &device).unwrap();
    let plan = dreamer.plan(1024, 768).unwrap();
    let start = Instant::now();
    let mut last = start;
    let mut octaves: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    dreamer
        .dream_image(&photo, |progress| {
            let now = Instant::now();
            if octaves.last().is_none_or(|o| o.0 != progress.width) {
                octaves.push((progress.width, progress.height, Vec::new()));
            }
            octaves
                .last_mut()
                .unwrap()
                .2
                .push((now - last).as_secs_f64());
            last = now;
        })
        .unwrap();
    println!(
        "default vgg16 dream (4 octaves x 10 iterations) of 1024x768: {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        match plan.tile {
            Some(tile) => format!("in tiles of {tile} pixels"),
            None => "whole".into(),
        }
    );
    for (width, height, steps) in octaves {
        println!(
            "  octave {width}x{height}: first step {:.3} s, then {:.3} s a step (median)",
            steps[0],
            median(steps[1..].to_vec())
        );
    }
}

/// Where the device runs whole steps on a kept image (CUDA): the seconds a dream's step takes
/// there, the mean of `repeats` steps queued one after another as a dream queues them (after
/// `warmup` steps), waited for once at the end.
fn kept_steps(
    dreamer: &Dreamer<'_>,
    input: &Tensor<4>,
    warmup: usize,
    repeats: usize,
) -> Option<f64> {
    let mut kept = dreamer.keep(input).unwrap()?;
    let shifts = [[0, 0], [3, -5], [-7, 11], [20, 1]];
    for step in 0..warmup.max(2) {
        kept.step(shifts[step % shifts.len()]).unwrap();
    }
    assert!(kept.finite().unwrap());
    let start = Instant::now();
    for step in 0..repeats {
        kept.step(shifts[step % shifts.len()]).unwrap();
    }
    assert!(kept.finite().unwrap(), "the steps' gradients are finite");
    Some(start.elapsed().as_secs_f64() / repeats as f64)
}

/// What a dream step costs beyond its gradient (jitter, normalisation, the update of the
/// image): at 512x512, rounds of 5 gradients alone and a one-octave dream of 6 steps (the
/// first step, which also prepares the picture, left out), interleaved so that both see
/// the same machine; medians.
fn step_overhead(network: &dyn Network, device: &Device, rounds: usize) {
    const STEPS: usize = 5;
    let size = 512u32;
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chelsea.png");
    let photo = image_io::load(&photo)
        .unwrap()
        .resize_exact(size, size, image::imageops::FilterType::Lanczos3)
        .to_rgb8();
    let params = DreamParams {
        octaves: 1,
        iterations: STEPS + 1,
        seed: 1,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network, params, device).unwrap();
    let (mut gradients, mut steps) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..STEPS {
            // A tensor of its own, as each dream step's jittered image is.
            let input = network.preprocess().apply(&photo, device);
            let start = Instant::now();
            let gradient = dreamer.gradient(input).unwrap();
            let _: f32 = gradient.slice([0..1, 0..1, 0..1, 0..1]).into_scalar();
            gradients.push(start.elapsed().as_secs_f64());
        }
        let mut last = Instant::now();
        let mut times = Vec::new();
        dreamer
            .dream(&photo, |_| {
                times.push(last.elapsed().as_secs_f64());
                last = Instant::now();
            })
            .unwrap();
        steps.extend_from_slice(&times[1..]);
    }
    let (gradient_time, step) = (median(gradients), median(steps));
    println!(
        "{} {size}x{size}: gradient alone {gradient_time:.4} s, dream step {step:.4} s (medians of {} each): the step costs {:+.1} % more",
        network.name(),
        rounds * STEPS,
        (step / gradient_time - 1.0) * 100.0
    );
    // The step's own work beside the gradient (the jitter, the mean absolute gradient and the
    // update), both ways: burn's operations (a roll, per channel a narrowed multiply-add-clamp, a
    // concatenation, a roll back) and the one-pass update.
    let input = network.preprocess().apply(&photo, device);
    let gradient = dreamer.gradient(input.clone()).unwrap();
    let preprocess = network.preprocess();
    let (units, ranges) = (preprocess.value_per_pixel_level(), preprocess.value_range());
    let shift = [13i64, -21];
    let mut ways: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds * STEPS {
        for (fused, times) in ways.iter_mut().enumerate() {
            let (image, gradient) = (input.clone(), gradient.clone());
            let start = Instant::now();
            // The jittered image the step's gradient is computed on.
            let jittered = image.clone().roll(&shift, &[2, 3]);
            let mean_abs: f32 = gradient.clone().abs().mean().into_scalar();
            let factors = [0, 1, 2].map(|c| 1.5 / mean_abs * units[c]);
            drop(jittered);
            let moved = if fused == 1 {
                ascend::ascend(image, gradient, shift, factors, ranges)
            } else {
                ascend::ascend_with_tensor_ops(image, gradient, shift, factors, ranges)
            };
            let _: f32 = moved.slice([0..1, 0..1, 0..1, 0..1]).into_scalar();
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let [separate, fused] = ways.map(median);
    println!(
        "{} {size}x{size}: the step's work beside the gradient: {:.1} ms with burn's operations ({:.1} % of the gradient), {:.1} ms in one pass ({:.1} %)",
        network.name(),
        separate * 1e3,
        separate / gradient_time * 100.0,
        fused * 1e3,
        fused / gradient_time * 100.0
    );
    // A whole default dream (4 octaves of 10 steps) against the same number of gradients
    // alone at each octave's size.
    let dreamer = Dreamer::new(network, DreamParams::default(), device).unwrap();
    let sizes = dreamer.octave_sizes(size, size).unwrap();
    let iterations = DreamParams::default().iterations;
    let (mut dreams, mut alone) = (Vec::new(), Vec::new());
    for _ in 0..rounds.div_ceil(3) {
        let start = Instant::now();
        dreamer.dream(&photo, |_| {}).unwrap();
        dreams.push(start.elapsed().as_secs_f64());
        let mut total = 0.0;
        for &(height, width) in &sizes {
            let scaled = image::imageops::resize(
                &photo,
                width as u32,
                height as u32,
                image::imageops::FilterType::Triangle,
            );
            let mut times = Vec::new();
            for _ in 0..STEPS {
                let input = network.preprocess().apply(&scaled, device);
                let start = Instant::now();
                let gradient = dreamer.gradient(input).unwrap();
                let _: f32 = gradient.slice([0..1, 0..1, 0..1, 0..1]).into_scalar();
                times.push(start.elapsed().as_secs_f64());
            }
            total += median(times) * iterations as f64;
        }
        alone.push(total);
    }
    let (dream, alone) = (median(dreams), median(alone));
    println!(
        "{} default dream of {size}x{size} ({} octaves x {iterations} steps): {dream:.2} s, its gradients alone {alone:.2} s: the dream costs {:+.1} % more",
        network.name(),
        sizes.len(),
        (dream / alone - 1.0) * 100.0
    );
}

/// PyTorch's median step times for [`SIZES`], from scripts/bench_torch.py: the same
/// architecture (VGG16 with the same weights; Inception v3 and EfficientNet-Lite0 with random
/// weights, which do not change the speed), the same layers and objective.
fn torch_baseline(model: &str, weights: &Path, repeats: usize) -> Option<Vec<f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_torch.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(weights)
        .arg(repeats.to_string())
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

/// ‖g − g_cpu‖ / ‖g_cpu‖ for the gradients of the same `input` on `dreamer`'s device and on
/// the CPU with `cpu_network` (the same weights).
fn difference_from_cpu(
    dreamer: &Dreamer,
    cpu_network: &dyn Network,
    params: &DreamParams,
    input: Tensor<4>,
    cpu: &Device,
) -> f32 {
    let cpu_dreamer = Dreamer::new(cpu_network, params.clone(), cpu).unwrap();
    let theirs = cpu_dreamer
        .gradient(Tensor::from_data(input.to_data(), cpu))
        .unwrap();
    let ours = Tensor::<4>::from_data(dreamer.gradient(input).unwrap().to_data(), cpu);
    let norm: f32 = theirs.clone().square().sum().sqrt().into_scalar();
    let difference: f32 = ours.sub(theirs).square().sum().sqrt().into_scalar();
    difference / norm
}

/// The network `name` from the weight file `path`: a built-in model, or GoogLeNet's ONNX file.
fn load(name: &str, path: &Path, device: &Device) -> Box<dyn Network> {
    match models::find(name) {
        Ok(spec) => (spec.load)(path, device).unwrap(),
        Err(_) => Box::new(
            OnnxNetwork::load(path, Preprocess::TORCH, onnx::raw_layer_name, device).unwrap(),
        ),
    }
}

/// GoogLeNet with random weights as ONNX (scripts/bench_torch.py export-googlenet), written
/// once into the target folder; `None` without python3, torch and torchvision.
fn export_googlenet() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-googlenet.onnx");
    if !path.is_file() {
        std::fs::create_dir_all(path.parent()?).ok()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_torch.py");
        let status = Command::new("python3")
            .arg(script)
            .arg("export-googlenet")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    Some(path)
}
