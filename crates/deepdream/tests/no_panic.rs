//! The library never panics on what a user can give it: every mode's entry point, driven by
//! `arbtest` with parameters drawn from the edges of their types (0, 1, huge, NaN, infinite,
//! negative, empty, out of range) on pictures from 1x1 up, must return a result or an error.
//! Runs are stopped after a few steps through the modes' observers, so a huge step count
//! costs nothing. Cases per mode: `DEEPDREAM_FUZZ_CASES` (long run: 10000), else a few
//! hundred.

mod common;

use arbitrary::Unstructured;
use deepdream::control::channels::{AutoChannels, Pick};
use deepdream::control::mask::Mask;
use deepdream::control::region::Region;
use deepdream::engine::optimizer::Optimizer;
use deepdream::engine::parameterisation::Parameterisation;
use deepdream::engine::transform::Transforms;
use deepdream::media::frames::IterSource;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::style::{Init, StyleImage, StyleParams, Stylist};
use deepdream::modes::video::{VideoParams, dream_video_watched};
use deepdream::modes::visualize::{Target, VisualizeParams, visualize_watched};
use deepdream::modes::zoom::{ZoomParams, zoom_watched};
use deepdream::{Device, DreamParams, Dreamer, Error, LayerWeight, Network, OnnxNetwork};
use image::RgbImage;

fn case_count(default: usize) -> usize {
    std::env::var("DEEPDREAM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Steps a case may take before its observer stops it.
const MOST_STEPS: usize = 3;

/// Nine times in ten one of `usual` (so that most cases get past the checks and run),
/// otherwise one of `edges`.
fn pick<T: Copy>(u: &mut Unstructured, usual: &[T], edges: &[T]) -> arbitrary::Result<T> {
    Ok(if u.int_in_range(0..=9)? < 9 {
        *u.choose(usual)?
    } else {
        *u.choose(edges)?
    })
}

fn float(u: &mut Unstructured, usual: &[f32]) -> arbitrary::Result<f32> {
    pick(
        u,
        usual,
        &[
            0.0,
            1.0,
            -1.0,
            1e-30,
            1e30,
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ],
    )
}

fn count(u: &mut Unstructured, usual: &[usize]) -> arbitrary::Result<usize> {
    pick(u, usual, &[0, 1, 1000, usize::MAX])
}

fn picture(u: &mut Unstructured) -> arbitrary::Result<RgbImage> {
    let sides = [16, 24, 33, 48];
    let edges = [1, 2, 3, 7];
    let (w, h) = (pick(u, &sides, &edges)?, pick(u, &sides, &edges)?);
    let value: u8 = u.arbitrary()?;
    Ok(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([value, (x * 7) as u8, (y * 13) as u8])
    }))
}

fn layer_name(u: &mut Unstructured, network: &OnnxNetwork) -> arbitrary::Result<String> {
    let layers = network.layers();
    Ok(if u.int_in_range(0..=9)? < 9 {
        u.choose(layers)?.name.clone()
    } else {
        u.choose(&["no such layer", ""])?.to_string()
    })
}

fn dream_params(u: &mut Unstructured, network: &OnnxNetwork) -> arbitrary::Result<DreamParams> {
    let mut layers = Vec::new();
    for _ in 0..pick(u, &[1, 2], &[0, 3])? {
        layers.push(LayerWeight {
            layer: layer_name(u, network)?,
            weight: float(u, &[1.0, 0.5, 2.0])?,
        });
    }
    let channels = match pick(u, &[0, 1], &[2, 3])? {
        0 => None,
        1 => Some(vec![count(u, &[0, 3])?; u.int_in_range(1..=2)?]),
        2 => Some(Vec::new()),
        _ => Some(vec![usize::MAX]),
    };
    let class = pick(u, &[None], &[Some(0), Some(999), Some(usize::MAX)])?;
    let guide = if u.int_in_range(0..=4)? == 0 {
        Some(picture(u)?)
    } else {
        None
    };
    let mask = |u: &mut Unstructured| -> arbitrary::Result<Mask> {
        let mut mask = Mask::from_image(&image::DynamicImage::ImageRgb8(picture(u)?));
        mask.strength = float(u, &[1.0, 0.5])?;
        Ok(mask)
    };
    // The control options now and then, so that most cases still run.
    let mask_here = match pick(u, &[0, 0, 0, 0, 1], &[2])? {
        0 => None,
        _ => Some(mask(u)?),
    };
    let mut regions = Vec::new();
    for _ in 0..pick(u, &[0, 0, 0, 0, 0, 1, 2], &[3])? {
        regions.push(Region {
            mask: match u.arbitrary()? {
                true => Some(mask(u)?),
                false => None,
            },
            layers: match u.arbitrary()? {
                true => vec![LayerWeight {
                    layer: layer_name(u, network)?,
                    weight: float(u, &[1.0, 0.5])?,
                }],
                false => Vec::new(),
            },
            channels: match pick(u, &[0, 1], &[2])? {
                0 => None,
                1 => Some(vec![count(u, &[0, 3])?]),
                _ => Some(Vec::new()),
            },
        });
    }
    // Picked channels instead of given ones (both at once is refused, now and then).
    let auto_channels = match pick(u, &[0, 0, 0, 0, 0, 1], &[2])? {
        0 => None,
        1 if channels.is_some() => None,
        _ => Some(AutoChannels {
            pick: *u.choose(&[Pick::Strongest, Pick::Weakest, Pick::Random])?,
            count: count(u, &[1, 3])?,
            each_octave: u.arbitrary()?,
        }),
    };
    Ok(DreamParams {
        layers,
        channels,
        class,
        guide,
        mask: mask_here,
        regions,
        auto_channels,
        octaves: count(u, &[1, 2, 3])?,
        octave_scale: float(u, &[1.4, 2.0, 1.1])?,
        iterations: count(u, &[1, 2, 3])?,
        step_size: float(u, &[1.5, 0.1, 0.0])?,
        jitter: pick(u, &[0, 4, 32], &[u32::MAX])?,
        seed: u.arbitrary()?,
        max_memory: pick(
            u,
            &[None, Some(1 << 30)],
            &[Some(0), Some(1), Some(1 << 16)],
        )?,
    })
}

/// Runs `case` on `cases` arbitrary inputs; a panic fails the test, and arbtest prints the
/// seed that replays it. `case` says whether the mode ran (rather than refusing the input
/// at once); at least a tenth of the cases must, so that the runs, not only the checks of
/// the parameters, are covered.
fn no_panic(
    name: &str,
    cases: usize,
    mut case: impl FnMut(&mut Unstructured) -> arbitrary::Result<bool>,
) {
    let (mut done, mut ran) = (0, 0);
    while done < cases {
        arbtest::arbtest(|u| {
            if done >= cases {
                return Ok(());
            }
            done += 1;
            ran += usize::from(case(u)?);
            Ok(())
        })
        .size_min(256)
        .budget_ms(1_000);
    }
    eprintln!("{name}: {done} cases, {ran} of which ran, no panic");
    assert!(ran * 10 >= done, "{name}: only {ran} of {done} cases ran");
}

/// Stops a run after [`MOST_STEPS`] steps (an observer's body).
fn stop_after_a_few(steps: &mut usize) -> deepdream::Result<()> {
    *steps += 1;
    if *steps > MOST_STEPS {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

#[test]
fn dreams_return_a_picture_or_an_error() {
    let device = Device::flex().autodiff();
    let network = common::test_network(&device);
    no_panic("dream", case_count(300), |u| {
        let mut steps = 0;
        let params = dream_params(u, &network)?;
        let image = picture(u)?;
        if let Ok(dreamer) = Dreamer::new(&network, params, &device) {
            let seed = u.arbitrary()?;
            if let Ok(dream) = dreamer.dream_watched(&image, seed, |_| stop_after_a_few(&mut steps))
            {
                assert_eq!(dream.dimensions(), image.dimensions());
            }
        }
        Ok(steps > 0)
    });
}

#[test]
fn style_transfers_return_a_picture_or_an_error() {
    let device = Device::flex().autodiff();
    let network = common::test_network(&device);
    no_panic("style", case_count(200), |u| {
        let mut steps = 0;
        let mut layers = || -> arbitrary::Result<Vec<String>> {
            (0..pick(u, &[1, 2], &[0])?)
                .map(|_| layer_name(u, &network))
                .collect()
        };
        let (style_layers, content_layers) = (layers()?, layers()?);
        let params = StyleParams {
            style_layers,
            content_layers,
            content_weight: float(u, &[1.0, 0.0])?,
            style_weight: float(u, &[1e4, 1.0])?,
            tv_weight: float(u, &[0.0, 1e-3])?,
            init: *u.choose(&[Init::Content, Init::Noise])?,
            optimizer: pick(
                u,
                &[
                    Optimizer::Lbfgs { history: 5 },
                    Optimizer::Adam { learning_rate: 1.0 },
                ],
                &[
                    Optimizer::Lbfgs { history: 0 },
                    Optimizer::Lbfgs {
                        history: usize::MAX,
                    },
                    Optimizer::Adam {
                        learning_rate: f32::NAN,
                    },
                ],
            )?,
            iterations: count(u, &[1, 2, 3])?,
            size: pick(u, &[24, 33, 48], &[0, 1, 8, u32::MAX])?,
            scales: count(u, &[1, 2])?,
            scale_ratio: float(u, &[2.0, 1.5])?,
            preserve_colours: u.arbitrary()?,
            seed: u.arbitrary()?,
        };
        let content = picture(u)?;
        let styles: Vec<StyleImage> = (0..pick(u, &[1, 2], &[0])?)
            .map(|_| {
                Ok(StyleImage {
                    image: picture(u)?,
                    weight: float(u, &[1.0, 0.3])?,
                })
            })
            .collect::<arbitrary::Result<_>>()?;
        if let Ok(stylist) = Stylist::new(&network, params, &device) {
            let _ = stylist.transfer_watched(&content, &styles, |_| stop_after_a_few(&mut steps));
        }
        Ok(steps > 0)
    });
}

#[test]
fn visualisations_return_a_picture_or_an_error() {
    let device = Device::flex().autodiff();
    let network = common::test_network(&device);
    no_panic("visualize", case_count(200), |u| {
        let mut steps = 0;
        let target = match pick(u, &[0, 1], &[2])? {
            0 => Target::Channel {
                layer: layer_name(u, &network)?,
                channel: count(u, &[0, 2])?,
            },
            1 => Target::Layer(layer_name(u, &network)?),
            _ => Target::Class(count(u, &[0, 999])?),
        };
        let transforms = Transforms {
            pad: count(u, &[0, 4, 16])?,
            pad_value: float(u, &[0.5])?,
            jitter: float(u, &[0.0, 8.0])?,
            scale: float(u, &[0.0, 0.25])?,
            rotate: float(u, &[0.0, 15.0])?,
            jitter_after: float(u, &[0.0, 4.0])?,
        };
        let params = VisualizeParams {
            size: pick(u, &[24, 33, 48], &[0, 1, 8, u32::MAX])?,
            steps: count(u, &[1, 3, 100])?,
            learning_rate: float(u, &[0.05, 0.5])?,
            parameterisation: pick(
                u,
                &[
                    Parameterisation::Pixels,
                    Parameterisation::Fourier { decay: 1.0 },
                ],
                &[Parameterisation::Fourier { decay: f32::NAN }],
            )?,
            transforms: *u.choose(&[transforms, Transforms::NONE, Transforms::default()])?,
            seed: u.arbitrary()?,
        };
        let _ = visualize_watched(&network, &target, &params, &device, |_| {
            stop_after_a_few(&mut steps)
        });
        Ok(steps > 0)
    });
}

#[test]
fn zooms_and_videos_return_frames_or_an_error() {
    let device = Device::flex().autodiff();
    let network = common::test_network(&device);
    no_panic("zoom and video", case_count(150), |u| {
        let mut steps = 0;
        let dream = dream_params(u, &network)?;
        let next = FrameSettings {
            octaves: count(u, &[1, 2])?,
            iterations: count(u, &[1, 2])?,
        };
        let dir = tempfile::tempdir().expect("a temporary folder");
        let work = WorkDir::open(&dir.path().join("work"), "job").expect("a work folder");
        if u.arbitrary()? {
            let params = ZoomParams {
                frames: count(u, &[2, 3])?,
                zoom: float(u, &[1.05, 0.9])?,
                rotate: float(u, &[0.0, 2.0])?,
                pan: [float(u, &[0.0, 2.0])?, float(u, &[0.0, -1.5])?],
                next,
                direction: Default::default(),
                keep_colours: u.arbitrary()?,
            };
            let image = picture(u)?;
            let _ = zoom_watched(&network, dream, &params, &image, &work, &device, |_| {
                stop_after_a_few(&mut steps)
            });
        } else {
            let params = VideoParams {
                blend: float(u, &[0.8, 0.5])?,
                next,
                cut_threshold: float(u, &[30.0, 5.0])?,
                ..VideoParams::default()
            };
            let first = picture(u)?;
            // Frames of one size, or a frame of another size in the middle.
            let mut frames = vec![first.clone(); pick(u, &[2, 3], &[0, 1])?];
            if u.arbitrary()? {
                frames.insert(frames.len() / 2, picture(u)?);
            }
            let mut source = IterSource(frames.into_iter());
            let _ = dream_video_watched(
                &network,
                dream,
                &params,
                &mut source,
                None,
                &work,
                &device,
                |_| stop_after_a_few(&mut steps),
            );
        }
        Ok(steps > 0)
    });
}

/// Found by the dream case above: small sizes stop shrinking under rounding (5 / 1.1 rounds
/// to 5), and the octave list grew until memory ran out.
#[test]
fn octave_sizes_stop_where_rounding_stops_shrinking() {
    let device = Device::flex().autodiff();
    let network = common::test_network(&device);
    let params = DreamParams {
        layers: vec![LayerWeight {
            layer: "conv1_relu".into(),
            weight: 1.0,
        }],
        octaves: deepdream::modes::dream::MAX_OCTAVES,
        octave_scale: 1.1,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(&network, params, &device).unwrap();
    let sizes = dreamer.octave_sizes(48, 48).unwrap();
    assert!(
        sizes.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{sizes:?}"
    );
    assert_eq!(sizes.last(), Some(&(48, 48)));
    let too_many = DreamParams {
        octaves: deepdream::modes::dream::MAX_OCTAVES + 1,
        ..dreamer.params().clone()
    };
    assert!(Dreamer::new(&network, too_many, &device).is_err());
}
