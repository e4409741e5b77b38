//! An endless zoom from Rust with the library: dream the frames into a work folder (rerun
//! the same command after an interruption and it resumes), then write them to a GIF.
//!
//! ```text
//! cargo run --release -p deepdream --example zoom -- assets/chelsea.png zoom.gif
//! ```

use deepdream::media::ffmpeg::FrameRate;
use deepdream::media::frames::FrameSink;
use deepdream::media::gif::GifWriter;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::zoom::{ZoomParams, zoom};
use deepdream::{Device, DreamParams, media::image_io, networks::models, networks::weights};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> deepdream::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: zoom INPUT OUTPUT.gif");
        std::process::exit(2);
    };
    let device = Device::flex();
    let spec = models::find("vgg16")?;
    let network = (spec.load)(
        &weights::ensure(spec, |_| eprintln!("fetching weights…"))?,
        &device,
    )?;
    let photo = image_io::load(input.as_ref())?.to_rgb8();

    let params = ZoomParams {
        frames: 24,
        zoom: 1.04,
        rotate: 0.5,
        ..ZoomParams::default()
    };
    let dream = DreamParams {
        seed: 7,
        ..DreamParams::default()
    };
    let work = WorkDir::open(
        &WorkDir::default_for(output.as_ref()),
        "zoom example, seed 7\n",
    )?;
    zoom(
        network.as_ref(),
        dream,
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
        output.as_ref(),
        FrameRate::from_fps(12.0)?,
    )?);
    for index in 0..params.frames {
        gif.write(&work.load(index)?.expect("every frame is finished"))?;
    }
    gif.finish()?;
    work.remove()
}
