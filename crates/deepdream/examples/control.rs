//! Directing the dream from Rust: a photo dreamed only where a mask is white, with the
//! other half growing channels of its own, then a zoom whose step and layer follow a
//! keyframe schedule, written to a GIF.
//!
//! ```text
//! cargo run --release -p deepdream --example control -- assets/chelsea.png masked.png sweep.gif
//! ```

use deepdream::control::Direction;
use deepdream::control::keyframes::Keyframes;
use deepdream::control::mask::Mask;
use deepdream::control::region::Region;
use deepdream::media::ffmpeg::FrameRate;
use deepdream::media::frames::FrameSink;
use deepdream::media::gif::GifWriter;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::zoom::{ZoomParams, zoom};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight};
use deepdream::{media::image_io, networks::models, networks::weights};
use image::{DynamicImage, GrayImage, Luma};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The schedule: block3 at the start, block5 from the second second, the step rising.
const SWEEP: &str = r#"
transition = "fade"
[[keyframes]]
frame = 0
step = 1.0
layers = "block3_conv1"
[[keyframes]]
time = 2.0
step = 2.5
layers = "block5_conv3"
"#;

fn main() -> deepdream::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(still), Some(animation)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: control INPUT MASKED.png SWEEP.gif");
        std::process::exit(2);
    };
    let device = Device::flex();
    let spec = models::find("vgg16")?;
    let network = (spec.load)(
        &weights::ensure(spec, |_| eprintln!("fetching weights…"))?,
        &device,
    )?;
    let photo = image_io::load(input.as_ref())?.to_rgb8();
    let (width, height) = photo.dimensions();

    // The left half dreams the model's default layer; the right half grows channel 57.
    let half = |left: bool| {
        let grey = GrayImage::from_fn(width, height, |x, _| {
            Luma([if (x < width / 2) == left { 255 } else { 0 }])
        });
        Mask::from_image(&DynamicImage::ImageLuma8(grey))
    };
    let dream = DreamParams {
        regions: vec![
            Region {
                mask: Some(half(true)),
                layers: Vec::new(),
                channels: None,
            },
            Region {
                mask: Some(half(false)),
                layers: vec![LayerWeight {
                    layer: "block4_conv3".into(),
                    weight: 1.0,
                }],
                channels: Some(vec![57]),
            },
        ],
        seed: 7,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), dream, &device)?;
    let dreamed = dreamer.dream(&photo, |_| {})?;
    let metadata = dreamer.params().metadata_with(network.name());
    image_io::save(&DynamicImage::ImageRgb8(dreamed), still.as_ref(), &metadata)?;

    let fps = 12.0;
    let schedule = Keyframes::parse(SWEEP, false)?.place(fps, Some(36))?;
    let params = ZoomParams {
        frames: 36,
        direction: Direction {
            schedule: Some(schedule),
            fps,
            ..Direction::default()
        },
        ..ZoomParams::default()
    };
    let work = WorkDir::open(
        &WorkDir::default_for(animation.as_ref()),
        "control example, seed 7\n",
    )?;
    let first = DreamParams {
        seed: 7,
        ..DreamParams::default()
    };
    zoom(
        network.as_ref(),
        first,
        &params,
        &photo,
        &work,
        &device,
        |p| {
            if p.step.is_none() {
                eprintln!("frame {}/{}", p.frame + 1, params.frames);
            }
        },
    )?;
    let mut gif: Box<dyn FrameSink> = Box::new(GifWriter::create(
        animation.as_ref(),
        FrameRate::from_fps(fps)?,
    )?);
    for index in 0..params.frames {
        gif.write(&work.load(index)?.expect("every frame is finished"))?;
    }
    gif.finish()?;
    work.remove()
}
