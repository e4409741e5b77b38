//! Animations as jobs: a zoom or a video (or one part of a video split over several
//! machines) planned, dreamed into a work folder that an interrupted run resumes from, and
//! written with its sound. The CLI's `zoom` and `video` and the studio's animation tabs are
//! thin layers over [`AnimationJob`]:
//!
//! ```no_run
//! # use deepdream::jobs::animation::{AnimationJob, AnimationSettings};
//! # use deepdream::media::ffmpeg::FrameRate;
//! # use deepdream::modes::zoom::ZoomParams;
//! # fn run(network: &dyn deepdream::Network, device: &deepdream::Device) -> deepdream::Result<()> {
//! let photo = std::path::Path::new("photo.jpg");
//! let image = deepdream::media::image_io::load(photo)?.to_rgb8();
//! let settings = AnimationSettings::new(deepdream::DreamParams::default(), "zoom.gif".into());
//! let params = ZoomParams::default();
//! let mut job = AnimationJob::zoom(network, Some(photo), image, params, FrameRate::from_fps(25.0)?, settings)?;
//! let frames = job.dream(network, device, |_| Ok(()))?;
//! job.write(frames)?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::engine::snapshot::Snapshot;
use crate::error::{Error, Result};
use crate::jobs::shard::Shard;
use crate::jobs::video_parts::{self, PART_TAG, SplitParams, VideoPart};
use crate::media::animation::{AnimationFormat, open_sink};
use crate::media::ffmpeg::{
    self, AudioSource, FrameRate, Segment, VideoInfo, VideoReader, VideoWriter,
};
use crate::media::flow::FlowMethod;
use crate::media::frames::{SinkThread, TakeFrames};
use crate::media::work_dir::WorkDir;
use crate::modes::animation::FrameProgress;
use crate::modes::dream::DreamParams;
use crate::modes::video::{VideoParams, dream_video_watched};
use crate::modes::zoom::{ZoomParams, zoom_watched};
use crate::networks::network::Network;

/// What every animation job is given beside its mode's own parameters.
#[derive(Clone, Debug)]
pub struct AnimationSettings {
    /// The first frame's dream, and the layers, seed, … of all frames.
    pub dream: DreamParams,
    /// Whether the caller chose `dream.seed`. When not, a job that resumes an interrupted
    /// run takes that run's seed, and a part of a split video the seed every worker
    /// derives from the video.
    pub seed_chosen: bool,
    /// Entries beside the parameters that decide the frames, as `(key, value)`: the guide
    /// file's name, for instance.
    pub identity: Vec<(String, String)>,
    /// The animation file to write: `.gif`, or a video (`.mp4`, `.mov`, `.mkv`, `.webm`).
    pub output: PathBuf,
    /// The work folder for the finished frames ([`WorkDir::default_for`] the output when
    /// `None`).
    pub work_dir: Option<PathBuf>,
    /// A folder that also gets every frame as a PNG file.
    pub frames_dir: Option<PathBuf>,
    /// A sound file a zoom carries: the zoom lasts as long as it (whatever its frame
    /// count says) and the video gets its sound.
    pub soundtrack: Option<PathBuf>,
}

impl AnimationSettings {
    /// Settings with the chosen `dream` (its seed chosen too) written to `output`.
    pub fn new(dream: DreamParams, output: PathBuf) -> Self {
        AnimationSettings {
            dream,
            seed_chosen: true,
            identity: Vec::new(),
            output,
            work_dir: None,
            frames_dir: None,
            soundtrack: None,
        }
    }
}

/// Which frames of a video a job dreams.
#[derive(Clone, Copy, Debug)]
pub enum VideoRange {
    /// A stretch of the video (all of it by default).
    Segment(Segment),
    /// One part of the video split into `shard.count` parts for as many workers, each
    /// planned alike by every worker ([`video_parts::plan_part`]).
    Part {
        /// Which part.
        shard: Shard,
        /// Seconds a part starts early, to be cross-faded in the join.
        overlap: f64,
        /// Seconds either side of an even split point searched for a scene cut.
        cut_search: f64,
    },
}

/// What an animation job makes its frames from.
enum Source {
    Zoom {
        image: RgbImage,
        params: ZoomParams,
        frame_rate: FrameRate,
        audio: Option<AudioSource>,
    },
    Video {
        path: PathBuf,
        info: VideoInfo,
        params: VideoParams,
        segment: Segment,
        part: Option<VideoPart>,
    },
}

/// A zoom or a video, planned: its settings checked, its seed settled, its work folder
/// open (resuming the frames an interrupted run finished), its part of a split video found.
pub struct AnimationJob {
    source: Source,
    dream: DreamParams,
    seed: u64,
    output: PathBuf,
    frames_dir: Option<PathBuf>,
    work: WorkDir,
    /// The video (without sound) in the work folder that [`AnimationJob::dream`] encoded
    /// its frames into as they were finished, and how many it holds.
    encoded: Option<(PathBuf, usize)>,
}

/// What [`AnimationJob::write`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenAnimation {
    /// Frames in the file.
    pub frames: usize,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// The sides were odd and the video was padded to even ones with a repeated edge
    /// (yuv420p needs them).
    pub padded: bool,
    /// The frames were encoded while they were dreamed: writing only added the sound (and a
    /// part's tag) to the encoded video.
    pub encoded_while_dreaming: bool,
}

impl AnimationJob {
    /// Plans a zoom from `image` (read from the file `input`, which then identifies the job
    /// for a resumed run; without one, the picture's pixels do):
    /// `params.frames` frames, each the previous one zoomed and dreamed again, at
    /// `frame_rate`.
    pub fn zoom(
        network: &dyn Network,
        input: Option<&Path>,
        image: RgbImage,
        mut params: ZoomParams,
        frame_rate: FrameRate,
        settings: AnimationSettings,
    ) -> Result<Self> {
        params.validate()?;
        let format = check_format(&settings.output)?;
        let audio = match &settings.soundtrack {
            None => None,
            Some(path) => {
                if !matches!(format, AnimationFormat::Video(_)) {
                    return Err(invalid(
                        "a GIF has no sound: write the zoom with a soundtrack to .mp4, .mov, .mkv or .webm",
                    ));
                }
                let info = ffmpeg::probe_audio(path)?;
                let duration = info.duration.ok_or_else(|| Error::AudioRead {
                    path: path.clone(),
                    reason: "its duration is unknown".into(),
                })?;
                params.frames = ((duration * frame_rate.fps()).round() as usize).max(1);
                Some(AudioSource {
                    path: path.clone(),
                    codec: info.codec,
                    segment: Segment::default(),
                })
            }
        };
        let [dx, dy] = params.pan;
        let mode = [
            ("mode", "zoom".to_string()),
            ("zoom", params.zoom.to_string()),
            ("rotate", params.rotate.to_string()),
            ("pan", format!("{dx},{dy}")),
            ("colour-match", params.keep_colours.to_string()),
        ];
        let planned = Planned::new(network, settings, None, &mode, params.next)?;
        let source = match input {
            Some(path) => Identity::File(path),
            None => Identity::Pixels(&image),
        };
        let work = planned.open_work(source, &[])?;
        Ok(AnimationJob {
            seed: planned.settings.dream.seed,
            dream: planned.settings.dream,
            output: planned.settings.output,
            frames_dir: planned.settings.frames_dir,
            work,
            encoded: None,
            source: Source::Zoom {
                image,
                params,
                frame_rate,
                audio,
            },
        })
    }

    /// Plans the dream of the video at `input` (`info` from [`ffmpeg::probe`]): its
    /// `range`, coherent along the optical flow. For a part, the video's frames are counted
    /// and the split points looked for near scene cuts, alike in every worker (decoding the
    /// frames about the split points: seconds to minutes for a long high-definition video).
    pub fn video(
        network: &dyn Network,
        input: &Path,
        info: VideoInfo,
        params: VideoParams,
        range: VideoRange,
        settings: AnimationSettings,
        device: &Device,
    ) -> Result<Self> {
        params.validate()?;
        let format = check_format(&settings.output)?;
        let (segment, split) = match range {
            VideoRange::Segment(segment) => {
                if !(segment.start.is_finite() && segment.start >= 0.0) {
                    return Err(invalid("the start must be a number of seconds, 0 or more"));
                }
                if let Some(duration) = segment.duration
                    && !(duration.is_finite() && duration > 0.0)
                {
                    return Err(invalid("the duration must be a positive number of seconds"));
                }
                (segment, None)
            }
            VideoRange::Part {
                shard,
                overlap,
                cut_search,
            } => {
                if !matches!(format, AnimationFormat::Video(_)) {
                    return Err(invalid(
                        "a part of a split video is a video file (.mp4, .mov, .mkv or .webm), not a GIF",
                    ));
                }
                for (name, value) in [("the overlap", overlap), ("the cut search", cut_search)] {
                    if !(value.is_finite() && (0.0..=3600.0).contains(&value)) {
                        return Err(invalid(&format!(
                            "{name} must be a number of seconds from 0 to 3600"
                        )));
                    }
                }
                let fps = info.frame_rate.fps();
                let split = SplitParams {
                    overlap: (overlap * fps).round() as usize,
                    search: (cut_search * fps).round() as usize,
                };
                (Segment::default(), Some((shard, split)))
            }
        };
        let common_seed = match split {
            Some(_) => Some(video_parts::common_seed(input)?),
            None => None,
        };
        let mode = [
            ("mode", "video".to_string()),
            ("start", segment.start.to_string()),
            ("duration", format!("{:?}", segment.duration)),
            ("blend", params.blend.to_string()),
            ("cut-threshold", params.cut_threshold.to_string()),
            // Farnebäck's settings alone, as before DIS came, so older work folders resume.
            (
                "flow",
                match params.flow {
                    FlowMethod::Farneback(farneback) => format!("{farneback:?}"),
                    dis => format!("{dis:?}"),
                },
            ),
        ];
        let mut planned = Planned::new(network, settings, common_seed, &mode, params.next)?;
        let (segment, part) = match split {
            None => (segment, None),
            Some((shard, split)) => {
                let total = ffmpeg::count_frames(input)?;
                let job_id = video_parts::job_id(input, &planned.entries)?;
                let part = video_parts::plan_part(
                    input,
                    info.frame_rate,
                    total,
                    shard,
                    &split,
                    &params,
                    &job_id,
                    device,
                )?;
                (part.segment(info.frame_rate), Some(part))
            }
        };
        let extra: Vec<(String, String)> = part
            .iter()
            .map(|part| ("part".to_string(), part.tag()))
            .collect();
        let work = planned.open_work(Identity::File(input), &extra)?;
        let seed = planned.settings.dream.seed;
        let mut params = params;
        if let Some(part) = &part {
            // Keyframes, sound and footage count the frames of the whole video.
            params.direction.offset += part.first;
            // Frame k of the video is seeded alike whichever part dreams it.
            planned.settings.dream.seed = seed.wrapping_add(part.first as u64);
        }
        Ok(AnimationJob {
            seed,
            dream: planned.settings.dream,
            output: planned.settings.output,
            frames_dir: planned.settings.frames_dir,
            work,
            encoded: None,
            source: Source::Video {
                path: input.to_path_buf(),
                info,
                params,
                segment,
                part,
            },
        })
    }

    /// The seed of the dream (before a part's offset): the chosen one, the resumed run's, or
    /// the one derived for a split video.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The work folder holding the finished frames.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The part of a split video this job dreams.
    pub fn part(&self) -> Option<&VideoPart> {
        match &self.source {
            Source::Video { part, .. } => part.as_ref(),
            Source::Zoom { .. } => None,
        }
    }

    /// The number of frames the animation will have, when known before dreaming.
    pub fn frames(&self) -> Option<usize> {
        match &self.source {
            Source::Zoom { params, .. } => Some(params.frames),
            Source::Video {
                info,
                segment,
                part,
                ..
            } => part
                .as_ref()
                .map_or_else(|| info.frames_in(segment), |part| Some(part.frames)),
        }
    }

    /// Dreams the frames that are not finished yet into the work folder; returns how many
    /// frames the animation has. `observer` sees every step and every finished frame; an
    /// error it returns (such as [`Error::Cancelled`]) stops the job, and the finished
    /// frames stay for the next run (a work folder with none is removed). A video's
    /// frames are encoded, on a thread of their own, as they are finished (the frames an
    /// earlier run finished first), so that [`AnimationJob::write`] has only the sound to add.
    pub fn dream(
        &mut self,
        network: &dyn Network,
        device: &Device,
        mut observer: impl FnMut(&Snapshot<FrameProgress>) -> Result<()>,
    ) -> Result<usize> {
        self.encoded = None;
        let mut encoding = self.encoding_ahead();
        let dreamed = self.dream_frames(network, device, |snapshot| {
            if let Some(encoding) = &mut encoding {
                encoding.offer(snapshot);
            }
            observer(snapshot)
        });
        // An encoder of a dream that failed is dropped unfinished; `write` takes the video
        // only if it holds every frame.
        self.encoded = match (&dreamed, encoding) {
            (Ok(_), Some(encoding)) => encoding.finish(),
            _ => None,
        };
        if let Err(error) = &dreamed
            && !matches!(error, Error::Cancelled)
            && matches!(self.work.load(0), Ok(None))
        {
            // Nothing to resume: the folder would only be in the way.
            let _ = std::fs::remove_dir_all(self.work.path());
        }
        dreamed
    }

    /// The encoder of a video's frames as they are finished (`None` for a GIF, which is
    /// made from all its frames at once).
    fn encoding_ahead(&self) -> Option<EncodingAhead> {
        let Ok(AnimationFormat::Video(_)) = AnimationFormat::from_path(&self.output) else {
            return None;
        };
        let extension = crate::media::image_io::extension(&self.output);
        Some(EncodingAhead {
            path: self.work.path().join(format!("encoded.{extension}")),
            frame_rate: self.frame_rate(),
            sink: None,
            frames: 0,
            failed: false,
        })
    }

    /// The animation's frame rate.
    fn frame_rate(&self) -> FrameRate {
        match &self.source {
            Source::Zoom { frame_rate, .. } => *frame_rate,
            Source::Video { info, .. } => info.frame_rate,
        }
    }

    /// [`AnimationJob::dream`] without the clean-up.
    fn dream_frames(
        &self,
        network: &dyn Network,
        device: &Device,
        observer: impl FnMut(&Snapshot<FrameProgress>) -> Result<()>,
    ) -> Result<usize> {
        let dream = self.dream.clone();
        match &self.source {
            Source::Zoom { image, params, .. } => {
                zoom_watched(network, dream, params, image, &self.work, device, observer)?;
                Ok(params.frames)
            }
            Source::Video {
                path,
                params,
                segment,
                part,
                ..
            } => {
                let reader = VideoReader::open(path, *segment)?;
                let count = part.as_ref().map_or(usize::MAX, |p| p.frames);
                let mut source = TakeFrames::new(reader, count);
                let frames = dream_video_watched(
                    network,
                    dream,
                    params,
                    &mut source,
                    self.frames(),
                    &self.work,
                    device,
                    observer,
                )?;
                match part {
                    Some(part) if frames != part.frames => Err(Error::VideoRead {
                        path: path.clone(),
                        reason: format!(
                            "it has {frames} frames from frame {} where {} were counted; the video cannot be split exactly",
                            part.first, part.frames
                        ),
                    }),
                    _ => Ok(frames),
                }
            }
        }
    }

    /// Writes the `frames` finished frames to the output (with the video's sound, and a
    /// part's tag), copies them into the frames folder if one was asked for, and removes
    /// the work folder.
    pub fn write(mut self, frames: usize) -> Result<WrittenAnimation> {
        let format = AnimationFormat::from_path(&self.output)?;
        let (width, height) = self
            .work
            .load(0)?
            .ok_or_else(|| Error::InvalidParameter("the first frame is missing".into()))?
            .dimensions();
        let frame_rate = self.frame_rate();
        let (audio, tag) = match &self.source {
            Source::Zoom { audio, .. } => (audio.clone(), None),
            Source::Video {
                path,
                info,
                segment,
                part,
                ..
            } => {
                let audio = match (format, &info.audio_codec) {
                    (AnimationFormat::Video(_), Some(codec)) => Some(AudioSource {
                        path: path.clone(),
                        codec: codec.clone(),
                        // The sound of a part starts exactly at its first frame.
                        segment: match part {
                            Some(part) => Segment {
                                start: part.first as f64 / info.frame_rate.fps(),
                                duration: None,
                            },
                            None => *segment,
                        },
                    }),
                    _ => None,
                };
                (audio, part.as_ref().map(VideoPart::tag))
            }
        };
        if let Some(dir) = &self.frames_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tags: Vec<(&str, &str)> = tag.iter().map(|tag| (PART_TAG, tag.as_str())).collect();
        let encoded = match self.encoded.take() {
            Some((video, count)) if count == frames => Some(video),
            _ => None,
        };
        match &encoded {
            Some(video) => ffmpeg::mux(
                video,
                &self.output,
                frames as u64,
                frame_rate,
                audio.as_ref(),
                &tags,
            )?,
            None => {
                let sink = open_sink(
                    &self.output,
                    width,
                    height,
                    frame_rate,
                    frames as u64,
                    audio,
                    &tags,
                )?;
                self.work.encode(frames, sink)?;
            }
        }
        if let Some(dir) = &self.frames_dir {
            for index in 0..frames {
                let source = self.work.frame_path(index);
                let target = dir.join(source.file_name().unwrap_or_default());
                std::fs::copy(&source, &target).map_err(|e| Error::io(&target, e))?;
            }
        }
        self.work.remove()?;
        Ok(WrittenAnimation {
            frames,
            width,
            height,
            padded: matches!(format, AnimationFormat::Video(_))
                && (width % 2 == 1 || height % 2 == 1),
            encoded_while_dreaming: encoded.is_some(),
        })
    }
}

/// A video's frames encoded, on a thread of their own, as they are finished, into a video
/// without sound in the work folder. Encoding is a head start only: where it fails, the
/// frames are encoded from the work folder when the animation is written (which reports the
/// failure if it is one).
struct EncodingAhead {
    /// The encoded video.
    path: PathBuf,
    frame_rate: FrameRate,
    /// The encoder, from the first frame on.
    sink: Option<SinkThread>,
    /// Frames handed to the encoder.
    frames: usize,
    failed: bool,
}

impl EncodingAhead {
    /// Encodes the frame `snapshot` shows if it is a finished one (the next in order).
    fn offer(&mut self, snapshot: &Snapshot<FrameProgress>) {
        if self.failed || snapshot.progress.step.is_some() {
            return;
        }
        let sent = if snapshot.progress.frame == self.frames {
            snapshot.image().and_then(|frame| self.send(frame))
        } else {
            Err(invalid("a frame came out of order"))
        };
        match sent {
            Ok(()) => self.frames += 1,
            Err(_) => {
                self.failed = true;
                self.sink = None;
            }
        }
    }

    /// Hands `frame` to the encoder, started at the first frame's size.
    fn send(&mut self, frame: RgbImage) -> Result<()> {
        let sink = match &mut self.sink {
            Some(sink) => sink,
            None => {
                let (width, height) = frame.dimensions();
                let writer =
                    VideoWriter::create(&self.path, width, height, self.frame_rate, 0, None)?;
                self.sink.insert(SinkThread::new(Box::new(writer)))
            }
        };
        sink.send(frame)
    }

    /// The encoded video and how many frames it holds, once the encoder finished it;
    /// `None` if it failed.
    fn finish(self) -> Option<(PathBuf, usize)> {
        if self.failed {
            return None;
        }
        self.sink?.finish().ok()?;
        Some((self.path, self.frames))
    }
}

/// A job's settings with its seed settled and the entries that identify it.
struct Planned {
    settings: AnimationSettings,
    work_path: PathBuf,
    /// Every setting that decides the frames, as (key, value).
    entries: Vec<(String, String)>,
}

impl Planned {
    /// Settles the seed (see [`AnimationSettings::seed_chosen`]; `common_seed` is a split
    /// video's) and lists what identifies the job: the software, the model, the dream's
    /// parameters and identity entries, the `mode`'s own and the frames' settings.
    fn new(
        network: &dyn Network,
        mut settings: AnimationSettings,
        common_seed: Option<u64>,
        mode: &[(&str, String)],
        next: crate::modes::animation::FrameSettings,
    ) -> Result<Self> {
        settings.dream.validate()?;
        let work_path = settings
            .work_dir
            .clone()
            .unwrap_or_else(|| WorkDir::default_for(&settings.output));
        if !settings.seed_chosen {
            let recorded =
                WorkDir::recorded(&work_path, "deepdream:seed").and_then(|s| s.parse().ok());
            if let Some(seed) = recorded.or(common_seed) {
                settings.dream.seed = seed;
            }
        }
        let mut entries = settings.dream.metadata_with(network.name());
        entries.extend(settings.identity.iter().cloned());
        entries.extend(mode.iter().map(|(k, v)| (k.to_string(), v.clone())));
        entries.push(("octaves-per-frame".into(), next.octaves.to_string()));
        entries.push(("iterations-per-frame".into(), next.iterations.to_string()));
        Ok(Planned {
            settings,
            work_path,
            entries,
        })
    }

    /// Opens the job's work folder for its entries and `extra` ones, made from `input`.
    fn open_work(&self, input: Identity, extra: &[(String, String)]) -> Result<WorkDir> {
        let mut entries = self.entries.clone();
        entries.extend(extra.iter().cloned());
        WorkDir::open(&self.work_path, &job_text(input, &entries)?)
    }
}

/// What a job's frames are made from.
enum Identity<'a> {
    /// A file, known by its path, size and modification time.
    File(&'a Path),
    /// A picture in memory, known by its pixels.
    Pixels(&'a RgbImage),
}

/// The text that identifies a job: its input and the parameters, one `key value` per line.
fn job_text(input: Identity, entries: &[(String, String)]) -> Result<String> {
    let mut text = match input {
        Identity::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let full = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            format!("input {} {} {modified}\n", full.display(), meta.len())
        }
        Identity::Pixels(image) => {
            let hash = Sha256::digest(image.as_raw());
            let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("input {}x{} pixels {hex}\n", image.width(), image.height())
        }
    };
    for (key, value) in entries {
        text.push_str(&format!("{key} {value}\n"));
    }
    Ok(text)
}

/// The output's format, checked before anything is dreamed; FFmpeg must be there for a
/// video.
fn check_format(output: &Path) -> Result<AnimationFormat> {
    let format = AnimationFormat::from_path(output)?;
    if matches!(format, AnimationFormat::Video(_)) {
        ffmpeg::check_installed()?;
    }
    Ok(format)
}

fn invalid(what: &str) -> Error {
    Error::InvalidParameter(what.to_string())
}
