//! The octave and step arithmetic of the algorithm, on the small test network.

mod common;

use burn::tensor::Tensor;
use common::test_network;
use deepdream::{Device, DreamParams, Dreamer, Error, LayerWeight, Network};
use image::RgbImage;

fn params(octaves: usize, iterations: usize, jitter: u32) -> DreamParams {
    DreamParams {
        layers: vec![LayerWeight {
            layer: "mixed".into(),
            weight: 1.0,
        }],
        octaves,
        iterations,
        jitter,
        ..DreamParams::default()
    }
}

fn test_image(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 37 % 256) as u8,
            (y * 53 % 256) as u8,
            ((x * y + 11) % 256) as u8,
        ])
    })
}

#[test]
fn octaves_shrink_by_the_scale_with_rounding() {
    let device = Device::flex();
    let network = test_network(&device);
    let dreamer = Dreamer::new(&network, params(4, 1, 0), &device).unwrap();
    // scipy.ndimage.zoom(…, 1/1.4) sizes: round(size / 1.4), octave after octave.
    assert_eq!(
        dreamer.octave_sizes(451, 300).unwrap(),
        vec![(109, 164), (153, 230), (214, 322), (300, 451)]
    );
}

#[test]
fn octaves_too_small_for_the_layer_are_skipped() {
    let device = Device::flex();
    let network = test_network(&device);
    let min = network.layers()[network.layer_index("mixed").unwrap()].min_input;
    assert_eq!(min, 3, "pool1 (3x3, stride 2, ceil) needs 3 pixels");
    let dreamer = Dreamer::new(&network, params(6, 1, 0), &device).unwrap();
    // 8 → 6 → 4 → 3 → 2 (too small): four octaves.
    assert_eq!(
        dreamer.octave_sizes(8, 8).unwrap(),
        vec![(3, 3), (4, 4), (6, 6), (8, 8)]
    );
    let error = dreamer.octave_sizes(2, 40).unwrap_err();
    assert!(
        matches!(error, Error::ImageTooSmall { min: 3, .. }),
        "{error}"
    );
}

#[test]
fn one_step_is_the_normalised_ascent_clipped_to_pixels() {
    let device = Device::flex();
    let network = test_network(&device);
    let params = DreamParams {
        step_size: 1500.0,
        ..params(1, 1, 0)
    };
    let dreamer = Dreamer::new(&network, params, &device).unwrap();
    let image = test_image(23, 17);
    let dreamed = dreamer.dream(&image, |_| {}).unwrap();

    // By hand: x + step / mean|g| * g in pixel levels, clipped to the pixel range.
    let preprocess = network.preprocess();
    let x = preprocess.apply(&image, &device);
    let g = dreamer.gradient(x.clone()).unwrap();
    let mean: f32 = g.clone().abs().mean().into_scalar();
    assert!(mean > 0.0);
    // TF preprocessing: one pixel level is 1/127.5 in network units.
    let stepped = x.add(g.mul_scalar(1500.0 / mean * (1.0 / 127.5)));
    let (lo, hi) = preprocess.value_range()[0];
    let expected = preprocess.invert(stepped.clamp(lo, hi)).unwrap();
    assert_eq!(dreamed, expected);
    assert_ne!(dreamed, image);
}

#[test]
fn zero_steps_give_back_the_image() {
    let device = Device::flex();
    let network = test_network(&device);
    let dreamer = Dreamer::new(&network, params(3, 0, 0), &device).unwrap();
    let image = test_image(40, 30);
    // Without steps the detail stays zero, so the result is the preprocessed image itself.
    assert_eq!(dreamer.dream(&image, |_| {}).unwrap(), image);
}

#[test]
fn detail_is_carried_up_the_octaves() {
    let device = Device::flex();
    let network = test_network(&device);
    let image = test_image(40, 30);
    let mut progress = Vec::new();
    let two_octaves = Dreamer::new(&network, params(2, 1, 0), &device)
        .unwrap()
        .dream(&image, |p| {
            progress.push((p.octave, p.iteration, p.width, p.height))
        })
        .unwrap();
    assert_eq!(progress, vec![(0, 1, 29, 21), (1, 1, 40, 30)]);
    let one_octave = Dreamer::new(&network, params(1, 1, 0), &device)
        .unwrap()
        .dream(&image, |_| {})
        .unwrap();
    assert_ne!(
        two_octaves, one_octave,
        "the small octave's detail reaches the result"
    );
}

#[test]
fn gradient_of_a_blank_image_is_finite() {
    let device = Device::flex();
    let network = test_network(&device);
    let dreamer = Dreamer::new(&network, params(1, 1, 0), &device).unwrap();
    let zeros = Tensor::<4>::zeros([1, 3, 9, 9], &device);
    // ReLU layers of an all-zero image may still have a gradient; whatever it is, a step
    // never produces NaN.
    let g: Vec<f32> = dreamer
        .gradient(zeros)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(g.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_parameters_are_refused() {
    let device = Device::flex();
    let network = test_network(&device);
    for bad in [
        DreamParams {
            octaves: 0,
            ..params(1, 1, 0)
        },
        DreamParams {
            octave_scale: 1.0,
            ..params(1, 1, 0)
        },
        DreamParams {
            step_size: f32::NAN,
            ..params(1, 1, 0)
        },
        DreamParams {
            channels: Some(vec![]),
            ..params(1, 1, 0)
        },
    ] {
        let error = Dreamer::new(&network, bad, &device).err().expect("refused");
        assert!(matches!(error, Error::InvalidParameter(_)), "{error}");
    }
    let unknown = DreamParams {
        layers: vec![LayerWeight {
            layer: "nope".into(),
            weight: 1.0,
        }],
        ..params(1, 1, 0)
    };
    let error = Dreamer::new(&network, unknown, &device)
        .err()
        .expect("refused");
    assert!(matches!(error, Error::UnknownLayer { .. }), "{error}");
}
