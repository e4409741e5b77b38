//! Animations as library jobs (`jobs::animation`): a zoom stopped after its first frame
//! resumes with the seed it started with and ends in the same frames as a run that was never
//! stopped; the work folder goes once the file is written, and a job that finished no frame
//! leaves none behind.

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

    let whole = zoom_job(network, &d.join("whole.gif"), 7, true, d.join("whole"));
    let frames = whole.dream(network, &device, |_| Ok(())).unwrap();
    let written = whole.write(frames).unwrap();
    assert_eq!((written.frames, written.width, written.height), (3, 96, 96));
    assert!(!written.padded, "a GIF is never padded");
    assert!(!d.join("whole.gif.deepdream-work").exists());

    // Stopped once the first frame is finished.
    let output = d.join("stopped.gif");
    let stopped = zoom_job(network, &output, 7, true, d.join("stopped"));
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
    let resumed = zoom_job(network, &output, 12345, false, d.join("stopped"));
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
    let job = AnimationJob::video(
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
