//! One video dreamed by several workers that share nothing but their number: each dreams one
//! part ([`plan_part`]), and [`join_parts`] puts the parts back together. The video is split
//! near even points; where a scene cut lies close to one, the split moves to the cut, and the
//! part after it starts afresh exactly as the whole video's dream would there (the seam is
//! invisible by construction). Elsewhere a part starts a few frames early (its lead-in), and
//! the join cross-fades those frames with the end of the part before. Each part records its
//! place in the video in a metadata tag ([`PART_TAG`]), so the join needs only the files.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::{GrayImage, RgbImage};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jobs::shard::Shard;
use crate::media::ffmpeg::{self, AudioSource, FrameRate, Segment, VideoInfo, VideoReader};
use crate::media::flow::{FlowMethod, luma};
use crate::media::frames::FrameSink;
use crate::modes::video::{Motion, VideoParams};

/// The metadata key under which a part's [`VideoPart::tag`] is stored in its file.
pub const PART_TAG: &str = "deepdream_part";

/// One worker's part of a video: frames `first..first + frames` of the source's `total`,
/// the first `lead` of which overlap the previous part and are cross-faded with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoPart {
    /// The part's number, from 0.
    pub index: usize,
    /// Number of parts.
    pub count: usize,
    /// The first frame dreamed (its lead-in included), counted from 0 in the source.
    pub first: usize,
    /// Frames at the start that the previous part also dreamed (0 at a scene cut).
    pub lead: usize,
    /// Frames dreamed.
    pub frames: usize,
    /// Frames in the whole source video.
    pub total: usize,
    /// Identifies the source video and the dream settings: the same in every part of a job.
    pub job: String,
}

impl VideoPart {
    /// The frames of the source that this part gives the joined video on its own.
    pub fn owned(&self) -> Range<usize> {
        self.first + self.lead..self.first + self.frames
    }

    /// The part's frames as a time segment of a source at `frame_rate`.
    pub fn segment(&self, frame_rate: FrameRate) -> Segment {
        Segment::frames(self.first, self.frames, frame_rate)
    }

    /// The part as one line of text (see [`VideoPart::parse`]).
    pub fn tag(&self) -> String {
        format!(
            "part={}/{} first={} lead={} frames={} total={} job={}",
            self.index, self.count, self.first, self.lead, self.frames, self.total, self.job
        )
    }

    /// Reads a [`VideoPart::tag`] back; `None` if it is not one or does not add up.
    pub fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        };
        let number = |key: &str| field(key)?.parse::<usize>().ok();
        let (index, count) = field("part")?.split_once('/')?;
        let part = VideoPart {
            index: index.parse().ok()?,
            count: count.parse().ok()?,
            first: number("first")?,
            lead: number("lead")?,
            frames: number("frames")?,
            total: number("total")?,
            job: field("job")?.to_string(),
        };
        let fits = part.index < part.count
            && part.lead < part.frames
            && part.first.checked_add(part.frames)? <= part.total;
        fits.then_some(part)
    }
}

/// How a video is split into parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitParams {
    /// Frames a part starts early, to be cross-faded with the previous part, where it does
    /// not start at a scene cut.
    pub overlap: usize,
    /// How far either side of an even split point a scene cut is looked for, in frames.
    pub search: usize,
}

/// Plans the part `shard` of the `total` frames of the video at `path` (frame rate
/// `frame_rate`): the same plan in every worker, with no coordinator. A scene cut is what
/// [`dream_video`](crate::modes::video::dream_video) takes for one under `video`; looking
/// for cuts decodes `2 * split.search` frames about each of the part's two ends and
/// computes their optical flow.
#[allow(clippy::too_many_arguments)]
pub fn plan_part(
    path: &Path,
    frame_rate: FrameRate,
    total: usize,
    shard: Shard,
    split: &SplitParams,
    video: &VideoParams,
    job: &str,
    device: &Device,
) -> Result<VideoPart> {
    video.validate()?;
    let spacing = total / shard.count;
    if spacing == 0 {
        return Err(Error::InvalidParameter(format!(
            "the video has {total} frames, fewer than its {} parts",
            shard.count
        )));
    }
    // Both limits keep every part at least a third of the even share long, so that split
    // points stay in order and a lead-in never reaches past the previous part's own frames.
    let search = split.search.min(spacing / 3);
    let overlap = split.overlap.min(spacing / 3);
    let boundary = |k: usize| -> Result<(usize, bool)> {
        if k == 0 || k == shard.count {
            return Ok((k * total / shard.count, true));
        }
        let even = (k * total + shard.count / 2) / shard.count;
        let window = even.saturating_sub(search).max(1)..(even + search).min(total - 1) + 1;
        let cuts = scene_cuts(
            path,
            frame_rate,
            window,
            &video.flow,
            video.cut_threshold,
            device,
        )?;
        Ok(cuts
            .into_iter()
            .min_by_key(|&cut| (cut.abs_diff(even), cut))
            .map_or((even, false), |cut| (cut, true)))
    };
    let (start, at_cut) = boundary(shard.index)?;
    let (end, _) = boundary(shard.index + 1)?;
    let lead = if at_cut { 0 } else { overlap.min(start) };
    Ok(VideoPart {
        index: shard.index,
        count: shard.count,
        first: start - lead,
        lead,
        frames: end - (start - lead),
        total,
        job: job.to_string(),
    })
}

/// The frames in `frames` (from 1) where the video at `path` cuts to another scene: the
/// flow from the frame before explains the picture no better than `threshold`. The flow is
/// computed only where the plain grey difference from the frame before reaches half the
/// threshold: following the flow lowers the difference, so calmer pairs are no cuts, and
/// a search over seconds of 1280x720 frames costs seconds instead of minutes.
fn scene_cuts(
    path: &Path,
    frame_rate: FrameRate,
    frames: Range<usize>,
    flow: &FlowMethod,
    threshold: f32,
    device: &Device,
) -> Result<Vec<usize>> {
    let first = frames.start - 1;
    let mut reader = VideoReader::open(path, Segment::frames(first, frames.len() + 1, frame_rate))?;
    // Each frame with its grey levels, computed once for both pairs it belongs to.
    let mut previous = reader.next_frame()?.map(|frame| {
        let grey = luma(&frame);
        (frame, grey)
    });
    let mut cuts = Vec::new();
    for index in frames {
        let Some(current) = reader.next_frame()? else {
            break;
        };
        let grey = luma(&current);
        if let Some((previous, previous_grey)) = &previous
            && plain_difference(previous_grey, &grey) >= threshold / 2.0
            && Motion::residual(previous, &current, flow, device) > threshold
        {
            cuts.push(index);
        }
        previous = Some((current, grey));
    }
    Ok(cuts)
}

/// Where part `shard` of a split dream of `output` is written: `film.mp4` gives
/// `film.part-2-of-8.mp4` (numbers from 0, zero-padded so that names sort in order).
pub fn part_path(output: &Path, shard: Shard) -> PathBuf {
    let width = (shard.count - 1).to_string().len();
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let mut name = format!("{stem}.part-{:0width$}-of-{}", shard.index, shard.count);
    if let Some(extension) = output.extension() {
        name = format!("{name}.{}", extension.to_string_lossy());
    }
    output.with_file_name(name)
}

/// The parts of a split dream of `output` beside it ([`part_path`]'s names, any video
/// extension), sorted by name.
pub fn find_parts(output: &Path) -> Result<Vec<PathBuf>> {
    let folder = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let prefix = format!("{stem}.part-");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix)
                && name.contains("-of-")
                && ffmpeg::VideoFormat::from_path(path).is_ok()
        })
        .collect();
    parts.sort();
    Ok(parts)
}

/// Identifies a split job, alike in every worker: the input video's file name and size and
/// the dream's `settings` (key, value).
pub fn job_id(input: &Path, settings: &[(String, String)]) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(identity(input)?);
    for (key, value) in settings {
        hash.update(format!("{key}={value}\n"));
    }
    Ok(hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A seed every worker derives alike from the input video's file name and size, for a split
/// dream given no seed.
pub fn common_seed(input: &Path) -> Result<u64> {
    let hash = Sha256::digest(identity(input)?);
    Ok(u64::from_le_bytes(hash[..8].try_into().expect("8 bytes")))
}

fn identity(input: &Path) -> Result<String> {
    let size = std::fs::metadata(input)
        .map_err(|e| Error::io(input, e))?
        .len();
    let name = input.file_name().unwrap_or_default().to_string_lossy();
    Ok(format!("{name}\n{size}\n"))
}

/// Mean absolute difference of two pictures' grey levels (0–255).
fn plain_difference(a: &GrayImage, b: &GrayImage) -> f32 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f32 / a.as_raw().len().max(1) as f32
}

/// What [`join_parts`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedVideo {
    /// Frames written.
    pub frames: usize,
    /// Parts joined.
    pub parts: usize,
    /// Seams cross-faded (the others are scene cuts).
    pub cross_faded: usize,
    /// Whether the parts' sound was joined too.
    pub audio: bool,
}

/// Joins the parts of a split video dream (the files, in any order) into `output` (MP4,
/// MOV, MKV or WebM), cross-fading each lead-in with the end of the part before and joining
/// their sound; `progress` sees the frames written so far and the total. An error, naming
/// the file, if a part is missing, repeated, from another job, or does not fit its
/// neighbours.
pub fn join_parts(
    parts: &[PathBuf],
    output: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<JoinedVideo> {
    let parts = read_parts(parts)?;
    let (first, info) = (&parts[0].1, &parts[0].2);
    let has_audio = |(_, _, info): &(PathBuf, VideoPart, VideoInfo)| info.audio_codec.is_some();
    let audio = parts.iter().any(has_audio);
    let audio_file = if audio {
        Some(joined_audio(&parts, output)?)
    } else {
        None
    };
    let mut sink = ffmpeg::VideoWriter::create(
        output,
        info.width,
        info.height,
        info.frame_rate,
        first.total as u64,
        audio_file.as_ref().map(|file| AudioSource {
            path: file.to_path_buf(),
            codec: "pcm_s16le".into(),
            segment: Segment::default(),
        }),
    )?;
    let mut pending: VecDeque<RgbImage> = VecDeque::new();
    let mut written = 0;
    for (k, (path, part, _)) in parts.iter().enumerate() {
        let next_lead = parts.get(k + 1).map_or(0, |(_, next, _)| next.lead);
        let mut reader = VideoReader::open(path, Segment::default())?;
        let mut count = 0;
        while let Some(frame) = reader.next_frame()? {
            if count < part.lead {
                let before = pending
                    .pop_front()
                    .ok_or_else(|| mismatch(path, part, count))?;
                let weight = (count + 1) as f32 / (part.lead + 1) as f32;
                sink.write(&cross_fade(&before, &frame, weight))?;
                written += 1;
            } else {
                // The frames the next part's lead-in fades into wait in `pending`.
                pending.push_back(frame);
                while pending.len() > next_lead {
                    sink.write(&pending.pop_front().expect("not empty"))?;
                    written += 1;
                }
            }
            count += 1;
            progress(written, first.total);
        }
        if count != part.frames {
            return Err(mismatch(path, part, count));
        }
    }
    Box::new(sink).finish()?;
    Ok(JoinedVideo {
        frames: written,
        parts: parts.len(),
        cross_faded: parts.iter().filter(|(_, part, _)| part.lead > 0).count(),
        audio,
    })
}

fn mismatch(path: &Path, part: &VideoPart, count: usize) -> Error {
    Error::VideoRead {
        path: path.to_path_buf(),
        reason: format!(
            "it has {count} frames where its tag says {} (was it cut or re-encoded?)",
            part.frames
        ),
    }
}

/// Probes and checks the parts, in order: one of each number, from one job, each starting
/// where the one before ends (less its lead-in), the last ending at the end of the video.
fn read_parts(paths: &[PathBuf]) -> Result<Vec<(PathBuf, VideoPart, VideoInfo)>> {
    if paths.is_empty() {
        return Err(Error::InvalidParameter("no parts to join".into()));
    }
    let mut parts = Vec::new();
    for path in paths {
        let info = ffmpeg::probe(path)?;
        let part = info
            .tags
            .get(PART_TAG)
            .and_then(|tag| VideoPart::parse(tag))
            .ok_or_else(|| Error::VideoRead {
                path: path.clone(),
                reason: "it is not a part of a split video dream (made by `deepdream video --shard I/N`)".into(),
            })?;
        parts.push((path.clone(), part, info));
    }
    parts.sort_by_key(|(_, part, _)| part.index);
    let (first_path, first, first_info) = &parts[0];
    let invalid = |text: String| Err(Error::InvalidParameter(text));
    for (path, part, info) in &parts[1..] {
        if (part.job.as_str(), part.count, part.total)
            != (first.job.as_str(), first.count, first.total)
        {
            return invalid(format!(
                "{} and {} are parts of different jobs (another video or other settings)",
                first_path.display(),
                path.display()
            ));
        }
        if (info.width, info.height, info.frame_rate)
            != (first_info.width, first_info.height, first_info.frame_rate)
        {
            return invalid(format!(
                "{} is {}x{} at {} fps, {} is {}x{} at {} fps",
                first_path.display(),
                first_info.width,
                first_info.height,
                first_info.frame_rate,
                path.display(),
                info.width,
                info.height,
                info.frame_rate
            ));
        }
    }
    for (k, pair) in parts.windows(2).enumerate() {
        let ((a_path, a, _), (b_path, b, _)) = (&pair[0], &pair[1]);
        if a.index == b.index {
            return invalid(format!(
                "{} and {} are both part {}/{}",
                a_path.display(),
                b_path.display(),
                a.index,
                a.count
            ));
        }
        if b.index != k + 1 {
            break;
        }
        if b.owned().start != a.owned().end || b.lead > a.owned().len() {
            return invalid(format!(
                "{} (frames {:?}) does not continue {} (frames {:?}): the workers split the video differently; dream the parts again with the same settings",
                b_path.display(),
                b.first..b.first + b.frames,
                a_path.display(),
                a.first..a.first + a.frames
            ));
        }
    }
    let missing: Vec<String> = (0..first.count)
        .filter(|k| !parts.iter().any(|(_, part, _)| part.index == *k))
        .map(|k| format!("{k}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        return invalid(format!(
            "part {} of the video is missing (`deepdream video --shard {}`)",
            missing.join(", "),
            missing[0]
        ));
    }
    if first.first != 0
        || parts
            .last()
            .is_some_and(|(_, p, _)| p.owned().end != p.total)
    {
        return invalid("the parts do not cover the whole video".into());
    }
    Ok(parts)
}

/// The parts' sound, each from the end of its lead-in, joined into one WAV file beside
/// `output` (deleted when dropped).
fn joined_audio(
    parts: &[(PathBuf, VideoPart, VideoInfo)],
    output: &Path,
) -> Result<tempfile::TempPath> {
    let bad = |reason: String| Error::VideoWrite {
        path: output.to_path_buf(),
        reason,
    };
    if let Some((path, _, _)) = parts.iter().find(|(_, _, info)| info.audio_codec.is_none()) {
        return Err(Error::VideoRead {
            path: path.clone(),
            reason: "it has no sound where other parts have".into(),
        });
    }
    let file = crate::media::image_io::temp_file_beside(output, ".wav")
        .map_err(|e| bad(format!("cannot create a file beside it: {e}")))?
        .into_temp_path();
    let pieces: Vec<(&Path, Segment)> = parts
        .iter()
        .map(|(path, part, info)| {
            let fps = info.frame_rate.fps();
            let start = part.lead as f64 / fps;
            let duration = (part.frames - part.lead) as f64 / fps;
            (
                path.as_path(),
                Segment {
                    start,
                    duration: Some(duration),
                },
            )
        })
        .collect();
    ffmpeg::join_audio(&pieces, &file).map_err(|e| match e {
        Error::VideoWrite { reason, .. } => bad(reason),
        other => other,
    })?;
    Ok(file)
}

/// `(1 - weight) * before + weight * after`, per channel, rounded.
fn cross_fade(before: &RgbImage, after: &RgbImage, weight: f32) -> RgbImage {
    let mut out = after.clone();
    for (o, (&a, &b)) in out.iter_mut().zip(before.iter().zip(after.iter())) {
        *o = ((1.0 - weight) * a as f32 + weight * b as f32).round() as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_reads_back_and_nonsense_does_not() {
        let part = VideoPart {
            index: 1,
            count: 3,
            first: 38,
            lead: 2,
            frames: 42,
            total: 120,
            job: "0123abcd".into(),
        };
        assert_eq!(VideoPart::parse(&part.tag()), Some(part.clone()));
        assert_eq!(part.owned(), 40..80);
        for bad in [
            "",
            "part=3/3 first=0 lead=0 frames=1 total=1 job=x",
            "part=0/1 first=0 lead=2 frames=2 total=9 job=x",
            "part=0/1 first=5 lead=0 frames=5 total=9 job=x",
            "part=0/1 first=18446744073709551615 lead=0 frames=5 total=9 job=x",
            "part=0/1 first=0 lead=0 frames=5 total=9",
            "part=a/1 first=0 lead=0 frames=5 total=9 job=x",
        ] {
            assert_eq!(VideoPart::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cross_fade_goes_from_one_picture_to_the_other() {
        let black = RgbImage::new(2, 1);
        let white = RgbImage::from_pixel(2, 1, image::Rgb([255, 255, 255]));
        assert_eq!(cross_fade(&black, &white, 0.0), black);
        assert_eq!(cross_fade(&black, &white, 1.0), white);
        assert_eq!(cross_fade(&black, &white, 0.5).as_raw(), &[128; 6]);
    }

    #[test]
    fn part_names_sort_in_order() {
        let shard = |index, count| Shard { index, count };
        assert_eq!(
            part_path(Path::new("out/film.mp4"), shard(3, 12)),
            Path::new("out/film.part-03-of-12.mp4")
        );
        assert_eq!(
            part_path(Path::new("film.webm"), shard(0, 2)),
            Path::new("film.part-0-of-2.webm")
        );
    }
}
