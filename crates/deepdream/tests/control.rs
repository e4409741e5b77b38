//! Control over the dream with the real VGG16: masks keep what they cover, regions grow
//! their own channels, keyframes drive a zoom's strength and its layer, guide footage pulls
//! each frame towards its own guide, channels are picked from the picture.

mod common;

use burn::tensor::Tensor;
use deepdream::control::Direction;
use deepdream::control::channels::AutoChannels;
use deepdream::control::footage::{Ending, Footage};
use deepdream::control::keyframes::Keyframes;
use deepdream::control::mask::Mask;
use deepdream::control::region::Region;
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::FrameSettings;
use deepdream::modes::video::dream_strength;
use deepdream::modes::zoom::{ZoomParams, transform, zoom};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network};
use image::{DynamicImage, GrayImage, RgbImage};

/// A photo from the fixtures, resized.
fn photo(name: &str, width: u32, height: u32) -> RgbImage {
    let image = image::open(common::fixture(name)).unwrap().to_rgb8();
    image::imageops::resize(&image, width, height, image::imageops::FilterType::Triangle)
}

fn layer(name: &str) -> Vec<LayerWeight> {
    vec![LayerWeight {
        layer: name.into(),
        weight: 1.0,
    }]
}

fn mask_of(width: u32, height: u32, level: impl Fn(u32, u32) -> u8) -> Mask {
    let grey = GrayImage::from_fn(width, height, |x, y| image::Luma([level(x, y)]));
    Mask::from_image(&DynamicImage::ImageLuma8(grey))
}

/// Mean absolute change per pixel and channel over the columns `columns`.
fn change_in(before: &RgbImage, after: &RgbImage, columns: std::ops::Range<u32>) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for y in 0..before.height() {
        for x in columns.clone() {
            let (a, b) = (before.get_pixel(x, y), after.get_pixel(x, y));
            for c in 0..3 {
                total += (a[c] as f64 - b[c] as f64).abs();
                count += 1;
            }
        }
    }
    total / count as f64
}

/// Spearman's rank correlation of two samples without ties.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut rank = vec![0.0; v.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r as f64;
        }
        rank
    };
    pearson(&ranks(a), &ranks(b))
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn params() -> DreamParams {
    DreamParams {
        layers: layer("block3_conv3"),
        octaves: 3,
        iterations: 6,
        seed: 5,
        ..DreamParams::default()
    }
}

#[test]
fn a_hard_mask_keeps_what_it_covers_and_a_soft_one_dreams_by_its_grey() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let image = photo("chelsea.png", 256, 128);

    let hard = DreamParams {
        mask: Some(mask_of(256, 128, |x, _| if x < 128 { 255 } else { 0 })),
        ..params()
    };
    let dreamed = Dreamer::new(network.as_ref(), hard, &device)
        .unwrap()
        .dream(&image, |_| {})
        .unwrap();
    let (left, right) = (
        change_in(&image, &dreamed, 0..128),
        change_in(&image, &dreamed, 128 + 16..256),
    );
    eprintln!("hard mask: change {left:.3} left, {right:.4} right of the margin");
    assert!(left > 2.0, "the white half dreams ({left})");
    assert!(right <= 0.02 * left, "{right} vs {left}");

    // Eight stripes from black to white.
    let levels: Vec<u8> = (0..8).map(|k| (k * 255 / 7) as u8).collect();
    let soft = DreamParams {
        mask: Some(mask_of(256, 128, |x, _| levels[(x / 32) as usize])),
        ..params()
    };
    let dreamed = Dreamer::new(network.as_ref(), soft, &device)
        .unwrap()
        .dream(&image, |_| {})
        .unwrap();
    // Each stripe's middle, away from the blended edges.
    let changes: Vec<f64> = (0..8)
        .map(|k| change_in(&image, &dreamed, k * 32 + 8..k * 32 + 24))
        .collect();
    let grey: Vec<f64> = levels.iter().map(|&l| l as f64).collect();
    let rho = spearman(&grey, &changes);
    eprintln!("soft mask: changes by grey level {changes:.2?}, Spearman {rho:.3}");
    assert!(rho >= 0.9, "{changes:?}");
}

/// The mean of `channel` of `layer` over the columns `from..to` of the layer's output
/// (as fractions of its width).
fn channel_mean(
    network: &dyn Network,
    image: &RgbImage,
    layer: usize,
    channel: usize,
    (from, to): (f32, f32),
) -> f32 {
    let device = Device::flex();
    let input = network.preprocess().apply(image, &device);
    let output = network.forward(input, &[layer]).unwrap().remove(0);
    let [_, _, _, w] = output.dims();
    let (a, b) = ((from * w as f32) as usize, (to * w as f32) as usize);
    output
        .narrow(1, channel, 1)
        .narrow(3, a, b - a)
        .mean()
        .into_scalar()
}

#[test]
fn each_region_grows_its_own_channel() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let image = photo("coffee.png", 256, 128);
    let (a, b) = (12, 57);
    let region = |channel: usize, left: bool| Region {
        mask: Some(mask_of(
            256,
            128,
            move |x, _| {
                if (x < 128) == left { 255 } else { 0 }
            },
        )),
        layers: layer("block4_conv3"),
        channels: Some(vec![channel]),
    };
    let dream = DreamParams {
        layers: Vec::new(),
        regions: vec![region(a, true), region(b, false)],
        ..params()
    };
    let dreamed = Dreamer::new(network.as_ref(), dream, &device)
        .unwrap()
        .dream(&image, |_| {})
        .unwrap();
    let index = network.layer_index("block4_conv3").unwrap();
    // Away from the boundary, where the other region's receptive fields reach.
    let (left, right) = ((0.0, 0.4), (0.6, 1.0));
    let growth = |channel, part| {
        channel_mean(network.as_ref(), &dreamed, index, channel, part)
            - channel_mean(network.as_ref(), &image, index, channel, part)
    };
    let (a_left, b_left) = (growth(a, left), growth(b, left));
    let (a_right, b_right) = (growth(a, right), growth(b, right));
    eprintln!(
        "left region: channel {a} +{a_left:.3}, channel {b} +{b_left:.3}; right region: channel {a} +{a_right:.3}, channel {b} +{b_right:.3}"
    );
    assert!(a_left > 0.0 && a_left >= 3.0 * b_left.max(0.0));
    assert!(b_right > 0.0 && b_right >= 3.0 * a_right.max(0.0));
}

/// The dream parameters of the keyframed zooms: light frames so that 50 stay quick.
fn zoom_params(schedule: &str, frames: usize) -> ZoomParams {
    let schedule = Keyframes::parse(schedule, false)
        .unwrap()
        .place(10.0, Some(frames))
        .unwrap();
    ZoomParams {
        frames,
        zoom: 1.02,
        next: FrameSettings {
            octaves: 1,
            iterations: 3,
        },
        keep_colours: false,
        direction: Direction {
            schedule: Some(schedule),
            fps: 10.0,
            ..Direction::default()
        },
        ..ZoomParams::default()
    }
}

/// A zoom's frames and each one's start (the frame before, moved), dreamed into a folder.
fn run_zoom(
    network: &dyn Network,
    dream: DreamParams,
    params: &ZoomParams,
    image: &RgbImage,
) -> Vec<(RgbImage, RgbImage)> {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let work = WorkDir::open(&dir.path().join("work"), "test").unwrap();
    zoom(network, dream, params, image, &work, &device, |_| {}).unwrap();
    let frames: Vec<RgbImage> = (0..params.frames)
        .map(|k| work.load(k).unwrap().unwrap())
        .collect();
    (1..params.frames)
        .map(|k| {
            let motion = params.motion_at(k).unwrap();
            let start = transform(&frames[k - 1], &motion);
            (start, frames[k].clone())
        })
        .collect()
}

#[test]
fn a_keyframed_zoom_dreams_as_strongly_as_its_schedule_says() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let image = photo("astronaut.png", 96, 96);
    let schedule = "[[keyframes]]\nframe = 0\nstep = 0.5\n[[keyframes]]\nframe = 49\nstep = 3\n";
    let params = zoom_params(schedule, 50);
    let dream = DreamParams {
        layers: layer("block3_conv1"),
        octaves: 1,
        iterations: 3,
        jitter: 8,
        seed: 3,
        ..DreamParams::default()
    };
    let pairs = run_zoom(network.as_ref(), dream, &params, &image);
    let strengths: Vec<f64> = pairs
        .iter()
        .map(|(start, frame)| dream_strength(start, frame) as f64)
        .collect();
    let steps: Vec<f64> = (1..50)
        .map(|k| {
            params
                .direction
                .value(deepdream::control::keyframes::Param::Step, k)
                .unwrap() as f64
        })
        .collect();
    let rho = spearman(&steps, &strengths);
    eprintln!(
        "keyframed zoom: strength {:.2} at step 0.5 to {:.2} at step 3, Spearman {rho:.3}",
        strengths[0], strengths[48]
    );
    assert!(rho >= 0.9, "{strengths:?}");
}

/// How well the change from `start` to `frame` follows each layer's gradient at `start`:
/// the cosine between the change and the gradient, per layer.
fn alignment(
    network: &dyn Network,
    start: &RgbImage,
    frame: &RgbImage,
    layers: &[&str],
) -> Vec<f32> {
    let device = Device::flex();
    let preprocess = network.preprocess();
    let change = preprocess
        .apply(frame, &device)
        .sub(preprocess.apply(start, &device));
    layers
        .iter()
        .map(|name| {
            let dream = DreamParams {
                layers: layer(name),
                jitter: 0,
                ..DreamParams::default()
            };
            let dreamer = Dreamer::new(network, dream, &device).unwrap();
            let gradient = dreamer.gradient(preprocess.apply(start, &device)).unwrap();
            let dot: f32 = change.clone().mul(gradient.clone()).sum().into_scalar();
            let norms: f32 = (change.clone().powi_scalar(2).sum().sqrt()
                * gradient.powi_scalar(2).sum().sqrt())
            .into_scalar();
            dot / norms
        })
        .collect()
}

#[test]
fn a_layer_sweep_changes_the_amplified_layer_at_its_keyframes() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let image = photo("chelsea.png", 112, 96);
    let layers = ["block2_conv2", "block3_conv3", "block4_conv3"];
    let schedule = format!(
        "[[keyframes]]\nframe = 0\nlayers = \"{}\"\n[[keyframes]]\nframe = 4\nlayers = \"{}\"\n[[keyframes]]\nframe = 8\nlayers = \"{}\"\n",
        layers[0], layers[1], layers[2]
    );
    let params = zoom_params(&schedule, 12);
    let dream = DreamParams {
        octaves: 1,
        iterations: 3,
        jitter: 0,
        seed: 4,
        ..DreamParams::default()
    };
    let pairs = run_zoom(network.as_ref(), dream, &params, &image);
    for (k, (start, frame)) in pairs.iter().enumerate() {
        let frame_number = k + 1;
        let cosines = alignment(network.as_ref(), start, frame, &layers);
        let best = (0..3)
            .max_by(|&a, &b| cosines[a].total_cmp(&cosines[b]))
            .unwrap();
        let scheduled = frame_number / 4;
        eprintln!(
            "frame {frame_number}: alignment {cosines:.3?}, scheduled {}",
            layers[scheduled]
        );
        assert_eq!(best, scheduled, "frame {frame_number}: {cosines:?}");
    }
}

/// Channel means of `layer` for `image`: what a guide pulls towards, in short.
fn features(network: &dyn Network, image: &RgbImage, layer: usize) -> Vec<f32> {
    let device = Device::flex();
    let input = network.preprocess().apply(image, &device);
    let output: Tensor<4> = network.forward(input, &[layer]).unwrap().remove(0);
    let [_, c, _, _] = output.dims();
    output
        .mean_dim(3)
        .mean_dim(2)
        .reshape([c])
        .into_data()
        .try_to_vec()
        .unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn each_frame_moves_towards_its_own_guide_frame() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    // Guide footage at 4 frames a second: a second of each painting and photo.
    let guides: Vec<DynamicImage> = ["starry_night.jpg", "the_scream.jpg", "coffee.png"]
        .iter()
        .flat_map(|name| std::iter::repeat_n(DynamicImage::ImageRgb8(photo(name, 128, 96)), 4))
        .collect();
    let footage = Footage::from_pictures(&guides, 4.0, Ending::Loop).unwrap();
    let input = photo("chelsea.png", 128, 96);
    let params = ZoomParams {
        frames: 12,
        zoom: 1.0,
        next: FrameSettings {
            octaves: 2,
            iterations: 5,
        },
        keep_colours: false,
        direction: Direction {
            guides: Some(footage),
            fps: 4.0,
            ..Direction::default()
        },
        ..ZoomParams::default()
    };
    let dream = DreamParams {
        layers: layer("block4_conv3"),
        octaves: 2,
        iterations: 5,
        seed: 2,
        ..DreamParams::default()
    };
    let pairs = run_zoom(network.as_ref(), dream, &params, &input);
    let index = network.layer_index("block4_conv3").unwrap();
    let guide_features: Vec<Vec<f32>> = guides
        .iter()
        .map(|g| features(network.as_ref(), &g.to_rgb8(), index))
        .collect();
    let mut closer = 0;
    for (k, (start, frame)) in pairs.iter().enumerate() {
        let k = k + 1;
        let (before, after) = (
            features(network.as_ref(), start, index),
            features(network.as_ref(), frame, index),
        );
        // The gain in likeness to its own guide against one a second (4 frames) away.
        let gain =
            |g: usize| cosine(&after, &guide_features[g]) - cosine(&before, &guide_features[g]);
        let other = (k + 4) % 12;
        let (own, away) = (gain(k), gain(other));
        eprintln!("frame {k}: own guide {own:+.4}, a second away {away:+.4}");
        closer += (own > away) as usize;
    }
    eprintln!(
        "{closer} of {} frames moved closer to their own guide",
        pairs.len()
    );
    assert!(
        closer * 10 >= pairs.len() * 9,
        "{closer} of {}",
        pairs.len()
    );
}

#[test]
fn picked_channels_are_the_strongest_ones_and_are_reported() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let image = photo("coffee.png", 96, 64);
    let dream = DreamParams {
        octaves: 2,
        iterations: 1,
        auto_channels: Some(AutoChannels::parse("auto:strongest:3:octave").unwrap()),
        ..params()
    };
    let dreamer = Dreamer::new(network.as_ref(), dream, &device).unwrap();
    dreamer.dream(&image, |_| {}).unwrap();
    let chosen = dreamer.chosen_channels();
    assert_eq!(chosen.len(), 2, "{chosen:?}");
    // The first octave's pick: the three channels with the highest means on the picture
    // at that octave's size.
    let sizes = dreamer.octave_sizes(96, 64).unwrap();
    let (h, w) = sizes[0];
    let small = image::imageops::resize(
        &image,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    let index = network.layer_index("block3_conv3").unwrap();
    let means = features(network.as_ref(), &small, index);
    let mut order: Vec<usize> = (0..means.len()).collect();
    order.sort_by(|&a, &b| means[b].total_cmp(&means[a]));
    let mut expected = order[..3].to_vec();
    expected.sort_unstable();
    // The resize differs slightly from the octave pyramid's; the top channel is clear.
    assert!(
        chosen[0].channels.contains(&order[0]),
        "{chosen:?} vs {expected:?}"
    );
    assert_eq!(chosen[0].layer, "block3_conv3");
}
