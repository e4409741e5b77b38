//! Motion: how coherent a dream video is (flicker against dreaming each frame on its own,
//! the baseline computed in the same run), its strength, seconds per frame of a 640x360
//! video against a full dream of one frame, and colour drift over a 100-frame zoom with and
//! without colour matching, and optical flows a second (DIS against Farnebäck) at 320x240,
//! 640x360 and 1280x720. Needs FFmpeg.
//!
//! ```text
//! cargo bench -p deepdream --bench motion                 # everything (~20 min on 2 cores)
//! cargo bench -p deepdream --bench motion -- --coherence  # or --speed, --colour, --live, --flow
//! cargo bench -p deepdream --bench motion --features wgpu -- --speed --device wgpu
//! ```

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::Tensor;
use deepdream::media::colour::ColourStats;
use deepdream::media::ffmpeg::{Segment, VideoReader};
use deepdream::media::flow::{
    DisParams, FlowMethod, consistency_mask, grey_tensor, luma, mean_warp_difference, warp,
};
use deepdream::media::frames::IterSource;
use deepdream::media::live::LiveSource;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::FrameDreamers;
use deepdream::modes::live::{LiveSettings, dream_live};
use deepdream::modes::video::{
    Motion, VideoParams, carried_start, dream_strength, dream_video, flicker,
};
use deepdream::modes::zoom::{ZoomParams, zoom};
use deepdream::{
    Device, DreamParams, Network, Preprocess, media::image_io, networks::models, networks::weights,
};
use image::RgbImage;

mod common;

/// Frames handed over one at a time.
struct Handed(std::sync::mpsc::Receiver<RgbImage>);

impl deepdream::media::frames::FrameSource for Handed {
    fn next_frame(&mut self) -> deepdream::Result<Option<RgbImage>> {
        Ok(self.0.recv().ok())
    }
}

fn read_frames(path: &Path, count: usize) -> Vec<RgbImage> {
    let mut reader = VideoReader::open(path, Segment::default()).unwrap();
    let mut frames = Vec::new();
    while frames.len() < count {
        match reader.next_frame().unwrap() {
            Some(frame) => frames.push(frame),
            None => break,
        }
    }
    frames
}

/// The first `count` frames of the video at `path`, scaled to `width x height`.
fn read_frames_scaled(path: &Path, count: usize, width: u32, height: u32) -> Vec<RgbImage> {
    read_frames(path, count)
        .iter()
        .map(|frame| {
            image::imageops::resize(frame, width, height, image::imageops::FilterType::Triangle)
        })
        .collect()
}

/// Dreams `inputs` as a video; returns the frames and the seconds each took.
fn dream_frames(
    network: &dyn Network,
    inputs: &[RgbImage],
    params: &VideoParams,
    device: &Device,
) -> (Vec<RgbImage>, Vec<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let work = WorkDir::open(&dir.path().join("work"), "bench").unwrap();
    let mut times = Vec::new();
    let mut last = Instant::now();
    let dream = DreamParams {
        seed: 1,
        ..DreamParams::default()
    };
    let count = dream_video(
        network,
        dream,
        params,
        &mut IterSource(inputs.iter().cloned()),
        None,
        &work,
        device,
        |p| {
            if p.step.is_none() {
                times.push(last.elapsed().as_secs_f64());
                last = Instant::now();
            }
        },
    )
    .unwrap();
    let frames = (0..count).map(|k| work.load(k).unwrap().unwrap()).collect();
    (frames, times)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn main() {
    common::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let chosen: Vec<&str> = ["--coherence", "--speed", "--colour", "--live", "--flow"]
        .into_iter()
        .filter(|a| args.iter().any(|x| x == a))
        .collect();
    let run = |section: &str| chosen.is_empty() || chosen.contains(&section);
    let device_name = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .map_or("cpu", String::as_str);
    let device = deepdream::backend::device::by_name(device_name).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "deepdream motion benchmark: VGG16 defaults, device {device_name}, {threads} CPU threads"
    );
    let spec = models::find("vgg16").unwrap();
    let path = weights::ensure(spec, |_| eprintln!("fetching VGG16 weights")).unwrap();
    let network: Arc<dyn Network> = Arc::from((spec.load)(&path, &device).unwrap());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join("tests/fixtures/carphone.mp4");
    let params = VideoParams::default();

    if run("--coherence") {
        let inputs = read_frames(&clip, 120);
        let (video, _) = dream_frames(network.as_ref(), &inputs, &params, &device);
        let baseline = 30;
        let dreamers = FrameDreamers::new(
            network.as_ref(),
            DreamParams {
                seed: 1,
                ..DreamParams::default()
            },
            params.next,
            &params.direction,
            &device,
        )
        .unwrap();
        let independent: Vec<RgbImage> = inputs[..baseline]
            .iter()
            .enumerate()
            .map(|(k, frame)| dreamers.dream(k, frame, true, |_| {}).unwrap())
            .collect();
        let flicker_video = flicker(
            &inputs[..baseline],
            &video[..baseline],
            &params.flow,
            &device,
        );
        let flicker_all = flicker(&inputs, &video, &params.flow, &device);
        let flicker_independent = flicker(&inputs[..baseline], &independent, &params.flow, &device);
        println!(
            "flicker (carphone 176x144, first {baseline} frames): video {flicker_video:.3}, \
             each frame dreamed alone {flicker_independent:.3}: ratio {:.2}",
            flicker_video / flicker_independent
        );
        println!(
            "flicker over all {} frames: video {flicker_all:.3}",
            inputs.len()
        );
        let single: Vec<f32> = inputs[..baseline]
            .iter()
            .zip(&independent)
            .map(|(i, d)| dream_strength(i, d))
            .collect();
        let single = single.iter().sum::<f32>() / single.len() as f32;
        for range in [0..30, 30..60, 60..90, 90..120] {
            let strength: f32 = range
                .clone()
                .map(|k| dream_strength(&inputs[k], &video[k]))
                .sum::<f32>()
                / range.len() as f32;
            println!(
                "strength, video frames {}-{}: {strength:.2} levels per pixel; single dreams {single:.2}: ratio {:.2}",
                range.start,
                range.end - 1,
                strength / single
            );
        }
    }

    if run("--live") {
        // A live feed handed over frame by frame (none skipped, so that every frame can be
        // compared), against each frame dreamed alone with the same light settings.
        let inputs = read_frames(&clip, 60);
        let settings = Mutex::new(LiveSettings {
            dream: DreamParams {
                seed: 1,
                ..DreamParams::default()
            },
            ..LiveSettings::default()
        });
        let (send, receive) = std::sync::mpsc::channel();
        let source = LiveSource::start(Box::new(Handed(receive)), None);
        send.send(inputs[0].clone()).unwrap();
        let mut send = Some(send);
        let mut dreams = Vec::new();
        let mut seconds = Vec::new();
        let mut last = Instant::now();
        let mut other = |name: &str| -> deepdream::Result<Arc<dyn Network>> {
            panic!("no other model was asked for, yet {name} was")
        };
        dream_live(
            network.clone(),
            &mut other,
            &settings,
            &source,
            &device,
            |dream, report| {
                dreams.push(dream.clone());
                seconds.push(last.elapsed().as_secs_f64());
                last = Instant::now();
                match inputs.get(report.frame as usize + 1) {
                    Some(next) => send.as_ref().unwrap().send(next.clone()).unwrap(),
                    None => send = None,
                }
                Ok(())
            },
        )
        .unwrap();
        let light = settings.lock().unwrap().clone();
        let alone = FrameDreamers::new(
            network.as_ref(),
            DreamParams {
                octaves: light.next.octaves,
                iterations: light.next.iterations,
                ..light.dream.clone()
            },
            light.next,
            &Default::default(),
            &device,
        )
        .unwrap();
        let independent: Vec<RgbImage> = inputs
            .iter()
            .enumerate()
            .map(|(k, frame)| alone.dream(k, frame, true, |_| {}).unwrap())
            .collect();
        let live = flicker(&inputs, &dreams, &params.flow, &device);
        let apart = flicker(&inputs, &independent, &params.flow, &device);
        println!(
            "live (carphone 176x144, {} frames, 1 octave of 2 steps a frame): flicker {live:.3}, \
             each frame dreamed alone {apart:.3}: ratio {:.2}; {:.3} s a frame",
            inputs.len(),
            live / apart,
            mean(&seconds[1..])
        );
    }

    if run("--flow") {
        for (w, h) in [(320, 240), (640, 360), (1280, 720)] {
            let inputs = read_frames_scaled(&clip, 21, w, h);
            let greys: Vec<_> = inputs
                .iter()
                .map(|frame| grey_tensor(&luma(frame), &device))
                .collect();
            let rate = |method: FlowMethod, pairs: usize| {
                let start = Instant::now();
                for k in 0..pairs {
                    let flow = method.estimate(&greys[k], &greys[k + 1]);
                    let _: f32 = flow.sum().into_scalar();
                }
                pairs as f64 / start.elapsed().as_secs_f64()
            };
            let dis = rate(FlowMethod::Dis(DisParams::default()), 20);
            let farneback = rate(FlowMethod::default(), 10);
            println!(
                "optical flow {w}x{h} (carphone scaled): DIS (ultrafast) {dis:.0} flows/s, \
                 Farnebäck {farneback:.1} flows/s: DIS {:.0}x faster",
                dis / farneback
            );
        }
        // A film frame's whole share of the CPU besides its dream: both flows, the
        // consistency mask, the residual, and the previous dream carried onto the frame.
        let inputs = read_frames_scaled(&clip, 6, 1280, 720);
        let params = VideoParams::default();
        let start = Instant::now();
        for k in 0..5 {
            let motion = Motion::between(&inputs[k], &inputs[k + 1], &params.flow, None, &device);
            carried_start(&inputs[k], &inputs[k], &inputs[k + 1], &motion, 0.8);
        }
        println!(
            "a 1280x720 film frame's motion (two Farnebäck flows, consistency, carry): {:.3} s",
            start.elapsed().as_secs_f64() / 5.0
        );
        // The carry, on the film's path between two frames' dreams: one pass over the pixels
        // against the same sum of tensors (the baseline, in the same run).
        let motion = Motion::between(&inputs[0], &inputs[1], &params.flow, None, &device);
        let pixels = |image: &RgbImage| Preprocess::PIXELS.apply(image, &device);
        let timed = |carry: &dyn Fn() -> RgbImage| {
            let mut times: Vec<f64> = (0..7)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(carry());
                    start.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[3]
        };
        let one_pass = timed(&|| carried_start(&inputs[0], &inputs[2], &inputs[1], &motion, 0.8));
        let tensors = timed(&|| {
            let difference = pixels(&inputs[2]).sub(pixels(&inputs[0]));
            let carried = motion
                .carry(difference)
                .mul(motion.mask.clone())
                .mul_scalar(0.8);
            Preprocess::PIXELS
                .invert(pixels(&inputs[1]).add(carried))
                .unwrap()
        });
        println!(
            "carrying a 1280x720 dream onto the next frame: one pass {:.1} ms, as tensors {:.1} ms (ratio {:.2}; medians of 7)",
            one_pass * 1e3,
            tensors * 1e3,
            one_pass / tensors
        );
        // The occlusion mask and the residual, on the helper thread: one pass each against
        // the same sums of tensors through `warp`.
        let (a, b) = (
            grey_tensor(&luma(&inputs[0]), &device),
            grey_tensor(&luma(&inputs[1]), &device),
        );
        let (forward, backward) = params.flow.estimate_both(&a, &b);
        let timed = |work: &dyn Fn()| {
            let mut times: Vec<f64> = (0..7)
                .map(|_| {
                    let start = Instant::now();
                    work();
                    start.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[3]
        };
        let one_pass = timed(&|| {
            std::hint::black_box(consistency_mask(&forward, &backward));
            std::hint::black_box(mean_warp_difference(&a, &b, &backward));
        });
        let tensors = timed(&|| {
            let squared = |t: Tensor<4>| t.powi_scalar(2).sum_dim(1);
            let there = warp(forward.clone(), &backward);
            let error = squared(there.clone().add(backward.clone()));
            let tolerance = squared(there)
                .add(squared(backward.clone()))
                .mul_scalar(0.01)
                .add_scalar(0.5);
            std::hint::black_box(error.lower_equal(tolerance).float());
            let residual: f32 = warp(a.clone(), &backward)
                .sub(b.clone())
                .abs()
                .mean()
                .into_scalar();
            std::hint::black_box(residual);
        });
        println!(
            "a 1280x720 frame's occlusion mask and residual: one pass {:.1} ms, as tensors {:.1} ms (ratio {:.2}; medians of 7)",
            one_pass * 1e3,
            tensors * 1e3,
            one_pass / tensors
        );
    }

    if run("--speed") {
        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("carphone-640x360.mp4");
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(&clip)
            .args([
                "-vf",
                "scale=640:360",
                "-frames:v",
                "10",
                "-c:v",
                "libx264",
                "-crf",
                "12",
            ])
            .arg(&wide)
            .status()
            .unwrap();
        assert!(status.success());
        let inputs = read_frames(&wide, 10);
        let (_, times) = dream_frames(network.as_ref(), &inputs, &params, &device);
        let a = grey_tensor(&luma(&inputs[0]), &device);
        let b = grey_tensor(&luma(&inputs[1]), &device);
        let start = Instant::now();
        for _ in 0..3 {
            let flow = params.flow.estimate(&a, &b);
            let _: f32 = flow.sum().into_scalar();
        }
        let flow_seconds = start.elapsed().as_secs_f64() / 3.0;
        let per_frame = mean(&times[1..]);
        println!(
            "640x360: first frame (a full default dream, what dreaming every frame alone costs) {:.1} s; \
             following frames {per_frame:.1} s/frame (ratio {:.2}); one Farnebäck flow {flow_seconds:.3} s (two per frame)",
            times[0],
            per_frame / times[0]
        );
    }

    if run("--colour") {
        let photo = image_io::load(&root.join("tests/fixtures/chelsea.png"))
            .unwrap()
            .to_rgb8();
        for keep_colours in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let work = WorkDir::open(&dir.path().join("work"), "bench").unwrap();
            let params = ZoomParams {
                keep_colours,
                ..ZoomParams::default()
            };
            let start = Instant::now();
            let dream = DreamParams {
                seed: 1,
                ..DreamParams::default()
            };
            zoom(
                network.as_ref(),
                dream,
                &params,
                &photo,
                &work,
                &device,
                |_| {},
            )
            .unwrap();
            let seconds = start.elapsed().as_secs_f64() / params.frames as f64;
            let first = ColourStats::of(&work.load(0).unwrap().unwrap());
            let last = ColourStats::of(&work.load(params.frames - 1).unwrap().unwrap());
            let change = |a: [f32; 3], b: [f32; 3]| {
                [0, 1, 2]
                    .map(|c| format!("{:+.1}%", (b[c] / a[c] - 1.0) * 100.0))
                    .join(" ")
            };
            println!(
                "zoom of chelsea.png (451x300), {} frames, colour matching {}: last frame vs first, \
                 mean R G B {}, std {} ({seconds:.1} s/frame)",
                params.frames,
                if keep_colours { "on" } else { "off" },
                change(first.mean, last.mean),
                change(first.std, last.std)
            );
        }
    }
}
