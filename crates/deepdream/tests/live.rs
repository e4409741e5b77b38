//! A live feed with the real VGG16: frames dreamed as they come, a setting changed between
//! frames applies from the next frame, and the feed ends with its source.

mod common;

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use deepdream::media::ffmpeg::{Segment, VideoReader};
use deepdream::media::frames::FrameSource;
use deepdream::media::live::LiveSource;
use deepdream::modes::live::{LiveSettings, dream_live};
use deepdream::modes::video::dream_strength;
use deepdream::{Device, DreamParams, LayerWeight, Network};
use image::RgbImage;

/// Frames the test hands over one at a time.
struct Handed(Receiver<RgbImage>);

impl FrameSource for Handed {
    fn next_frame(&mut self) -> deepdream::Result<Option<RgbImage>> {
        Ok(self.0.recv().ok())
    }
}

#[test]
fn a_setting_changed_mid_stream_applies_from_the_next_frame() {
    let device = Device::flex();
    let network: Arc<dyn Network> = Arc::from(common::vgg16(&device));
    let mut reader =
        VideoReader::open(&common::fixture("carphone.mp4"), Segment::default()).unwrap();
    let frames: Vec<RgbImage> = (0..6)
        .map(|_| reader.next_frame().unwrap().unwrap())
        .collect();
    let settings = Mutex::new(LiveSettings {
        dream: DreamParams {
            layers: vec![LayerWeight {
                layer: "block3_conv1".into(),
                weight: 1.0,
            }],
            seed: 1,
            ..DreamParams::default()
        },
        blend: 0.0,
        ..LiveSettings::default()
    });
    let (send, receive): (Sender<RgbImage>, _) = channel();
    let source = LiveSource::start(Box::new(Handed(receive)), None);
    send.send(frames[0].clone()).unwrap();
    let mut send = Some(send);
    let mut strengths = Vec::new();
    let mut other = |name: &str| -> deepdream::Result<Arc<dyn Network>> {
        panic!("no other model was asked for, yet {name} was")
    };
    let last = dream_live(
        network.clone(),
        &mut other,
        &settings,
        &source,
        &device,
        |dream, report| {
            let index = report.frame as usize;
            strengths.push(dream_strength(&frames[index], dream));
            if index == 2 {
                // From frame 3 on, the dream does not move the picture.
                settings.lock().unwrap().dream.step_size = 0.0;
            }
            match frames.get(index + 1) {
                Some(next) => send.as_ref().unwrap().send(next.clone()).unwrap(),
                // The end of the source ends the feed.
                None => send = None,
            }
            Ok(())
        },
    );
    let last = last.unwrap().expect("frames were dreamed");
    assert_eq!(last.dreamed, 6);
    assert_eq!(last.dropped, 0, "handed one by one, nothing is skipped");
    eprintln!("strength per frame: {strengths:.2?}");
    assert!(strengths[..3].iter().all(|&s| s > 0.5), "{strengths:?}");
    assert!(strengths[3..].iter().all(|&s| s < 0.01), "{strengths:?}");
}
