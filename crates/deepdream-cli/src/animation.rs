//! `deepdream zoom` and `deepdream video`: thin layers over `deepdream::modes`.

use deepdream::backend::device::Placement;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepdream::jobs::animation::{AnimationJob, AnimationSettings, VideoRange};
use deepdream::jobs::shard::Shard;
use deepdream::jobs::video_parts;
use deepdream::media::animation::AnimationFormat;
use deepdream::media::ffmpeg::{self, FrameRate, Segment};
use deepdream::media::flow::FlowMethod;
use deepdream::media::image_io;
use deepdream::modes::animation::{FrameProgress, FrameSettings};
use deepdream::modes::video::VideoParams;
use deepdream::modes::zoom::ZoomParams;
use deepdream::{Device, Network};
use indicatif::ProgressBar;

use deepdream::control::Direction;
use deepdream::control::footage::{Ending, Footage};
use deepdream::control::keyframes::Keyframes;
use deepdream::control::mask::Mask;
use deepdream::control::sound::{Band, Envelope, Reaction, Reactions, check_smooth};
use deepdream::modes::dream::GUIDE_MAX_SIDE;

use crate::options::{DreamOptions, is_video, load_network};
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
    /// Keyframes: numbers (step, iterations, zoom, blend, mask, ...), layers and channels
    /// at chosen frames or seconds, interpolated between them (a TOML or JSON file; see
    /// the README).
    #[arg(long, value_name = "FILE")]
    keyframes: Option<PathBuf>,
    /// Let the sound move parameters, from a value in silence to one at the loudest:
    /// `step=0.5..3,zoom=1.01..1.06` (a video's own sound; a zoom's --audio).
    #[arg(long, value_name = "PARAM=LOW..HIGH,...")]
    react: Option<String>,
    /// The frequencies --react listens to: bass, mid, treble or all.
    #[arg(long, value_name = "BAND", default_value = "all")]
    react_band: String,
    /// Seconds over which the level --react follows falls back after a loud moment (it
    /// rises at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.1)]
    react_smooth: f64,
}

/// Where an animation's sound comes from, for --react.
enum Sound<'a> {
    /// A file's sound, in a stretch.
    File(&'a Path, Segment),
    /// None, and what to say about it.
    Missing(&'static str),
}

impl AnimationOptions {
    /// The job settings these options and the dream's give, writing to `output`, with
    /// the frame-by-frame direction of an animation at `fps` of `frames` frames (when
    /// known) whose sound is `sound`.
    fn settings(
        &self,
        dream: &DreamOptions,
        output: &Path,
        fps: f64,
        frames: Option<usize>,
        sound: Sound,
    ) -> Result<(AnimationSettings, Direction)> {
        let mut settings = AnimationSettings {
            dream: dream.params()?,
            seed_chosen: dream.seed.is_some(),
            identity: dream.identity(),
            output: output.to_path_buf(),
            work_dir: self.work_dir.clone(),
            frames_dir: self.frames_dir.clone(),
            soundtrack: None,
        };
        let mut direction = Direction {
            fps,
            ..Direction::default()
        };
        if let Some(path) = &self.keyframes {
            let schedule = Keyframes::load(path)?.place(fps, frames)?;
            settings
                .identity
                .push(("deepdream:keyframes".into(), format!("{schedule:?}")));
            direction.schedule = Some(schedule);
        }
        let band = Band::parse(&self.react_band)?;
        check_smooth(self.react_smooth)?;
        if let Some(text) = &self.react {
            let reactions = Reaction::parse_list(text)?;
            let (path, segment) = match sound {
                Sound::File(path, segment) => (path, segment),
                Sound::Missing(why) => bail!("--react needs sound: {why}"),
            };
            let envelope = Envelope::of_file(path, segment, fps, band, self.react_smooth)?;
            settings.identity.push((
                "deepdream:react".into(),
                format!(
                    "{text} band {} smooth {} from {}",
                    self.react_band,
                    self.react_smooth,
                    path.display()
                ),
            ));
            direction.sound = Some(Reactions {
                envelope,
                reactions,
            });
        }
        if let Some(path) = &dream.mask
            && is_video(path)
        {
            let masks = Footage::load(path, None, Ending::Hold)?;
            // The first frame's mask stands for all of them until each frame's own.
            let first = Mask::from_image(&masks.at(0, fps)?).with_strength(dream.mask_strength)?;
            settings.dream.mask = Some(first);
            direction.masks = Some(masks);
        }
        Ok((settings, direction))
    }

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
    /// A sound file (anything FFmpeg reads) for the zoom: it lasts as long as the sound,
    /// carries it, and --react listens to it. Needs a video output.
    #[arg(long, value_name = "FILE")]
    audio: Option<PathBuf>,
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
    /// Optical flow: farneback (smoother, about 0.2 s a 320x240 pair on 2 cores) or dis
    /// (dense inverse search, a few milliseconds).
    #[arg(long, value_name = "dis|farneback", default_value = "farneback")]
    flow: String,
    /// Guide each frame by the frame of this video at the same time (resized): the
    /// dream is pulled towards its features.
    #[arg(long, value_name = "VIDEO", conflicts_with = "guide")]
    guide_video: Option<PathBuf>,
    /// What the guide video shows once it is over, when shorter: loop or hold.
    #[arg(long, value_name = "loop|hold", default_value = "loop")]
    guide_video_end: String,
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

pub fn zoom(args: ZoomArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
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
    let mut frames = args.frames;
    if let Some(audio) = &args.audio {
        if !matches!(format, AnimationFormat::Video(_)) {
            bail!("--audio: a GIF has no sound; write the zoom to .mp4, .mov, .mkv or .webm");
        }
        let duration = ffmpeg::probe_audio(audio)?.duration.ok_or_else(|| {
            anyhow::anyhow!("--audio {}: its duration is unknown", audio.display())
        })?;
        frames = ((duration * frame_rate.fps()).round() as usize).max(1);
    }
    let sound = match &args.audio {
        Some(path) => Sound::File(path, Segment::default()),
        None => Sound::Missing("give the zoom a soundtrack with --audio FILE"),
    };
    let (mut settings, direction) = args.animation.settings(
        &args.dream,
        &args.output,
        frame_rate.fps(),
        Some(frames),
        sound,
    )?;
    settings.soundtrack = args.audio.clone();
    let params = ZoomParams {
        frames,
        zoom: args.zoom,
        rotate: args.rotate,
        pan,
        next: args.animation.frame_settings(ZoomParams::default().next),
        keep_colours: !args.no_colour_match,
        direction,
    };
    params.validate()?;
    let image = image_io::load(&args.input)?.to_rgb8();
    let (width, height) = image.dimensions();
    let network = load_network(&args.dream.model, target)?;
    let frames = params.frames;
    let job = AnimationJob::zoom(
        network.as_ref(),
        Some(&args.input),
        image,
        params,
        frame_rate,
        settings,
    )?;
    note!(
        "Zooming {width}x{height} with {} for {frames} frames (seed {}); frames kept in {}",
        network.name(),
        job.seed(),
        job.work_dir().display()
    );
    run_job(job, network.as_ref(), device, &args.output)
}

pub fn video(args: VideoArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    AnimationFormat::from_path(&args.output)?;
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
    let info = ffmpeg::probe(&args.input)?;
    let fps = info.frame_rate.fps();
    // Keyframes and sound count the frames of the stretch dreamed, or of the whole video
    // for a part of a split one.
    let segment = match shard {
        None => Segment {
            start: args.start,
            duration: args.duration,
        },
        Some(_) => Segment::default(),
    };
    let sound = match &info.audio_codec {
        Some(_) => Sound::File(&args.input, segment),
        None => Sound::Missing("the video has no sound"),
    };
    let (mut settings, mut direction) =
        args.animation
            .settings(&args.dream, &output, fps, info.frames_in(&segment), sound)?;
    if let Some(path) = &args.guide_video {
        let ending = Ending::parse(&args.guide_video_end)?;
        direction.guides = Some(Footage::load(path, Some(GUIDE_MAX_SIDE), ending)?);
        settings.identity.push((
            "deepdream:guide-video".into(),
            format!("{} {}", path.display(), args.guide_video_end),
        ));
    }
    let params = VideoParams {
        blend: args.blend,
        next: args.animation.frame_settings(VideoParams::default().next),
        cut_threshold: args.cut_threshold,
        flow: FlowMethod::parse(&args.flow)?,
        direction,
    };
    params.validate()?;
    let range = match shard {
        None => VideoRange::Segment(Segment {
            start: args.start,
            duration: args.duration,
        }),
        Some(shard) => VideoRange::Part {
            shard,
            overlap: args.overlap,
            cut_search: args.cut_search,
        },
    };
    let network = load_network(&args.dream.model, target)?;
    if let Some(shard) = shard {
        note!(
            "Planning part {} of {} (looking for scene cuts near the split points)…",
            shard.index,
            shard.count
        );
    }
    let (fps, audio) = (info.frame_rate.fps(), info.audio_codec.is_some());
    let (width, height) = (info.width, info.height);
    let job = AnimationJob::video(
        network.as_ref(),
        &args.input,
        info,
        params,
        range,
        settings,
        device,
    )?;
    if let Some(part) = job.part() {
        let owned = part.owned();
        note!(
            "Part {}/{}: frames {}-{} of {}{}",
            part.index,
            part.count,
            owned.start,
            owned.end - 1,
            part.total,
            match (part.index, part.lead) {
                (0, _) => String::new(),
                (_, 0) => ", starting at a scene cut".into(),
                (_, lead) => format!(", after {lead} lead-in frames cross-faded in the join"),
            }
        );
    }
    note!(
        "Dreaming {} ({width}x{height}, {fps:.3} fps, {} frames{}) with {} (seed {}); frames kept in {}",
        args.input.display(),
        job.frames().map_or("?".into(), |n| n.to_string()),
        if audio { ", audio kept" } else { "" },
        network.name(),
        job.seed(),
        job.work_dir().display()
    );
    run_job(job, network.as_ref(), device, &output)
}

/// Dreams a planned animation's frames with a progress report, then writes it.
fn run_job(
    mut job: AnimationJob,
    network: &dyn Network,
    device: &Device,
    output: &Path,
) -> Result<()> {
    let start = Instant::now();
    let mut reporter = FrameReporter::new(job.frames().unwrap_or(0));
    let frames = job
        .dream(network, device, |snapshot| {
            crate::interrupt::check()?;
            reporter.report(snapshot.progress);
            Ok(())
        })
        .map_err(|e| interrupted(e, job.work_dir()))?;
    reporter.finish();
    note!("Writing {}…", output.display());
    let written = job.write(frames)?;
    if written.padded {
        note!(
            "Note: {}x{} is odd; the video is padded to even sides with a repeated edge (yuv420p needs them)",
            written.width,
            written.height
        );
    }
    note!(
        "Wrote {} ({} frames, {}x{}) in {}",
        output.display(),
        written.frames,
        written.width,
        written.height,
        human_duration(start.elapsed().as_secs_f64())
    );
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
fn interrupted(error: deepdream::Error, work: &Path) -> anyhow::Error {
    match error {
        deepdream::Error::Cancelled => anyhow::anyhow!(
            "the finished frames are kept in {}: run the same command again to continue",
            work.display()
        ),
        other => other.into(),
    }
}

fn check_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    image_io::check_writable(input, output, force)
        .map_err(|reason| anyhow::anyhow!("cannot write {}: {reason}", output.display()))
}

/// Progress over the frames: a bar on a terminal, otherwise a line per frame.
struct FrameReporter {
    bar: ProgressBar,
    started: Instant,
    dreamed: usize,
    total: usize,
    /// When the first frame dreamed here was done (a film's first frame is a full dream;
    /// the frames after it show the film's rate).
    first_done: Option<Instant>,
}

impl FrameReporter {
    fn new(total: usize) -> Self {
        FrameReporter {
            bar: progress_bar(total as u64, "frames"),
            started: Instant::now(),
            dreamed: 0,
            total,
            first_done: None,
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
        self.first_done.get_or_insert_with(Instant::now);
        if p.fresh && p.frame > 0 {
            self.bar
                .suspend(|| note!("Scene cut at frame {}: dreamed afresh", p.frame + 1));
        }
        let per_frame = self.started.elapsed().as_secs_f64() / self.dreamed as f64;
        let left = self.total.saturating_sub(p.frame + 1) as f64 * per_frame;
        let time = if per_frame < 1.0 {
            format!("{:.0} ms/frame", per_frame * 1e3)
        } else {
            format!("{per_frame:.1} s/frame")
        };
        let line = format!(
            "frame {}/{} done ({time}, ETA {})",
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

    /// Ends the progress bar, and says how fast the frames after the first were dreamed.
    fn finish(&self) {
        self.bar.finish_and_clear();
        if let Some(first_done) = self.first_done
            && self.dreamed > 1
        {
            let first = first_done.duration_since(self.started).as_secs_f64();
            let rest = first_done.elapsed().as_secs_f64();
            note!(
                "Dreamed {} frames in {}: the first in {}, the {} after it at {:.1} frames a second",
                self.dreamed,
                human_duration(first + rest),
                human_duration(first),
                self.dreamed - 1,
                (self.dreamed - 1) as f64 / rest.max(1e-9)
            );
        }
    }
}
