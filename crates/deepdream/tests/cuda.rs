//! The CUDA device. On the CPU (every run): networks lower to the graph the GPU runs, and
//! its shape plan agrees with the networks' own outputs. On a machine with an NVIDIA GPU and
//! NVIDIA's libraries (skipped elsewhere; `DEEPDREAM_REQUIRE_GPU=1` makes a missing GPU a
//! failure): gradients and a dream equal the CPU's.
#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use burn::tensor::{Distribution, Tensor, TensorData};
use common::{model, photo_crop, relative_l2_error, test_network, vgg16};
use deepdream::backend::cuda::executor::{DeviceOctaves, Loss, bytes_per_pixel, describe};
use deepdream::backend::cuda::libraries::{Library, find_library};
use deepdream::backend::cuda::{Depthwise, Executor, Gpu, KeptSteps, Precision};
use deepdream::backend::graph::Shape;
use deepdream::control::region::Region;
use deepdream::engine::objective::{Objective, Term, gram};
use deepdream::engine::octaves;
use deepdream::media::flow::gpu::GpuFlow;
use deepdream::media::flow::{FarnebackParams, FlowDevice, farneback_both, grey_tensor};
use deepdream::networks::cuda::CudaNetwork;
use deepdream::networks::network::{LayerTerms, NormalisedAscent};
use deepdream::{Device, DreamParams, Dreamer, LayerWeight, Network};

/// Whether cuDNN can be loaded here (no GPU needed for its descriptors); without it, a note,
/// or a failure where `DEEPDREAM_REQUIRE_CUDNN` is set (CI installs NVIDIA's package).
fn cudnn() -> bool {
    let found = find_library(Library::Cudnn).is_some();
    if !found {
        assert!(
            std::env::var_os("DEEPDREAM_REQUIRE_CUDNN").is_none(),
            "cuDNN was required but not found"
        );
        eprintln!("skipped cuDNN's shapes: no cuDNN (pip install nvidia-cudnn-cu13)");
    }
    found
}

/// Every layer of `network` lowers, and the plan's shape of each is the shape burn computes;
/// where cuDNN is at hand, its descriptors of the convolutions and poolings compute the
/// planned shapes too, at this size and at larger ones (odd sizes included).
fn check_lowering(network: &dyn Network, height: usize, width: usize) {
    let (graph, values) = network.cuda_graph().expect("an ONNX network has a graph");
    if cudnn() {
        let all: Vec<usize> = values.iter().flatten().copied().collect();
        for (height, width) in [(height, width), (224, 224), (257, 301), (768, 1024)] {
            let shape = Shape {
                channels: 3,
                height,
                width,
            };
            let plan = graph.plan(shape, &all).unwrap();
            if let Err(error) = describe(&graph, &plan, Precision::Tf32) {
                panic!("{} at {width}x{height}: {error}", network.name());
            }
        }
    }
    let device = Device::flex();
    let input = Tensor::<4>::random([1, 3, height, width], Distribution::Default, &device);
    for (index, layer) in network.layers().iter().enumerate() {
        let Some(value) = values[index] else {
            assert_eq!(
                layer.stride, 0,
                "only global layers stay on burn: {}",
                layer.name
            );
            continue;
        };
        let input_shape = Shape {
            channels: 3,
            height,
            width,
        };
        let plan = graph.plan(input_shape, &[value]).unwrap();
        let planned = plan.shapes[value].unwrap();
        let output = network.forward(input.clone(), &[index]).unwrap();
        let [_, c, h, w] = output[0].dims();
        assert_eq!(
            (planned.channels, planned.height, planned.width),
            (c, h, w),
            "{}",
            layer.name
        );
    }
}

#[test]
fn networks_lower_to_the_graph_the_gpu_runs() {
    let device = Device::flex();
    check_lowering(&test_network(&device), 40, 36);
    check_lowering(vgg16(&device).as_ref(), 67, 50);
    check_lowering(model("inception3", &device).as_ref(), 107, 96);
    check_lowering(model("efficientnet-lite0", &device).as_ref(), 67, 50);
}

/// The GPU memory a gradient takes per pixel, which sets when a dream tiles there, holds
/// every value and a block of gradients that share memory where their lives do not meet:
/// more than the values alone, less than a gradient for each, about the same per pixel at
/// any size; a default VGG16 dream of a 4000x3000 photo fits whole in three quarters of an
/// 80 GB GPU.
#[test]
fn gpu_memory_per_pixel_counts_values_and_shared_gradients() {
    let device = Device::flex();
    let networks: Vec<Box<dyn Network>> = vec![
        vgg16(&device),
        model("inception3", &device),
        model("efficientnet-lite0", &device),
    ];
    for network in networks {
        let (graph, values) = network.cuda_graph().unwrap();
        let layer = network.layer_index(&network.default_layers()[0]).unwrap();
        let value = values[layer].unwrap();
        let side = 512;
        let shape = Shape {
            channels: 3,
            height: side,
            width: side,
        };
        let plan = graph.plan(shape, &[value]).unwrap();
        let floats: usize = plan.shapes.iter().flatten().map(Shape::len).sum();
        let values_only = floats as f64 * 4.0 / (side * side) as f64;
        let gpu = bytes_per_pixel(&graph, &[value], side).unwrap();
        let larger = bytes_per_pixel(&graph, &[value], 2 * side).unwrap();
        let cpu = network.layers()[layer].bytes_per_pixel;
        eprintln!(
            "{} {}: GPU {gpu:.0} bytes per pixel ({values_only:.0} for the values alone), CPU estimate {cpu:.0}",
            network.name(),
            network.default_layers()[0]
        );
        assert!(
            gpu > values_only && gpu < 2.0 * values_only,
            "{gpu} vs {values_only}"
        );
        assert!((larger / gpu - 1.0).abs() < 0.05, "{larger} vs {gpu}");
        if network.name() == "vgg16" {
            let whole = gpu * 4000.0 * 3000.0;
            assert!(whole < 0.75 * 80e9, "{whole} bytes for 4000x3000");
        }
    }
}

/// The GPU, or `None` (with a note) where there is none and none is required.
fn gpu() -> Option<Arc<Gpu>> {
    match Gpu::open(0) {
        Ok(gpu) => {
            eprintln!("{}", gpu.info);
            Some(gpu)
        }
        Err(error) if std::env::var_os("DEEPDREAM_REQUIRE_GPU").is_none() => {
            eprintln!("skipped: {error}");
            None
        }
        Err(error) => panic!("a GPU was required: {error}"),
    }
}

fn params(layer: &str) -> DreamParams {
    DreamParams {
        layers: vec![LayerWeight {
            layer: layer.into(),
            weight: 1.0,
        }],
        ..DreamParams::default()
    }
}

fn gradient(network: &dyn Network, layer: &str, image: &TensorData) -> Vec<f32> {
    let device = Device::flex();
    let dreamer = Dreamer::new(network, params(layer), &device).unwrap();
    let gradient = dreamer
        .gradient(Tensor::<4>::from_data(image.clone(), &device))
        .unwrap();
    gradient.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn gradients_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let image = Tensor::<4>::random(
        [1, 3, 97, 83],
        Distribution::Uniform(-100.0, 100.0),
        &device,
    )
    .into_data();
    let load = |name: &str| -> Box<dyn Network> {
        match name {
            "test" => Box::new(test_network(&Device::flex())),
            name => model(name, &Device::flex()),
        }
    };
    let cases = [
        ("test", "mixed"),
        ("vgg16", "block3_conv3"),
        ("vgg16", "block5_pool"),
        ("inception3", "mixed_3"),
        ("inception3", "mixed_10"),
        ("efficientnet-lite0", "block10"),
        ("efficientnet-lite0", "head"),
    ];
    for (name, layer) in cases {
        let load = || load(name);
        let on_cpu = gradient(load().as_ref(), layer, &image);
        for (precision, tolerance) in [(Precision::Fp32, 1e-3), (Precision::Tf32, 1e-2)] {
            let network = CudaNetwork::new(load(), gpu.clone(), precision).unwrap();
            let on_gpu = gradient(&network, layer, &image);
            let error = relative_l2_error(&on_gpu, &on_cpu);
            eprintln!("{layer} {precision:?}: relative L2 error {error:e}");
            assert!(error <= tolerance, "{layer} {precision:?}: {error:e}");
        }
    }
}

/// EfficientNet-Lite0's depthwise convolutions give the same gradient whether cuDNN or
/// deepdream's own kernels run them (the default takes the faster of the two per shape, and
/// is checked against the CPU above), at an odd size where "same" padding is uneven.
#[test]
fn depthwise_kernels_equal_cudnn() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let network = model("efficientnet-lite0", &device);
    let (graph, values) = network.cuda_graph().unwrap();
    let value = values[network.layer_index("block10").unwrap()].unwrap();
    let shape = Shape {
        channels: 3,
        height: 101,
        width: 77,
    };
    let output = graph.plan(shape, &[value]).unwrap().shapes[value].unwrap();
    let mut loss = LayerTerms::zero(output.channels, 1..output.height, 0..output.width - 1);
    loss.quadratic = (0..output.channels)
        .map(|c| 1.0 + c as f32 / 10.0)
        .collect();
    loss.linear.fill(0.5);
    let image = Tensor::<4>::random(
        [1, 3, shape.height, shape.width],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    )
    .into_data()
    .try_to_vec::<f32>()
    .unwrap();
    let gradient = |depthwise: Depthwise| {
        Executor::new(gpu.clone(), graph.clone(), Precision::Fp32)
            .with_depthwise(depthwise)
            .gradient(
                &image,
                shape,
                &[value],
                Loss::Terms(std::slice::from_ref(&loss)),
            )
            .unwrap()
            .0
    };
    let (cudnn, own) = (gradient(Depthwise::Cudnn), gradient(Depthwise::Own));
    let error = relative_l2_error(&own, &cudnn);
    eprintln!("depthwise kernels vs cuDNN: relative L2 error {error:e}");
    assert!(cudnn.iter().any(|&v| v != 0.0), "a gradient");
    assert!(error <= 1e-5, "{error:e}");
}

/// DeepDream's term, ½Σa², on the whole of a value of shape `output`.
fn amplify(output: Shape) -> LayerTerms {
    let mut terms = LayerTerms::zero(output.channels, 0..output.height, 0..output.width);
    terms.quadratic.fill(1.0);
    terms
}

/// A gradient's plan and buffers kept for the next gradient of the same size give the same
/// gradient again, also after a gradient of another size came between (VGG16, TF32).
#[test]
fn prepared_gradients_give_the_same_gradient_again() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let network = vgg16(&device);
    let (graph, values) = network.cuda_graph().unwrap();
    let value = values[network.layer_index("block3_conv3").unwrap()].unwrap();
    let executor = Executor::new(gpu, graph.clone(), Precision::Tf32);
    let gradient = |height: usize, width: usize| {
        let shape = Shape {
            channels: 3,
            height,
            width,
        };
        let loss = amplify(graph.plan(shape, &[value]).unwrap().shapes[value].unwrap());
        let image: Vec<f32> = (0..shape.len())
            .map(|i| ((i * 7919) % 255) as f32 - 120.0)
            .collect();
        let losses = std::slice::from_ref(&loss);
        executor
            .gradient(&image, shape, &[value], Loss::Terms(losses))
            .unwrap()
            .0
    };
    let first = gradient(64, 80);
    let other = gradient(48, 48);
    let again = gradient(64, 80);
    assert!(first.iter().any(|&v| v != 0.0) && other.iter().any(|&v| v != 0.0));
    // Some of cuDNN's backward algorithms add with atomics, in no fixed order.
    let error = relative_l2_error(&again, &first);
    assert!(error < 1e-5, "{error:e}");
}

/// The algorithms timed by one executor are remembered in its file: a second one (another
/// process, as far as it knows) reads them back, times nothing, adds nothing to the file and
/// gives the same gradient; with EfficientNet-Lite0 its depthwise routes too.
#[test]
fn timed_choices_are_remembered_by_the_next_run() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let file = dir
        .path()
        .join(deepdream::backend::cuda::executor::REMEMBERED_FILE);
    for (name, layer) in [("vgg16", "block3_conv3"), ("efficientnet-lite0", "block10")] {
        let network = model(name, &device);
        let (graph, values) = network.cuda_graph().unwrap();
        let value = values[network.layer_index(layer).unwrap()].unwrap();
        let shape = Shape {
            channels: 3,
            height: 96,
            width: 128,
        };
        let loss = amplify(graph.plan(shape, &[value]).unwrap().shapes[value].unwrap());
        let image: Vec<f32> = (0..shape.len())
            .map(|i| ((i * 7919) % 255) as f32 - 120.0)
            .collect();
        let gradient = |executor: &Executor| {
            let losses = std::slice::from_ref(&loss);
            executor
                .gradient(&image, shape, &[value], Loss::Terms(losses))
                .unwrap()
                .0
        };
        let executor = |file: &std::path::Path| {
            Executor::new(gpu.clone(), graph.clone(), Precision::Tf32)
                .with_remembered(Some(file.to_path_buf()))
        };
        let first = gradient(&executor(&file));
        let written = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(!written.is_empty(), "{name}: nothing remembered");
        let second = gradient(&executor(&file));
        let after = std::fs::read_to_string(&file).unwrap();
        assert_eq!(after, written, "{name}: the second run timed choices again");
        let error = relative_l2_error(&second, &first);
        assert!(error < 1e-5, "{name}: {error:e}");
        println!("{name}: {} choices remembered", written.lines().count());
    }
}

/// The loss's gradients made on the GPU (chosen channels, a tile's window, a class logit, a
/// guide's pull on every channel or on chosen ones) give the CPU's image gradient.
#[test]
fn every_kind_of_objective_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let image = Tensor::<4>::random(
        [1, 3, 224, 224],
        Distribution::Uniform(-100.0, 100.0),
        &device,
    );
    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    let cases = [
        (
            "vgg16",
            "channels",
            DreamParams {
                channels: Some(vec![3, 70, 200]),
                ..params("block4_conv3")
            },
        ),
        (
            "vgg16",
            "guide",
            DreamParams {
                guide: Some(photo_crop(0, 0, 224)),
                ..params("block4_conv3")
            },
        ),
        (
            "vgg16",
            "guide on chosen channels",
            DreamParams {
                channels: Some(vec![3, 70, 200]),
                guide: Some(photo_crop(100, 50, 160)),
                ..params("block4_conv3")
            },
        ),
        (
            "efficientnet-lite0",
            "class",
            DreamParams {
                layers: Vec::new(),
                class: Some(130),
                ..DreamParams::default()
            },
        ),
    ];
    for (name, case, params) in cases {
        let cpu = model(name, &device);
        let on_gpu = CudaNetwork::new(model(name, &device), gpu.clone(), Precision::Fp32).unwrap();
        let gradient_on = |network: &dyn Network, tiled: bool| {
            let dreamer = Dreamer::new(network, params.clone(), &device).unwrap();
            values(match tiled {
                true => dreamer.tiled_gradient(image.clone(), 64, (8, 16)).unwrap(),
                false => dreamer.gradient(image.clone()).unwrap(),
            })
        };
        let error = relative_l2_error(
            &gradient_on(&on_gpu, false),
            &gradient_on(cpu.as_ref(), false),
        );
        eprintln!("{case}: relative L2 error {error:e}");
        assert!(error <= 1e-3, "{case}: {error:e}");
        if case != "class" {
            let error = relative_l2_error(
                &gradient_on(&on_gpu, true),
                &gradient_on(cpu.as_ref(), true),
            );
            eprintln!("{case}, tiled: relative L2 error {error:e}");
            assert!(error <= 1e-3, "{case}, tiled: {error:e}");
        }
    }
}

/// A default dream on the GPU in fp32 (whole steps on the kept picture, replayed as a CUDA
/// graph) against the CPU's: PSNR ≥ 35 dB; with a change mask too (a brush stroke fading
/// from the left), guided by another part of the photo (its pull matched on cuBLAS), and in
/// two regions of their own layers under soft masks (each region's terms weighted by its
/// mask on the GPU).
#[test]
fn a_default_dream_on_the_gpu_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let photo = image::DynamicImage::ImageRgb8(photo_crop(0, 0, 224));
    let fading = deepdream::control::mask::Mask::from_image(&image::DynamicImage::ImageLuma8(
        image::GrayImage::from_fn(224, 224, |x, _| image::Luma([255 - (x * 255 / 223) as u8])),
    ));
    let on_gpu = CudaNetwork::new(vgg16(&device), gpu, Precision::Fp32).unwrap();
    let on_cpu = vgg16(&device);
    let layer = |name: &str| {
        vec![LayerWeight {
            layer: name.into(),
            weight: 1.0,
        }]
    };
    // The fading mask's left for one layer, its inverse's right for another.
    let regions = vec![
        Region {
            mask: Some(fading.clone()),
            layers: layer("block4_conv3"),
            channels: None,
        },
        Region {
            mask: Some(deepdream::control::mask::Mask::from_image(
                &image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(224, 224, |x, _| {
                    image::Luma([(x * 255 / 223) as u8])
                })),
            )),
            layers: layer("block3_conv3"),
            channels: Some(vec![5, 40, 99]),
        },
    ];
    let cases = [
        ("default dream", None, None, Vec::new()),
        ("masked dream", Some(fading), None, Vec::new()),
        (
            "guided dream",
            None,
            Some(photo_crop(60, 30, 128)),
            Vec::new(),
        ),
        ("dream of two regions", None, None, regions),
    ];
    for (what, mask, guide, regions) in cases {
        let dream = |network: &dyn Network| {
            let params = DreamParams {
                layers: match regions.is_empty() {
                    true => layer("block4_conv3"),
                    false => Vec::new(),
                },
                mask: mask.clone(),
                guide: guide.clone(),
                regions: regions.clone(),
                ..DreamParams::default()
            };
            let dreamer = Dreamer::new(network, params, &device).unwrap();
            dreamer.dream_image(&photo, |_| {}).unwrap().to_rgb8()
        };
        let (cpu, gpu) = (dream(on_cpu.as_ref()), dream(&on_gpu));
        let squared: f64 = cpu
            .as_raw()
            .iter()
            .zip(gpu.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            / cpu.as_raw().len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / squared.max(1e-12)).log10();
        eprintln!("{what}, GPU fp32 vs CPU: PSNR {psnr:.1} dB");
        assert!(psnr >= 35.0, "{what}: PSNR {psnr:.1} dB");
    }
}

/// Style transfer's and feature visualisation's objectives (content, style, total variation,
/// a channel) give the same values, part by part, and image gradient on the GPU (the layer
/// terms' gradients and values made there: the Gram matrices on cuBLAS) as on the CPU.
#[test]
fn objective_gradients_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let device = Device::flex();
    let cpu = vgg16(&device);
    let on_gpu = CudaNetwork::new(vgg16(&device), gpu, Precision::Fp32).unwrap();
    let image = Tensor::<4>::random(
        [1, 3, 64, 80],
        Distribution::Uniform(-100.0, 100.0),
        &device,
    );
    let (content, style) = (
        cpu.layer_index("block4_conv2").unwrap(),
        cpu.layer_index("block2_conv1").unwrap(),
    );
    let targets = cpu
        .forward(image.clone().mul_scalar(0.5), &[content, style])
        .unwrap();
    let objective = Objective::new()
        .with(
            Term::Content {
                layer: content,
                target: targets[0].clone(),
            },
            1.0,
        )
        .with(
            Term::Style {
                layer: style,
                target: gram(targets[1].clone()),
            },
            1e3,
        )
        .with(Term::TotalVariation, 0.1)
        .with(
            Term::Channel {
                layer: content,
                channel: 7,
            },
            10.0,
        );
    let (cpu_losses, cpu_gradient) = objective.evaluate(cpu.as_ref(), image.clone()).unwrap();
    let (gpu_losses, gpu_gradient) = objective.evaluate(&on_gpu, image).unwrap();
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-6);
    for (cpu, gpu) in [
        (cpu_losses.total, gpu_losses.total),
        (cpu_losses.content, gpu_losses.content),
        (cpu_losses.style, gpu_losses.style),
        (cpu_losses.activation, gpu_losses.activation),
        (cpu_losses.total_variation, gpu_losses.total_variation),
    ] {
        assert!(close(cpu, gpu), "{cpu_losses:?} vs {gpu_losses:?}");
    }
    let error = relative_l2_error(
        &gpu_gradient.into_data().try_to_vec::<f32>().unwrap(),
        &cpu_gradient.into_data().try_to_vec::<f32>().unwrap(),
    );
    eprintln!("objective gradient, GPU fp32 vs CPU: relative L2 error {error:e}");
    assert!(error <= 1e-3, "{error:e}");
}

/// A kept image of VGG16's default layer: a 96x128 crop of the test photo, its objective and
/// ascent, ready for `Executor::upload_octaves`.
struct KeptSetup {
    network: Box<dyn Network>,
    value: usize,
    shape: Shape,
    values: Vec<f32>,
    ascent: NormalisedAscent,
}

impl KeptSetup {
    fn new() -> KeptSetup {
        let device = Device::flex();
        let network = vgg16(&device);
        let layer = network
            .layers()
            .iter()
            .position(|l| l.name == network.default_layers()[0])
            .unwrap();
        let shape = Shape {
            channels: 3,
            height: 96,
            width: 128,
        };
        let preprocess = network.preprocess();
        let image = preprocess.apply(&photo_crop(10, 10, 128), &device);
        let image = deepdream::engine::transform::resize(image, 96, 128, true);
        let (_, layers) = network.cuda_graph().unwrap();
        KeptSetup {
            value: layers[layer].unwrap(),
            shape,
            values: image.into_data().try_to_vec().unwrap(),
            ascent: NormalisedAscent {
                step_size: 1.5,
                units: preprocess.value_per_pixel_level(),
                ranges: preprocess.value_range(),
            },
            network,
        }
    }

    fn executor(&self, gpu: &Arc<Gpu>, graphs: bool) -> Executor {
        let (graph, _) = self.network.cuda_graph().unwrap();
        Executor::new(gpu.clone(), graph, Precision::Fp32).with_graphs(graphs)
    }

    /// The default layer's whole DeepDream term on a `shape` picture.
    fn loss(&self, shape: Shape) -> LayerTerms {
        let (graph, _) = self.network.cuda_graph().unwrap();
        amplify(graph.plan(shape, &[self.value]).unwrap().shapes[self.value].unwrap())
    }

    /// Sets the steps of `octaves`' octave under way (of `shape`) on `executor`.
    fn aim(&self, executor: &Executor, octaves: &mut DeviceOctaves, shape: Shape) {
        let loss = self.loss(shape);
        let steps = KeptSteps {
            wanted: &[self.value],
            losses: std::slice::from_ref(&loss),
            ascent: self.ascent,
            change: None,
        };
        executor.aim(octaves, steps).unwrap();
    }

    /// Six steps of different shifts on the image uploaded to `executor` as one octave; the
    /// image after them, and whether its steps replayed a graph from the first.
    fn dream(&self, executor: &Executor) -> (Vec<f32>, bool) {
        let size = [(self.shape.height, self.shape.width)];
        let mut octaves = executor
            .upload_octaves(&self.values, self.shape, &size)
            .unwrap();
        executor.next_octave(&mut octaves).unwrap();
        self.aim(executor, &mut octaves, self.shape);
        let kept = octaves.image_mut().unwrap();
        let replayed_from_the_first = kept.replays();
        for shift in [[0, 0], [3, 5], [90, 7], [1, 120], [50, 60], [95, 127]] {
            executor.ascend(kept, shift).unwrap();
        }
        assert!(executor.finite(octaves.image().unwrap()).unwrap());
        let image = executor.download_octave(&octaves).unwrap();
        executor.give_back_octaves(octaves);
        (image, replayed_from_the_first)
    }
}

/// A kept image's steps replayed from a recorded CUDA graph move the image as steps launched
/// one by one do (VGG16's default layer, fp32, six steps of different shifts); the next
/// image of the same size and objective takes over the first one's buffers and graph,
/// replays from its first step and dreams the same.
#[test]
fn replayed_steps_equal_launched_ones() {
    let Some(gpu) = gpu() else { return };
    let setup = KeptSetup::new();
    let (launched, replayed_first) = setup.dream(&setup.executor(&gpu, false));
    assert!(!replayed_first);
    let executor = setup.executor(&gpu, true);
    let (replayed, replayed_first) = setup.dream(&executor);
    assert!(!replayed_first, "a new image records its second step");
    let (again, replayed_first) = setup.dream(&executor);
    assert!(
        replayed_first,
        "the next image of the size replays from its first step"
    );
    let change = relative_l2_error(&launched, &setup.values);
    let error = relative_l2_error(&replayed, &launched);
    let again = relative_l2_error(&again, &replayed);
    println!(
        "replayed vs launched: relative L2 {error:.2e}; the next image vs the first: {again:.2e} (the steps changed the image by {change:.2e})"
    );
    assert!(change > 1e-3, "the steps changed the image");
    assert!(error < 1e-5, "{error}");
    assert!(again < 1e-5, "{again}");
}

/// A picture's octaves on the GPU begin as the engine's do (`octaves::start`): the first from
/// the picture scaled down twice, each later one from its base plus the detail that the
/// octave before's steps added, scaled up; no octave after the last.
#[test]
fn octaves_on_the_gpu_begin_as_the_engines() {
    let Some(gpu) = gpu() else { return };
    let setup = KeptSetup::new();
    let executor = setup.executor(&gpu, true);
    let sizes = octaves::sizes(128, 96, 3, 1.4, 32).unwrap();
    assert_eq!(sizes.len(), 3);
    let mut kept = executor
        .upload_octaves(&setup.values, setup.shape, &sizes)
        .unwrap();
    let device = Device::flex();
    let tensor = |values: Vec<f32>, (height, width): (usize, usize)| {
        Tensor::<4>::from_data(TensorData::new(values, [1, 3, height, width]), &device)
    };
    let bases = octaves::bases(tensor(setup.values.clone(), sizes[2]), &sizes);
    let mut dreamed: Option<Tensor<4>> = None;
    for (octave, &(height, width)) in sizes.iter().enumerate() {
        executor.next_octave(&mut kept).unwrap();
        let start = executor.download_octave(&kept).unwrap();
        let before = dreamed.as_ref().map(|d| (d, &bases[octave - 1]));
        let want = octaves::start(&bases[octave], before);
        let error = relative_l2_error(&start, &want.into_data().try_to_vec::<f32>().unwrap());
        println!(
            "octave {octave} ({width}x{height}): start vs the engine's, relative L2 {error:.2e}"
        );
        assert!(error < 1e-5, "octave {octave}: {error:e}");
        let shape = Shape {
            channels: 3,
            height,
            width,
        };
        setup.aim(&executor, &mut kept, shape);
        for shift in [[0, 0], [3, 5], [20, 7]] {
            executor.ascend(kept.image_mut().unwrap(), shift).unwrap();
        }
        let after = executor.download_octave(&kept).unwrap();
        assert!(
            relative_l2_error(&after, &start) > 1e-4,
            "the steps moved the picture"
        );
        dreamed = Some(tensor(after, (height, width)));
    }
    assert!(executor.next_octave(&mut kept).is_err());
    executor.give_back_octaves(kept);
}

/// Farnebäck's flows on the GPU are the CPU's, both ways, on a real pair of frames scaled to
/// 1280x720 (a film's frame); the time of each, GPU and CPU, is printed (not checked).
#[test]
fn farneback_on_the_gpu_gives_the_cpus_flows() {
    let Some(gpu) = gpu() else { return };
    let flow = GpuFlow::new(&gpu).unwrap();
    let device = Device::flex();
    let [a, b] = ["pair1_a.png", "pair1_b.png"].map(|name| {
        let path = common::fixture("flow").join(name);
        let image = image::open(path).unwrap().to_luma8();
        let image =
            image::imageops::resize(&image, 1280, 720, image::imageops::FilterType::Triangle);
        grey_tensor(&image, &device)
    });
    let params = FarnebackParams::default();
    let started = std::time::Instant::now();
    let cpu = farneback_both(&a, &b, &params);
    let cpu_time = started.elapsed();
    let mut times = Vec::new();
    let mut on_gpu = None;
    for _ in 0..6 {
        let started = std::time::Instant::now();
        on_gpu = Some(flow.farneback_both(&a, &b, &params).unwrap());
        times.push(started.elapsed());
    }
    times.sort();
    let (forward, backward) = on_gpu.unwrap();
    for (what, got, want) in [("forward", forward, cpu.0), ("backward", backward, cpu.1)] {
        let error: f32 = got
            .sub(want.clone())
            .powi_scalar(2)
            .sum_dim(1)
            .sqrt()
            .mean()
            .into_scalar();
        let motion: f32 = want.powi_scalar(2).sum_dim(1).sqrt().mean().into_scalar();
        eprintln!(
            "{what}: mean end-point error {error:e} px against the CPU's (motion {motion} px)"
        );
        assert!(motion > 1.0, "the frames move: {motion} px");
        assert!(error < 1e-3, "{what}: {error} px");
    }
    eprintln!(
        "Farnebäck both ways at 1280x720: GPU {:.1} ms (median of 5 after the first), CPU {:.1} ms ({} threads)",
        times[3].as_secs_f64() * 1e3,
        cpu_time.as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );
}
