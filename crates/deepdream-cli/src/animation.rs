//! `deepdream zoom` and `deepdream video`: thin layers over `deepdream::modes`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use deepdream::jobs::shard::Shard;
use deepdream::jobs::video_parts::{self, PART_TAG, SplitParams, VideoPart};
use deepdream::media::animation::{AnimationFormat, open_sink};
use deepdream::media::ffmpeg::{self, AudioSource, FrameRate, Segment, VideoReader, VideoWriter};
use deepdream::media::frames::{FrameSink, TakeFrames};
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::{FrameProgress, FrameSettings};
use deepdream::modes::video::{VideoParams, dream_video_watched};
use deepdream::modes::zoom::{ZoomParams, zoom_watched};
use deepdream::{Device, DreamParams, Network, media::image_io};
use indicatif::ProgressBar;

use crate::options::{DreamOptions, load_network};
use crate::report::{human_duration, progress_bar, step_message};

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
    /// Dream only part I of N (I from 0), for N workers on N machines: written beside
    /// OUTPUT as NAME.part-I-of-N.EXT; `deepdream video-join -o OUTPUT` puts them together.
    #[arg(long, value_name = "I/N", conflicts_with = "shards")]
    shard: Option<String>,
    /// Dream one of N parts, the one the scheduler gives this worker: a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX, or the task of a Slurm job array.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// With --shard(s): seconds a part starts early, cross-faded with the end of the part
    /// before in the join (not where the split falls on a scene cut).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    overlap: f64,
    /// With --shard(s): how far either side of an even split point to look for a scene cut
    /// to split at, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    cut_search: f64,
    #[command(flatten)]
    animation: AnimationOptions,
}

#[derive(Args)]
pub struct VideoJoinArgs {
    /// The parts (`deepdream video --shard I/N` outputs), in any order [default: those
    /// named after OUTPUT beside it, NAME.part-*-of-N.*].
    parts: Vec<PathBuf>,
    /// The joined video: .mp4, .mov, .mkv or .webm.
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
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
    let job = start_job(
        &args.output,
        &args.dream,
        &args.animation,
        params.next,
        None,
        &[
            ("mode", "zoom".into()),
            ("zoom", params.zoom.to_string()),
            ("rotate", params.rotate.to_string()),
            ("pan", format!("{},{}", pan[0], pan[1])),
            ("colour-match", params.keep_colours.to_string()),
        ],
        device,
    )?;
    let work = job.open_work(&args.input, &[])?;
    let (network, dream) = (job.network, job.dream);
    note!(
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
        Extras::default(),
        &args.animation,
    )?;
    note!(
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
    let shard = match (&args.shard, args.shards) {
        (Some(text), _) => Some(Shard::parse(text)?),
        (None, Some(count)) => {
            let shard = Shard::from_environment(Some(count), |name| std::env::var(name).ok())?;
            if let Some(shard) = shard
                && shard.count != count
            {
                bail!(
                    "--shards {count}, but the Slurm job array has {} tasks",
                    shard.count
                );
            }
            shard
        }
        (None, None) => None,
    };
    let output = match shard {
        Some(_) if args.start > 0.0 || args.duration.is_some() => {
            bail!("--shard splits the whole video: leave out --start and --duration")
        }
        Some(_) if !matches!(format, AnimationFormat::Video(_)) => {
            bail!("a part of a split video is a video file (.mp4, .mov, .mkv or .webm), not a GIF")
        }
        Some(shard) => video_parts::part_path(&args.output, shard),
        None => args.output.clone(),
    };
    check_output(&args.input, &output, args.animation.force)?;
    if !(args.start.is_finite() && args.start >= 0.0) {
        bail!("--start must be a number of seconds, 0 or more");
    }
    if let Some(duration) = args.duration
        && !(duration.is_finite() && duration > 0.0)
    {
        bail!("--duration must be a positive number of seconds");
    }
    for (name, value) in [
        ("--overlap", args.overlap),
        ("--cut-search", args.cut_search),
    ] {
        if !(value.is_finite() && (0.0..=3600.0).contains(&value)) {
            bail!("{name} must be a number of seconds from 0 to 3600");
        }
    }
    let params = VideoParams {
        blend: args.blend,
        next: args.animation.frame_settings(VideoParams::default().next),
        cut_threshold: args.cut_threshold,
        ..VideoParams::default()
    };
    params.validate()?;
    let info = ffmpeg::probe(&args.input)?;
    let seed = match shard {
        Some(_) => Some(video_parts::common_seed(&args.input)?),
        None => None,
    };
    let job = start_job(
        &output,
        &args.dream,
        &args.animation,
        params.next,
        seed,
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
    let (segment, part) = match shard {
        None => (
            Segment {
                start: args.start,
                duration: args.duration,
            },
            None,
        ),
        Some(shard) => {
            let total = ffmpeg::count_frames(&args.input)?;
            let split = SplitParams {
                overlap: (args.overlap * fps).round() as usize,
                search: (args.cut_search * fps).round() as usize,
            };
            note!(
                "Planning part {} of {} ({total} frames; looking for scene cuts near the split points)…",
                shard.index,
                shard.count
            );
            let job_id = video_parts::job_id(&args.input, &job.entries)?;
            let part = video_parts::plan_part(
                &args.input,
                info.frame_rate,
                total,
                shard,
                &split,
                &params,
                &job_id,
                device,
            )?;
            let owned = part.owned();
            note!(
                "Part {}/{}: frames {}-{} of {total}{}",
                part.index,
                part.count,
                owned.start,
                owned.end - 1,
                match (part.index, part.lead) {
                    (0, _) => String::new(),
                    (_, 0) => ", starting at a scene cut".into(),
                    (_, lead) => format!(", after {lead} lead-in frames cross-faded in the join"),
                }
            );
            (part.segment(info.frame_rate), Some(part))
        }
    };
    let mut dream = job.dream.clone();
    let extra: Vec<(String, String)> = part
        .iter()
        .map(|part| ("part".to_string(), part.tag()))
        .collect();
    let work = job.open_work(&args.input, &extra)?;
    let network = job.network;
    if let Some(part) = &part {
        // Frame k of the video is seeded alike whichever part dreams it.
        dream.seed = dream.seed.wrapping_add(part.first as u64);
    }
    let estimate = part
        .as_ref()
        .map_or_else(|| info.frames_in(&segment), |part| Some(part.frames));
    note!(
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
        job.dream.seed,
        work.path().display()
    );
    let start = Instant::now();
    let reader = VideoReader::open(&args.input, segment)?;
    let mut source = TakeFrames::new(reader, part.as_ref().map_or(usize::MAX, |p| p.frames));
    let mut reporter = FrameReporter::new(estimate.unwrap_or(0));
    let frames = dream_video_watched(
        network.as_ref(),
        dream,
        &params,
        &mut source,
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
    let part = match part {
        Some(part) if frames != part.frames => bail!(
            "{} has {frames} frames from frame {} where {} were counted; the video cannot be split exactly",
            args.input.display(),
            part.first,
            part.frames
        ),
        other => other,
    };
    let first = work.load(0)?.context("the first frame is missing")?;
    let audio = match (format, &info.audio_codec) {
        (AnimationFormat::Video(_), Some(codec)) => Some(AudioSource {
            path: args.input.clone(),
            codec: codec.clone(),
            // The sound of a part starts exactly at its first frame.
            segment: match &part {
                Some(part) => Segment {
                    start: part.first as f64 / fps,
                    duration: None,
                },
                None => segment,
            },
        }),
        _ => None,
    };
    let tag = part.as_ref().map(VideoPart::tag);
    write_animation(
        &work,
        frames,
        &output,
        first.dimensions(),
        info.frame_rate,
        Extras { audio, part: tag },
        &args.animation,
    )?;
    note!(
        "Wrote {} ({frames} frames) in {}",
        output.display(),
        human_duration(start.elapsed().as_secs_f64())
    );
    work.remove()?;
    Ok(())
}

/// `deepdream video-join`: the parts of a split video dream into one video.
pub fn video_join(args: VideoJoinArgs) -> Result<()> {
    ffmpeg::VideoFormat::from_path(&args.output)?;
    ffmpeg::check_installed()?;
    let parts = if args.parts.is_empty() {
        let found = video_parts::find_parts(&args.output)?;
        if found.is_empty() {
            bail!(
                "no parts named {} found; name the parts to join",
                video_parts::part_path(&args.output, Shard { index: 0, count: 1 })
                    .display()
                    .to_string()
                    .replace(".part-0-of-1", ".part-I-of-N")
            );
        }
        found
    } else {
        args.parts.clone()
    };
    for part in &parts {
        check_output(part, &args.output, args.force)?;
    }
    let start = Instant::now();
    let bar = progress_bar(0, "frames");
    let joined = video_parts::join_parts(&parts, &args.output, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    note!(
        "Wrote {} ({} frames from {} parts, {} seams cross-faded{}) in {}",
        args.output.display(),
        joined.frames,
        joined.parts,
        joined.cross_faded,
        if joined.audio { ", sound joined" } else { "" },
        human_duration(start.elapsed().as_secs_f64())
    );
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

/// A job's network, dream parameters and settings, before its work folder is opened.
struct Job {
    network: Box<dyn Network>,
    dream: DreamParams,
    /// Every setting that decides the frames, as (key, value).
    entries: Vec<(String, String)>,
    work_path: PathBuf,
}

impl Job {
    /// Opens the job's work folder (`OUTPUT.deepdream-work` unless `--work-dir`), for the
    /// settings and `extra` ones.
    fn open_work(&self, input: &Path, extra: &[(String, String)]) -> Result<WorkDir> {
        let mut entries = self.entries.clone();
        entries.extend(extra.iter().cloned());
        Ok(WorkDir::open(&self.work_path, &job_text(input, &entries)?)?)
    }
}

/// Loads the network and settles the dream parameters of the job whose output is `output`.
/// Without `--seed`, a run that resumes an interrupted one takes that run's seed, else
/// `seed` if given, else a random one. `mode` lists the mode's own parameters.
#[allow(clippy::too_many_arguments)]
fn start_job(
    output: &Path,
    options: &DreamOptions,
    animation: &AnimationOptions,
    next: FrameSettings,
    seed: Option<u64>,
    mode: &[(&str, String)],
    device: &Device,
) -> Result<Job> {
    let work_path = animation
        .work_dir
        .clone()
        .unwrap_or_else(|| WorkDir::default_for(output));
    let mut dream = options.params()?;
    if options.seed.is_none() {
        if let Some(recorded) =
            WorkDir::recorded(&work_path, "deepdream:seed").and_then(|s| s.parse().ok())
        {
            dream.seed = recorded;
        } else if let Some(seed) = seed {
            dream.seed = seed;
        }
    }
    let network = load_network(&options.model, device)?;
    let mut entries = options.metadata(network.as_ref(), &dream);
    entries.extend(mode.iter().map(|(k, v)| (k.to_string(), v.clone())));
    entries.push(("octaves-per-frame".into(), next.octaves.to_string()));
    entries.push(("iterations-per-frame".into(), next.iterations.to_string()));
    Ok(Job {
        network,
        dream,
        entries,
        work_path,
    })
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

/// What an animation's file holds beside the frames.
#[derive(Default)]
struct Extras {
    /// The sound.
    audio: Option<AudioSource>,
    /// The [`VideoPart::tag`] of a part of a split video.
    part: Option<String>,
}

/// Writes the finished frames `0..frames` of `work` to `output` (and `--frames-dir`).
fn write_animation(
    work: &WorkDir,
    frames: usize,
    output: &Path,
    (width, height): (u32, u32),
    frame_rate: FrameRate,
    Extras { audio, part }: Extras,
    options: &AnimationOptions,
) -> Result<()> {
    let odd = width % 2 == 1 || height % 2 == 1;
    if odd
        && matches!(
            AnimationFormat::from_path(output)?,
            AnimationFormat::Video(_)
        )
    {
        note!(
            "Note: {width}x{height} is odd; the video is padded to even sides with a repeated edge (yuv420p needs them)"
        );
    }
    if let Some(dir) = &options.frames_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    note!("Encoding {}…", output.display());
    let sink: Box<dyn FrameSink> = match part {
        Some(tag) => Box::new(VideoWriter::create_tagged(
            output,
            width,
            height,
            frame_rate,
            frames as u64,
            audio,
            &[(PART_TAG, &tag)],
        )?),
        None => open_sink(output, width, height, frame_rate, frames as u64, audio)?,
    };
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
                .suspend(|| note!("Scene cut at frame {}: dreamed afresh", p.frame + 1));
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
            note!("{line}");
        } else {
            self.bar.set_message(line);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
