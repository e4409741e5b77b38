//! The hook through which a network computes its own input gradient (the CUDA device's
//! path): a network that answers it with burn's autodiff must give the dream's gradient
//! (whole and tiled, in crops of one size as on a GPU) and the objectives' values and
//! gradients exactly as the ordinary path does, so the engine's side of the hook is checked
//! without a GPU.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Distribution, Tensor};
use common::{relative_l2_error, test_network};
use deepdream::backend::ascend;
use deepdream::engine::objective::{Objective, Term, gram};
use deepdream::engine::octaves;
use deepdream::networks::network::{
    KeptImage, KeptOctaves, LayerLoss, LayerTerms, NormalisedAscent,
};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network};

/// A network that answers the hook: forward with autodiff, the loss's gradients at the
/// layers from the hook's caller (from its described terms where it gives them and `quadratic`
/// is set, as the CUDA device does, counting them in `terms_used`), then back to the input
/// through ⟨layer, its gradient⟩.
struct ViaHook {
    network: Box<dyn Network>,
    quadratic: bool,
    terms_used: AtomicUsize,
    kept_steps: AtomicUsize,
    /// From which kept step on the gradient is not a number (as from a broken network).
    broken_from: usize,
}

/// A picture's octaves kept as the GPU keeps them: each octave begun from the one before
/// (`octaves::start`), its steps done as the GPU does them: roll, the described terms'
/// gradient through ⟨layer, its gradient⟩ (weighted by the change mask rolled as the picture
/// was), its mean absolute value (over the mask's weight), the update (none for a gradient
/// that is not finite, which is flagged, or a mask of no weight).
struct HostKept<'a> {
    hook: &'a ViaHook,
    bases: Vec<Tensor<4>>,
    /// The octave under way, and whether its steps are set.
    octave: Option<usize>,
    aimed: bool,
    image: Tensor<4>,
    layers: Vec<usize>,
    losses: Vec<LayerTerms>,
    ascent: NormalisedAscent,
    change: Option<Tensor<4>>,
    finite: bool,
}

impl KeptOctaves for HostKept<'_> {
    fn next_octave(&mut self) -> deepdream::Result<()> {
        let next = self.octave.map_or(0, |octave| octave + 1);
        let Some(base) = self.bases.get(next) else {
            return Err(deepdream::Error::InvalidParameter("no octave left".into()));
        };
        let before = self.octave.map(|octave| (&self.image, &self.bases[octave]));
        self.image = octaves::start(base, before);
        self.octave = Some(next);
        self.aimed = false;
        Ok(())
    }

    fn aim(
        &mut self,
        losses: Vec<LayerTerms>,
        change: Option<&Tensor<4>>,
    ) -> deepdream::Result<()> {
        self.losses = losses;
        self.change = change.cloned();
        self.aimed = true;
        Ok(())
    }
}

impl KeptImage for HostKept<'_> {
    fn step(&mut self, shift: [i64; 2]) -> deepdream::Result<()> {
        assert!(self.aimed, "steps come after the octave's aim");
        let step = self.hook.kept_steps.fetch_add(1, Ordering::Relaxed);
        let area: f32 = match &self.change {
            Some(change) => change.clone().sum().into_scalar(),
            None => 1.0,
        };
        if area <= 0.0 {
            return Ok(());
        }
        let rolled = self.image.clone().roll(&shift, &[2, 3]);
        let input = rolled.autodiff().require_grad();
        let outputs = self.hook.network.forward(input.clone(), &self.layers)?;
        let surrogate = outputs
            .into_iter()
            .zip(&self.losses)
            .map(|(a, loss)| {
                let seed = loss.gradient(a.clone().inner());
                a.mul(seed.autodiff()).sum()
            })
            .reduce(Tensor::add)
            .expect("a layer");
        let gradient = input
            .grad(&surrogate.backward())
            .expect("reaches the input")
            .inner();
        let gradient = if step >= self.hook.broken_from {
            gradient.mul_scalar(f32::NAN)
        } else {
            gradient
        };
        let (gradient, mean_abs) = match &self.change {
            None => {
                let mean_abs: f32 = gradient.clone().abs().mean().into_scalar();
                (gradient, mean_abs)
            }
            Some(change) => {
                let weighted = gradient.mul(change.clone().roll(&shift, &[2, 3]));
                let total: f32 = weighted.clone().abs().sum().into_scalar();
                (weighted, total / (3.0 * area))
            }
        };
        match self.ascent.factors(mean_abs) {
            Some(factors) => {
                self.image = ascend(
                    self.image.clone(),
                    gradient,
                    shift,
                    factors,
                    self.ascent.ranges,
                )
            }
            None => self.finite = false,
        }
        Ok(())
    }

    fn finite(&self) -> deepdream::Result<bool> {
        Ok(self.finite)
    }

    fn image(&self) -> deepdream::Result<Tensor<4>> {
        Ok(self.image.clone())
    }
}

impl ViaHook {
    fn new(network: Box<dyn Network>, quadratic: bool) -> Self {
        ViaHook {
            network,
            quadratic,
            terms_used: AtomicUsize::new(0),
            kept_steps: AtomicUsize::new(0),
            broken_from: usize::MAX,
        }
    }
}

impl Network for ViaHook {
    pass_network_on!(network);
    /// As the CUDA device: tiled gradients then take crops of one size, checked here against
    /// the plain network's crops sized to their tiles.
    fn prepares_per_shape(&self) -> bool {
        true
    }
    /// As the CUDA device, when it takes described terms: whole dreams on the kept octaves,
    /// their steps counted in `kept_steps`.
    fn keep_octaves(
        &self,
        image: &Tensor<4>,
        sizes: &[(usize, usize)],
        layers: &[usize],
        ascent: NormalisedAscent,
    ) -> Option<deepdream::Result<Box<dyn KeptOctaves + '_>>> {
        self.quadratic.then(|| {
            Ok(Box::new(HostKept {
                hook: self,
                bases: octaves::bases(image.clone(), sizes),
                octave: None,
                aimed: false,
                image: image.clone(),
                layers: layers.to_vec(),
                losses: Vec::new(),
                ascent,
                change: None,
                finite: true,
            }) as Box<dyn KeptOctaves>)
        })
    }
    fn input_gradient(
        &self,
        input: Tensor<4>,
        layers: &[usize],
        loss: &mut LayerLoss<'_>,
    ) -> Option<deepdream::Result<Tensor<4>>> {
        let run = || {
            let input = input.autodiff().require_grad();
            let outputs = self.network.forward(input.clone(), layers)?;
            let plain: Vec<Tensor<4>> = outputs.iter().map(|a| a.clone().inner()).collect();
            let seeds = match &loss.terms {
                Some(losses) if self.quadratic => {
                    self.terms_used.fetch_add(1, Ordering::Relaxed);
                    let values = plain.iter().zip(losses);
                    loss.values = Some(values.map(|(a, loss)| loss.values(a.clone())).collect());
                    plain
                        .into_iter()
                        .zip(losses)
                        .map(|(a, loss)| loss.gradient(a))
                        .collect()
                }
                _ => (loss.gradients)(plain)?,
            };
            let surrogate = outputs
                .into_iter()
                .zip(seeds)
                .map(|(a, seed)| a.mul(seed.autodiff()).sum())
                .reduce(Tensor::add)
                .expect("a layer");
            Ok(input
                .grad(&surrogate.backward())
                .expect("reaches the input")
                .inner())
        };
        Some(run())
    }
}

/// A guide image with a feature in each direction.
fn guide() -> image::RgbImage {
    image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 6) as u8, 128])
    })
}

fn values(tensor: Tensor<4>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn the_dream_gradient_through_the_hook_is_the_ordinary_one() {
    let device = Device::flex();
    let plain = test_network(&device);
    let hooked = ViaHook::new(Box::new(test_network(&device)), false);
    let params = DreamParams {
        layers: vec![
            LayerWeight {
                layer: "mixed".into(),
                weight: 1.0,
            },
            LayerWeight {
                layer: "pool1".into(),
                weight: 0.5,
            },
        ],
        ..DreamParams::default()
    };
    let input = Tensor::<4>::random([1, 3, 45, 38], Distribution::Uniform(-1.0, 1.0), &device);
    let ours = Dreamer::new(&hooked, params.clone(), &device).unwrap();
    let theirs = Dreamer::new(&plain, params, &device).unwrap();
    assert_same_gradients(&ours, &theirs, &input, "two layers");
}

/// `ours` and `theirs` give `input` the same gradient, whole and tiled (16-pixel tiles, the
/// grid shifted).
fn assert_same_gradients(ours: &Dreamer, theirs: &Dreamer, input: &Tensor<4>, case: &str) {
    let whole = relative_l2_error(
        &values(ours.gradient(input.clone()).unwrap()),
        &values(theirs.gradient(input.clone()).unwrap()),
    );
    assert!(whole < 1e-5, "{case}, whole image: {whole:e}");
    let tiled = relative_l2_error(
        &values(ours.tiled_gradient(input.clone(), 16, (3, 5)).unwrap()),
        &values(theirs.tiled_gradient(input.clone(), 16, (3, 5)).unwrap()),
    );
    assert!(tiled < 1e-5, "{case}, tiled: {tiled:e}");
}

#[test]
fn objectives_through_the_hook_are_the_ordinary_ones() {
    let device = Device::flex();
    let plain = test_network(&device);
    let mixed = plain.layer_index("mixed").unwrap();
    let pool = plain.layer_index("pool1").unwrap();
    let image = Tensor::<4>::random([1, 3, 40, 36], Distribution::Uniform(-1.0, 1.0), &device);
    let targets = plain
        .forward(image.clone().mul_scalar(0.5), &[mixed, pool])
        .unwrap();
    let objective = Objective::new()
        .with(
            Term::Content {
                layer: mixed,
                target: targets[0].clone(),
            },
            1.0,
        )
        .with(
            Term::Style {
                layer: pool,
                target: gram(targets[1].clone()),
            },
            100.0,
        )
        .with(
            Term::Style {
                layer: mixed,
                target: gram(targets[0].clone().mul_scalar(1.5)),
            },
            30.0,
        )
        .with(Term::TotalVariation, 0.1)
        .with(
            Term::Channel {
                layer: mixed,
                channel: 2,
            },
            3.0,
        )
        .with(Term::Amplify { layer: pool }, 0.5);
    let (theirs, their_gradient) = objective.evaluate(&plain, image.clone()).unwrap();
    let their_gradient = values(their_gradient);
    // The loss's gradients at the layers from the host, then made from the terms'
    // description as a device makes them.
    for quadratic in [false, true] {
        let hooked = ViaHook::new(Box::new(test_network(&device)), quadratic);
        let (ours, our_gradient) = objective.evaluate(&hooked, image.clone()).unwrap();
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
        for (what, a, b) in [
            ("total", ours.total, theirs.total),
            ("content", ours.content, theirs.content),
            ("style", ours.style, theirs.style),
            ("activation", ours.activation, theirs.activation),
            (
                "total variation",
                ours.total_variation,
                theirs.total_variation,
            ),
        ] {
            assert!(
                close(a, b),
                "{what} (quadratic {quadratic}): {ours:?} vs {theirs:?}"
            );
        }
        let error = relative_l2_error(&values(our_gradient), &their_gradient);
        assert!(error < 1e-5, "quadratic {quadratic}: {error:e}");
        let used = hooked.terms_used.load(Ordering::Relaxed);
        assert_eq!(used > 0, quadratic, "described losses used {used} times");
    }
}

/// DeepDream's objective as described terms (what the CUDA device computes on the GPU):
/// layers, channels and tiles give the ordinary gradient; guides and masks, which
/// are not quadratic, are left to the host.
#[test]
fn described_terms_give_the_ordinary_gradient() {
    let device = Device::flex();
    let plain = test_network(&device);
    let input = Tensor::<4>::random([1, 3, 45, 38], Distribution::Uniform(-1.0, 1.0), &device);
    let layer = |name: &str, weight| LayerWeight {
        layer: name.into(),
        weight,
    };
    let two_layers = DreamParams {
        layers: vec![layer("mixed", 1.0), layer("pool1", 0.5)],
        ..DreamParams::default()
    };
    let cases = [
        ("two layers", two_layers.clone(), true),
        (
            "channels",
            DreamParams {
                layers: vec![layer("mixed", 2.0)],
                channels: Some(vec![1, 3]),
                ..DreamParams::default()
            },
            true,
        ),
        (
            "a guide",
            DreamParams {
                guide: Some(guide()),
                ..two_layers
            },
            true,
        ),
        (
            "a guide on chosen channels",
            DreamParams {
                layers: vec![layer("mixed", 2.0)],
                channels: Some(vec![0, 3]),
                guide: Some(guide()),
                ..DreamParams::default()
            },
            true,
        ),
    ];
    for (case, params, quadratic) in cases {
        let hooked = ViaHook::new(Box::new(test_network(&device)), true);
        let ours = Dreamer::new(&hooked, params.clone(), &device).unwrap();
        let theirs = Dreamer::new(&plain, params, &device).unwrap();
        assert_same_gradients(&ours, &theirs, &input, case);
        let used = hooked.terms_used.load(Ordering::Relaxed);
        assert_eq!(
            used > 0,
            quadratic,
            "{case}: described terms used {used} times"
        );
    }
}

/// How a dream through the hook (kept octaves and described terms) compared with the plain
/// one (see [`kept_and_plain`]).
struct Compared {
    /// Steps taken on the kept picture.
    kept_steps: usize,
    /// Gradients made from the described terms.
    terms_used: usize,
    /// Values more than one level apart from the plain dream's.
    differences: usize,
    /// Values the dream changed in the photo.
    changed: usize,
}

/// The same dream through the hook (kept octaves where it can, described terms) and
/// through the plain network, compared.
fn kept_and_plain(params: &DreamParams, photo: &image::RgbImage) -> Compared {
    let device = Device::flex();
    let kept = ViaHook::new(Box::new(test_network(&device)), true);
    let ours = Dreamer::new(&kept, params.clone(), &device)
        .unwrap()
        .dream(photo, |_| {})
        .unwrap();
    let plain = test_network(&device);
    let theirs = Dreamer::new(&plain, params.clone(), &device)
        .unwrap()
        .dream(photo, |_| {})
        .unwrap();
    let differences = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .filter(|(a, b)| a.abs_diff(**b) > 1)
        .count();
    let changed = ours
        .as_raw()
        .iter()
        .zip(photo.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    Compared {
        kept_steps: kept.kept_steps.load(Ordering::Relaxed),
        terms_used: kept.terms_used.load(Ordering::Relaxed),
        differences,
        changed,
    }
}

/// A dream whose octaves and steps run on the kept picture (the CUDA device's path, here on
/// the host) gives the ordinary dream's picture: each octave begun as the engine begins it,
/// the same shifts in the same order, the same steps and clamping; with a change mask too
/// (the gradient weighted by the mask rolled as the picture was, its mean over the mask's
/// weight); a mask of no weight changes nothing; with a guide's pull; with channels picked
/// again at each octave from its start.
#[test]
fn a_dream_on_a_kept_image_is_the_ordinary_dream() {
    let (photo, params) = two_octaves();
    assert_kept_is_plain("the default", &params, &photo, 6, 2);

    let mask = |pixel: &dyn Fn(u32, u32) -> u8| {
        Some(deepdream::control::mask::Mask::from_image(
            &image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(96, 96, |x, y| {
                image::Luma([pixel(x, y)])
            })),
        ))
    };
    // Full strength on the left, fading to none on the right.
    let masked = DreamParams {
        mask: mask(&|x, _| (255 - (x * 255 / 95).min(255)) as u8),
        ..params.clone()
    };
    assert_kept_is_plain("a change mask", &masked, &photo, 6, 4);

    let nowhere = DreamParams {
        mask: mask(&|_, _| 0),
        ..params.clone()
    };
    let nothing = kept_and_plain(&nowhere, &photo);
    assert_eq!(
        (nothing.differences, nothing.changed),
        (0, 0),
        "a mask of no weight"
    );

    // A guide's pull, made on the device from its features.
    let guided = DreamParams {
        guide: Some(guide()),
        ..params.clone()
    };
    assert_kept_is_plain("a guide", &guided, &photo, 6, 2);

    // Channels picked from each octave's start, which the kept octaves give back.
    let weakest = DreamParams {
        auto_channels: Some(deepdream::control::channels::AutoChannels {
            pick: deepdream::control::channels::Pick::Weakest,
            count: 2,
            each_octave: true,
        }),
        ..params
    };
    assert_kept_is_plain("automatic channels", &weakest, &photo, 6, 2);
}

/// A 96x96 crop of the test photo, and a dream of it in two octaves of three steps.
fn two_octaves() -> (image::RgbImage, DreamParams) {
    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        octaves: 2,
        iterations: 3,
        seed: 7,
        ..DreamParams::default()
    };
    (common::photo_crop(20, 10, 96), params)
}

/// A dream of `params` through the hook's kept octaves is the plain one (no more than one
/// value in a thousand a level apart), took `steps` steps on the kept picture, and changed
/// more than one value in `share` of the photo; how it compared.
fn assert_kept_is_plain(
    case: &str,
    params: &DreamParams,
    photo: &image::RgbImage,
    steps: usize,
    share: usize,
) -> Compared {
    let values = photo.as_raw().len();
    let compared = kept_and_plain(params, photo);
    let Compared {
        kept_steps,
        differences,
        changed,
        ..
    } = compared;
    assert_eq!(kept_steps, steps, "{case}: the steps on the kept picture");
    assert!(
        differences * 1000 <= values,
        "{case}: {differences} of {values} values differ by more than one level"
    );
    assert!(
        changed * share > values,
        "{case}: the dream changed the picture"
    );
    compared
}

/// A dream of two regions, each amplifying its own layer under its own soft mask, made from
/// the described terms (each region's layer weighted by its mask, as the CUDA device makes
/// it) is the ordinary dream.
#[test]
fn regions_through_described_terms_are_the_ordinary_dream() {
    let (photo, params) = two_octaves();
    let soft = |left: bool| {
        Some(deepdream::control::mask::Mask::from_image(
            &image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(96, 96, move |x, _| {
                let level = (x * 255 / 95) as u8;
                image::Luma([if left { 255 - level } else { level }])
            })),
        ))
    };
    let region = |left: bool, layer: &str| deepdream::control::region::Region {
        mask: soft(left),
        layers: vec![LayerWeight {
            layer: layer.into(),
            weight: 1.0,
        }],
        channels: None,
    };
    let params = DreamParams {
        layers: Vec::new(),
        regions: vec![region(true, "mixed"), region(false, "pool1")],
        ..params
    };
    let compared = assert_kept_is_plain("two regions", &params, &photo, 0, 2);
    assert!(compared.terms_used > 0, "described terms used");
}

/// A picture whose largest octave must be tiled within the memory budget dreams its smaller
/// octaves on the kept picture and the largest on the host, tile by tile, from the picture
/// the device gives back: the ordinary dream's picture.
#[test]
fn octaves_too_large_for_the_device_dream_on_the_host() {
    let (photo, params) = two_octaves();
    // The smallest budget in which the smaller octave needs no tiles.
    let device = Device::flex();
    let network = test_network(&device);
    let sizes = deepdream::engine::octaves::sizes(96, 96, 2, params.octave_scale, 1).unwrap();
    let [(small, _), (large, _)] = sizes[..] else {
        panic!("two octaves: {sizes:?}")
    };
    let tiled = |budget: u64, side: usize| {
        let params = DreamParams {
            max_memory: Some(budget),
            ..params.clone()
        };
        let dreamer = Dreamer::new(&network, params, &device).unwrap();
        dreamer.plan(side, side).map(|plan| plan.tile.is_some())
    };
    let budget = (0..200)
        .map(|step| (1024.0 * 1.1f64.powi(step)) as u64)
        .find(|&budget| tiled(budget, small).is_ok_and(|tiled| !tiled))
        .expect("a budget for the smaller octave");
    assert!(tiled(budget, large).unwrap(), "the larger octave is tiled");
    let params = DreamParams {
        max_memory: Some(budget),
        ..params
    };
    assert_kept_is_plain("the smaller octave kept", &params, &photo, 3, 2);
}

/// A kept image's gradient that stops being finite halfway through an octave: the step
/// queues without an error (a GPU does not wait for it), and the dream ends with the
/// engine's error at the octave's end, naming the layer and size.
#[test]
fn a_kept_image_whose_gradient_is_not_finite_ends_the_dream_with_an_error() {
    let device = Device::flex();
    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        octaves: 1,
        iterations: 4,
        ..DreamParams::default()
    };
    let mut kept = ViaHook::new(Box::new(test_network(&device)), true);
    kept.broken_from = 2;
    let error = Dreamer::new(&kept, params, &device)
        .unwrap()
        .dream(&common::photo_crop(20, 10, 64), |_| {})
        .unwrap_err();
    assert_eq!(
        kept.kept_steps.load(Ordering::Relaxed),
        4,
        "every step queued"
    );
    assert!(
        matches!(error, deepdream::Error::NonFiniteGradient { ref layer, width: 64, height: 64 } if layer == "mixed"),
        "{error}"
    );
}
