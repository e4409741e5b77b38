//! `deepdream visualize`: a thin layer over `deepdream::modes::visualize`.

use deepdream::backend::device::Placement;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepdream::modes::visualize::{
    Target, VisualizeParams, contact_sheet, target_term, visualize_watched,
};
use deepdream::{media::image_io, networks::imagenet};

use crate::options::{ModelArgs, load_network, rand_seed};
use crate::report::progress_bar;

/// Options of `deepdream visualize`.
#[derive(Args)]
pub struct VisualizeArgs {
    /// Where to write the image (.png, .jpg, .webp, .bmp, .tiff).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// The layer whose channel(s) to visualise (`deepdream layers` lists them); alone, the
    /// whole layer (DeepDream's objective, grown from noise).
    #[arg(long, conflicts_with = "class")]
    layer: Option<String>,
    /// The channel(s): `12`, `3,7,12` or a range `0..16` (with --grid for several).
    #[arg(long = "channel", alias = "channels", value_name = "N|N,..|A..B")]
    channels: Option<String>,
    /// An ImageNet class to visualise, by name or number (needs a model with a classifier:
    /// efficientnet-lite0).
    #[arg(long, value_name = "NAME|N")]
    class: Option<String>,
    /// Put several channels side by side in one contact sheet.
    #[arg(long)]
    grid: bool,
    /// Columns of the contact sheet.
    #[arg(long, default_value_t = 4)]
    columns: usize,
    /// Side of each image, in pixels.
    #[arg(long, default_value_t = VisualizeParams::default().size)]
    size: u32,
    /// Optimisation steps per image.
    #[arg(long, default_value_t = VisualizeParams::default().steps)]
    steps: usize,
    /// Adam's step size.
    #[arg(long, default_value_t = VisualizeParams::default().learning_rate)]
    learning_rate: f32,
    /// Without the priors: plain gradient ascent on pixels, no transformations (fine
    /// high-frequency patterns; for comparison).
    #[arg(long)]
    no_priors: bool,
    /// Seed of the starting noise and the transformations; random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// `12`, `3,7,12` or `0..16`.
fn parse_channels(text: &str) -> Result<Vec<usize>> {
    let number = |s: &str| -> Result<usize> {
        s.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("'{s}' is not a channel number"))
    };
    if let Some((from, to)) = text.split_once("..") {
        let (from, to) = (number(from)?, number(to)?);
        if from >= to {
            bail!("the channel range {text} is empty");
        }
        return Ok((from..to).collect());
    }
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(number)
        .collect()
}

/// Runs `deepdream visualize`.
pub fn visualize_command(args: VisualizeArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    // No input file to protect: an empty path is never the output.
    image_io::check_output(Path::new(""), &args.output, args.force)?;
    let targets: Vec<Target> = match (&args.layer, &args.channels, &args.class) {
        (Some(layer), Some(channels), None) => parse_channels(channels)?
            .into_iter()
            .map(|channel| Target::Channel {
                layer: layer.clone(),
                channel,
            })
            .collect(),
        (Some(layer), None, None) => vec![Target::Layer(layer.clone())],
        (None, None, Some(class)) => vec![Target::Class(imagenet::find_class(class)?)],
        (None, Some(_), None) => bail!("--channel needs --layer"),
        _ => bail!("say what to visualise: --layer L [--channel C], or --class NAME"),
    };
    if targets.is_empty() {
        bail!("--channel names no channel");
    }
    if targets.len() > 1 && !args.grid {
        bail!("several channels make several images: add --grid for a contact sheet");
    }
    if targets.len() > 256 {
        bail!("at most 256 channels in one contact sheet");
    }
    let mut params = VisualizeParams {
        size: args.size,
        steps: args.steps,
        learning_rate: args.learning_rate,
        seed: args.seed.unwrap_or_else(rand_seed),
        ..VisualizeParams::default()
    };
    if args.no_priors {
        params = params.without_priors();
    }
    params.validate()?;
    let network = load_network(&args.model, target)?;
    for target in &targets {
        target_term(network.as_ref(), target)?;
    }
    note!(
        "Visualising {} target(s) of {} at {}x{} ({} steps each)",
        targets.len(),
        network.name(),
        params.size,
        params.size,
        params.steps
    );
    let bar = progress_bar((targets.len() * params.steps) as u64, "steps");
    let start = Instant::now();
    let mut images = Vec::new();
    for (k, target) in targets.iter().enumerate() {
        let image = visualize_watched(network.as_ref(), target, &params, device, |snapshot| {
            crate::interrupt::check()?;
            let p = snapshot.progress;
            bar.set_message(format!(
                "image {}/{}, activation {:.3}",
                k + 1,
                targets.len(),
                p.activation
            ));
            bar.set_position((k * params.steps + p.step) as u64);
            Ok(())
        })?;
        images.push(image);
    }
    bar.finish_and_clear();
    let result = if images.len() == 1 {
        images.remove(0)
    } else {
        contact_sheet(&images, args.columns, 4)
    };
    let mut metadata = vec![
        (
            "Software".to_string(),
            format!("deepdream {}", env!("CARGO_PKG_VERSION")),
        ),
        ("deepdream:mode".to_string(), "visualize".to_string()),
        ("deepdream:model".to_string(), network.name().to_string()),
        (
            "deepdream:targets".to_string(),
            targets
                .iter()
                .map(Target::describe)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    metadata.extend(params.metadata());
    image_io::save(&result.into(), &args.output, &metadata)?;
    note!(
        "Wrote {} (seed {}) in {:.1} s",
        args.output.display(),
        params.seed,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_numbers_lists_or_ranges() {
        assert_eq!(parse_channels("12").unwrap(), vec![12]);
        assert_eq!(parse_channels("3,7, 12").unwrap(), vec![3, 7, 12]);
        assert_eq!(parse_channels("2..5").unwrap(), vec![2, 3, 4]);
        assert!(parse_channels("5..5").is_err());
        assert!(parse_channels("x").is_err());
    }
}
