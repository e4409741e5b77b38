//! Video through the system's FFmpeg: `ffprobe` describes a file, `ffmpeg` decodes its
//! frames to RGB and encodes frames (with the source's audio track) into MP4 or WebM. The
//! processes are driven with the `ffmpeg-sidecar` crate (its automatic download is off:
//! FFmpeg must be installed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::iter::FfmpegIterator;
use image::RgbImage;

use crate::error::{Error, Result};
use crate::media::frames::{FrameSink, FrameSource};

/// What to do when FFmpeg is missing.
pub const INSTALL_HINT: &str = "video needs FFmpeg: install it (Debian/Ubuntu: `sudo apt install ffmpeg`, \
     Fedora: `sudo dnf install ffmpeg`, macOS: `brew install ffmpeg`, Windows: `winget install ffmpeg`) \
     so that `ffmpeg` and `ffprobe` are on the PATH";

/// A frame rate as FFmpeg writes it, `num/den` frames per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRate {
    /// Numerator.
    pub num: u32,
    /// Denominator (at least 1).
    pub den: u32,
}

impl FrameRate {
    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// A rate close to `fps` (exact for whole numbers and the NTSC rates).
    pub fn from_fps(fps: f64) -> Result<Self> {
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(Error::InvalidParameter(
                "the frame rate must be a number above 0 and at most 1000".into(),
            ));
        }
        let den = if (fps - fps.round()).abs() < 1e-9 {
            1
        } else {
            1000
        };
        Ok(FrameRate {
            num: (fps * den as f64).round() as u32,
            den,
        })
    }

    fn parse(text: &str) -> Option<Self> {
        let (num, den) = text.split_once('/').unwrap_or((text, "1"));
        let rate = FrameRate {
            num: num.trim().parse().ok()?,
            den: den.trim().parse().ok()?,
        };
        (rate.num > 0 && rate.den > 0).then_some(rate)
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What `ffprobe` says about a video file.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Width of the frames as they are shown (after the file's rotation).
    pub width: u32,
    /// Height of the frames as they are shown.
    pub height: u32,
    /// The video stream's frame rate.
    pub frame_rate: FrameRate,
    /// Number of frames, when the container says (otherwise estimated from the duration).
    pub frames: Option<u64>,
    /// Duration in seconds, when known.
    pub duration: Option<f64>,
    /// Rotation in degrees the player applies (frames are decoded upright).
    pub rotation: i32,
    /// The codec of the first audio stream, if there is one.
    pub audio_codec: Option<String>,
    /// The container's metadata tags, keys in lower case.
    pub tags: BTreeMap<String, String>,
}

impl VideoInfo {
    /// The number of frames in `segment`, from [`VideoInfo::frame_estimate`].
    pub fn frames_in(&self, segment: &Segment) -> Option<usize> {
        let fps = self.frame_rate.fps();
        self.frame_estimate().map(|total| {
            let left = (total as f64 - segment.start * fps).max(0.0);
            segment
                .duration
                .map_or(left, |d| left.min((d * fps).round())) as usize
        })
    }

    /// The number of frames, or an estimate from the duration.
    pub fn frame_estimate(&self) -> Option<u64> {
        self.frames.or_else(|| {
            self.duration
                .map(|d| (d * self.frame_rate.fps()).round() as u64)
        })
    }
}

/// Checks that `ffmpeg` and `ffprobe` can be run.
pub fn check_installed() -> Result<()> {
    for tool in ["ffmpeg", "ffprobe"] {
        let status = Command::new(tool_path(tool))
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            return Err(missing(tool));
        }
    }
    Ok(())
}

/// Why `tool` could not be started: not installed (with what to install), or `bad(reason)`.
fn not_started(tool: &str, error: std::io::Error, bad: impl FnOnce(String) -> Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::NotFound => missing(tool),
        _ => bad(error.to_string()),
    }
}

fn missing(tool: &str) -> Error {
    Error::MissingTool {
        tool: tool.to_string(),
        hint: INSTALL_HINT.to_string(),
    }
}

/// `ffmpeg` or `ffprobe`: next to the executable if there is one there, else from the PATH.
fn tool_path(tool: &str) -> PathBuf {
    match tool {
        "ffprobe" => ffmpeg_sidecar::ffprobe::ffprobe_path(),
        _ => ffmpeg_sidecar::paths::ffmpeg_path(),
    }
}

/// What `ffprobe` says of the file at `path` (its streams and container), as JSON; `bad`
/// makes the error when there is no such file or ffprobe cannot read it.
fn ffprobe_json(path: &Path, bad: impl Fn(String) -> Error) -> Result<serde_json::Value> {
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let output = Command::new(tool_path("ffprobe"))
        .args(["-v", "error", "-print_format", "json"])
        .args(["-show_streams", "-show_format"])
        .arg(path)
        .output()
        .map_err(|e| not_started("ffprobe", e, &bad))?;
    if !output.status.success() {
        return Err(bad(last_line(&String::from_utf8_lossy(&output.stderr))
            .unwrap_or_else(|| "ffprobe cannot read it".into())));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| bad(format!("unreadable ffprobe output: {e}")))
}

/// Describes the video file at `path`; an error if it is not a video ffmpeg can read.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let bad = |reason: String| Error::VideoRead {
        path: path.to_path_buf(),
        reason,
    };
    let json = ffprobe_json(path, bad)?;
    let container = json["format"]["format_name"].as_str().unwrap_or_default();
    if container.starts_with("image2") || container.ends_with("_pipe") {
        return Err(bad(
            "it is a still image, not a video (dream it with `deepdream dream`)".into(),
        ));
    }
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| {
            s["codec_type"] == "video" && s["disposition"]["attached_pic"].as_i64() != Some(1)
        })
        .ok_or_else(|| bad("it has no video stream".into()))?;
    let number = |v: &serde_json::Value| -> Option<f64> {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let (coded_w, coded_h) = match (video["width"].as_u64(), video["height"].as_u64()) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w as u32, h as u32),
        _ => return Err(bad("its video stream has no frame size".into())),
    };
    let frame_rate = ["r_frame_rate", "avg_frame_rate"]
        .iter()
        .find_map(|key| video[*key].as_str().and_then(FrameRate::parse))
        .ok_or_else(|| bad("its video stream has no frame rate".into()))?;
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|d| number(&d["rotation"])))
        .or_else(|| number(&video["tags"]["rotate"]).map(|r| -r))
        .unwrap_or(0.0)
        .round() as i32;
    let (width, height) = if rotation.rem_euclid(180) == 90 {
        (coded_h, coded_w)
    } else {
        (coded_w, coded_h)
    };
    let frames = number(&video["nb_frames"]).map(|n| n as u64);
    if frames == Some(0) {
        return Err(bad("it has no frames".into()));
    }
    let duration = number(&video["duration"]).or_else(|| number(&json["format"]["duration"]));
    let audio_codec = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .map(|s| s["codec_name"].as_str().unwrap_or("unknown").to_string());
    let tags = json["format"]["tags"]
        .as_object()
        .map(|tags| {
            tags.iter()
                .filter_map(|(k, v)| Some((k.to_lowercase(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(VideoInfo {
        width,
        height,
        frame_rate,
        frames,
        duration,
        rotation,
        audio_codec,
        tags,
    })
}

/// What `ffprobe` says about the sound of a file (a sound file or a video).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioInfo {
    /// The codec of its first audio stream.
    pub codec: String,
    /// Its duration in seconds, when known.
    pub duration: Option<f64>,
}

/// Describes the sound of the file at `path`; an error if it has none FFmpeg can read.
pub fn probe_audio(path: &Path) -> Result<AudioInfo> {
    let bad = |reason: String| Error::AudioRead {
        path: path.to_path_buf(),
        reason,
    };
    let json = ffprobe_json(path, bad)?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .ok_or_else(|| bad("it has no sound".into()))?;
    let number = |v: &serde_json::Value| -> Option<f64> {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    Ok(AudioInfo {
        codec: audio["codec_name"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        duration: number(&audio["duration"]).or_else(|| number(&json["format"]["duration"])),
    })
}

/// The sound of `segment` of the file at `path`, mixed down to one channel at
/// `sample_rate` samples a second.
pub fn decode_audio(path: &Path, segment: Segment, sample_rate: u32) -> Result<Vec<f32>> {
    let bad = |reason: String| Error::AudioRead {
        path: path.to_path_buf(),
        reason,
    };
    let output = Command::new(tool_path("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(segment.input_args())
        .arg("-i")
        .arg(path)
        .args([
            "-vn",
            "-ac",
            "1",
            "-ar",
            &sample_rate.to_string(),
            "-f",
            "f32le",
            "-",
        ])
        .output()
        .map_err(|e| not_started("ffmpeg", e, bad))?;
    if !output.status.success() {
        return Err(bad(format!(
            "ffmpeg cannot decode it: {}",
            last_line(&String::from_utf8_lossy(&output.stderr)).unwrap_or_default()
        )));
    }
    Ok(output
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Counts the frames of the video at `path` exactly, by reading (not decoding) every packet
/// of its video stream: fast, and right where the header's count is missing or wrong.
pub fn count_frames(path: &Path) -> Result<usize> {
    let bad = |reason: String| Error::VideoRead {
        path: path.to_path_buf(),
        reason,
    };
    let output = Command::new(tool_path("ffprobe"))
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .map_err(|e| not_started("ffprobe", e, bad))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().trim_end_matches(',').parse() {
        Ok(count) if output.status.success() => Ok(count),
        _ => Err(bad(last_line(&String::from_utf8_lossy(&output.stderr))
            .unwrap_or_else(|| "ffprobe cannot count its frames".into()))),
    }
}

/// The last non-empty line of FFmpeg's messages.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

/// A part of a video: from `start` seconds, for `duration` seconds (to the end when `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Segment {
    /// Start, in seconds from the beginning.
    pub start: f64,
    /// Length in seconds, or the rest of the video.
    pub duration: Option<f64>,
}

impl Segment {
    /// The `count` frames from frame `first` (from 0) of a video at `frame_rate`: from half a
    /// frame before the first to half a frame before the one after the last, so rounding
    /// cannot gain or lose a frame at either end.
    pub fn frames(first: usize, count: usize, frame_rate: FrameRate) -> Self {
        let fps = frame_rate.fps();
        let start = ((first as f64 - 0.5) / fps).max(0.0);
        let end = (first as f64 + count as f64 - 0.5) / fps;
        Segment {
            start,
            duration: Some(end - start),
        }
    }

    fn input_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.start > 0.0 {
            args.extend(["-ss".to_string(), format!("{:.6}", self.start)]);
        }
        if let Some(duration) = self.duration {
            args.extend(["-t".to_string(), format!("{duration:.6}")]);
        }
        args
    }
}

/// Joins the first audio track of each `(file, segment)` in turn into one WAV file `into`.
pub fn join_audio(pieces: &[(&Path, Segment)], into: &Path) -> Result<()> {
    let bad = |reason: String| Error::VideoWrite {
        path: into.to_path_buf(),
        reason,
    };
    let mut command = Command::new(tool_path("ffmpeg"));
    command.args(["-hide_banner", "-loglevel", "error", "-y"]);
    let mut filter = String::new();
    for (k, (path, segment)) in pieces.iter().enumerate() {
        command.arg("-i").arg(path);
        let end = segment
            .duration
            .map_or(String::new(), |d| format!(":end={:.6}", segment.start + d));
        filter.push_str(&format!(
            "[{k}:a:0]atrim=start={:.6}{end},asetpts=PTS-STARTPTS[a{k}];",
            segment.start
        ));
    }
    for k in 0..pieces.len() {
        filter.push_str(&format!("[a{k}]"));
    }
    filter.push_str(&format!("concat=n={}:v=0:a=1[out]", pieces.len()));
    let output = command
        .args(["-filter_complex", &filter, "-map", "[out]"])
        .args(["-c:a", "pcm_s16le", "-f", "wav"])
        .arg(into)
        .output()
        .map_err(|e| not_started("ffmpeg", e, bad))?;
    if !output.status.success() {
        return Err(bad(format!(
            "ffmpeg cannot join the sound: {}",
            last_line(&String::from_utf8_lossy(&output.stderr)).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Decodes a video's frames, upright, as RGB images.
pub struct VideoReader {
    path: PathBuf,
    events: FfmpegIterator,
    child: FfmpegChild,
    last_error: Option<String>,
    finished: bool,
}

impl VideoReader {
    /// Starts decoding `segment` of the video at `path`.
    pub fn open(path: &Path, segment: Segment) -> Result<Self> {
        Self::open_as(path, segment, None, None)
    }

    /// Starts decoding the camera or other device `path` through FFmpeg's input `format`
    /// (`v4l2` on Linux, `avfoundation` on macOS, `dshow` on Windows).
    pub fn open_device(path: &Path, format: &str) -> Result<Self> {
        Self::open_as(path, Segment::default(), Some(format), None)
    }

    /// Starts decoding the network stream `url` (anything FFmpeg reads: udp, srt, rtsp,
    /// http, …); reading fails when no data comes for `timeout`.
    pub fn open_stream(url: &str, timeout: Duration) -> Result<Self> {
        Self::open_as(Path::new(url), Segment::default(), None, Some(timeout))
    }

    fn open_as(
        path: &Path,
        segment: Segment,
        format: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Self> {
        let mut command = FfmpegCommand::new_with_path(tool_path("ffmpeg"));
        command.hide_banner();
        if let Some(format) = format {
            command.format(format);
        }
        if let Some(timeout) = timeout {
            // Microseconds, for the network protocols (udp, tcp, srt, rtsp, http).
            command.args(["-timeout", &timeout.as_micros().to_string()]);
        }
        command
            .args(segment.input_args())
            .input(path)
            .args(["-map", "0:v:0", "-an", "-sn"])
            // Each decoded frame once: the default constant-rate output repeats the first
            // frame after a seek that lands between frames.
            .args(["-fps_mode", "passthrough"])
            .rawvideo();
        let mut child = command.spawn().map_err(|e| {
            not_started("ffmpeg", e, |reason| Error::VideoRead {
                path: path.to_path_buf(),
                reason,
            })
        })?;
        let events = child.iter().map_err(|e| Error::VideoRead {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(VideoReader {
            path: path.to_path_buf(),
            events,
            child,
            last_error: None,
            finished: false,
        })
    }

    /// The next frame, or `None` at the end; an error if ffmpeg fails on the way.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        if self.finished {
            return Ok(None);
        }
        for event in self.events.by_ref() {
            match event {
                FfmpegEvent::OutputFrame(frame) => {
                    return RgbImage::from_raw(frame.width, frame.height, frame.data)
                        .map(Some)
                        .ok_or_else(|| Error::VideoRead {
                            path: self.path.clone(),
                            reason: "ffmpeg sent a frame of the wrong size".into(),
                        });
                }
                FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, message)
                | FfmpegEvent::Error(message)
                    if !message.trim().is_empty() =>
                {
                    self.last_error = Some(message.trim().to_string());
                }
                _ => {}
            }
        }
        self.finished = true;
        let status = self.child.wait().map_err(|e| Error::VideoRead {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if !status.success() {
            return Err(Error::VideoRead {
                path: self.path.clone(),
                reason: format!(
                    "ffmpeg failed: {}",
                    self.last_error
                        .clone()
                        .unwrap_or_else(|| status.to_string())
                ),
            });
        }
        Ok(None)
    }
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The containers video can be written to, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFormat {
    /// `.mp4`, `.m4v`, `.mov`, `.mkv`: H.264 in yuv420p.
    H264,
    /// `.webm`: VP9 in yuv420p.
    WebM,
}

impl VideoFormat {
    /// The format for `path`'s extension, or an error naming the ones that hold video.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = crate::media::image_io::extension(path);
        match ext.as_str() {
            "mp4" | "m4v" | "mov" | "mkv" => Ok(Self::H264),
            "webm" => Ok(Self::WebM),
            _ => Err(Error::VideoWrite {
                path: path.to_path_buf(),
                reason: format!(
                    "'.{ext}' cannot hold video (use .mp4, .mov, .mkv or .webm{})",
                    if ext == "gif" {
                        ", or `deepdream zoom` for GIF"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }

    /// Audio codecs the container takes as they are (others are re-encoded).
    fn copies_audio(&self, codec: &str) -> bool {
        match self {
            Self::H264 => matches!(
                codec,
                "aac" | "mp3" | "alac" | "ac3" | "eac3" | "opus" | "flac"
            ),
            Self::WebM => matches!(codec, "opus" | "vorbis"),
        }
    }
}

/// Where the output's audio comes from: the source video's first audio track, cut to the
/// same segment as the frames.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSource {
    /// The video file holding the audio.
    pub path: PathBuf,
    /// Its codec, as [`VideoInfo::audio_codec`] says.
    pub codec: String,
    /// The part of it to use.
    pub segment: Segment,
}

/// The FFmpeg output format for a live target: `mpegts` for `udp://`, `srt://` and
/// `tcp://`, `flv` for `rtmp://`, `rtsp` for `rtsp://`, `v4l2` for a video device
/// (`/dev/videoN`); an error for anything else.
pub fn stream_format(target: &str) -> Result<&'static str> {
    if target.starts_with("/dev/video") {
        return Ok("v4l2");
    }
    let scheme = target
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("udp" | "srt" | "tcp") => Ok("mpegts"),
        Some("rtmp") => Ok("flv"),
        Some("rtsp") => Ok("rtsp"),
        _ => Err(Error::VideoWrite {
            path: target.into(),
            reason: "not a stream FFmpeg writes: use udp://, srt://, tcp://, rtmp://, rtsp:// or /dev/videoN".into(),
        }),
    }
}

/// The filter that pads odd sides to even ones with a repeated edge (yuv420p needs them).
const PAD_TO_EVEN: &str =
    "pad=ceil(iw/2)*2:ceil(ih/2)*2:0:0,fillborders=left=0:right=1:bottom=1:mode=smear";

/// An FFmpeg command that reads `width`x`height` RGB frames at `frame_rate` from its
/// standard input.
fn raw_frames_in(width: u32, height: u32, frame_rate: FrameRate) -> FfmpegCommand {
    let mut command = FfmpegCommand::new_with_path(tool_path("ffmpeg"));
    command
        .hide_banner()
        .args(["-loglevel", "error", "-y"])
        .format("rawvideo")
        .pix_fmt("rgb24")
        .size(width, height)
        .args(["-framerate", &frame_rate.to_string()])
        .input("-");
    command
}

/// Adds `audio` to `command` as its second input, cut to last exactly as long as `frames`
/// frames at `frame_rate`, beside the first input's video; its codec is copied where
/// `format`'s container takes it, and re-encoded otherwise.
fn add_audio(
    command: &mut FfmpegCommand,
    audio: &AudioSource,
    format: VideoFormat,
    frames: u64,
    frame_rate: FrameRate,
) {
    let segment = Segment {
        start: audio.segment.start,
        duration: Some(frames as f64 / frame_rate.fps()),
    };
    command
        .args(segment.input_args())
        .input(&audio.path)
        .args(["-map", "0:v:0", "-map", "1:a:0"]);
    if format.copies_audio(&audio.codec) {
        command.codec_audio("copy");
    } else {
        match format {
            VideoFormat::H264 => command.codec_audio("aac").args(["-b:a", "192k"]),
            VideoFormat::WebM => command.codec_audio("libopus").args(["-b:a", "128k"]),
        };
    }
}

/// Adds the container's settings for `format` (MP4's index at the front, its metadata
/// tags kept) and the metadata `tags` to `command`.
fn add_container_settings(command: &mut FfmpegCommand, format: VideoFormat, tags: &[(&str, &str)]) {
    if format == VideoFormat::H264 {
        command.args(["-movflags", "+faststart+use_metadata_tags"]);
    }
    for (key, value) in tags {
        command.args(["-metadata", &format!("{key}={value}")]);
    }
}

/// A temporary file beside the video `path`, with its extension (which tells FFmpeg the
/// container), to be renamed over `path` once complete.
fn temp_video_beside(path: &Path) -> Result<tempfile::TempPath> {
    let suffix = format!(
        ".{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or("mp4")
    );
    crate::media::image_io::temp_file_beside(path, &suffix)
        .map(tempfile::NamedTempFile::into_temp_path)
        .map_err(|e| Error::VideoWrite {
            path: path.to_path_buf(),
            reason: format!("cannot create a file beside it: {e}"),
        })
}

/// Writes `video` (a file [`VideoWriter`] wrote, `frames` frames at `frame_rate`, without
/// sound) to `path` with `audio` and the metadata `tags`: its video is copied, not encoded
/// again, so the result is what [`VideoWriter::create_tagged`] would have written from the
/// same frames. `path` is written through a temporary file and appears only when complete.
pub fn mux(
    video: &Path,
    path: &Path,
    frames: u64,
    frame_rate: FrameRate,
    audio: Option<&AudioSource>,
    tags: &[(&str, &str)],
) -> Result<()> {
    let format = VideoFormat::from_path(path)?;
    let bad = |reason: String| Error::VideoWrite {
        path: path.to_path_buf(),
        reason,
    };
    let temp = temp_video_beside(path)?;
    let mut command = FfmpegCommand::new_with_path(tool_path("ffmpeg"));
    command
        .hide_banner()
        .args(["-loglevel", "error", "-y"])
        .input(video);
    match audio {
        Some(audio) => add_audio(&mut command, audio, format, frames, frame_rate),
        None => {
            command.args(["-map", "0:v:0"]);
        }
    }
    command.codec_video("copy");
    add_container_settings(&mut command, format, tags);
    command.output(temp.as_os_str());
    let output = command
        .as_inner_mut()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_started("ffmpeg", e, bad))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr)
            .replace(&temp.display().to_string(), &path.display().to_string());
        return Err(bad(format!(
            "ffmpeg failed: {}",
            last_line(&text).unwrap_or_else(|| "no message".into())
        )));
    }
    temp.persist(path).map_err(|e| bad(e.error.to_string()))
}

/// Encodes RGB frames into a video file (written to a temporary file, renamed into place by
/// [`FrameSink::finish`]).
pub struct VideoWriter {
    path: PathBuf,
    temp: Option<tempfile::TempPath>,
    child: FfmpegChild,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    size: (u32, u32),
}

impl VideoWriter {
    /// Starts an encoder for `width`x`height` frames at `frame_rate` into `path` (MP4 or WebM
    /// by extension), with `audio` muxed in (copied where the container takes its codec).
    /// Odd sizes are padded by one repeated row or column (yuv420p needs even sizes).
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        frame_rate: FrameRate,
        frames: u64,
        audio: Option<AudioSource>,
    ) -> Result<Self> {
        Self::create_tagged(path, width, height, frame_rate, frames, audio, &[])
    }

    /// [`VideoWriter::create`] with metadata `tags` (key, value) in the container, which
    /// [`probe`] reads back in [`VideoInfo::tags`].
    pub fn create_tagged(
        path: &Path,
        width: u32,
        height: u32,
        frame_rate: FrameRate,
        frames: u64,
        audio: Option<AudioSource>,
        tags: &[(&str, &str)],
    ) -> Result<Self> {
        let size = (width, height);
        Self::create_with(path, size, frame_rate, frames, audio, tags, false)
    }

    /// [`VideoWriter::create`] for a recording made while frames are dreamed live: H.264's
    /// `veryfast` preset on one thread, so the encoder takes little from the dreaming.
    pub fn create_live(
        path: &Path,
        width: u32,
        height: u32,
        frame_rate: FrameRate,
    ) -> Result<Self> {
        Self::create_with(path, (width, height), frame_rate, 0, None, &[], true)
    }

    /// The encoder of [`VideoWriter::create_tagged`], or of [`VideoWriter::create_live`]
    /// when `live`.
    fn create_with(
        path: &Path,
        (width, height): (u32, u32),
        frame_rate: FrameRate,
        frames: u64,
        audio: Option<AudioSource>,
        tags: &[(&str, &str)],
        live: bool,
    ) -> Result<Self> {
        let format = VideoFormat::from_path(path)?;
        let temp = temp_video_beside(path)?;
        let mut command = raw_frames_in(width, height, frame_rate);
        if let Some(audio) = &audio {
            add_audio(&mut command, audio, format, frames, frame_rate);
        }
        if width % 2 == 1 || height % 2 == 1 {
            command.filter(PAD_TO_EVEN);
        }
        match format {
            VideoFormat::H264 => command
                .codec_video("libx264")
                .crf(18)
                .preset(if live { "veryfast" } else { "medium" })
                .args(if live {
                    &["-threads", "1"][..]
                } else {
                    &[][..]
                }),
            VideoFormat::WebM => command
                .codec_video("libvpx-vp9")
                .crf(30)
                .args(["-b:v", "0", "-row-mt", "1"]),
        };
        add_container_settings(&mut command, format, tags);
        command.pix_fmt("yuv420p").output(temp.as_os_str());
        Self::spawn(command, path.to_path_buf(), Some(temp), (width, height))
    }

    /// Starts the encoder `command` (frames on its standard input) writing `path`, through
    /// the temporary file `temp` when there is one.
    fn spawn(
        mut command: FfmpegCommand,
        path: PathBuf,
        temp: Option<tempfile::TempPath>,
        size: (u32, u32),
    ) -> Result<Self> {
        let mut child = command.spawn().map_err(|e| {
            not_started("ffmpeg", e, |reason| Error::VideoWrite {
                path: path.clone(),
                reason,
            })
        })?;
        let stdin = child.take_stdin();
        let stderr = child.take_stderr().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        drop(child.take_stdout());
        Ok(VideoWriter {
            path,
            temp,
            child,
            stdin,
            stderr,
            size,
        })
    }

    /// Starts an encoder that sends `width`x`height` frames at `frame_rate`, as they come,
    /// to `target`: a stream FFmpeg writes (`udp://` and `srt://` as MPEG-TS, `rtmp://` as
    /// FLV, `rtsp://`), in low-latency H.264, or a video device (`/dev/videoN`, such as a
    /// v4l2loopback virtual camera), as raw YUV.
    pub fn stream(target: &str, width: u32, height: u32, frame_rate: FrameRate) -> Result<Self> {
        let mut command = raw_frames_in(width, height, frame_rate);
        if width % 2 == 1 || height % 2 == 1 {
            command.filter(PAD_TO_EVEN);
        }
        match stream_format(target)? {
            "v4l2" => command.pix_fmt("yuv420p").format("v4l2"),
            format => command
                .codec_video("libx264")
                .preset("ultrafast")
                .args(["-tune", "zerolatency", "-g", "25"])
                .pix_fmt("yuv420p")
                .format(format),
        };
        command.output(target);
        Self::spawn(command, PathBuf::from(target), None, (width, height))
    }

    fn failure(&mut self) -> Error {
        drop(self.stdin.take());
        let _ = self.child.wait();
        let text = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let mut message = last_line(&text).unwrap_or_else(|| "no message".into());
        if let Some(temp) = &self.temp {
            // FFmpeg names the temporary file it writes; the user knows the output's name.
            message = message.replace(
                &temp.display().to_string(),
                &self.path.display().to_string(),
            );
        }
        Error::VideoWrite {
            path: self.path.clone(),
            reason: format!("ffmpeg failed: {message}"),
        }
    }
}

impl FrameSink for VideoWriter {
    fn write(&mut self, frame: &RgbImage) -> Result<()> {
        if frame.dimensions() != self.size {
            return Err(Error::VideoWrite {
                path: self.path.clone(),
                reason: format!(
                    "frame of {}x{} in a {}x{} video",
                    frame.width(),
                    frame.height(),
                    self.size.0,
                    self.size.1
                ),
            });
        }
        let stdin = self.stdin.as_mut().expect("open until finished");
        if stdin.write_all(frame.as_raw()).is_err() {
            return Err(self.failure());
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| Error::VideoWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if !status.success() {
            return Err(self.failure());
        }
        // A stream has no file to move into place.
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        temp.persist(&self.path).map_err(|e| Error::VideoWrite {
            path: self.path.clone(),
            reason: e.error.to_string(),
        })
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if self.temp.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl FrameSource for VideoReader {
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        VideoReader::next_frame(self)
    }
}
