//! Style transfer: the Gram matrix, style-loss and total-variation gradients against finite
//! differences, the whole objective's gradient through the real VGG16 against a finite
//! difference along a random direction, a short transfer that moves the style loss, seeded
//! noise starts, colour keeping, and bad input.

mod common;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use deepdream::engine::objective::{Objective, Term, gram, total_variation};
use deepdream::engine::optimizer::Optimizer;
use deepdream::media::colour::with_colours_of;
use deepdream::modes::style::{Init, StyleImage, StyleParams, Stylist};
use deepdream::{Error, media::image_io};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// Autodiff gradient of `f` at `x` against central differences, every coordinate.
fn check_gradient(x: Tensor<4>, f: impl Fn(Tensor<4>) -> Tensor<1>, tolerance: f64) {
    let shape = x.dims();
    let device = x.device();
    let input = x.clone().autodiff().require_grad();
    let grads = f(input.clone()).backward();
    let analytic = values(input.grad(&grads).unwrap());
    let base = values(x);
    let eval = |v: &[f32]| -> f64 {
        let t = Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device);
        values(f(t))[0] as f64
    };
    let h = 1e-2f32;
    let largest = analytic.iter().fold(1e-6f32, |m, g| m.max(g.abs())) as f64;
    for i in 0..base.len() {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (eval(&up) - eval(&down)) / (2.0 * h as f64);
        let error = (numeric - analytic[i] as f64).abs() / largest;
        assert!(
            error < tolerance,
            "coordinate {i}: finite difference {numeric}, autodiff {}",
            analytic[i]
        );
    }
}

#[test]
fn gram_matrix_is_the_normalised_channel_correlation() {
    let device = Device::flex();
    // Two channels over three positions: (1, 2, 3) and (0, 1, -1).
    let a =
        Tensor::<1>::from_floats([1.0, 2.0, 3.0, 0.0, 1.0, -1.0], &device).reshape([1, 2, 1, 3]);
    let g = values(gram(a));
    let n = 6.0;
    assert_eq!(g, vec![14.0 / n, -1.0 / n, -1.0 / n, 2.0 / n]);
}

#[test]
fn gram_style_loss_and_total_variation_gradients_match_finite_differences() {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 3, 4, 5], Distribution::Uniform(-1.0, 1.0), &device);
    let target = gram(Tensor::<4>::random(
        [1, 3, 4, 5],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    ));
    check_gradient(x.clone(), |x| gram(x).sum().reshape([1]), 1e-2);
    check_gradient(
        x.clone(),
        |x| {
            let target = if x.is_require_grad() {
                target.clone().autodiff()
            } else {
                target.clone()
            };
            gram(x).sub(target).powi_scalar(2).mean().reshape([1])
        },
        1e-2,
    );
    check_gradient(x, total_variation, 1e-2);
}

/// The whole objective (content, five Gram terms, total variation) through VGG16: the
/// autodiff gradient's projection on a random direction against the finite difference of the
/// objective along it.
#[test]
fn style_objective_gradient_through_vgg16_matches_a_finite_difference() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let photo = common::photo_crop(100, 60, 40);
    let painting = image_io::load(&common::fixture("starry_night.jpg"))
        .unwrap()
        .to_rgb8();
    let painting =
        image::imageops::resize(&painting, 40, 40, image::imageops::FilterType::Triangle);
    let preprocess = network.preprocess();
    let layer = |name: &str| network.layer_index(name).unwrap();
    let content = network
        .forward(preprocess.apply(&photo, &device), &[layer("block4_conv2")])
        .unwrap()
        .remove(0);
    let mut objective = Objective::new().with(
        Term::Content {
            layer: layer("block4_conv2"),
            target: content,
        },
        5.0,
    );
    for name in ["block1_conv1", "block3_conv1", "block5_conv1"] {
        let feature = network
            .forward(preprocess.apply(&painting, &device), &[layer(name)])
            .unwrap()
            .remove(0);
        objective = objective.with(
            Term::Style {
                layer: layer(name),
                target: gram(feature),
            },
            100.0,
        );
    }
    objective = objective.with(Term::TotalVariation, 1.0);
    // A point away from the content photo, so that every term has a gradient, and a
    // direction, both from a fixed seed.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut noise = |scale: f32| {
        let v: Vec<f32> = (0..3 * 40 * 40)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Tensor::<4>::from_data(TensorData::new(v, [1, 3, 40, 40]), &device)
    };
    let x = preprocess.apply(&photo, &device).add(noise(30.0));
    let direction = noise(1.0);
    let (losses, gradient) = objective.evaluate(network.as_ref(), x.clone()).unwrap();
    assert!(losses.content > 0.0 && losses.style > 0.0 && losses.total_variation > 0.0);
    let predicted: f32 = gradient.mul(direction.clone()).sum().into_scalar();
    let at = |t: f32| {
        objective
            .evaluate(
                network.as_ref(),
                x.clone().add(direction.clone().mul_scalar(t)),
            )
            .unwrap()
            .0
            .total as f64
    };
    // Central differences at h and h/2, extrapolated (Richardson) to cancel the h² term:
    // the Gram terms are quartic in the features, so the curvature is strong.
    let central = |h: f32| (at(h) - at(-h)) / (2.0 * h as f64);
    let numeric = (4.0 * central(0.05) - central(0.1)) / 3.0;
    let error = (numeric - predicted as f64).abs() / numeric.abs();
    assert!(
        error < 0.02,
        "directional derivative {predicted}, finite difference {numeric}"
    );
}

fn starry() -> StyleImage {
    StyleImage {
        image: image_io::load(&common::fixture("starry_night.jpg"))
            .unwrap()
            .to_rgb8(),
        weight: 1.0,
    }
}

fn small_params() -> StyleParams {
    StyleParams {
        size: 64,
        scales: 1,
        iterations: 15,
        ..StyleParams::default()
    }
}

#[test]
fn a_short_transfer_moves_the_picture_towards_the_style() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let photo = common::photo_crop(60, 20, 200);
    let stylist = Stylist::new(network.as_ref(), small_params(), &device).unwrap();
    let styles = [starry()];
    let mut reported = 0;
    let result = stylist
        .transfer(&photo, &styles, |p| {
            reported += 1;
            assert_eq!((p.width, p.height), (64, 64));
        })
        .unwrap();
    assert_eq!(result.dimensions(), (64, 64));
    assert_eq!(reported, 15);
    let before = stylist.losses(&photo, &styles, &photo).unwrap();
    let after = stylist.losses(&photo, &styles, &result).unwrap();
    assert!(
        after.style < 0.3 * before.style,
        "style loss {} -> {}",
        before.style,
        after.style
    );
    assert!(after.total < 0.5 * before.total);
}

#[test]
fn noise_starts_are_reproducible_from_the_seed() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let photo = common::photo_crop(60, 20, 200);
    let run = |seed: u64| {
        let params = StyleParams {
            init: Init::Noise,
            seed,
            iterations: 3,
            size: 48,
            optimizer: Optimizer::Adam { learning_rate: 5.0 },
            ..small_params()
        };
        Stylist::new(network.as_ref(), params, &device)
            .unwrap()
            .transfer(&photo, &[starry()], |_| {})
            .unwrap()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn kept_colours_are_the_photos_chroma_with_the_results_luminance() {
    let result = image::RgbImage::from_pixel(4, 4, image::Rgb([120, 120, 120]));
    let photo = image::RgbImage::from_pixel(4, 4, image::Rgb([180, 90, 90]));
    let kept = with_colours_of(&result, &photo);
    let [r, g, b] = kept.get_pixel(0, 0).0.map(f32::from);
    // Red like the photo, as bright as the result.
    assert!(r > g + 50.0 && r > b + 50.0, "{:?}", kept.get_pixel(0, 0));
    let luma = 0.299 * r + 0.587 * g + 0.114 * b;
    assert!((luma - 120.0).abs() < 2.0, "luminance {luma}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let device = Device::flex();
    let network = common::vgg16(&device);
    let photo = common::photo_crop(60, 20, 100);
    let with = |change: fn(&mut StyleParams)| {
        let mut params = small_params();
        change(&mut params);
        Stylist::new(network.as_ref(), params, &device).err()
    };
    assert!(matches!(
        with(|p| p.style_layers = vec!["block9_conv1".into()]),
        Some(Error::UnknownLayer { .. })
    ));
    let message = |e: Option<Error>| e.expect("an error").to_string();
    assert!(message(with(|p| p.style_weight = f32::NAN)).contains("style weight"));
    assert!(message(with(|p| p.size = 0)).contains("size"));
    assert!(message(with(|p| p.iterations = 0)).contains("iterations"));
    let stylist = Stylist::new(network.as_ref(), small_params(), &device).unwrap();
    let error = stylist.transfer(&photo, &[], |_| {}).unwrap_err();
    assert!(error.to_string().contains("no style image"));
    let bad_weight = [StyleImage {
        weight: -1.0,
        ..starry()
    }];
    let error = stylist.transfer(&photo, &bad_weight, |_| {}).unwrap_err();
    assert!(error.to_string().contains("blend weight"));
}
