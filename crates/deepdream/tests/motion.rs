//! Dream videos and zooms through the library, with the real VGG16: a video dream holds
//! together from frame to frame far better than dreaming each frame on its own, at the same
//! strength, and a long zoom keeps its colours.

mod common;

use deepdream::media::colour::ColourStats;
use deepdream::media::ffmpeg::{Segment, VideoReader};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::Tensor;
use deepdream::media::flow::{DisParams, FarnebackParams, FlowDevice, FlowMethod, farneback_both};
use deepdream::media::frames::IterSource;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::FrameDreamers;
use deepdream::modes::video::{Motion, VideoParams, dream_strength, dream_video, flicker};
use deepdream::modes::zoom::{ZoomParams, zoom};
use deepdream::networks::network::Network;
use deepdream::{Device, DreamParams};
use image::RgbImage;

/// The first `count` frames of the carphone clip.
fn carphone(count: usize) -> Vec<RgbImage> {
    let mut reader =
        VideoReader::open(&common::fixture("carphone.mp4"), Segment::default()).unwrap();
    (0..count)
        .map(|_| reader.next_frame().unwrap().expect("enough frames"))
        .collect()
}

#[test]
fn a_dream_video_flickers_far_less_than_independent_dreams_of_the_same_strength() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let inputs = carphone(12);
    let dream = DreamParams {
        seed: 11,
        ..DreamParams::default()
    };
    let params = VideoParams::default();
    // The video along each optical flow method.
    let dream_along = |flow: FlowMethod| -> Vec<RgbImage> {
        let dir = tempfile::tempdir().unwrap();
        let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
        let params = VideoParams {
            flow,
            ..params.clone()
        };
        let count = dream_video(
            network.as_ref(),
            dream.clone(),
            &params,
            &mut IterSource(inputs.clone().into_iter()),
            None,
            &work,
            &device,
            |_| {},
        )
        .unwrap();
        assert_eq!(count, inputs.len());
        (0..count).map(|k| work.load(k).unwrap().unwrap()).collect()
    };
    let videos = [
        ("Farnebäck", dream_along(FlowMethod::default())),
        ("DIS", dream_along(FlowMethod::Dis(DisParams::default()))),
    ];

    // Each frame dreamed on its own with the full dream (seeds as the video's).
    let dreamers = FrameDreamers::new(
        network.as_ref(),
        dream,
        params.next,
        &params.direction,
        &device,
    )
    .unwrap();
    let independent: Vec<RgbImage> = inputs
        .iter()
        .enumerate()
        .map(|(k, frame)| dreamers.dream(k, frame, true, |_| {}).unwrap())
        .collect();

    // Flicker is measured along Farnebäck's flow for both.
    let flicker_independent = flicker(&inputs, &independent, &params.flow, &device);
    let mean_strength = |dreams: &[RgbImage]| {
        inputs
            .iter()
            .zip(dreams)
            .map(|(i, d)| dream_strength(i, d))
            .sum::<f32>()
            / dreams.len() as f32
    };
    let strength_single = mean_strength(&independent);
    for (method, video) in &videos {
        let flicker_video = flicker(&inputs, video, &params.flow, &device);
        let strength_video = mean_strength(video);
        eprintln!(
            "{method}: flicker: video {flicker_video:.3}, independent {flicker_independent:.3} \
             (ratio {:.2}); strength: video {strength_video:.2}, single dreams \
             {strength_single:.2} (ratio {:.2})",
            flicker_video / flicker_independent,
            strength_video / strength_single
        );
        assert!(flicker_video <= 0.5 * flicker_independent, "{method}");
        assert!(
            (strength_video / strength_single - 1.0).abs() <= 0.2,
            "{method}"
        );
    }
}

#[test]
fn a_long_zoom_keeps_its_colours() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let photo = image::imageops::resize(
        &common::photo_crop(60, 0, 300),
        112,
        112,
        image::imageops::FilterType::Triangle,
    );
    let dir = tempfile::tempdir().unwrap();
    let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
    let params = ZoomParams::default();
    assert_eq!(params.frames, 100);
    let dream = DreamParams {
        seed: 2,
        ..DreamParams::default()
    };
    zoom(
        network.as_ref(),
        dream,
        &params,
        &photo,
        &work,
        &device,
        |_| {},
    )
    .unwrap();
    let first = ColourStats::of(&work.load(0).unwrap().unwrap());
    let last = ColourStats::of(&work.load(99).unwrap().unwrap());
    eprintln!("first frame {first:?}, last frame {last:?}");
    for c in 0..3 {
        assert!(
            (last.mean[c] / first.mean[c] - 1.0).abs() <= 0.1,
            "{first:?} {last:?}"
        );
        assert!(
            (last.std[c] / first.std[c] - 1.0).abs() <= 0.1,
            "{first:?} {last:?}"
        );
    }
    // The frames did change: the zoom dreamed new things into them.
    assert!(
        dream_strength(
            &work.load(0).unwrap().unwrap(),
            &work.load(99).unwrap().unwrap()
        ) > 20.0
    );
}

#[test]
fn a_scene_cut_restarts_the_dream() {
    let device = Device::flex();
    let params = VideoParams::default();
    let frames = carphone(3);
    // Neighbouring frames of a moving shot are explained by the flow.
    let moving = Motion::between(&frames[1], &frames[2], &params.flow, None, &device);
    // A different picture of the same size is not.
    let other = image::imageops::resize(
        &common::photo_crop(100, 0, 300),
        176,
        144,
        image::imageops::FilterType::Triangle,
    );
    let cut = Motion::between(&frames[2], &other, &params.flow, None, &device);
    eprintln!(
        "residual: moving shot {:.2}, cut {:.2}",
        moving.residual, cut.residual
    );
    assert!(moving.residual < 10.0 && cut.residual > params.cut_threshold);

    // Through the video dream: frames 0 and 3 (the cut) are dreamed afresh, the others not.
    let network = common::vgg16(&device);
    let mut inputs = frames.clone();
    inputs.extend([other.clone(), other]);
    let dir = tempfile::tempdir().unwrap();
    let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
    let dream = DreamParams {
        layers: vec![deepdream::LayerWeight {
            layer: "block3_conv1".into(),
            weight: 1.0,
        }],
        octaves: 1,
        iterations: 1,
        seed: 1,
        ..DreamParams::default()
    };
    let mut fresh = Vec::new();
    dream_video(
        network.as_ref(),
        dream,
        &params,
        &mut IterSource(inputs.into_iter()),
        None,
        &work,
        &device,
        |p| {
            if p.step.is_none() {
                fresh.push(p.fresh);
            }
        },
    )
    .unwrap();
    assert_eq!(fresh, [true, false, false, true, false]);
}

/// A frame of another size in a video is a clear error, found before the frame ahead of it
/// is dreamed (its flow is estimated while that frame dreams).
#[test]
fn a_frame_of_another_size_is_an_error() {
    let device = Device::flex();
    let network = common::test_network(&device);
    let frames = carphone(2);
    let smaller =
        image::imageops::resize(&frames[1], 160, 120, image::imageops::FilterType::Triangle);
    let dir = tempfile::tempdir().unwrap();
    let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
    let dream = DreamParams {
        layers: vec![deepdream::LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        octaves: 1,
        iterations: 1,
        ..DreamParams::default()
    };
    let error = dream_video(
        &network,
        dream,
        &VideoParams::default(),
        &mut IterSource(vec![frames[0].clone(), frames[1].clone(), smaller].into_iter()),
        None,
        &work,
        &device,
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("frame 2 of the video is 160x120, the frames before it 176x144"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

/// A network whose device computes Farnebäck's flows (as a `CudaNetwork` does on a GPU):
/// here the CPU's flows, each half a pixel further along x, and every call counted.
struct WithFlowDevice {
    network: Box<dyn Network>,
    calls: AtomicUsize,
}

impl FlowDevice for WithFlowDevice {
    fn farneback_both(
        &self,
        a: &Tensor<4>,
        b: &Tensor<4>,
        params: &FarnebackParams,
    ) -> deepdream::Result<(Tensor<4>, Tensor<4>)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (forward, backward) = farneback_both(a, b, params);
        let along_x = |flow: Tensor<4>| {
            let shift = Tensor::<1>::from_floats([0.5, 0.0], &flow.device()).reshape([1, 2, 1, 1]);
            flow.add(shift)
        };
        Ok((along_x(forward), along_x(backward)))
    }
}

impl Network for WithFlowDevice {
    pass_network_on!(network);
    fn flow_device(&self) -> Option<&dyn FlowDevice> {
        Some(self)
    }
}

/// A film's flows come from the network's device where it has one (each pair once, the
/// frame ahead's on the helper thread included), and change the film as those flows say:
/// the same film with the device's flows shifted differs from the plain one.
#[test]
fn a_films_flows_come_from_the_networks_device() {
    let device = Device::flex();
    let frames = carphone(4);
    let dream = DreamParams {
        layers: vec![deepdream::LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        octaves: 1,
        iterations: 2,
        seed: 3,
        ..DreamParams::default()
    };
    let film = |network: &dyn Network| -> Vec<RgbImage> {
        let dir = tempfile::tempdir().unwrap();
        let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
        let count = dream_video(
            network,
            dream.clone(),
            &VideoParams::default(),
            &mut IterSource(frames.clone().into_iter()),
            None,
            &work,
            &device,
            |_| {},
        )
        .unwrap();
        (0..count).map(|k| work.load(k).unwrap().unwrap()).collect()
    };
    let plain = film(&common::test_network(&device));
    let with_device = WithFlowDevice {
        network: Box::new(common::test_network(&device)),
        calls: AtomicUsize::new(0),
    };
    let shifted = film(&with_device);
    assert_eq!(with_device.calls.load(Ordering::SeqCst), frames.len() - 1);
    assert_eq!(plain[0], shifted[0], "the first frame needs no flow");
    for k in 1..frames.len() {
        assert_ne!(plain[k], shifted[k], "frame {k} follows the device's flows");
    }
}
