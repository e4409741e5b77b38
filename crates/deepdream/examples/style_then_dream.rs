//! Style and dream composed in the library: paint a photo in a painting's manner, then dream
//! the painted photo. Both modes are the same engine (an objective over VGG16's layers,
//! optimised over the image), so one network serves both.
//!
//! ```text
//! cargo run --release -p deepdream --example style_then_dream -- \
//!     assets/chelsea.png assets/paintings/starry_night.jpg painted-dream.png
//! ```

use deepdream::modes::style::{StyleImage, StyleParams, Stylist};
use deepdream::{
    Device, DreamParams, Dreamer, LayerWeight, media::image_io, networks::models, networks::weights,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> deepdream::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(photo), Some(painting), Some(output)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: style_then_dream PHOTO PAINTING OUTPUT");
        std::process::exit(2);
    };
    let device = Device::flex();
    let spec = models::find("vgg16")?;
    let network = (spec.load)(
        &weights::ensure(spec, |_| eprintln!("fetching weights…"))?,
        &device,
    )?;
    let photo = image_io::load(photo.as_ref())?.to_rgb8();
    let painting = image_io::load(painting.as_ref())?.to_rgb8();

    // 1. The photo in the painting's manner.
    let style = StyleParams {
        size: 384,
        iterations: 120,
        ..StyleParams::default()
    };
    let stylist = Stylist::new(network.as_ref(), style, &device)?;
    let styles = [StyleImage {
        image: painting,
        weight: 1.0,
    }];
    let painted = stylist.transfer(&photo, &styles, |p| {
        if p.iteration == p.iterations {
            eprintln!("style: scale {}/{} done", p.scale + 1, p.scales);
        }
    })?;

    // 2. A dream of the painted photo on a middle layer.
    let dream = DreamParams {
        layers: vec![LayerWeight {
            layer: "block3_conv3".into(),
            weight: 1.0,
        }],
        octaves: 3,
        seed: 7,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), dream, &device)?;
    let dreamed = dreamer.dream(&painted, |_| {})?;
    dreamed
        .save(&output)
        .map_err(|e| deepdream::Error::InvalidParameter(format!("cannot write {output}: {e}")))?;
    eprintln!("wrote {output}");
    Ok(())
}
