//! `deepdream zoom` and `deepdream video`: thin layers over `deepdream::modes`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use deepdream::media::ffmpeg::{self, AudioSource, FrameRate, Segment, VideoReader};
use deepdream::media::frames::{AnimationFormat, WorkDir, open_sink};
use deepdream::modes::video::{VideoParams, dream_video_watched};
use deepdream::modes::zoom::{ZoomParams, zoom_watched};
use deepdream::modes::{FrameProgress, FrameSettings};
use deepdream::{Device, DreamParams, Network, image_io};
use indicatif::ProgressBar;

use crate::{DreamOptions, human_duration, load_network, progress_bar, step_message};

/// Options every animation shares.
#[derive(Args)]
pub struct AnimationOptions {
    /// Octaves dreamed per frame after the first [zoom: 2, video: 2].
    #[arg(long, value_name = "N")]
    octaves_per_frame: Option<usize>,
    /// Gradient-ascent steps per octave for the frames after the first [zoom: 5, video: 4].
    #[arg(long, value_name = "N")]
    iterations_per_frame: Option<usize>,
    /// Folder for the finished frames while the job runs [default: OUTPUT.deepdream-work];
    /// running the same command again after an interruption resumes from it.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Also write every frame as a PNG file into this folder.
    #[arg(long, value_name = "DIR")]
    frames_dir: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

impl AnimationOptions {
    fn frame_settings(&self, default: FrameSettings) -> FrameSettings {
        FrameSettings {
            octaves: self.octaves_per_frame.unwrap_or(default.octaves),
            iterations: self.iterations_per_frame.unwrap_or(default.iterations),
        }
    }
}

#[derive(Args)]
pub struct ZoomArgs {
    /// The photo to start from.
    input: PathBuf,
    /// Where to write the animation: .gif (no FFmpeg needed), .mp4, .mov, .mkv or .webm.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamOptions,
    /// Number of frames, the dream of the photo included.
    #[arg(long, default_value_t = ZoomParams::default().frames)]
    frames: usize,
    /// Frames per second of the animation.
    #[arg(long, default_value_t = 25.0)]
    fps: f64,
    /// Scale from one frame to the next, about the centre (1.05 zooms in 5% a frame).
    #[arg(long, default_value_t = ZoomParams::default().zoom)]
    zoom: f32,
    /// Turn per frame in degrees, counter-clockwise.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    rotate: f32,
    /// Camera movement per frame in pixels: DX,DY (right, down).
    #[arg(
        long,
        value_name = "DX,DY",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pan: Option<Vec<f32>>,
    /// Let colours drift: do not hold each frame's colour mean and spread to the first frame's.
    #[arg(long)]
    no_colour_match: bool,
    #[command(flatten)]
    animation: AnimationOptions,
}

#[derive(Args)]
pub struct VideoArgs {
    /// The video to dream (anything FFmpeg reads).
    input: PathBuf,
    /// Where to write the result: .mp4, .mov, .mkv (H.264), .webm (VP9) or .gif.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamOptions,
    /// Share of the previous frame's dream carried into the next, along the optical flow (0-1).
    #[arg(long, default_value_t = VideoParams::default().blend)]
    blend: f32,
    /// Start this many seconds into the video.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    start: f64,
    /// Dream only this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Scene-cut threshold: mean grey difference (0-255) left after following the flow
    /// above which a frame is dreamed afresh.
    #[arg(long, default_value_t = VideoParams::default().cut_threshold)]
    cut_threshold: f32,
    #[command(flatten)]
    animation: AnimationOptions,
}

pub fn zoom(args: ZoomArgs, device: &Device) -> Result<()> {
    let format = AnimationFormat::from_path(&args.output)?;
    if matches!(format, AnimationFormat::Video(_)) {
        ffmpeg::check_installed()?;
    }
    check_output(&args.input, &args.output, args.animation.force)?;
    let frame_rate = FrameRate::from_fps(args.fps)?;
    let pan = match args.pan.as_deref() {
        None => [0.0, 0.0],
        Some(&[dx, dy]) => [dx, dy],
        Some(other) => bail!("--pan takes two numbers, DX,DY (got {})", other.len()),
    };
    let params = ZoomParams {
        frames: args.frames,
        zoom: args.zoom,
        rotate: args.rotate,
        pan,
        next: args.animation.frame_settings(ZoomParams::default().next),
        keep_colours: !args.no_colour_match,
    };
    params.validate()?;
    let image = image_io::load(&args.input)?.to_rgb8();
    let (network, dream, work) = start_job(
        &args.input,
        &args.output,
        &args.dream,
        &args.animation,
        params.next,
        &[
            ("mode", "zoom".into()),
            ("zoom", params.zoom.to_string()),
            ("rotate", params.rotate.to_string()),
            ("pan", format!("{},{}", pan[0], pan[1])),
            ("colour-match", params.keep_colours.to_string()),
        ],
        device,
    )?;
    eprintln!(
        "Zooming {}x{} with {} for {} frames (seed {}); frames kept in {}",
        image.width(),
        image.height(),
        network.name(),
        params.frames,
        dream.seed,
        work.path().display()
    );
    let start = Instant::now();
    let mut reporter = FrameReporter::new(params.frames);
    zoom_watched(
        network.as_ref(),
        dream,
        &params,
        &image,
        &work,
        device,
        |snapshot| {
            crate::interrupt::check()?;
            reporter.report(snapshot.progress);
            Ok(())
        },
    )
    .map_err(|e| interrupted(e, &work))?;
    reporter.finish();
    let (width, height) = image.dimensions();
    write_animation(
        &work,
        params.frames,
        &args.output,
        (width, height),
        frame_rate,
        None,
        &args.animation,
    )?;
    eprintln!(
        "Wrote {} ({} frames, {}x{}) in {}",
        args.output.display(),
        params.frames,
        width,
        height,
        human_duration(start.elapsed().as_secs_f64())
    );
    work.remove()?;
    Ok(())
}

pub fn video(args: VideoArgs, device: &Device) -> Result<()> {
    let format = AnimationFormat::from_path(&args.output)?;
    ffmpeg::check_installed()?;
    check_output(&args.input, &args.output, args.animation.force)?;
    if !(args.start.is_finite() && args.start >= 0.0) {
        bail!("--start must be a number of seconds, 0 or more");
    }
    if let Some(duration) = args.duration
        && !(duration.is_finite() && duration > 0.0)
    {
        bail!("--duration must be a positive number of seconds");
    }
    let params = VideoParams {
        blend: args.blend,
        next: args.animation.frame_settings(VideoParams::default().next),
        cut_threshold: args.cut_threshold,
        ..VideoParams::default()
    };
    params.validate()?;
    let info = ffmpeg::probe(&args.input)?;
    let segment = Segment {
        start: args.start,
        duration: args.duration,
    };
    let (network, dream, work) = start_job(
        &args.input,
        &args.output,
        &args.dream,
        &args.animation,
        params.next,
        &[
            ("mode", "video".into()),
            ("start", args.start.to_string()),
            ("duration", format!("{:?}", args.duration)),
            ("blend", params.blend.to_string()),
            ("cut-threshold", params.cut_threshold.to_string()),
            ("flow", format!("{:?}", params.flow)),
        ],
        device,
    )?;
    let fps = info.frame_rate.fps();
    let estimate = info.frames_in(&segment);
    eprintln!(
        "Dreaming {} ({}x{}, {:.3} fps, {} frames{}) with {} (seed {}); frames kept in {}",
        args.input.display(),
        info.width,
        info.height,
        fps,
        estimate.map_or("?".into(), |n| n.to_string()),
        if info.audio_codec.is_some() {
            ", audio kept"
        } else {
            ""
        },
        network.name(),
        dream.seed,
        work.path().display()
    );
    let start = Instant::now();
    let mut reader = VideoReader::open(&args.input, segment)?;
    let mut reporter = FrameReporter::new(estimate.unwrap_or(0));
    let frames = dream_video_watched(
        network.as_ref(),
        dream,
        &params,
        &mut reader,
        estimate,
        &work,
        device,
        |snapshot| {
            crate::interrupt::check()?;
            reporter.report(snapshot.progress);
            Ok(())
        },
    )
    .map_err(|e| interrupted(e, &work))?;
    reporter.finish();
    if frames == 0 {
        work.remove()?;
        bail!(
            "cannot read video {}: no frames{}",
            args.input.display(),
            if args.start > 0.0 {
                " after --start"
            } else {
                ""
            }
        );
    }
    let first = work.load(0)?.context("the first frame is missing")?;
    let audio = match (format, &info.audio_codec) {
        (AnimationFormat::Video(_), Some(codec)) => Some(AudioSource {
            path: args.input.clone(),
            codec: codec.clone(),
            segment,
        }),
        _ => None,
    };
    write_animation(
        &work,
        frames,
        &args.output,
        first.dimensions(),
        info.frame_rate,
        audio,
        &args.animation,
    )?;
    eprintln!(
        "Wrote {} ({frames} frames) in {}",
        args.output.display(),
        human_duration(start.elapsed().as_secs_f64())
    );
    work.remove()?;
    Ok(())
}

/// An interruption says where the finished frames are kept for the rerun.
fn interrupted(error: deepdream::Error, work: &WorkDir) -> anyhow::Error {
    match error {
        deepdream::Error::Cancelled => anyhow::anyhow!(
            "the finished frames are kept in {}: run the same command again to continue",
            work.path().display()
        ),
        other => other.into(),
    }
}

fn check_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    image_io::check_writable(input, output, force)
        .map_err(|reason| anyhow::anyhow!("cannot write {}: {reason}", output.display()))
}

/// Loads the network, settles the dream parameters and opens the work folder of the job
/// (`OUTPUT.deepdream-work` unless `--work-dir`). Without `--seed`, a run that resumes an
/// interrupted one takes that run's seed. `mode` lists the mode's own parameters.
fn start_job(
    input: &Path,
    output: &Path,
    options: &DreamOptions,
    animation: &AnimationOptions,
    next: FrameSettings,
    mode: &[(&str, String)],
    device: &Device,
) -> Result<(Box<dyn Network>, DreamParams, WorkDir)> {
    let work_path = animation
        .work_dir
        .clone()
        .unwrap_or_else(|| WorkDir::default_for(output));
    let mut dream = options.params()?;
    if options.seed.is_none()
        && let Some(seed) =
            WorkDir::recorded(&work_path, "deepdream:seed").and_then(|s| s.parse().ok())
    {
        dream.seed = seed;
    }
    let network = load_network(&options.model, device)?;
    let mut entries = options.metadata(network.as_ref(), &dream);
    entries.extend(mode.iter().map(|(k, v)| (k.to_string(), v.clone())));
    entries.push(("octaves-per-frame".into(), next.octaves.to_string()));
    entries.push(("iterations-per-frame".into(), next.iterations.to_string()));
    let work = WorkDir::open(&work_path, &job_text(input, &entries)?)?;
    Ok((network, dream, work))
}

/// The text that identifies a job: the input file (path, size, modification time) and the
/// parameters, one `key value` per line.
fn job_text(input: &Path, entries: &[(String, String)]) -> Result<String> {
    let meta =
        std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let path = input.canonicalize().unwrap_or_else(|_| input.to_path_buf());
    let mut text = format!("input {} {} {modified}\n", path.display(), meta.len());
    for (key, value) in entries {
        text.push_str(&format!("{key} {value}\n"));
    }
    Ok(text)
}

/// Writes the finished frames `0..frames` of `work` to `output` (and `--frames-dir`).
fn write_animation(
    work: &WorkDir,
    frames: usize,
    output: &Path,
    (width, height): (u32, u32),
    frame_rate: FrameRate,
    audio: Option<AudioSource>,
    options: &AnimationOptions,
) -> Result<()> {
    let odd = width % 2 == 1 || height % 2 == 1;
    if odd
        && matches!(
            AnimationFormat::from_path(output)?,
            AnimationFormat::Video(_)
        )
    {
        eprintln!(
            "Note: {width}x{height} is odd; the video is padded to even sides with a repeated edge (yuv420p needs them)"
        );
    }
    if let Some(dir) = &options.frames_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    eprintln!("Encoding {}…", output.display());
    let sink = open_sink(output, width, height, frame_rate, frames as u64, audio)?;
    work.encode(frames, sink)?;
    if let Some(dir) = &options.frames_dir {
        for index in 0..frames {
            let source = work.frame_path(index);
            let target = dir.join(source.file_name().unwrap_or_default());
            std::fs::copy(&source, &target)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
    }
    Ok(())
}

/// Progress over the frames: a bar on a terminal, otherwise a line per frame.
struct FrameReporter {
    bar: ProgressBar,
    started: Instant,
    dreamed: usize,
    total: usize,
}

impl FrameReporter {
    fn new(total: usize) -> Self {
        FrameReporter {
            bar: progress_bar(total as u64, "frames"),
            started: Instant::now(),
            dreamed: 0,
            total,
        }
    }

    fn report(&mut self, p: FrameProgress) {
        if let Some(step) = p.step {
            self.bar
                .set_message(format!("frame {}: {}", p.frame + 1, step_message(&step)));
            return;
        }
        self.bar.set_position(p.frame as u64 + 1);
        if p.resumed {
            return;
        }
        self.dreamed += 1;
        if p.fresh && p.frame > 0 {
            self.bar
                .suspend(|| eprintln!("Scene cut at frame {}: dreamed afresh", p.frame + 1));
        }
        let per_frame = self.started.elapsed().as_secs_f64() / self.dreamed as f64;
        let left = self.total.saturating_sub(p.frame + 1) as f64 * per_frame;
        let line = format!(
            "frame {}/{} done ({per_frame:.1} s/frame, ETA {})",
            p.frame + 1,
            if self.total > 0 {
                self.total.to_string()
            } else {
                "?".into()
            },
            human_duration(left)
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.set_message(line);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
