//! A dream video from Rust with the library: decode with FFmpeg, dream frame by frame along
//! the optical flow into a work folder (resumable), encode with the source's audio.
//!
//! ```text
//! cargo run --release -p deepdream --example video -- crates/deepdream/tests/fixtures/carphone.mp4 dream.mp4
//! ```

use std::path::Path;

use deepdream::media::animation::open_sink;
use deepdream::media::ffmpeg::{self, AudioSource, Segment, VideoReader};
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::video::{VideoParams, dream_video};
use deepdream::{Device, DreamParams, LayerWeight, networks::models, networks::weights};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> deepdream::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: video INPUT OUTPUT.mp4");
        std::process::exit(2);
    };
    let (input, output) = (Path::new(&input), Path::new(&output));
    let device = Device::flex();
    let spec = models::find("vgg16")?;
    let network = (spec.load)(
        &weights::ensure(spec, |_| eprintln!("fetching weights…"))?,
        &device,
    )?;

    let info = ffmpeg::probe(input)?;
    let segment = Segment::default();
    let dream = DreamParams {
        layers: vec![LayerWeight {
            layer: "block4_conv2".into(),
            weight: 1.0,
        }],
        seed: 3,
        ..DreamParams::default()
    };
    let work = WorkDir::open(
        &WorkDir::default_for(output),
        "video example, block4_conv2, seed 3\n",
    )?;
    let mut reader = VideoReader::open(input, segment)?;
    let estimate = info.frame_estimate().map(|n| n as usize);
    let frames = dream_video(
        network.as_ref(),
        dream,
        &VideoParams::default(),
        &mut reader,
        estimate,
        &work,
        &device,
        |p| {
            if p.step.is_none() {
                eprintln!("frame {} done", p.frame + 1);
            }
        },
    )?;

    let audio = info.audio_codec.map(|codec| AudioSource {
        path: input.to_path_buf(),
        codec,
        segment,
    });
    let first = work.load(0)?.expect("a first frame");
    let mut sink = open_sink(
        output,
        first.width(),
        first.height(),
        info.frame_rate,
        frames as u64,
        audio,
        &[],
    )?;
    for index in 0..frames {
        sink.write(&work.load(index)?.expect("every frame is finished"))?;
    }
    sink.finish()?;
    work.remove()
}
