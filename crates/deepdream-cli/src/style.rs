//! `deepdream style`: a thin layer over `deepdream::modes::style`.

use deepdream::backend::device::Placement;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use deepdream::engine::optimizer::Optimizer;
use deepdream::error::format_bytes;
use deepdream::media::image_io;
use deepdream::modes::style::{Init, StyleImage, StyleParams, StyleProgress, Stylist};

use crate::options::{ModelArgs, load_network, parse_size, rand_seed};
use crate::report::{human_duration, progress_bar};

/// Options of `deepdream style`.
#[derive(Args)]
pub struct StyleArgs {
    /// The photo to restyle.
    content: PathBuf,
    /// A painting to take the style from, with an optional blend weight: `starry.jpg:0.7`.
    /// Repeat the option (or separate with commas) to blend several styles.
    #[arg(
        long,
        required = true,
        value_name = "IMG[:WEIGHT]",
        value_delimiter = ','
    )]
    style: Vec<String>,
    /// Where to write the result (.png, .jpg, .webp, .bmp, .tiff).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Layers whose Gram matrices carry the style [default: block1_conv1, block2_conv1,
    /// block3_conv1, block4_conv1, block5_conv1].
    #[arg(long, value_name = "LAYER,...", value_delimiter = ',')]
    style_layers: Option<Vec<String>>,
    /// Layers whose features carry the content [default: block4_conv2].
    #[arg(long, value_name = "LAYER,...", value_delimiter = ',')]
    content_layers: Option<Vec<String>>,
    /// Weight of the content: higher keeps more of the photo.
    #[arg(long, default_value_t = StyleParams::default().content_weight)]
    content_weight: f32,
    /// Weight of the style: higher paints more strongly.
    #[arg(long, default_value_t = StyleParams::default().style_weight)]
    style_weight: f32,
    /// Weight of the smoothness (total variation) term: higher gives fewer fine speckles.
    #[arg(long, default_value_t = StyleParams::default().tv_weight)]
    tv_weight: f32,
    /// Start from the photo or from noise.
    #[arg(long, value_enum, default_value = "content")]
    init: InitChoice,
    /// The optimiser: L-BFGS (Gatys et al.) or Adam.
    #[arg(long, value_enum, default_value = "lbfgs")]
    optimizer: OptimizerChoice,
    /// Adam's step size, in pixel levels.
    #[arg(long, default_value_t = 10.0)]
    learning_rate: f32,
    /// Iterations (evaluations of the objective) at each scale.
    #[arg(long, default_value_t = StyleParams::default().iterations)]
    iterations: usize,
    /// Longest side of the result, in pixels.
    #[arg(long, default_value_t = StyleParams::default().size)]
    size: u32,
    /// Scales optimised coarse to fine (each the size of the next divided by --scale-ratio).
    #[arg(long, default_value_t = StyleParams::default().scales)]
    scales: usize,
    /// Size ratio between successive scales.
    #[arg(long, default_value_t = StyleParams::default().scale_ratio)]
    scale_ratio: f32,
    /// Keep the photo's colours: only the luminance is restyled.
    #[arg(long, alias = "preserve-colours")]
    preserve_colors: bool,
    /// Seed of the noise start (--init noise); random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Refuse to run when one evaluation needs more memory than this (`512M`, `2G`).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum InitChoice {
    Content,
    Noise,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerChoice {
    Lbfgs,
    Adam,
}

impl StyleArgs {
    fn params(&self) -> StyleParams {
        let defaults = StyleParams::default();
        StyleParams {
            style_layers: self.style_layers.clone().unwrap_or(defaults.style_layers),
            content_layers: self
                .content_layers
                .clone()
                .unwrap_or(defaults.content_layers),
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            init: match self.init {
                InitChoice::Content => Init::Content,
                InitChoice::Noise => Init::Noise,
            },
            optimizer: match self.optimizer {
                OptimizerChoice::Lbfgs => Optimizer::LBFGS,
                OptimizerChoice::Adam => Optimizer::Adam {
                    learning_rate: self.learning_rate,
                },
            },
            iterations: self.iterations,
            size: self.size,
            scales: self.scales,
            scale_ratio: self.scale_ratio,
            preserve_colours: self.preserve_colors,
            seed: self.seed.unwrap_or_else(rand_seed),
        }
    }
}

/// `IMG[:WEIGHT]`: the weight is what follows the last colon when it is a number.
fn parse_style(text: &str) -> Result<(PathBuf, f32)> {
    if let Some((path, weight)) = text.rsplit_once(':')
        && let Ok(weight) = weight.parse::<f32>()
    {
        return Ok((PathBuf::from(path), weight));
    }
    Ok((PathBuf::from(text), 1.0))
}

/// Runs `deepdream style`.
pub fn style(args: StyleArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    image_io::check_output(&args.content, &args.output, args.force)?;
    let params = args.params();
    params.validate()?;
    let content = image_io::load(&args.content)?.to_rgb8();
    let mut styles = Vec::new();
    for text in args.style.iter().filter(|s| !s.trim().is_empty()) {
        let (path, weight) = parse_style(text)?;
        let image = image_io::load(&path)?.to_rgb8();
        styles.push(StyleImage { image, weight });
    }
    if styles.is_empty() {
        bail!("--style names no image");
    }
    let network = load_network(&args.model, target)?;
    let stylist = Stylist::new(network.as_ref(), params, device)?;
    let params = stylist.params();
    let (width, height) = stylist.output_size(content.width(), content.height());
    let bytes = stylist.memory_estimate(content.width(), content.height());
    if let Some(budget) = args.max_memory
        && bytes > budget
    {
        bail!(
            "one evaluation at {width}x{height} needs about {}, over the {} budget; lower --size or raise --max-memory",
            format_bytes(bytes),
            format_bytes(budget)
        );
    }
    note!(
        "Styling {} into {width}x{height} with {} ({} scales x {} iterations, about {} MiB for the gradient)",
        args.content.display(),
        network.name(),
        params.scales,
        params.iterations,
        bytes.div_ceil(1 << 20)
    );
    let total = (params.scales * params.iterations) as u64;
    let bar = progress_bar(total, "iterations");
    let start = Instant::now();
    // The finest scale's first iterations give the rate for the rest.
    let mut finest_start: Option<Instant> = None;
    let mut estimated = false;
    let result = stylist.transfer_watched(&content, &styles, |snapshot| {
        crate::interrupt::check()?;
        let p: StyleProgress = snapshot.progress;
        if p.scale + 1 == p.scales && !estimated {
            match finest_start {
                None => finest_start = Some(Instant::now()),
                Some(first) if p.iteration >= 3 => {
                    estimated = true;
                    let rate = first.elapsed().as_secs_f64() / (p.iteration - 1) as f64;
                    let left = (p.iterations - p.iteration) as f64 * rate;
                    let seconds = start.elapsed().as_secs_f64() + left;
                    bar.suspend(|| note!("Estimated time: about {}", human_duration(seconds)));
                }
                Some(_) => {}
            }
        }
        bar.set_message(format!(
            "scale {}/{} ({}x{}), loss {:.4e} (content {:.3e}, style {:.3e})",
            p.scale + 1,
            p.scales,
            p.width,
            p.height,
            p.losses.total,
            p.losses.content,
            p.losses.style
        ));
        bar.set_position(p.done() as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let metadata = metadata(&args, params, network.name());
    image_io::save(&result.into(), &args.output, &metadata)?;
    note!(
        "Wrote {} ({}x{}) in {:.1} s",
        args.output.display(),
        width,
        height,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The parameters as PNG text entries.
fn metadata(args: &StyleArgs, params: &StyleParams, model: &str) -> Vec<(String, String)> {
    let file_name = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    vec![
        (
            "Software".to_string(),
            format!("deepdream {}", env!("CARGO_PKG_VERSION")),
        ),
        ("deepdream:mode".to_string(), "style".to_string()),
        ("deepdream:model".to_string(), model.to_string()),
        ("deepdream:content".to_string(), file_name(&args.content)),
        ("deepdream:style".to_string(), args.style.join(",")),
    ]
    .into_iter()
    .chain(params.metadata())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_weights_follow_the_last_colon() {
        assert_eq!(
            parse_style("a.jpg:0.5").unwrap(),
            (PathBuf::from("a.jpg"), 0.5)
        );
        assert_eq!(parse_style("a.jpg").unwrap(), (PathBuf::from("a.jpg"), 1.0));
        assert_eq!(
            parse_style("C:/x/a.jpg").unwrap(),
            (PathBuf::from("C:/x/a.jpg"), 1.0)
        );
    }
}
