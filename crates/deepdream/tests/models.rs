//! Inception v3 and EfficientNet-Lite0 with their real weights: forward passes against
//! PyTorch, ImageNet classification, class-targeted dreams.

mod common;

use common::{assert_matches_reference, fixture, model, photo_crop};
use deepdream::{
    Device, DreamParams, Dreamer, Error, LayerWeight, media::image_io, networks::classify,
};

#[test]
fn inception3_matches_torchscript() {
    let device = Device::flex();
    let network = model("inception3", &device);
    let layers = ["pool1", "mixed_2", "mixed_3", "mixed_7", "mixed_10"];
    let crop = photo_crop(160, 60, 128);
    assert_matches_reference(
        network.as_ref(),
        &crop,
        "inception3_reference.txt",
        &layers,
        1e-4,
        &device,
    );
    let mixed_10 = &network.layers()[network.layer_index("mixed_10").unwrap()];
    assert_eq!(
        (mixed_10.channels, mixed_10.stride, mixed_10.min_input),
        (2048, 32, 75)
    );
}

#[test]
fn efficientnet_lite0_logits_match_pytorch() {
    let device = Device::flex();
    let network = model("efficientnet-lite0", &device);
    let crop = photo_crop(113, 38, 224);
    assert_matches_reference(
        network.as_ref(),
        &crop,
        "efficientnet_lite0_reference.txt",
        &["logits"],
        1e-4,
        &device,
    );
}

fn top_classes(name: &str, photo: &str) -> Vec<usize> {
    let device = Device::flex();
    let network = model(name, &device);
    let image = image_io::load(&fixture(photo)).unwrap();
    classify::classify(network.as_ref(), &image, 5, &device)
        .unwrap()
        .iter()
        .map(|guess| guess.class)
        .collect()
}

#[test]
fn classifies_the_test_photos() {
    // chelsea.png is a tabby cat: a cat class (281 tabby, 282 tiger cat, 285 Egyptian cat) first.
    let cat = top_classes("efficientnet-lite0", "chelsea.png");
    assert!([281, 282, 285].contains(&cat[0]), "{cat:?}");
    assert!(
        cat[..3].iter().all(|c| [281, 282, 285].contains(c)),
        "{cat:?}"
    );
    // coffee.png: a cup of espresso.
    let coffee = top_classes("efficientnet-lite0", "coffee.png");
    assert_eq!(coffee[0], 967, "espresso first: {coffee:?}");
    assert!(coffee.contains(&968), "cup in the top 5: {coffee:?}");
    // astronaut.png: a suited astronaut with a helmet (the reference implementation's top-1
    // is football helmet too).
    let astronaut = top_classes("efficientnet-lite0", "astronaut.png");
    assert!(
        astronaut.contains(&560),
        "football helmet in the top 5: {astronaut:?}"
    );
}

#[test]
fn models_without_a_classifier_cannot_classify() {
    let device = Device::flex();
    let network = model("inception3", &device);
    let image = image_io::load(&fixture("coffee.png")).unwrap();
    let error = classify::classify(network.as_ref(), &image, 5, &device).unwrap_err();
    assert!(matches!(error, Error::NoClassifier { .. }), "{error}");
    let params = DreamParams {
        class: Some(281),
        ..DreamParams::default()
    };
    let error = Dreamer::new(network.as_ref(), params, &device)
        .err()
        .unwrap();
    assert!(matches!(error, Error::NoClassifier { .. }), "{error}");
}

#[test]
fn class_dream_grows_the_class() {
    let device = Device::flex();
    let network = model("efficientnet-lite0", &device);
    let image = image_io::load(&fixture("coffee.png")).unwrap();
    let probability = |image: &image::DynamicImage, class: usize| {
        let guesses = classify::classify(network.as_ref(), image, 1000, &device).unwrap();
        guesses
            .iter()
            .find(|g| g.class == class)
            .unwrap()
            .probability
    };
    let goldfish = 1;
    let params = DreamParams {
        class: Some(goldfish),
        octaves: 2,
        iterations: 3,
        seed: 1,
        ..DreamParams::default()
    };
    let dreamer = Dreamer::new(network.as_ref(), params, &device).unwrap();
    let dreamed = dreamer.dream_image(&image, |_| {}).unwrap();
    let (before, after) = (
        probability(&image, goldfish),
        probability(&dreamed, goldfish),
    );
    assert!(after > 100.0 * before, "goldfish {before} → {after}");
}

#[test]
fn inception_and_efficientnet_dream() {
    let device = Device::flex();
    let crop = photo_crop(160, 60, 96);
    for (name, layer) in [("inception3", "mixed_3"), ("efficientnet-lite0", "block5")] {
        let network = model(name, &device);
        let params = DreamParams {
            layers: vec![LayerWeight {
                layer: layer.into(),
                weight: 1.0,
            }],
            octaves: 2,
            iterations: 2,
            seed: 3,
            ..DreamParams::default()
        };
        let dreamer = Dreamer::new(network.as_ref(), params, &device).unwrap();
        let dreamed = dreamer.dream(&crop, |_| {}).unwrap();
        assert_eq!(dreamed.dimensions(), crop.dimensions());
        assert_ne!(dreamed, crop, "{name} changed the image");
        // A step moves pixels by about `step` levels, not by the network's value range.
        let mean_change: f64 = dreamed
            .as_raw()
            .iter()
            .zip(crop.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / crop.as_raw().len() as f64;
        assert!(
            mean_change > 0.5 && mean_change < 20.0,
            "{name}: mean change {mean_change}"
        );
    }
}
