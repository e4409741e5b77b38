//! The DeepDream algorithm as Google published it in 2015 (the `deepdream.ipynb` notebook):
//! gradient ascent on the input image over several octaves, with a random jitter each step.

use std::ops::Range;
use std::sync::Mutex;

use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Int, Tensor};
use image::{DynamicImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::cpu::on_cpu;
use crate::backend::layer_terms::{Guide, matched_guide};
use crate::backend::{ascend, on_worker};
use crate::control::channels::AutoChannels;
use crate::control::mask::{Mask, check_strength};
use crate::control::region::Region;
pub use crate::engine::objective::LayerWeight;
use crate::engine::snapshot::Snapshot;
use crate::engine::tiling::{self, Plan, Tiling};
use crate::engine::{objective, octaves, transform};
use crate::error::{Error, Result};
use crate::media::image_io;
use crate::networks::network::{
    KeptOctaves, LayerInfo, LayerLoss, LayerTerms, Network, NormalisedAscent,
};
use crate::timeline;

/// Longest side a guide image is scaled down to before its features are taken (the
/// notebook used a 224x224 guide).
pub const GUIDE_MAX_SIDE: u32 = 224;

/// Memory the gradient's activations may use when the user sets no budget.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// The most octaves a dream may have: already far more than any picture has sizes for (a
/// 20,000-pixel side at the smallest usual ratio, 1.1, is below 10 pixels after 80).
pub const MAX_OCTAVES: usize = 100;

/// Everything that decides a dream besides the network and the image.
#[derive(Clone, Debug, PartialEq)]
pub struct DreamParams {
    /// Layers to amplify with their weights; empty means the model's default layers.
    pub layers: Vec<LayerWeight>,
    /// Amplify only these channels of each layer (all channels when `None`).
    pub channels: Option<Vec<usize>>,
    /// Grow this ImageNet class: its logit is added to the objective (needs a network with
    /// an ImageNet classifier).
    pub class: Option<usize>,
    /// A guide image: each position's features are pulled towards the guide's best-matching
    /// feature instead of simply being amplified.
    pub guide: Option<RgbImage>,
    /// Number of scales, the smallest first.
    pub octaves: usize,
    /// Size ratio between one octave and the next.
    pub octave_scale: f32,
    /// Gradient-ascent steps per octave.
    pub iterations: usize,
    /// Size of each step, in pixel values per mean absolute gradient.
    pub step_size: f32,
    /// Largest random shift (pixels) applied before each step.
    pub jitter: u32,
    /// Seed of the jitter sequence.
    pub seed: u64,
    /// Where the dream may change the picture (white dreams, black stays); everywhere when
    /// `None`.
    pub mask: Option<Mask>,
    /// Parts of the picture with their own layers and channels, all in the same gradient.
    /// Without `layers` or `class`, only the regions dream (and nothing outside them moves);
    /// with them, the whole picture dreams with those and each region adds its own.
    pub regions: Vec<Region>,
    /// Pick the channels of the layers from the picture instead of `channels`.
    pub auto_channels: Option<AutoChannels>,
    /// Memory budget for one gradient, in bytes (when `None`, the network's device's own,
    /// such as a GPU's free memory, else [`DEFAULT_MEMORY_BUDGET`]); images that need more
    /// are processed in tiles.
    pub max_memory: Option<u64>,
}

impl Default for DreamParams {
    /// The notebook's defaults: 4 octaves of scale 1.4, 10 iterations, step 1.5, jitter 32.
    fn default() -> Self {
        DreamParams {
            layers: Vec::new(),
            channels: None,
            class: None,
            guide: None,
            octaves: 4,
            octave_scale: 1.4,
            iterations: 10,
            step_size: 1.5,
            jitter: 32,
            seed: 0,
            mask: None,
            regions: Vec::new(),
            auto_channels: None,
            max_memory: None,
        }
    }
}

impl DreamParams {
    /// Checks the numeric parameters.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::InvalidParameter(what.to_string()));
        if self.octaves == 0 || self.octaves > MAX_OCTAVES {
            return invalid(&format!("octaves must be from 1 to {MAX_OCTAVES}"));
        }
        if !(self.octave_scale.is_finite() && self.octave_scale > 1.0) {
            return invalid("octave scale must be a number greater than 1");
        }
        if !(self.step_size.is_finite() && self.step_size >= 0.0) {
            return invalid("step size must be a non-negative number");
        }
        if self.layers.iter().any(|l| !l.weight.is_finite()) {
            return invalid("layer weights must be finite numbers");
        }
        if matches!(&self.channels, Some(channels) if channels.is_empty()) {
            return invalid("the channel list is empty");
        }
        if self.channels.is_some() && self.auto_channels.is_some() {
            return invalid("give either channels or automatic channels, not both");
        }
        if self
            .auto_channels
            .as_ref()
            .is_some_and(|auto| auto.count == 0)
        {
            return invalid("automatic channels must pick at least one channel");
        }
        if let Some(mask) = &self.mask {
            check_strength(mask.strength)?;
        }
        for region in &self.regions {
            if region.layers.iter().any(|l| !l.weight.is_finite()) {
                return invalid("layer weights must be finite numbers");
            }
            if matches!(&region.channels, Some(channels) if channels.is_empty()) {
                return invalid("a region's channel list is empty");
            }
        }
        Ok(())
    }

    /// The software, the `model` and the parameters as `(key, value)` text: what decides a
    /// dream, for storing in the output file.
    pub fn metadata_with(&self, model: &str) -> Vec<(String, String)> {
        let mut entries = vec![
            (
                "Software".to_string(),
                format!("deepdream {}", env!("CARGO_PKG_VERSION")),
            ),
            ("deepdream:model".to_string(), model.to_string()),
        ];
        entries.extend(self.metadata());
        entries
    }

    /// The parameters as `(key, value)` text, for storing in the output file.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let layers = self
            .layers
            .iter()
            .map(|l| format!("{}:{}", l.layer, l.weight))
            .collect::<Vec<_>>()
            .join(",");
        let mut entries = vec![
            ("deepdream:layers", layers),
            ("deepdream:octaves", self.octaves.to_string()),
            ("deepdream:octave-scale", self.octave_scale.to_string()),
            ("deepdream:iterations", self.iterations.to_string()),
            ("deepdream:step", self.step_size.to_string()),
            ("deepdream:jitter", self.jitter.to_string()),
            ("deepdream:seed", self.seed.to_string()),
        ];
        if let Some(channels) = &self.channels {
            let list = channels.iter().map(usize::to_string).collect::<Vec<_>>();
            entries.push(("deepdream:channels", list.join(",")));
        }
        if let Some(auto) = &self.auto_channels {
            entries.push(("deepdream:channels", auto.to_string()));
        }
        if let Some(mask) = &self.mask {
            entries.push(("deepdream:mask-strength", mask.strength.to_string()));
        }
        if !self.regions.is_empty() {
            let regions: Vec<String> = self.regions.iter().map(region_text).collect();
            entries.push(("deepdream:regions", regions.join("; ")));
        }
        if let Some(class) = self.class {
            let name = crate::networks::imagenet::class_name(class).unwrap_or("?");
            entries.push(("deepdream:class", format!("{class} ({name})")));
        }
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// A region's objective as text, `layers=a:1,b:0.5 channels=3,9`.
fn region_text(region: &Region) -> String {
    let layers: Vec<String> = region
        .layers
        .iter()
        .map(|l| format!("{}:{}", l.layer, l.weight))
        .collect();
    let mut text = format!("layers={}", layers.join(","));
    if let Some(channels) = &region.channels {
        let list: Vec<String> = channels.iter().map(usize::to_string).collect();
        text.push_str(&format!(" channels={}", list.join(",")));
    }
    text
}

/// Where a dream is: reported to the progress callback after every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The octave being dreamed, from 0 (smallest).
    pub octave: usize,
    /// Number of octaves actually dreamed (octaves too small for the layer are skipped).
    pub octaves: usize,
    /// Steps done in this octave.
    pub iteration: usize,
    /// Steps per octave.
    pub iterations: usize,
    /// The octave's image size.
    pub width: usize,
    /// The octave's image size.
    pub height: usize,
}

impl Progress {
    /// Steps done so far over the whole dream.
    pub fn steps_done(&self) -> usize {
        self.octave * self.iterations + self.iteration
    }

    /// Steps of the whole dream.
    pub fn steps_total(&self) -> usize {
        self.octaves * self.iterations
    }
}

/// One term of the objective, resolved against the network.
#[derive(Clone)]
struct Term {
    name: String,
    layer: usize,
    /// Where the layer's output is among the outputs the dreamer asks the network for.
    slot: usize,
    weight: f32,
    /// Maximise this class's logit (the layer is the network's logits).
    class: Option<usize>,
    /// Features of the guide image at this layer, `[C, positions]`, every channel.
    guide: Option<Tensor<2>>,
    /// The channels amplified; all when `None`.
    channels: Option<Selection>,
    /// The region (an index into [`DreamParams::regions`]) whose mask weights the term.
    region: Option<usize>,
    /// The channels are picked from the picture.
    auto: bool,
    /// The term is one of the main layers' (not a region's): a guide pulls it.
    main: bool,
}

/// The channels a term amplifies, with what every step needs of them made once: their
/// index tensor, and the guide's features for them.
#[derive(Clone)]
struct Selection {
    list: Vec<usize>,
    index: Tensor<1, Int>,
    guide: Option<Tensor<2>>,
}

impl Term {
    /// Amplifies only `channels` (all when `None`), the guide's features selected alike.
    fn select(&mut self, channels: Option<&[usize]>, device: &Device) {
        self.channels = channels.map(|list| {
            let ints: Vec<i64> = list.iter().map(|&c| c as i64).collect();
            let index = Tensor::<1, Int>::from_ints(ints.as_slice(), device);
            Selection {
                list: list.to_vec(),
                guide: self.guide.clone().map(|g| g.select(0, index.clone())),
                index,
            }
        });
    }
}

/// Terms whose gradient is taken together: the layers they read (what the network is asked
/// for) and the terms, their slots among those layers. A region's group moves only the
/// pixels under its mask.
#[derive(Clone)]
struct Group {
    layers: Vec<usize>,
    terms: Vec<Term>,
    region: Option<usize>,
}

impl Group {
    /// The terms among `terms` that `keep` keeps, for `region`, their slots renumbered.
    fn of(terms: &[Term], keep: impl Fn(&Term) -> bool, region: Option<usize>) -> Self {
        let mut layers = Vec::new();
        let terms = terms
            .iter()
            .filter(|t| keep(t))
            .map(|t| Term {
                slot: slot_of(&mut layers, t.layer),
                ..t.clone()
            })
            .collect();
        Group {
            layers,
            terms,
            region,
        }
    }
}

/// Channels picked for a layer at an octave (see [`DreamParams::auto_channels`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenChannels {
    /// The octave, from 0 (smallest).
    pub octave: usize,
    /// The layer.
    pub layer: String,
    /// The channels picked.
    pub channels: Vec<usize>,
}

/// Where a dream may change the picture at one octave: the weight of the change, and each
/// region's mask, `[1, 1, H, W]` at the octave's size.
struct OctaveMasks {
    change: Option<Tensor<4>>,
    regions: Vec<Option<Tensor<4>>>,
}

/// The part of a layer's output on a tile's crop that the tile owns, and where the crop's
/// output starts in the whole picture's output.
struct Window {
    rows: Range<usize>,
    cols: Range<usize>,
    origin: (usize, usize),
}

/// Longest side the picture is scaled down to before its channels are ranked.
const PICK_MAX_SIDE: usize = 512;

/// Runs DeepDream with a network on a device.
pub struct Dreamer<'a> {
    network: &'a dyn Network,
    device: Device,
    params: DreamParams,
    /// The whole objective: every term.
    whole: Group,
    /// The objective as it is dreamed: the terms on the whole picture, then each masked
    /// region's own, each group's gradient normalised on its own.
    groups: Vec<Group>,
    min_side: usize,
    chosen: Mutex<Vec<ChosenChannels>>,
}

impl<'a> Dreamer<'a> {
    /// Prepares a dream: checks the parameters against the network (layers, channels) and
    /// computes the guide image's features. `device` is a plain (not autodiff) device.
    pub fn new(network: &'a dyn Network, params: DreamParams, device: &Device) -> Result<Self> {
        params.validate()?;
        let mut params = params;
        let defaults: Vec<LayerWeight> = network
            .default_layers()
            .iter()
            .map(|layer| LayerWeight {
                layer: layer.clone(),
                weight: 1.0,
            })
            .collect();
        let no_default = || {
            Error::InvalidParameter(format!(
                "model '{}' has no default layer: choose one with --layers",
                network.name()
            ))
        };
        if params.layers.is_empty() && params.class.is_none() && params.regions.is_empty() {
            params.layers = defaults.clone();
            if params.layers.is_empty() {
                return Err(no_default());
            }
        }
        let layers = network.layers();
        let auto_channels = params.auto_channels.is_some();
        let mut slots: Vec<usize> = Vec::new();
        let mut terms = Vec::new();
        let mut add = |term: &LayerWeight,
                       channels: &Option<Vec<usize>>,
                       region: Option<usize>,
                       main: bool|
         -> Result<()> {
            let index = network
                .layer_index(&term.layer)
                .ok_or_else(|| network.unknown_layer(&term.layer))?;
            if let Some(channels) = channels {
                let available = layers[index].channels;
                if let Some(&bad) = channels.iter().find(|&&c| c >= available) {
                    return Err(Error::UnknownChannel {
                        layer: term.layer.clone(),
                        channel: bad,
                        channels: available,
                    });
                }
            }
            let mut made = Term {
                name: term.layer.clone(),
                layer: index,
                slot: slot_of(&mut slots, index),
                weight: term.weight,
                class: None,
                guide: None,
                channels: None,
                region,
                auto: main && auto_channels,
                main,
            };
            made.select(channels.as_deref(), device);
            terms.push(made);
            Ok(())
        };
        for term in &params.layers {
            add(term, &params.channels, None, true)?;
        }
        for (index, region) in params.regions.iter().enumerate() {
            let own = if region.layers.is_empty() {
                &defaults
            } else {
                &region.layers
            };
            if own.is_empty() {
                return Err(no_default());
            }
            for term in own {
                add(
                    term,
                    &region.channels,
                    region.mask.is_some().then_some(index),
                    false,
                )?;
            }
        }
        if let Some(class) = params.class {
            let layer = network.class_layer().ok_or_else(|| Error::NoClassifier {
                model: network.name().to_string(),
            })?;
            if class >= layers[layer].channels {
                return Err(Error::UnknownClass {
                    name: class.to_string(),
                    suggestions: format!("the classifier has {} classes", layers[layer].channels),
                });
            }
            terms.push(Term {
                name: format!("class {class}"),
                layer,
                slot: slot_of(&mut slots, layer),
                weight: 1.0,
                class: Some(class),
                guide: None,
                channels: None,
                region: None,
                auto: false,
                main: false,
            });
        }
        let min_side = terms
            .iter()
            .map(|t| layers[t.layer].min_input)
            .max()
            .unwrap_or(1);
        let whole = Group {
            layers: slots,
            terms,
            region: None,
        };
        // The terms on the whole picture, then each masked region's (a group with no term,
        // such as the whole picture's when only regions dream, is left out).
        let groups: Vec<Group> = std::iter::once(None)
            .chain((0..params.regions.len()).map(Some))
            .map(|region| Group::of(&whole.terms, |t| t.region == region, region))
            .filter(|g| !g.terms.is_empty())
            .collect();
        let mut dreamer = Dreamer {
            network,
            device: device.clone(),
            whole,
            groups,
            min_side,
            params,
            chosen: Mutex::new(Vec::new()),
        };
        if let Some(guide) = &dreamer.params.guide {
            // The guide pulls the main layers (not the regions' own).
            let main = dreamer.params.layers.len();
            let wanted: Vec<usize> = dreamer.whole.terms[..main]
                .iter()
                .map(|t| t.layer)
                .collect();
            let features = dreamer.guide_features(guide, &wanted)?;
            let by_layer: Vec<(usize, Tensor<2>)> = wanted.into_iter().zip(features).collect();
            let main_terms = dreamer
                .groups
                .iter_mut()
                .filter(|g| g.region.is_none())
                .flat_map(|g| g.terms.iter_mut())
                .chain(dreamer.whole.terms.iter_mut())
                .filter(|t| t.main);
            for term in main_terms {
                if let Some((_, features)) = by_layer.iter().find(|(l, _)| *l == term.layer) {
                    term.guide = Some(features.clone());
                    let channels = term.channels.as_ref().map(|c| c.list.clone());
                    term.select(channels.as_deref(), device);
                }
            }
        }
        Ok(dreamer)
    }

    /// The parameters in use (with the model's default layers filled in).
    pub fn params(&self) -> &DreamParams {
        &self.params
    }

    /// The channels the last dream picked (see [`DreamParams::auto_channels`]), by octave.
    pub fn chosen_channels(&self) -> Vec<ChosenChannels> {
        self.chosen.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The octave sizes `(height, width)` a dream of a `width`x`height` image goes through,
    /// smallest first. Octaves smaller than the layers can see are left out.
    pub fn octave_sizes(&self, width: u32, height: u32) -> Result<Vec<(usize, usize)>> {
        let (octaves, scale) = (self.params.octaves, self.params.octave_scale);
        octaves::sizes(
            width as usize,
            height as usize,
            octaves,
            scale,
            self.min_side,
        )
        .ok_or_else(|| Error::ImageTooSmall {
            width,
            height,
            layer: self.whole.terms[0].name.clone(),
            min: self.min_side as u32,
        })
    }

    /// How the gradient of a `width`x`height` image is computed within the memory budget:
    /// whole, or in the largest tiles that fit. An error if not even the smallest tile fits.
    pub fn plan(&self, width: usize, height: usize) -> Result<Plan> {
        let layers = self.network.layers();
        let bytes_per_pixel = self
            .whole
            .terms
            .iter()
            .map(|t| layers[t.layer].bytes_per_pixel)
            .fold(0.0f32, f32::max) as f64;
        let budget = self
            .params
            .max_memory
            .or_else(|| self.network.memory_budget())
            .unwrap_or(DEFAULT_MEMORY_BUDGET);
        let what = format!("the gradient of '{}'", self.whole.terms[0].name);
        tiling::plan(width, height, bytes_per_pixel, budget, self.tiling(), &what)
    }

    /// Dreams an RGB image; `progress` is called after every step.
    pub fn dream(&self, image: &RgbImage, progress: impl FnMut(Progress)) -> Result<RgbImage> {
        self.dream_seeded(image, self.params.seed, progress)
    }

    /// [`Dreamer::dream`] with the jitter seeded by `seed` instead of the parameters' seed
    /// (animations give each frame its own).
    pub fn dream_seeded(
        &self,
        image: &RgbImage,
        seed: u64,
        mut progress: impl FnMut(Progress),
    ) -> Result<RgbImage> {
        self.dream_watched(image, seed, |snapshot| {
            progress(snapshot.progress);
            Ok(())
        })
    }

    /// [`Dreamer::dream_seeded`] with an observer that sees the picture as it grows: it is
    /// called after every step with a [`Snapshot`], and an error it returns (such as
    /// [`Error::Cancelled`]) stops the dream at once and is returned.
    pub fn dream_watched(
        &self,
        image: &RgbImage,
        seed: u64,
        mut observer: impl FnMut(&Snapshot<Progress>) -> Result<()>,
    ) -> Result<RgbImage> {
        let preprocess = self.network.preprocess();
        let sizes = self.octave_sizes(image.width(), image.height())?;
        self.plan(image.width() as usize, image.height() as usize)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // The random channel picks draw from their own sequence, so that picking leaves
        // the jitter as it would be with the same channels given by hand.
        let mut pick_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC4A7_7E15);
        if let Ok(mut chosen) = self.chosen.lock() {
            chosen.clear();
        }
        let mut groups = self.groups.clone();
        let image = preprocess.apply(image, &self.device);
        let progress = |octave, iteration, (height, width)| Progress {
            octave,
            octaves: sizes.len(),
            iteration,
            iterations: self.params.iterations,
            width,
            height,
        };
        let octave_done = |octave: usize, (height, width), place: &str| {
            timeline::mark(|| {
                format!(
                    "octave {} of {} ({width}x{height}) dreamed{place}",
                    octave + 1,
                    sizes.len()
                )
            })
        };
        // The smallest octaves, those that need no tiles, dream on a picture kept on the
        // network's device where it runs whole steps; the others on the host, from the
        // picture the device gives back.
        let kept_count = self.keepable_octaves(&sizes)?;
        let bases = (kept_count < sizes.len()).then(|| octaves::bases(image.clone(), &sizes));
        let mut dreamed: Option<Tensor<4>> = None;
        let picture = bases
            .as_ref()
            .map_or(&image, |bases| &bases[kept_count.max(1) - 1]);
        if let Some(mut kept) = self.kept_octaves(picture, &sizes[..kept_count])? {
            for (octave, &(height, width)) in sizes[..kept_count].iter().enumerate() {
                kept.next_octave()?;
                if self.picks_channels(octave) {
                    let start = kept.image()?;
                    self.choose_channels(&mut groups, start, octave, &mut pick_rng)?;
                }
                kept.aim(
                    self.kept_losses(&groups, height, width)?,
                    self.octave_masks(height, width).change.as_ref(),
                )?;
                for iteration in 0..self.params.iterations {
                    kept.step(self.jitter(&mut rng))?;
                    let progress = progress(octave, iteration + 1, (height, width));
                    observer(&Snapshot::new(progress, &|| {
                        preprocess.invert(kept.image()?)
                    }))?;
                }
                if !kept.finite()? {
                    return Err(self.non_finite(width, height));
                }
                octave_done(octave, (height, width), " on the device");
            }
            dreamed = Some(kept.image()?);
        }
        let first_on_host = if dreamed.is_some() { kept_count } else { 0 };
        if first_on_host < sizes.len() {
            let bases = bases.unwrap_or_else(|| octaves::bases(image, &sizes));
            for octave in first_on_host..sizes.len() {
                let before = dreamed
                    .as_ref()
                    .map(|dreamed| (dreamed, &bases[octave - 1]));
                let mut current = octaves::start(&bases[octave], before);
                let [_, _, height, width] = current.dims();
                if self.picks_channels(octave) {
                    self.choose_channels(&mut groups, current.clone(), octave, &mut pick_rng)?;
                }
                let masks = self.octave_masks(height, width);
                for iteration in 0..self.params.iterations {
                    current = self.step(current, &groups, &masks, &mut rng)?;
                    let progress = progress(octave, iteration + 1, (height, width));
                    observer(&Snapshot::new(progress, &|| {
                        preprocess.invert(current.clone())
                    }))?;
                }
                dreamed = Some(current);
                octave_done(octave, (height, width), "");
            }
        }
        let dreamed =
            dreamed.ok_or_else(|| Error::InvalidParameter("a dream of no octaves".into()))?;
        preprocess.invert(dreamed)
    }

    /// Whether the automatic channels are picked (again) at the start of `octave`.
    fn picks_channels(&self, octave: usize) -> bool {
        self.params
            .auto_channels
            .is_some_and(|auto| octave == 0 || auto.each_octave)
    }

    /// Dreams any image: grey becomes RGB, an alpha channel is kept unchanged.
    pub fn dream_image(
        &self,
        image: &DynamicImage,
        progress: impl FnMut(Progress),
    ) -> Result<DynamicImage> {
        let (rgb, alpha) = image_io::split_alpha(image);
        let dreamed = self.dream(&rgb, progress)?;
        Ok(image_io::join_alpha(dreamed, alpha.as_ref()))
    }

    /// Picks the channels of the automatic terms from `image` (a preprocessed input): each
    /// layer's channels ranked by their mean activation.
    fn choose_channels(
        &self,
        groups: &mut [Group],
        image: Tensor<4>,
        octave: usize,
        rng: &mut impl Rng,
    ) -> Result<()> {
        let Some(auto) = &self.params.auto_channels else {
            return Ok(());
        };
        let [_, _, height, width] = image.dims();
        let scale = (PICK_MAX_SIDE as f32 / height.max(width) as f32).min(1.0);
        let image = if scale < 1.0 {
            let side = |s: usize| ((s as f32 * scale).round() as usize).max(self.min_side);
            transform::resize(image, side(height), side(width), true)
        } else {
            image
        };
        let mut layers: Vec<usize> = Vec::new();
        for term in groups.iter().flat_map(|g| &g.terms).filter(|t| t.auto) {
            slot_of(&mut layers, term.layer);
        }
        let outputs = on_worker(|| self.network.forward(image, &layers))?;
        let mut chosen = Vec::new();
        for (&layer, output) in layers.iter().zip(outputs) {
            let [_, channels, _, _] = output.dims();
            let means: Vec<f32> = output
                .mean_dim(3)
                .mean_dim(2)
                .reshape([channels])
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::InvalidParameter(format!("{e:?}")))?;
            let picked = auto.choose(&means, rng);
            let auto = groups.iter_mut().flat_map(|g| g.terms.iter_mut());
            for term in auto.filter(|t| t.auto && t.layer == layer) {
                term.select(Some(&picked), &self.device);
            }
            chosen.push(ChosenChannels {
                octave,
                layer: self.network.layers()[layer].name.clone(),
                channels: picked,
            });
        }
        if let Ok(mut all) = self.chosen.lock() {
            all.extend(chosen);
        }
        Ok(())
    }

    /// The masks of an octave of `height` x `width`: the weight of the change and each
    /// region's.
    fn octave_masks(&self, height: usize, width: usize) -> OctaveMasks {
        let weights = |mask: &Mask| mask.weights(width, height, &self.device);
        OctaveMasks {
            change: self.params.mask.as_ref().map(weights),
            regions: self
                .params
                .regions
                .iter()
                .map(|r| r.mask.as_ref().map(weights))
                .collect(),
        }
    }

    /// One gradient-ascent step: jitter, gradient, normalised ascent, un-jitter, clip.
    /// The step is `step_size` pixel levels per mean absolute gradient, converted to each
    /// channel's network units (for Caffe-style networks they are the same). Under a mask,
    /// the change is weighted by it and the gradient's mean is taken where it dreams.
    fn step(
        &self,
        image: Tensor<4>,
        groups: &[Group],
        masks: &OctaveMasks,
        rng: &mut impl Rng,
    ) -> Result<Tensor<4>> {
        let [oy, ox] = self.jitter(rng);
        let shifted = image.clone().roll(&[oy, ox], &[2, 3]);
        let [_, _, height, width] = shifted.dims();
        // A new tile grid every step, like the jitter.
        let tiles = match self.plan(width, height)?.tile {
            None => None,
            Some(tile) => {
                let stride = self.tiling().expect("a tiled plan has a tiling").stride;
                let cells = tile / stride;
                let offset = (
                    rng.random_range(0..cells) * stride,
                    rng.random_range(0..cells) * stride,
                );
                Some((tile, offset))
            }
        };
        let gradient_of = |group: &Group| -> Result<Tensor<4>> {
            let term_masks = self.term_masks(&group.terms, masks, [oy, ox], height, width)?;
            match tiles {
                None => self.gradient_of(shifted.clone(), group, &term_masks),
                Some((tile, offset)) => {
                    self.tiled_gradient_of(shifted.clone(), tile, offset, group, &term_masks)
                }
            }
        };
        let gradient = match groups {
            [whole] if whole.region.is_none() => gradient_of(whole)?,
            _ => {
                // Each group's gradient normalised where it may move the picture, so that
                // every region dreams as strongly as a picture of its own would, and only
                // under its mask (a summed objective would let one region's gradient spill
                // over the others' pixels through the network's receptive fields).
                let mut total: Option<Tensor<4>> = None;
                for group in groups {
                    let gradient = gradient_of(group)?;
                    let region = group.region.and_then(|r| masks.regions[r].clone());
                    let (gradient, mean_abs) = match region {
                        None => {
                            let mean_abs: f32 = gradient.clone().abs().mean().into_scalar();
                            (gradient, mean_abs)
                        }
                        Some(mask) => {
                            let mask = mask.roll(&[oy, ox], &[2, 3]);
                            let area: f32 = mask.clone().sum().into_scalar();
                            let weighted = gradient.mul(mask);
                            let total: f32 = weighted.clone().abs().sum().into_scalar();
                            (weighted, total / (3.0 * area))
                        }
                    };
                    if mean_abs == 0.0 {
                        continue;
                    }
                    let part = gradient.div_scalar(mean_abs);
                    total = Some(match total {
                        Some(total) => total.add(part),
                        None => part,
                    });
                }
                total.unwrap_or_else(|| shifted.zeros_like())
            }
        };
        let (gradient, mean_abs) = match &masks.change {
            None => {
                let mean_abs: f32 = gradient.clone().abs().mean().into_scalar();
                (gradient, mean_abs)
            }
            Some(change) => {
                let change = change.clone().roll(&[oy, ox], &[2, 3]);
                let area: f32 = change.clone().sum().into_scalar();
                if area <= 0.0 {
                    return Ok(image);
                }
                let weighted = gradient.mul(change);
                let total: f32 = weighted.clone().abs().sum().into_scalar();
                (weighted, total / (3.0 * area))
            }
        };
        let factors = self.factors(mean_abs, width, height)?;
        let ranges = self.network.preprocess().value_range();
        Ok(ascend(image, gradient, [oy, ox], factors, ranges))
    }

    /// A step's random shift (rows, columns) of the picture.
    fn jitter(&self, rng: &mut impl Rng) -> [i64; 2] {
        let jitter = self.params.jitter as i64;
        let ox = rng.random_range(-jitter..=jitter);
        let oy = rng.random_range(-jitter..=jitter);
        [oy, ox]
    }

    /// DeepDream's normalised ascent with the dream's step size, in the network's units.
    fn ascent(&self) -> NormalisedAscent {
        let preprocess = self.network.preprocess();
        NormalisedAscent {
            step_size: self.params.step_size,
            units: preprocess.value_per_pixel_level(),
            ranges: preprocess.value_range(),
        }
    }

    /// Each channel's step along a gradient of mean absolute value `mean_abs` on a `width` x
    /// `height` picture (see [`NormalisedAscent::factors`]); an error for a gradient that is not
    /// finite.
    fn factors(&self, mean_abs: f32, width: usize, height: usize) -> Result<[f32; 3]> {
        self.ascent()
            .factors(mean_abs)
            .ok_or_else(|| self.non_finite(width, height))
    }

    /// The error for a gradient that is not finite on a `width` x `height` picture.
    fn non_finite(&self, width: usize, height: usize) -> Error {
        Error::NonFiniteGradient {
            layer: self.whole.terms[0].name.clone(),
            width,
            height,
        }
    }

    /// `image` (a preprocessed picture) kept on the network's device for whole steps of this
    /// dream's objective and ascent, at its own size only; `None` where the device does not
    /// run whole steps or the steps are not plain (see [`Dreamer::dream_watched`]).
    /// Benchmarks time a device's steps through it.
    pub fn keep(&self, image: &Tensor<4>) -> Result<Option<Box<dyn KeptOctaves + '_>>> {
        let [_, _, height, width] = image.dims();
        let size = [(height, width)];
        if self.keepable_octaves(&size)? == 0 {
            return Ok(None);
        }
        let Some(mut kept) = self.kept_octaves(image, &size)? else {
            return Ok(None);
        };
        kept.next_octave()?;
        kept.aim(
            self.kept_losses(&self.groups, height, width)?,
            self.octave_masks(height, width).change.as_ref(),
        )?;
        Ok(Some(kept))
    }

    /// How many of the octaves of `sizes` (smallest first) may dream on a picture kept on
    /// the network's device, where it runs whole steps: those whose steps are plain, the whole
    /// objective, quadratic, on the whole picture (a change mask, but no regions or tiles).
    fn keepable_octaves(&self, sizes: &[(usize, usize)]) -> Result<usize> {
        let [whole] = self.groups.as_slice() else {
            return Ok(0);
        };
        let Some(&(height, width)) = sizes.first() else {
            return Ok(0);
        };
        let no_masks = vec![None; whole.terms.len()];
        if whole.region.is_some()
            || self
                .layer_terms(whole, height, width, None, None, &no_masks)?
                .is_none()
        {
            return Ok(0);
        }
        let mut count = 0;
        for &(height, width) in sizes {
            if self.plan(width, height)?.tile.is_some() {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// `image`'s octaves of `sizes` (the last `image`'s own size; see
    /// [`Dreamer::keepable_octaves`]) kept on the network's device; `None` where it keeps
    /// none or there are none.
    fn kept_octaves(
        &self,
        image: &Tensor<4>,
        sizes: &[(usize, usize)],
    ) -> Result<Option<Box<dyn KeptOctaves + '_>>> {
        let [whole] = self.groups.as_slice() else {
            return Ok(None);
        };
        if sizes.is_empty() {
            return Ok(None);
        }
        self.network
            .keep_octaves(image, sizes, &whole.layers, self.ascent())
            .transpose()
    }

    /// The loss of a kept octave of `height` x `width` (see [`Dreamer::kept_octaves`]): the
    /// whole objective, its terms at each layer.
    fn kept_losses(
        &self,
        groups: &[Group],
        height: usize,
        width: usize,
    ) -> Result<Vec<LayerTerms>> {
        let no_losses = || Error::InvalidParameter("the objective is not quadratic".into());
        let [whole] = groups else {
            return Err(no_losses());
        };
        let no_masks = vec![None; whole.terms.len()];
        self.layer_terms(whole, height, width, None, None, &no_masks)?
            .ok_or_else(no_losses)
    }

    /// Each term's region mask on the picture rolled by `shift`, at the size of the term's
    /// layer output (`None` for a term without a region).
    fn term_masks(
        &self,
        terms: &[Term],
        masks: &OctaveMasks,
        shift: [i64; 2],
        height: usize,
        width: usize,
    ) -> Result<Vec<Option<Tensor<4>>>> {
        terms
            .iter()
            .map(|term| {
                let Some(mask) = term.region.and_then(|r| masks.regions[r].clone()) else {
                    return Ok(None);
                };
                let (h, w) = self.output_size(term.layer, height, width)?;
                let rolled = mask.roll(&shift, &[2, 3]);
                Ok(Some(adaptive_avg_pool2d(rolled, [h, w])))
            })
            .collect()
    }

    /// The gradient of the objective with respect to the (preprocessed) input, computed on
    /// the whole image at once.
    pub fn gradient(&self, input: Tensor<4>) -> Result<Tensor<4>> {
        self.gradient_of(input, &self.whole, &vec![None; self.whole.terms.len()])
    }

    /// [`Dreamer::gradient`] for `terms`, each weighted by its mask.
    fn gradient_of(
        &self,
        input: Tensor<4>,
        group: &Group,
        masks: &[Option<Tensor<4>>],
    ) -> Result<Tensor<4>> {
        let terms = &group.terms;
        on_worker(|| {
            let [_, _, height, width] = input.dims();
            let mut gradients =
                |activations| self.layer_gradients(terms, activations, None, None, masks);
            let mut loss = LayerLoss {
                gradients: &mut gradients,
                terms: self.layer_terms(group, height, width, None, None, masks)?,
                values: None,
            };
            if let Some(gradient) =
                self.network
                    .input_gradient(input.clone(), &group.layers, &mut loss)
            {
                return gradient;
            }
            let input = input.autodiff().require_grad();
            let activations = self.network.forward(input.clone(), &group.layers)?;
            let loss = self.loss(terms, activations, None, None, masks);
            self.input_gradient(&input, loss)
        })
    }

    /// The same gradient as [`Dreamer::gradient`], computed tile by tile so that memory
    /// depends on `tile`, not on the image size. The layer outputs are split into tiles of
    /// `tile` input pixels (a multiple of the layers' stride), the grid shifted by `offset`;
    /// each tile runs on a crop with enough context around it that its outputs are exactly
    /// those of the whole image, and only its own outputs enter the objective.
    pub fn tiled_gradient(
        &self,
        input: Tensor<4>,
        tile: usize,
        offset: (usize, usize),
    ) -> Result<Tensor<4>> {
        let masks = vec![None; self.whole.terms.len()];
        self.tiled_gradient_of(input, tile, offset, &self.whole, &masks)
    }

    /// [`Dreamer::tiled_gradient`] for `terms`, each weighted by its mask (over the whole
    /// picture's layer output).
    fn tiled_gradient_of(
        &self,
        input: Tensor<4>,
        tile: usize,
        offset: (usize, usize),
        group: &Group,
        masks: &[Option<Tensor<4>>],
    ) -> Result<Tensor<4>> {
        let terms = &group.terms;
        on_worker(|| {
            let tiling = self.tiling().ok_or_else(|| {
                Error::InvalidParameter("this objective cannot be computed in tiles".into())
            })?;
            let [_, _, height, width] = input.dims();
            let same_crops = self.network.prepares_per_shape() || !on_cpu(&self.device);
            let tiles = tiling::tiles(height, width, tile, offset, tiling, same_crops)?;
            let counts = self.full_counts(terms, height, width)?;
            let strides: Vec<usize> = group
                .layers
                .iter()
                .map(|&i| self.network.layers()[i].stride)
                .collect();
            tiling::assemble(&input, &tiles, |crop, tile| {
                let windows_of = |sizes: &[(usize, usize)]| -> Vec<Window> {
                    sizes
                        .iter()
                        .zip(&strides)
                        .map(|(&(h, w), &s)| {
                            let [rows, cols] = tile.owned_outputs(s, h, w);
                            let origin = (tile.crop_rows.start / s, tile.crop_cols.start / s);
                            Window { rows, cols, origin }
                        })
                        .collect()
                };
                let sizes_of = |activations: &[Tensor<4>]| -> Vec<(usize, usize)> {
                    activations
                        .iter()
                        .map(|a| {
                            let [_, _, h, w] = a.dims();
                            (h, w)
                        })
                        .collect()
                };
                let mut gradients = |activations: Vec<Tensor<4>>| {
                    let windows = windows_of(&sizes_of(&activations));
                    self.layer_gradients(terms, activations, Some(&windows), Some(&counts), masks)
                };
                let [_, _, crop_height, crop_width] = crop.dims();
                let sizes = group
                    .layers
                    .iter()
                    .map(|&layer| self.output_size(layer, crop_height, crop_width))
                    .collect::<Result<Vec<_>>>()?;
                let windows = windows_of(&sizes);
                let mut loss = LayerLoss {
                    gradients: &mut gradients,
                    terms: self.layer_terms(
                        group,
                        crop_height,
                        crop_width,
                        Some(&windows),
                        Some(&counts),
                        masks,
                    )?,
                    values: None,
                };
                if let Some(gradient) =
                    self.network
                        .input_gradient(crop.clone(), &group.layers, &mut loss)
                {
                    return gradient.map(Some);
                }
                let crop = crop.autodiff().require_grad();
                let activations = self.network.forward(crop.clone(), &group.layers)?;
                if windows.iter().all(Window::is_empty) {
                    return Ok(None);
                }
                let loss = self.loss(terms, activations, Some(&windows), Some(&counts), masks);
                self.input_gradient(&crop, loss).map(Some)
            })
        })
    }

    /// What tiling the objective needs: the coarsest stride of its layers (a multiple of the
    /// others) and their widest context; `None` if the objective mixes all pixels (a class
    /// logit) or the strides do not nest.
    pub fn tiling(&self) -> Option<Tiling> {
        let layers = self.network.layers();
        let terms = &self.whole.terms;
        let infos: Vec<&LayerInfo> = terms.iter().map(|t| &layers[t.layer]).collect();
        if terms.iter().any(|t| t.class.is_some())
            || infos.iter().any(|l| l.stride == 0 || l.halo == usize::MAX)
        {
            return None;
        }
        let stride = infos.iter().map(|l| l.stride).max()?;
        let halo = infos.iter().map(|l| l.halo).max()?;
        infos
            .iter()
            .all(|l| stride % l.stride == 0)
            .then_some(Tiling { stride, halo })
    }

    /// The size of `layer`'s output for a `height` x `width` input.
    fn output_size(&self, layer: usize, height: usize, width: usize) -> Result<(usize, usize)> {
        self.network
            .output_size(layer, height, width)
            .ok_or_else(|| Error::InvalidParameter("image too small for the layer".into()))
    }

    /// Each term's element count over the whole image (what its sum is divided by).
    fn full_counts(&self, terms: &[Term], height: usize, width: usize) -> Result<Vec<f32>> {
        let layers = self.network.layers();
        terms
            .iter()
            .map(|term| {
                let (h, w) = self.output_size(term.layer, height, width)?;
                let channels = match &term.channels {
                    Some(chosen) => chosen.list.len(),
                    None => layers[term.layer].channels,
                };
                Ok((channels * h * w) as f32)
            })
            .collect()
    }

    /// The objective: each layer term's ½Σa² (weighted by its region's `masks`, or a guide
    /// match) over its window (all of it when `None`), weighted and divided by `counts`
    /// (the window's own element count when `None`); class terms add their logit.
    fn loss(
        &self,
        terms: &[Term],
        activations: Vec<Tensor<4>>,
        windows: Option<&[Window]>,
        counts: Option<&[f32]>,
        masks: &[Option<Tensor<4>>],
    ) -> Tensor<1> {
        let mut loss: Option<Tensor<1>> = None;
        for (index, term) in terms.iter().enumerate() {
            let activation = activations[term.slot].clone();
            let value = if let Some(class) = term.class {
                // The class's logit itself, not its square: a negative logit must grow too.
                activation.narrow(1, class, 1).sum().mul_scalar(term.weight)
            } else {
                let mask = masks[index].clone();
                let (activation, mask) = match windows.map(|w| &w[term.slot]) {
                    Some(window) if window.is_empty() => continue,
                    Some(window) => (
                        window.crop(activation, (0, 0)),
                        mask.map(|m| window.crop(m, window.origin)),
                    ),
                    None => (activation, mask),
                };
                let (activation, guide) = match &term.channels {
                    Some(chosen) => (
                        activation.select(1, chosen.index.clone().autodiff()),
                        chosen.guide.clone(),
                    ),
                    None => (activation, term.guide.clone()),
                };
                let count = counts.map_or(activation.shape().num_elements() as f32, |c| c[index]);
                let value = match (guide, mask) {
                    (Some(guide), _) => {
                        let matched = matched_guide(activation.clone().inner(), &guide);
                        objective::guide_match(activation, matched.autodiff())
                    }
                    (None, Some(mask)) => {
                        objective::amplify(activation.mul(mask.sqrt().autodiff()))
                    }
                    (None, None) => objective::amplify(activation),
                };
                value.mul_scalar(term.weight / count)
            };
            loss = Some(match loss {
                Some(loss) => loss.add(value),
                None => value,
            });
        }
        loss.expect("at least one term with a region")
    }

    /// The gradient of [`Dreamer::loss`] with respect to each of the layers' outputs
    /// `activations`, for a network that runs the rest of the gradient itself.
    fn layer_gradients(
        &self,
        terms: &[Term],
        activations: Vec<Tensor<4>>,
        windows: Option<&[Window]>,
        counts: Option<&[f32]>,
        masks: &[Option<Tensor<4>>],
    ) -> Result<Vec<Tensor<4>>> {
        let leaves = objective::leaves(activations);
        if let Some(windows) = windows
            && windows.iter().all(Window::is_empty)
        {
            return Ok(leaves.into_iter().map(|l| l.inner().zeros_like()).collect());
        }
        let gradients = self
            .loss(terms, leaves.clone(), windows, counts, masks)
            .backward();
        Ok(objective::leaf_gradients(leaves, &gradients))
    }

    /// [`Dreamer::loss`] of `group` for a `height`x`width` input as one [`LayerTerms`]
    /// per layer of the group (windowed and counted as there); `None` where a term has a
    /// guide or a mask, which are not quadratic.
    fn layer_terms(
        &self,
        group: &Group,
        height: usize,
        width: usize,
        windows: Option<&[Window]>,
        counts: Option<&[f32]>,
        masks: &[Option<Tensor<4>>],
    ) -> Result<Option<Vec<LayerTerms>>> {
        let terms = &group.terms;
        // A region's mask weighs its terms' squares on whole layers (not a tile's window,
        // nor a class's logit), one mask for every term of a layer.
        let mut slot_masks: Vec<Option<&Tensor<4>>> = vec![None; group.layers.len()];
        for (term, mask) in terms.iter().zip(masks) {
            if let Some(mask) = mask {
                if windows.is_some() || term.class.is_some() {
                    return Ok(None);
                }
                slot_masks[term.slot] = Some(mask);
            }
        }
        if terms
            .iter()
            .zip(masks)
            .any(|(term, mask)| mask.is_some() != slot_masks[term.slot].is_some())
        {
            return Ok(None);
        }
        let layers = self.network.layers();
        let mut losses = group
            .layers
            .iter()
            .enumerate()
            .map(|(slot, &layer)| {
                let (rows, cols) = match windows {
                    Some(windows) => (windows[slot].rows.clone(), windows[slot].cols.clone()),
                    None => {
                        let (h, w) = self.output_size(layer, height, width)?;
                        (0..h, 0..w)
                    }
                };
                let mut terms = LayerTerms::zero(layers[layer].channels, rows, cols);
                terms.mask = slot_masks[slot]
                    .map(|mask| {
                        mask.clone().into_data().try_to_vec::<f32>().map_err(|e| {
                            Error::InvalidParameter(format!("cannot read a region's mask: {e:?}"))
                        })
                    })
                    .transpose()?;
                Ok(terms)
            })
            .collect::<Result<Vec<_>>>()?;
        for (index, term) in terms.iter().enumerate() {
            let loss = &mut losses[term.slot];
            if let Some(class) = term.class {
                loss.linear[class] += term.weight;
                continue;
            }
            let all: Vec<usize>;
            let channels = match &term.channels {
                Some(chosen) => &chosen.list,
                None => {
                    all = (0..layers[term.layer].channels).collect();
                    &all
                }
            };
            let count = counts.map_or(
                (channels.len() * loss.rows.len() * loss.cols.len()) as f32,
                |c| c[index],
            );
            match &term.guide {
                Some(guide) => loss.guides.push(Guide {
                    features: guide_features(guide, channels)?,
                    positions: guide.dims()[1],
                    weight: term.weight / count,
                }),
                None => {
                    for &channel in channels {
                        loss.quadratic[channel] += term.weight / count;
                    }
                }
            }
        }
        Ok(Some(losses))
    }

    fn input_gradient(&self, input: &Tensor<4>, loss: Tensor<1>) -> Result<Tensor<4>> {
        let gradients = loss.backward();
        let gradient = input.grad(&gradients).ok_or_else(|| {
            Error::InvalidParameter("the objective does not depend on the image".into())
        })?;
        Ok(gradient.inner())
    }

    /// Features of the guide image at each of `layers`, as `[C, positions]`.
    fn guide_features(&self, guide: &RgbImage, layers: &[usize]) -> Result<Vec<Tensor<2>>> {
        let (w, h) = guide.dimensions();
        let scale = (GUIDE_MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
        let (gw, gh) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        let resized = image::imageops::resize(guide, gw, gh, image::imageops::FilterType::Triangle);
        if (gw.min(gh) as usize) < self.min_side {
            return Err(Error::ImageTooSmall {
                width: gw,
                height: gh,
                layer: self.whole.terms[0].name.clone(),
                min: self.min_side as u32,
            });
        }
        let input = self.network.preprocess().apply(&resized, &self.device);
        let activations = self.network.forward(input, layers)?;
        Ok(activations
            .into_iter()
            .map(|a| {
                let [_, c, h, w] = a.dims();
                a.reshape([c, h * w])
            })
            .collect())
    }
}

impl Window {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() || self.cols.is_empty()
    }

    /// The window of `tensor` (a layer output whose first row and column are `origin` of
    /// the window's coordinates).
    fn crop(&self, tensor: Tensor<4>, origin: (usize, usize)) -> Tensor<4> {
        tensor
            .narrow(2, origin.0 + self.rows.start, self.rows.len())
            .narrow(3, origin.1 + self.cols.start, self.cols.len())
    }
}

/// The position of `layer` in `slots`, added at the end if it is not there yet.
fn slot_of(slots: &mut Vec<usize>, layer: usize) -> usize {
    match slots.iter().position(|&l| l == layer) {
        Some(slot) => slot,
        None => {
            slots.push(layer);
            slots.len() - 1
        }
    }
}

/// A guide's features (`[C, P]`, every channel) for a device's [`Guide`]: row-major, the
/// rows of channels outside `channels` zero.
fn guide_features(guide: &Tensor<2>, channels: &[usize]) -> Result<Vec<f32>> {
    let [all, positions] = guide.dims();
    let values = guide
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::InvalidParameter(format!("cannot read a guide: {e:?}")))?;
    let mut features = vec![0.0; all * positions];
    for &channel in channels {
        let row = channel * positions..(channel + 1) * positions;
        features[row.clone()].copy_from_slice(&values[row]);
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/no_panic.rs`: automatic channels picking none left a layer of no
    /// channels, which a guide's match could not reshape.
    #[test]
    fn automatic_channels_must_pick_some() {
        use crate::control::channels::{AutoChannels, Pick};
        let params = DreamParams {
            auto_channels: Some(AutoChannels {
                pick: Pick::Weakest,
                count: 0,
                each_octave: true,
            }),
            ..DreamParams::default()
        };
        let error = params.validate().unwrap_err().to_string();
        assert!(error.contains("at least one channel"), "{error}");
    }

    #[test]
    fn each_position_takes_the_guide_feature_with_the_largest_dot_product() {
        let device = Device::flex();
        // Two positions: (1, 0) and (0, 1) over two channels.
        let activation =
            Tensor::<1>::from_floats([1.0, 0.0, 0.0, 1.0], &device).reshape([1, 2, 1, 2]);
        // Three guide features as columns: (0.9, 0.1), (0.1, 0.8), (-1, -1).
        let guide =
            Tensor::<1>::from_floats([0.9, 0.1, -1.0, 0.1, 0.8, -1.0], &device).reshape([2, 3]);
        let matched: Vec<f32> = matched_guide(activation, &guide)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(matched, vec![0.9, 0.1, 0.1, 0.8]);
    }
}
