//! Animations as library jobs (`jobs::animation`): a zoom stopped after its first frame
//! resumes with the seed it started with and ends in the same frames as a run that was never
//! stopped; the work folder goes once the file is written, and a job that finished no frame
//! leaves none behind; a video's frames are encoded as they are dreamed, a resumed job's
//! too, and writing it adds the sound.

mod common;

use std::path::{Path, PathBuf};

use deepdream::jobs::animation::{AnimationJob, AnimationSettings, VideoRange};
use deepdream::media::ffmpeg::{self, FrameRate, Segment};
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::video::VideoParams;
use deepdream::modes::zoom::ZoomParams;
use deepdream::{Device, DreamParams, Error, Network};

fn zoom_job(
    network: &dyn Network,
    output: &Path,
    seed: u64,
    seed_chosen: bool,
    frames_dir: PathBuf,
) -> AnimationJob {
    let dream = DreamParams {
        octaves: 2,
        iterations: 2,
        seed,
        ..DreamParams::default()
    };
    let params = ZoomParams {
        frames: 3,
        next: FrameSettings {
            octaves: 1,
            iterations: 2,
        },
        ..ZoomParams::default()
    };
    let settings = AnimationSettings {
        seed_chosen,
        frames_dir: Some(frames_dir),
        ..AnimationSettings::new(dream, output.to_path_buf())
    };
    let image = common::photo_crop(100, 40, 96);
    let rate = FrameRate::from_fps(10.0).unwrap();
    AnimationJob::zoom(network, None, image, params, rate, settings).unwrap()
}

fn frames_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| image::open(p).unwrap().to_rgb8().into_raw())
        .collect()
}

#[test]
fn an_interrupted_zoom_job_resumes_with_its_seed_and_ends_in_the_same_frames() {
    let device = Device::flex();
    let network = common::model("efficientnet-lite0", &device);
    let network = network.as_ref();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let mut whole = zoom_job(network, &d.join("whole.gif"), 7, true, d.join("whole"));
    let frames = whole.dream(network, &device, |_| Ok(())).unwrap();
    let written = whole.write(frames).unwrap();
    assert_eq!((written.frames, written.width, written.height), (3, 96, 96));
    assert!(!written.padded, "a GIF is never padded");
    assert!(
        !written.encoded_while_dreaming,
        "a GIF is made from all its frames at once"
    );
    assert!(!d.join("whole.gif.deepdream-work").exists());

    // Stopped once the first frame is finished.
    let output = d.join("stopped.gif");
    let mut stopped = zoom_job(network, &output, 7, true, d.join("stopped"));
    let error = stopped
        .dream(network, &device, |s| match s.progress.step {
            None => Err(Error::Cancelled),
            Some(_) => Ok(()),
        })
        .unwrap_err();
    assert!(matches!(error, Error::Cancelled), "{error}");
    let work = stopped.work_dir().to_path_buf();
    assert!(work.join("frame_000000.png").is_file());
    assert!(!output.exists());

    // Run again without choosing a seed: the recorded one is taken, frame 0 is reused.
    let mut resumed = zoom_job(network, &output, 12345, false, d.join("stopped"));
    assert_eq!(resumed.seed(), 7);
    let mut reused = Vec::new();
    let frames = resumed
        .dream(network, &device, |s| {
            if s.progress.step.is_none() && s.progress.resumed {
                reused.push(s.progress.frame);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(reused, vec![0]);
    resumed.write(frames).unwrap();
    assert!(
        !work.exists(),
        "the work folder goes once the file is written"
    );
    let gif = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&output).unwrap(),
    ))
    .unwrap();
    assert_eq!(image::AnimationDecoder::into_frames(gif).count(), 3);
    assert_eq!(frames_in(&d.join("stopped")), frames_in(&d.join("whole")));
}

#[test]
fn a_video_job_that_dreams_no_frame_leaves_no_work_folder() {
    if ffmpeg::check_installed().is_err() {
        eprintln!("skipped: FFmpeg is not installed");
        return;
    }
    let device = Device::flex();
    let network = common::model("efficientnet-lite0", &device);
    let dir = tempfile::tempdir().unwrap();
    let video = common::fixture("carphone.mp4");
    let info = ffmpeg::probe(&video).unwrap();
    let output = dir.path().join("dream.mp4");
    let range = VideoRange::Segment(Segment {
        start: 100.0,
        duration: None,
    });
    let settings = AnimationSettings::new(DreamParams::default(), output.clone());
    let mut job = AnimationJob::video(
        network.as_ref(),
        &video,
        info,
        VideoParams::default(),
        range,
        settings,
        &device,
    )
    .unwrap();
    let work = job.work_dir().to_path_buf();
    assert!(work.is_dir());
    let error = job
        .dream(network.as_ref(), &device, |_| Ok(()))
        .unwrap_err();
    assert!(error.to_string().contains("no frames"), "{error}");
    assert!(!work.exists());
    assert!(!output.exists());
}

/// A video job of `input` into `output`, its frames also copied into `frames_dir`.
fn video_job(
    network: &dyn Network,
    input: &Path,
    output: &Path,
    frames_dir: PathBuf,
    device: &Device,
) -> AnimationJob {
    let quick = FrameSettings {
        octaves: 1,
        iterations: 1,
    };
    let dream = DreamParams {
        octaves: quick.octaves,
        iterations: quick.iterations,
        ..DreamParams::default()
    };
    let params = VideoParams {
        next: quick,
        ..VideoParams::default()
    };
    let settings = AnimationSettings {
        frames_dir: Some(frames_dir),
        ..AnimationSettings::new(dream, output.to_path_buf())
    };
    let info = ffmpeg::probe(input).unwrap();
    let range = VideoRange::Segment(Segment::default());
    AnimationJob::video(network, input, info, params, range, settings, device).unwrap()
}

#[test]
fn a_video_job_encodes_its_frames_as_they_are_dreamed_and_writing_adds_the_sound() {
    if ffmpeg::check_installed().is_err() {
        eprintln!("skipped: FFmpeg is not installed");
        return;
    }
    let device = Device::flex();
    let network = common::model("efficientnet-lite0", &device);
    let network = network.as_ref();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=96x72:rate=10",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.6"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(made.success());

    // Stopped once frame 1 is finished: nothing is written, the work folder stays.
    let output = d.join("dream.mp4");
    let mut stopped = video_job(network, &input, &output, d.join("frames"), &device);
    let error = stopped
        .dream(network, &device, |s| match s.progress.step {
            None if s.progress.frame == 1 => Err(Error::Cancelled),
            _ => Ok(()),
        })
        .unwrap_err();
    assert!(matches!(error, Error::Cancelled), "{error}");
    assert!(!output.exists());

    // Resumed: frames 0 and 1 come from the work folder, the others are dreamed, and all
    // are encoded as they come.
    let mut resumed = video_job(network, &input, &output, d.join("frames"), &device);
    let frames = resumed.dream(network, &device, |_| Ok(())).unwrap();
    assert_eq!(frames, 6);
    let written = resumed.write(frames).unwrap();
    assert!(written.encoded_while_dreaming);
    assert_eq!((written.frames, written.width, written.height), (6, 96, 72));

    let info = ffmpeg::probe(&output).unwrap();
    assert_eq!(info.frame_rate, ffmpeg::probe(&input).unwrap().frame_rate);
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    let mut reader = ffmpeg::VideoReader::open(&output, Segment::default()).unwrap();
    let mut decoded = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        decoded.push(frame.into_raw());
    }
    let dreamed = frames_in(&d.join("frames"));
    assert_eq!(decoded.len(), dreamed.len());
    for (k, (decoded, dreamed)) in decoded.iter().zip(&dreamed).enumerate() {
        let difference: f64 = decoded
            .iter()
            .zip(dreamed)
            .map(|(&a, &b)| a.abs_diff(b) as f64)
            .sum::<f64>()
            / dreamed.len() as f64;
        assert!(
            difference < 4.0,
            "frame {k}: the video differs from the dream by {difference:.1} levels on average"
        );
    }
}
