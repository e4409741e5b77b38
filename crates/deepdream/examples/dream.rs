//! Dream a photo from Rust with the library: load VGG16 by name, set the parameters,
//! dream with a progress callback, save with the parameters in the PNG.
//!
//! ```text
//! cargo run --release -p deepdream --example dream -- assets/chelsea.png dream.png
//! ```

use deepdream::{
    Device, DreamParams, Dreamer, LayerWeight, media::image_io, networks::models, networks::weights,
};

/// A dream allocates and frees large tensors every step; mimalloc reuses that memory where
/// the system allocator returns it to the kernel each time (1.5x slower steps).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> deepdream::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        eprintln!("usage: dream INPUT OUTPUT");
        std::process::exit(2);
    };

    let device = Device::flex();
    let spec = models::find("vgg16")?;
    let path = weights::ensure(spec, |spec| eprintln!("fetching {} weights…", spec.name))?;
    let network = (spec.load)(&path, &device)?;

    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "block4_conv2".into(),
            weight: 1.0,
        }],
        iterations: 5,
        seed: 42,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), params, &device)?;
    let image = image_io::load(input.as_ref())?;
    let dreamed = dreamer.dream_image(&image, |p| {
        eprint!("\rstep {}/{}", p.steps_done(), p.steps_total());
    })?;
    eprintln!();
    image_io::save(&dreamed, output.as_ref(), &dreamer.params().metadata())
}
