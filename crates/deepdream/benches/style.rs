//! Style transfer against PyTorch: the same photo, painting, layers, weights, start (the
//! photo) and L-BFGS settings in deepdream and in scripts/style_reference.py (torchvision's
//! VGG16 loaded with the same weights); prints both final losses, evaluated on the 8-bit
//! results, their ratio, and the seconds per evaluation of each.
//!
//! ```text
//! cargo bench -p deepdream --bench style                 # 256 pixels, 100 evaluations
//! cargo bench -p deepdream --bench style -- 384 200      # size, evaluations
//! cargo bench -p deepdream --bench style --features cuda -- 512 200 --device cuda
//! ```
//!
//! `--weights DIR` loads VGG16's weight file from DIR unchecked instead of the cache (the GPU
//! kit's stand-ins). With `BENCH_TORCH_DEVICE=cuda` the reference runs on the GPU.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use deepdream::modes::style::{StyleImage, StyleParams, Stylist};
use deepdream::{media::image_io, networks::models, networks::weights};
use image::imageops::FilterType;

mod common;

fn main() {
    common::keep_freed_memory();
    let all: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        let at = all.iter().position(|a| a == name)?;
        all.get(at + 1).map(String::as_str)
    };
    // The plain arguments: neither an option nor an option's value.
    let args: Vec<&String> = all
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let after_option = i
                .checked_sub(1)
                .is_some_and(|before| ["--device", "--weights"].contains(&all[before].as_str()));
            !a.starts_with("--") && !after_option
        })
        .map(|(_, a)| a)
        .collect();
    let size: u32 = args.first().map_or(256, |s| s.parse().expect("a size"));
    let iterations: usize = args.get(1).map_or(100, |s| s.parse().expect("a count"));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fit = |name: &str| {
        let image = image_io::load(&fixtures.join(name)).unwrap().to_rgb8();
        let scale = size as f64 / image.width().max(image.height()) as f64;
        let (w, h) = (
            (image.width() as f64 * scale).round() as u32,
            (image.height() as f64 * scale).round() as u32,
        );
        image::imageops::resize(&image, w, h, FilterType::Lanczos3)
    };
    let (photo, painting) = (fit("chelsea.png"), fit("starry_night.jpg"));
    let dir = tempfile::tempdir().unwrap();
    let (photo_path, painting_path) = (
        dir.path().join("photo.png"),
        dir.path().join("painting.png"),
    );
    photo.save(&photo_path).unwrap();
    painting.save(&painting_path).unwrap();

    let device_name = option("--device").unwrap_or("cpu");
    let placement = deepdream::backend::device::open(device_name, true).unwrap_or_else(|error| {
        eprintln!("{device_name}: {error}");
        std::process::exit(1)
    });
    let device = placement.tensors();
    let spec = models::find("vgg16").unwrap();
    let weights_path = match option("--weights") {
        Some(dir) => Path::new(dir).join(spec.file_name),
        None => weights::ensure(spec, |_| eprintln!("fetching VGG16 weights")).unwrap(),
    };
    let network = (spec.load)(&weights_path, &device).unwrap();
    let network = deepdream::networks::placement::place(network, &placement).unwrap();
    let params = StyleParams {
        size,
        scales: 1,
        iterations,
        ..StyleParams::default()
    };
    let stylist = Stylist::new(network.as_ref(), params, &device).unwrap();
    let styles = [StyleImage {
        image: painting,
        weight: 1.0,
    }];
    let mut evaluations = 0;
    let start = Instant::now();
    let result = stylist
        .transfer(&photo, &styles, |_| evaluations += 1)
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let ours = stylist.losses(&photo, &styles, &result).unwrap();
    let initial = stylist.losses(&photo, &styles, &photo).unwrap();
    println!(
        "style transfer {}x{} on {device_name}, {iterations} evaluations at most, L-BFGS (history 10, strong Wolfe)",
        photo.width(),
        photo.height()
    );
    println!(
        "deepdream: {evaluations} evaluations in {seconds:.1} s ({:.3} s each); final loss {:.4e} (content {:.3e}, style {:.3e}, total variation {:.3e}); the photo's own: {:.4e} (style {:.3e})",
        seconds / evaluations as f64,
        ours.total,
        ours.content,
        ours.style,
        ours.total_variation,
        initial.total,
        initial.style
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/style_reference.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&weights_path)
        .arg(&photo_path)
        .arg(&painting_path)
        .arg(iterations.to_string())
        .output();
    let Ok(output) = output.map_err(|e| e.to_string()).and_then(|o| {
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }) else {
        println!(
            "pytorch reference skipped (python3 with torch, torchvision, onnx, pillow not found)"
        );
        return;
    };
    let field = |name: &str| -> f64 {
        let words: Vec<&str> = output.split_whitespace().collect();
        let at = words.iter().position(|w| *w == name).expect("field");
        words[at + 1].parse().expect("number")
    };
    let (their_seconds, their_evaluations, their_loss) =
        (field("seconds"), field("evaluations"), field("final_loss"));
    println!(
        "pytorch:   {their_evaluations} evaluations in {their_seconds:.1} s ({:.3} s each); final loss {their_loss:.4e}",
        their_seconds / their_evaluations
    );
    println!(
        "final loss deepdream/pytorch = {:.3}; seconds per evaluation deepdream/pytorch = {:.2}x",
        ours.total as f64 / their_loss,
        (seconds / evaluations as f64) / (their_seconds / their_evaluations)
    );
}
