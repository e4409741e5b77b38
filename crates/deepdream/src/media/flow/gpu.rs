//! Farnebäck's flow on an NVIDIA GPU: the passes of [`farneback`](super::farneback) as
//! CUDA kernels (`farneback.cu`, compiled by NVRTC when a film first needs them), on a
//! stream of their own, so that a film's next flows are computed on the GPU while its
//! dream runs there too. The passes are queued by one driver ([`flows_both`]) that the
//! tests also run on the kernels built for the host.

use std::sync::Arc;

use burn::tensor::Tensor;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::FlowDevice;
use super::farneback::{
    FarnebackParams, PolynomialExpansion, blur_mirrors, box_side, gaussian_kernel, levels,
};
use super::tensors::{flow_tensor, plane_values};
use crate::backend::cuda::Gpu;
use crate::backend::cuda::kernels::compile_cached;
use crate::error::{Error, Result};

/// The kernels' CUDA C source.
pub const SOURCE: &str = include_str!("farneback.cu");

/// Threads per block.
const BLOCK: u32 = 256;

/// The one argument of every kernel in `farneback.cu` (see its `FlowArgs`: the same fields
/// in the same order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlowArgs {
    out: u64,
    in0: u64,
    in1: u64,
    in2: u64,
    weights: u64,
    taps: u64,
    height: u64,
    width: u64,
    in_height: u64,
    in_width: u64,
    factor: f32,
    mirror: i32,
    linear: f32,
    coupling: f32,
    square: f32,
    cross: f32,
    n: u64,
}

// SAFETY: a plain C struct of integers, floats and device addresses, laid out as the kernels'.
unsafe impl DeviceRepr for FlowArgs {}

/// The kernels of `farneback.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Columns,
    Rows,
    Expand,
    Resize,
    Update,
    BoxColumns,
    Solve,
}

impl Kernel {
    const ALL: [Kernel; 7] = [
        Kernel::Columns,
        Kernel::Rows,
        Kernel::Expand,
        Kernel::Resize,
        Kernel::Update,
        Kernel::BoxColumns,
        Kernel::Solve,
    ];

    /// The kernel's name in the source.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Columns => "flow_columns",
            Kernel::Rows => "flow_rows",
            Kernel::Expand => "flow_expand",
            Kernel::Resize => "flow_resize",
            Kernel::Update => "flow_update",
            Kernel::BoxColumns => "flow_box_columns",
            Kernel::Solve => "flow_solve",
        }
    }
}

/// Where the driver's passes run: buffers of floats by address, and the kernels.
pub(crate) trait Passes {
    /// A new buffer of `len` zeros, its address.
    fn zeros(&mut self, len: usize) -> Result<u64>;
    /// A new buffer holding `values`, its address.
    fn upload(&mut self, values: &[f32]) -> Result<u64>;
    /// Runs `kernel` over `args.n` elements.
    fn run(&mut self, kernel: Kernel, args: FlowArgs) -> Result<()>;
}

/// The flows both ways between the grey frames at `a` and `b` (`height` x `width`, 0–255),
/// queued on `passes`: the addresses of the flow `a → b` and `b → a`, each two planes (x,
/// then y) as [`farneback_both`](super::farneback_both) gives them.
pub(crate) fn flows_both(
    passes: &mut impl Passes,
    frames: [u64; 2],
    height: usize,
    width: usize,
    params: &FarnebackParams,
) -> Result<[u64; 2]> {
    let levels = levels(params, width, height);
    if levels.is_empty() {
        return Ok([
            passes.zeros(2 * height * width)?,
            passes.zeros(2 * height * width)?,
        ]);
    }
    let expansion = PolynomialExpansion::new(params.poly_n, params.poly_sigma);
    let moments = passes.upload(&expansion.weights.concat())?;
    let taps = expansion.weights[0].len() as u64;
    let [linear, coupling, square, cross] = expansion.inverse;
    // Each frame's polynomials on each level, coarsest first.
    let mut pyramids = [Vec::new(), Vec::new()];
    let size = [height as u64, width as u64];
    for level in &levels {
        let kernel = gaussian_kernel(level.blur_sigma());
        let filter = FlowArgs {
            weights: passes.upload(&kernel)?,
            taps: kernel.len() as u64,
            height: size[0],
            width: size[1],
            n: size[0] * size[1],
            ..FlowArgs::default()
        };
        let (h, w) = (level.height as u64, level.width as u64);
        for (frame, pyramid) in frames.iter().zip(&mut pyramids) {
            let across = passes.zeros(height * width)?;
            let blurred = passes.zeros(height * width)?;
            passes.run(
                Kernel::Columns,
                FlowArgs {
                    out: across,
                    in0: *frame,
                    mirror: blur_mirrors(&kernel, height) as i32,
                    ..filter
                },
            )?;
            passes.run(
                Kernel::Rows,
                FlowArgs {
                    out: blurred,
                    in0: across,
                    mirror: blur_mirrors(&kernel, width) as i32,
                    ..filter
                },
            )?;
            let scaled = if (h, w) == (size[0], size[1]) {
                blurred
            } else {
                let scaled = passes.zeros(level.height * level.width)?;
                passes.run(
                    Kernel::Resize,
                    resize(scaled, blurred, size, [h, w], 1, 1.0),
                )?;
                scaled
            };
            let columns = passes.zeros(3 * level.height * level.width)?;
            let expansion_args = FlowArgs {
                weights: moments,
                taps,
                height: h,
                width: w,
                linear,
                coupling,
                square,
                cross,
                ..FlowArgs::default()
            };
            passes.run(
                Kernel::Columns,
                FlowArgs {
                    out: columns,
                    in0: scaled,
                    n: 3 * h * w,
                    ..expansion_args
                },
            )?;
            let polynomials = passes.zeros(5 * level.height * level.width)?;
            passes.run(
                Kernel::Expand,
                FlowArgs {
                    out: polynomials,
                    in0: columns,
                    n: h * w,
                    ..expansion_args
                },
            )?;
            pyramid.push(polynomials);
        }
    }
    let [first, second] = &pyramids;
    Ok([
        flow(passes, first, second, &levels, params)?,
        flow(passes, second, first, &levels, params)?,
    ])
}

/// The flow from the frame of polynomials `from` to that of `to` (a buffer per level), as
/// [`farneback`](super::farneback)'s `flow` solves it.
fn flow(
    passes: &mut impl Passes,
    from: &[u64],
    to: &[u64],
    levels: &[super::farneback::Level],
    params: &FarnebackParams,
) -> Result<u64> {
    let side = box_side(params) as u64;
    let mut coarse: Option<(u64, [u64; 2])> = None;
    for ((level, &r0), &r1) in levels.iter().zip(from).zip(to) {
        let (h, w) = (level.height as u64, level.width as u64);
        let plane = level.height * level.width;
        let current = passes.zeros(2 * plane)?;
        if let Some((coarse, size)) = coarse {
            let factor = 1.0 / params.pyr_scale;
            passes.run(
                Kernel::Resize,
                resize(current, coarse, size, [h, w], 2, factor),
            )?;
        }
        let matrices = passes.zeros(5 * plane)?;
        let sums = passes.zeros(5 * plane)?;
        let update = FlowArgs {
            out: matrices,
            in0: r0,
            in1: r1,
            in2: current,
            height: h,
            width: w,
            n: h * w,
            ..FlowArgs::default()
        };
        passes.run(Kernel::Update, update)?;
        let box_args = FlowArgs {
            taps: side,
            height: h,
            width: w,
            ..FlowArgs::default()
        };
        for iteration in 0..params.iterations {
            passes.run(
                Kernel::BoxColumns,
                FlowArgs {
                    out: sums,
                    in0: matrices,
                    n: 5 * h * w,
                    ..box_args
                },
            )?;
            passes.run(
                Kernel::Solve,
                FlowArgs {
                    out: current,
                    in0: sums,
                    n: h * w,
                    ..box_args
                },
            )?;
            if iteration + 1 < params.iterations {
                passes.run(Kernel::Update, update)?;
            }
        }
        coarse = Some((current, [h, w]));
    }
    Ok(coarse.expect("at least one level").0)
}

/// A resize's arguments: `planes` planes at `from` of size `from_size` to `out` at `size`,
/// times `factor`.
fn resize(
    out: u64,
    from: u64,
    from_size: [u64; 2],
    size: [u64; 2],
    planes: u64,
    factor: f32,
) -> FlowArgs {
    FlowArgs {
        out,
        in0: from,
        in_height: from_size[0],
        in_width: from_size[1],
        height: size[0],
        width: size[1],
        factor,
        n: planes * size[0] * size[1],
        ..FlowArgs::default()
    }
}

/// Farnebäck's flow on one GPU: the kernels loaded, and a stream of their own.
pub struct GpuFlow {
    stream: Arc<CudaStream>,
    functions: Vec<CudaFunction>,
    _module: Arc<CudaModule>,
}

impl GpuFlow {
    /// The kernels compiled for `gpu` (or read from the GPU cache) and loaded there.
    pub fn new(gpu: &Gpu) -> Result<GpuFlow> {
        let cubin = compile_cached(SOURCE, gpu.info.capability, &crate::home::gpu_cache_dir())?;
        let driver = |e: cudarc::driver::DriverError| {
            Error::Device(format!("cannot load the optical flow's CUDA kernels: {e}"))
        };
        let (module, stream) = gpu.with(|handles| {
            let module = handles
                .context
                .load_module(Ptx::from_binary(cubin))
                .map_err(driver)?;
            let stream = handles.context.new_stream().map_err(driver)?;
            Ok::<_, Error>((module, stream))
        })?;
        let functions = Kernel::ALL
            .iter()
            .map(|kernel| module.load_function(kernel.name()).map_err(driver))
            .collect::<Result<_>>()?;
        Ok(GpuFlow {
            stream,
            functions,
            _module: module,
        })
    }
}

impl FlowDevice for GpuFlow {
    fn farneback_both(
        &self,
        a: &Tensor<4>,
        b: &Tensor<4>,
        params: &FarnebackParams,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let [_, _, height, width] = a.dims();
        if b.dims() != a.dims() {
            return Err(Error::InvalidParameter(format!(
                "frames of two sizes, {:?} and {:?}",
                a.dims(),
                b.dims()
            )));
        }
        let device = a.device();
        let mut passes = StreamPasses {
            flow: self,
            buffers: Vec::new(),
        };
        let frames = [
            passes.upload(&plane_values(a))?,
            passes.upload(&plane_values(b))?,
        ];
        let flows = flows_both(&mut passes, frames, height, width, params)?;
        let plane = height * width;
        let [forward, backward] = flows.map(|address| {
            let values = passes.download(address, 2 * plane)?;
            let (u, v) = values.split_at(plane);
            Ok::<_, Error>(flow_tensor(u.to_vec(), v.to_vec(), height, width, &device))
        });
        Ok((forward?, backward?))
    }
}

/// The passes of one call on the flow's stream, with the buffers they made (freed with it).
struct StreamPasses<'a> {
    flow: &'a GpuFlow,
    buffers: Vec<CudaSlice<f32>>,
}

impl StreamPasses<'_> {
    /// `buffer` kept, its address.
    fn keep(&mut self, buffer: CudaSlice<f32>) -> u64 {
        let address = buffer.device_ptr(&self.flow.stream).0;
        self.buffers.push(buffer);
        address
    }

    /// The first `len` values of the buffer at `address`, once the passes are done.
    fn download(&self, address: u64, len: usize) -> Result<Vec<f32>> {
        let stream = &self.flow.stream;
        let buffer = self
            .buffers
            .iter()
            .find(|buffer| buffer.device_ptr(stream).0 == address)
            .expect("a buffer of these passes");
        stream
            .clone_dtoh(&buffer.slice(..len))
            .map_err(|e| Error::Device(format!("cannot download the optical flow: {e}")))
    }
}

impl Passes for StreamPasses<'_> {
    fn zeros(&mut self, len: usize) -> Result<u64> {
        let buffer = self
            .flow
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| Error::Device(format!("no GPU memory for the optical flow: {e}")))?;
        Ok(self.keep(buffer))
    }

    fn upload(&mut self, values: &[f32]) -> Result<u64> {
        let buffer = self
            .flow
            .stream
            .clone_htod(values)
            .map_err(|e| Error::Device(format!("cannot upload a frame: {e}")))?;
        Ok(self.keep(buffer))
    }

    fn run(&mut self, kernel: Kernel, args: FlowArgs) -> Result<()> {
        let function = &self.flow.functions[kernel as usize];
        let blocks = (args.n as usize).div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = self.flow.stream.launch_builder(function);
        builder.arg(&args);
        // SAFETY: every kernel of farneback.cu takes one `FlowArgs`, whose addresses the
        // driver made on this stream, long enough for the elements the kernel touches.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(|e| Error::Device(format!("the optical flow's kernel failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::kernels::{assert_compiles, host_build};
    use crate::media::flow::farneback_both;
    use crate::media::flow::tensors::plane_values as values;

    /// NVRTC needs no GPU: wherever it is installed, the kernels must compile.
    #[test]
    fn the_kernels_compile_for_ampere_and_hopper() {
        assert_compiles(SOURCE);
    }

    /// The kernels built for the host, run one element at a time on host buffers.
    struct HostPasses {
        library: libloading::Library,
        buffers: Vec<Vec<f32>>,
    }

    impl HostPasses {
        fn values(&self, address: u64, len: usize) -> Vec<f32> {
            let buffer = self
                .buffers
                .iter()
                .find(|b| b.as_ptr() as u64 == address)
                .expect("a buffer");
            buffer[..len].to_vec()
        }
    }

    impl Passes for HostPasses {
        fn zeros(&mut self, len: usize) -> Result<u64> {
            self.upload(&vec![0.0; len.max(1)])
        }

        fn upload(&mut self, values: &[f32]) -> Result<u64> {
            self.buffers.push(values.to_vec());
            Ok(self.buffers.last().unwrap().as_ptr() as u64)
        }

        fn run(&mut self, kernel: Kernel, args: FlowArgs) -> Result<()> {
            type Function = unsafe extern "C" fn(FlowArgs);
            // SAFETY: each kernel is a function of one `FlowArgs`, whose addresses are of
            // buffers this holds, long enough for the elements it touches.
            unsafe {
                let function = self
                    .library
                    .get::<Function>(kernel.name().as_bytes())
                    .unwrap();
                function(args);
            }
            Ok(())
        }
    }

    /// A pair of real frames (the flow tests' fixtures: several pixels of motion), grey, at
    /// `width` x `height`.
    fn frames(width: u32, height: u32) -> [Tensor<4>; 2] {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flow");
        let device = burn::tensor::Device::flex();
        ["pair1_a.png", "pair1_b.png"].map(|name| {
            let image = image::open(folder.join(name)).unwrap().to_luma8();
            let image = image::imageops::resize(
                &image,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
            super::super::grey_tensor(&image, &device)
        })
    }

    /// The driver on the kernels built for the host gives the CPU's flows (which match
    /// OpenCV's), both ways, on real frames at odd sizes and at a size too small for any
    /// level.
    #[test]
    fn the_kernels_give_the_cpus_flows() {
        let Some(library) = host_build("farneback", SOURCE) else {
            return;
        };
        let mut passes = HostPasses {
            library,
            buffers: Vec::new(),
        };
        let params = FarnebackParams::default();
        for (width, height) in [(176, 144), (161, 123), (96, 70), (31, 40)] {
            let [a, b] = frames(width, height);
            let (forward, backward) = farneback_both(&a, &b, &params);
            let frames = [
                passes.upload(&values(&a)).unwrap(),
                passes.upload(&values(&b)).unwrap(),
            ];
            let (height, width) = (height as usize, width as usize);
            let flows = flows_both(&mut passes, frames, height, width, &params).unwrap();
            for (address, cpu) in flows.iter().zip([forward, backward]) {
                let got = passes.values(*address, 2 * height * width);
                let want = cpu.into_data().try_to_vec::<f32>().unwrap();
                let plane = height * width;
                let error: f32 = (0..plane)
                    .map(|i| (got[i] - want[i]).hypot(got[plane + i] - want[plane + i]))
                    .sum::<f32>()
                    / plane as f32;
                let motion: f32 = (0..plane)
                    .map(|i| want[i].hypot(want[plane + i]))
                    .sum::<f32>()
                    / plane as f32;
                println!(
                    "{width}x{height}: mean end-point error {error:e} px, mean motion {motion} px"
                );
                assert!(error < 1e-4, "{width}x{height}: {error} px");
                if width > 64 {
                    assert!(motion > 0.5, "the frames move: {motion} px");
                }
            }
        }
    }
}
