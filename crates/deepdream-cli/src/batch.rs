//! `deepdream batch`: many images with one set of options, in one process (the weights are
//! loaded once), resumable and split into shards: a thin layer over `deepdream::jobs::batch`.

use deepdream::backend::device::Placement;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser};
use deepdream::jobs::batch::{self, BatchItem};
use deepdream::jobs::shard::Shard;
use deepdream::{Device, DreamParams, Dreamer, Network, media::image_io, networks::imagenet};

use crate::interrupt;
use crate::options::{DreamOptions, load_network, parse_layers};
use crate::report::{human_duration, progress_bar};

#[derive(Args)]
pub struct BatchArgs {
    /// Image files, folders (searched recursively for images) and manifests (.txt or .list:
    /// one image path per line, relative to the manifest, optionally followed by options for
    /// that image such as `--layers block5_conv3 --seed 7`).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// The folder for the results; their paths mirror the inputs' (a folder's images keep
    /// their path below it).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    #[command(flatten)]
    dream: DreamOptions,
    /// The results' format: png (with the parameters inside), jpg, webp, bmp or tiff.
    #[arg(long, default_value = "png")]
    format: String,
    /// Do only share I of N (I from 0): N workers given 0/N … N-1/N do each image once.
    #[arg(long, value_name = "I/N", conflicts_with = "shards")]
    shard: Option<String>,
    /// Number of workers, when the scheduler gives this one's number: a Kubernetes Indexed
    /// Job (JOB_COMPLETION_INDEX). Slurm job arrays need neither option.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// Options a manifest line may give for its image (they replace the batch's).
#[derive(Parser)]
#[command(no_binary_name = true)]
struct LineOptions {
    #[arg(long)]
    layers: Option<String>,
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<usize>>,
    #[arg(long)]
    class: Option<String>,
    #[arg(long)]
    octaves: Option<usize>,
    #[arg(long)]
    octave_scale: Option<f32>,
    #[arg(long)]
    iterations: Option<usize>,
    #[arg(long)]
    step: Option<f32>,
    #[arg(long)]
    jitter: Option<u32>,
    #[arg(long)]
    seed: Option<u64>,
}

impl LineOptions {
    /// `base` with these options applied.
    fn apply(self, mut params: DreamParams) -> Result<DreamParams> {
        if let Some(layers) = self.layers {
            params.layers = parse_layers(&layers)?;
        }
        if let Some(channels) = self.channels {
            params.channels = Some(channels);
        }
        if let Some(class) = self.class {
            params.class = Some(imagenet::find_class(&class)?);
        }
        params.octaves = self.octaves.unwrap_or(params.octaves);
        params.octave_scale = self.octave_scale.unwrap_or(params.octave_scale);
        params.iterations = self.iterations.unwrap_or(params.iterations);
        params.step_size = self.step.unwrap_or(params.step_size);
        params.jitter = self.jitter.unwrap_or(params.jitter);
        params.seed = self.seed.unwrap_or(params.seed);
        params.validate()?;
        Ok(params)
    }
}

pub fn batch(args: BatchArgs, target: &Placement) -> Result<()> {
    let device = &target.tensors();
    let format = args.format.to_ascii_lowercase();
    image_io::OutputFormat::from_path(Path::new(&format!("result.{format}")))?;
    let shard = match &args.shard {
        Some(text) => Some(Shard::parse(text)?),
        None => Shard::from_environment(args.shards, |name| std::env::var(name).ok())?,
    };
    let (items, unusable) = batch::collect(&args.inputs, &format)?;
    let mine: Vec<&BatchItem> = items
        .iter()
        .enumerate()
        .filter(|(position, _)| shard.is_none_or(|s| s.takes(*position)))
        .map(|(_, item)| item)
        .collect();
    let base = args.dream.params()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create the folder {}", args.output.display()))?;
    let network = load_network(&args.dream.model, target)?;
    let share = shard.map_or(String::new(), |s| {
        format!(" ({} for worker {} of {})", mine.len(), s.index, s.count)
    });
    note!(
        "{} images{share} with {}; results in {}",
        items.len(),
        network.name(),
        args.output.display()
    );

    let start = std::time::Instant::now();
    let bar = progress_bar(mine.len() as u64, "images");
    let (mut dreamed, mut resumed) = (0, 0);
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    for item in mine {
        interrupt::check()?;
        let target = args.output.join(&item.output);
        bar.set_message(item.input.display().to_string());
        if target.is_file() {
            resumed += 1;
        } else {
            let seed = args.dream.seed.unwrap_or_else(|| item.seed());
            let params = DreamParams {
                seed,
                ..base.clone()
            };
            match dream_one(network.as_ref(), &args.dream, item, params, &target, device) {
                Ok(()) => dreamed += 1,
                Err(error)
                    if matches!(
                        error.downcast_ref::<deepdream::Error>(),
                        Some(deepdream::Error::Cancelled)
                    ) =>
                {
                    return Err(error);
                }
                Err(error) => {
                    bar.suspend(|| note!("failed: {}: {error:#}", item.input.display()));
                    failed.push((item.input.clone(), format!("{error:#}")));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    note!(
        "Batch finished in {}: {dreamed} dreamed, {resumed} already done, {} failed, {} not usable",
        human_duration(start.elapsed().as_secs_f64()),
        failed.len(),
        unusable.len()
    );
    for skipped in &unusable {
        note!(
            "  not usable: {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    for (path, reason) in &failed {
        note!("  failed: {}: {reason}", path.display());
    }
    let problems = failed.len() + unusable.len();
    if problems > 0 {
        bail!("{problems} input(s) could not be dreamed (listed above)");
    }
    Ok(())
}

/// Dreams one image into `target` (written complete or not at all).
fn dream_one(
    network: &dyn Network,
    options: &DreamOptions,
    item: &BatchItem,
    params: DreamParams,
    target: &Path,
    device: &Device,
) -> Result<()> {
    let params = LineOptions::try_parse_from(&item.options)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().next().unwrap_or("bad options")))?
        .apply(params)?;
    let image = image_io::load(&item.input)?;
    let dreamer = Dreamer::new(network, params, device)?;
    let (rgb, alpha) = image_io::split_alpha(&image);
    let dreamed = dreamer.dream_watched(&rgb, dreamer.params().seed, |_| interrupt::check())?;
    if let Some(folder) = target.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder {}", folder.display()))?;
    }
    let mut metadata = options.metadata(network, dreamer.params());
    metadata.push((
        "deepdream:input".into(),
        item.output.with_extension("").display().to_string(),
    ));
    image_io::save(
        &image_io::join_alpha(dreamed, alpha.as_ref()),
        target,
        &metadata,
    )?;
    Ok(())
}
