//! `deepdream live`: a camera, a stream or a file dreamed as it comes, recorded to a video.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepdream::backend::device::Placement;
use deepdream::media::ffmpeg::{self, FrameRate, Segment, VideoReader, VideoWriter};
use deepdream::media::flow::FlowMethod;
use deepdream::media::frames::FrameSource;
use deepdream::media::image_io;
use deepdream::media::live::{LiveRecording, LiveSource};
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::live::{LiveReport, LiveSettings, dream_live};
use image::RgbImage;

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

/// Frames of a source scaled to one size.
struct Scaled<S> {
    source: S,
    size: Option<(u32, u32)>,
}

impl<S: FrameSource> FrameSource for Scaled<S> {
    fn next_frame(&mut self) -> deepdream::Result<Option<RgbImage>> {
        let frame = self.source.next_frame()?;
        Ok(match (frame, self.size) {
            (Some(frame), Some((w, h))) if frame.dimensions() != (w, h) => Some(
                image::imageops::resize(&frame, w, h, image::imageops::FilterType::Triangle),
            ),
            (frame, _) => frame,
        })
    }
}

/// The default FFmpeg input format for cameras on this system.
fn camera_format() -> &'static str {
    if cfg!(target_os = "macos") {
        "avfoundation"
    } else if cfg!(windows) {
        "dshow"
    } else {
        "v4l2"
    }
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
    let is_camera = args.source.starts_with("/dev/video") || args.camera_format.is_some();
    let is_file = !is_camera && source_path.is_file();
    if !is_camera && !is_file && !args.source.contains("://") {
        bail!(
            "cannot read {}: no such file, camera or stream",
            args.source
        );
    }
    // The frame rate of the recording: the file's, else a camera's usual 25 (or 30).
    let rate = if is_file {
        ffmpeg::probe(source_path)?.frame_rate
    } else {
        FrameRate::from_fps(25.0)?
    };
    let fps = rate.fps();
    let reader = if is_camera {
        let format = args.camera_format.as_deref().unwrap_or(camera_format());
        VideoReader::open_device(source_path, format)?
    } else {
        VideoReader::open(source_path, Segment::default())?
    };
    let params = args.dream.params()?;
    let settings = Arc::new(Mutex::new(LiveSettings {
        dream: params,
        next: FrameSettings {
            octaves: args.octaves_per_frame,
            iterations: args.iterations_per_frame,
        },
        blend: args.blend,
        flow: FlowMethod::parse(&args.flow)?,
        ..LiveSettings::default()
    }));
    if !(args.blend.is_finite() && (0.0..=1.0).contains(&args.blend)) {
        bail!("--blend must be a number from 0 to 1");
    }
    if let Some(port) = &args.osc {
        crate::osc::listen(port, Arc::clone(&settings))?;
    }
    let network = load_network(&args.dream.model, target)?;
    let pace = (args.realtime && is_file).then_some(fps);
    let source = LiveSource::start(
        Box::new(Scaled {
            source: reader,
            size,
        }),
        pace,
    );
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
    let outcome = dream_live(
        network.as_ref(),
        &settings,
        &source,
        device,
        |dream, report: &LiveReport| {
            latest = Some(*report);
            if outputs.is_none() {
                let (w, h) = dream.dimensions();
                let mut opened = Vec::new();
                if let Some(path) = &args.output {
                    let file = VideoWriter::create(path, w, h, rate, 0, None)?;
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
            let line = status(report);
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
            status(&report),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The status line: frames dreamed and skipped, rate, latency.
fn status(report: &LiveReport) -> String {
    format!(
        "live: {} frames dreamed, {} skipped, {:.1} fps, latency {} ms",
        report.dreamed,
        report.dropped,
        report.fps,
        report.latency.as_millis()
    )
}
