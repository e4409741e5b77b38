//! `deepdream live`: a camera, a stream or a file dreamed as it comes, recorded to a video.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepdream::backend::device::Placement;
use deepdream::media::ffmpeg::{self, VideoWriter};
use deepdream::media::flow::FlowMethod;
use deepdream::media::image_io;
use deepdream::media::live::{LiveRecording, LiveSource, Scaled, SourceKind, open_source};
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::live::{LiveReport, LiveSettings, dream_live};
use deepdream::networks::placement::load_named;

use crate::options::{DreamOptions, load_network};
use crate::report::progress_bar;

#[derive(Args)]
pub struct LiveArgs {
    /// What to dream: a camera (`/dev/video0`), a stream FFmpeg reads (`rtsp://…`,
    /// `srt://…`, `udp://…`, `http://…`) or a video file.
    source: String,
    /// Record the dreamed feed to this video (.mp4, .mov, .mkv, .webm), in real time:
    /// a frame that had no time to be dreamed shows the dream before it.
    #[arg(short, long, value_name = "VIDEO")]
    output: Option<PathBuf>,
    /// Also send the dreamed feed, as it comes, to a stream (`udp://127.0.0.1:5000`,
    /// `srt://…`, `rtmp://…`, `rtsp://…`) or a video device (`/dev/video9`: a v4l2loopback
    /// virtual camera for OBS or video calls).
    #[arg(long, value_name = "URL|DEVICE")]
    to: Option<String>,
    /// Take settings over OSC on this UDP port (or HOST:PORT): `/deepdream/step 2.0`,
    /// `/deepdream/layers "block5_conv3"`, … (see the README for every address).
    #[arg(long, value_name = "PORT")]
    osc: Option<String>,
    /// Tries at a stream that does not answer (or breaks off) before giving up; the waits
    /// between them double from one second.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
    /// Play a file at its own frame rate, as a camera would give it, instead of as fast as
    /// it can be read.
    #[arg(long)]
    realtime: bool,
    /// Dream the frames at this size (scaled from the source's).
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    /// FFmpeg's input format for a camera [default: v4l2 on Linux, avfoundation on macOS,
    /// dshow on Windows].
    #[arg(long, value_name = "FORMAT")]
    camera_format: Option<String>,
    #[command(flatten)]
    dream: DreamOptions,
    /// Share of the previous frame's dream carried into the next, along the optical flow.
    #[arg(long, default_value_t = LiveSettings::default().blend)]
    blend: f32,
    /// Optical flow: dis (dense inverse search, a few milliseconds a frame) or farneback
    /// (smoother, ten times the time).
    #[arg(long, value_name = "dis|farneback", default_value = "dis")]
    flow: String,
    /// Hold this many dreamed frames a second: fewer steps per frame, then a smaller
    /// picture dreamed, while frames take too long (raised again when there is time).
    #[arg(long, value_name = "FPS")]
    fps: Option<f64>,
    /// Octaves dreamed per frame after the first.
    #[arg(long, value_name = "N", default_value_t = LiveSettings::default().next.octaves)]
    octaves_per_frame: usize,
    /// Steps per octave for the frames after the first.
    #[arg(long, value_name = "N", default_value_t = LiveSettings::default().next.iterations)]
    iterations_per_frame: usize,
    /// Overwrite the recording if it exists.
    #[arg(long)]
    force: bool,
}

/// `WxH` as a size.
fn parse_size(text: &str) -> Result<(u32, u32)> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) if (16..=8192).contains(&w) && (16..=8192).contains(&h) => Ok((w, h)),
        _ => {
            bail!("--size '{text}' is not WIDTHxHEIGHT with sides from 16 to 8192, such as 320x240")
        }
    }
}

pub fn live(args: LiveArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    ffmpeg::check_installed()?;
    let size = args.size.as_deref().map(parse_size).transpose()?;
    let source_path = Path::new(&args.source);
    if let Some(output) = &args.output {
        ffmpeg::VideoFormat::from_path(output)?;
        image_io::check_writable(source_path, output, args.force)
            .map_err(|reason| anyhow::anyhow!("cannot write {}: {reason}", output.display()))?;
    }
    if let Some(target) = &args.to {
        ffmpeg::stream_format(target)?;
    }
    let notice = Box::new(|line: &str| note!("{line}"));
    let opened = open_source(
        &args.source,
        args.camera_format.as_deref(),
        args.retries,
        notice,
    )?;
    // The recording runs at the source's rate: a file's own, else 25 fps.
    let rate = opened.rate;
    let fps = rate.fps();
    let params = args.dream.params()?;
    let settings = Arc::new(Mutex::new(LiveSettings {
        dream: params,
        next: FrameSettings {
            octaves: args.octaves_per_frame,
            iterations: args.iterations_per_frame,
        },
        blend: args.blend,
        flow: FlowMethod::parse(&args.flow)?,
        fps: args.fps,
        ..LiveSettings::default()
    }));
    lock_settings(&settings).check_fps().map_err(|_| {
        anyhow::anyhow!("--fps must be a number of frames a second from 0.1 to 240")
    })?;
    lock_settings(&settings).validate()?;
    if let Some(port) = &args.osc {
        crate::osc::listen(port, Arc::clone(&settings))?;
    }
    let network = load_network(&args.dream.model, target)?;
    let pace = (args.realtime && opened.kind == SourceKind::File).then_some(fps);
    let source = LiveSource::start(Box::new(Scaled::new(opened.frames, size)), pace);
    note!(
        "Dreaming {} live with {}{}; Ctrl-C ends it",
        args.source,
        network.name(),
        match &args.output {
            Some(path) => format!(", recording to {}", path.display()),
            None => String::new(),
        } + &args
            .to
            .as_ref()
            .map_or(String::new(), |to| format!(", sending to {to}"))
    );
    let bar = progress_bar(0, "frames");
    let started = Instant::now();
    // The recording and the stream, opened with the first dream, in real time from the
    // source's first frame.
    let mut outputs: Option<Vec<LiveRecording>> = None;
    let mut last_line = Instant::now();
    let mut latest: Option<LiveReport> = None;
    let mut other = |name: &str| load_named(name, target);
    let outcome = dream_live(
        Arc::from(network),
        &mut other,
        &settings,
        &source,
        device,
        |dream, report: &LiveReport| {
            latest = Some(*report);
            if outputs.is_none() {
                let (w, h) = dream.dimensions();
                let mut opened = Vec::new();
                if let Some(path) = &args.output {
                    let file = VideoWriter::create_live(path, w, h, rate)?;
                    opened.push(LiveRecording::new(Box::new(file), Some(0)));
                }
                if let Some(target) = &args.to {
                    let stream = VideoWriter::stream(target, w, h, rate)?;
                    opened.push(LiveRecording::new(Box::new(stream), Some(0)));
                }
                outputs = Some(opened);
            }
            for recording in outputs.iter_mut().flatten() {
                recording.write(dream, report.frame)?;
            }
            let line = status(report, lock_settings(&settings).fps.is_some());
            if bar.is_hidden() {
                if last_line.elapsed().as_secs_f64() >= 1.0 {
                    note!("{line}");
                    last_line = Instant::now();
                }
            } else {
                bar.set_message(line);
            }
            crate::interrupt::check()
        },
    );
    bar.finish_and_clear();
    match outcome {
        // Ctrl-C is how a live feed ends: the recording is closed as usual.
        Ok(_) | Err(deepdream::Error::Cancelled) => {}
        Err(error) => return Err(error.into()),
    }
    let mut outputs = outputs.unwrap_or_default().into_iter();
    if let Some(path) = &args.output
        && let Some(recording) = outputs.next()
    {
        let written = recording.finish()?;
        note!(
            "Recorded {} ({written} frames at {fps:.3} fps)",
            path.display()
        );
    }
    for recording in outputs {
        let written = recording.finish()?;
        note!(
            "Sent {written} frames to {}",
            args.to.as_deref().unwrap_or_default()
        );
    }
    if let Some(report) = latest {
        note!(
            "{} in {:.1} s",
            status(&report, lock_settings(&settings).fps.is_some()),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The status line: frames dreamed and skipped, rate, latency, and what holding a frame
/// rate (`holding`) left of the steps and the size.
fn status(report: &LiveReport, holding: bool) -> String {
    let mut line = format!(
        "live: {} frames dreamed, {} skipped, {:.1} fps, latency {} ms",
        report.dreamed,
        report.dropped,
        report.fps,
        report.latency.as_millis()
    );
    if holding {
        line += &format!(
            " ({} steps, {:.0}% size)",
            report.steps,
            report.scale * 100.0
        );
    }
    line
}

/// The settings, even if a thread panicked holding them.
fn lock_settings(settings: &Mutex<LiveSettings>) -> std::sync::MutexGuard<'_, LiveSettings> {
    settings.lock().unwrap_or_else(|p| p.into_inner())
}
