//! deepdream's own CUDA kernels ([`SOURCE`]): compiled by NVRTC, at run time, straight to
//! machine code for the GPU at hand (a CUBIN, not PTX, so that a newer NVRTC than the
//! driver still works), kept in the GPU cache for later runs, and loaded once per device.

use std::ffi::{CStr, CString};
use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, LaunchConfig};
use cudarc::nvrtc::{Ptx, result, sys};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::timeline;

/// The kernels' CUDA C source.
pub const SOURCE: &str = include_str!("kernels.cu");

/// Threads per block of every element-wise kernel.
const BLOCK: u32 = 256;

/// Compiles `source` (deepdream's CUDA C, such as [`SOURCE`]) for a GPU of compute
/// capability `(major, minor)` into a CUBIN.
pub fn compile(source: &str, capability: (i32, i32)) -> Result<Vec<u8>> {
    let failed = |what: &str, detail: String| {
        Error::Device(format!(
            "NVRTC could not {what} deepdream's kernels: {detail}"
        ))
    };
    let source = CString::new(source).expect("no NUL in the source");
    let program = result::create_program(&source, Some(c"deepdream.cu"))
        .map_err(|e| failed("read", format!("{e:?}")))?;
    let options = [
        format!("--gpu-architecture=sm_{}{}", capability.0, capability.1),
        "--std=c++17".to_string(),
    ];
    // SAFETY: `program` was created above and is destroyed once, at the end.
    let compiled = unsafe {
        match result::compile_program(program, &options) {
            Ok(()) => cubin(program).map_err(|e| failed("emit", format!("{e:?}"))),
            Err(e) => {
                let log = result::get_program_log(program)
                    .map(|log| CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(failed("compile", format!("{e:?}: {}", log.trim())))
            }
        }
    };
    // SAFETY: as above; nothing uses `program` afterwards.
    let _ = unsafe { result::destroy_program(program) };
    compiled
}

/// [`compile`]'s CUBIN, kept in `folder` (named by a hash of the source and the GPU's
/// compute capability) so that later runs load it instead of compiling again (NVRTC takes a
/// noticeable part of a short dream's start). A cache that cannot be read or written only
/// means compiling.
pub fn compile_cached(source: &str, capability: (i32, i32), folder: &Path) -> Result<Vec<u8>> {
    let hash = Sha256::digest(source.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = folder.join(format!(
        "cuda-kernels-{hex}-sm_{}{}.cubin",
        capability.0, capability.1
    ));
    if let Ok(cubin) = std::fs::read(&path)
        && cubin.starts_with(b"\x7fELF")
    {
        timeline::mark(|| format!("kernels read from {}", path.display()));
        return Ok(cubin);
    }
    let cubin = compile(source, capability)?;
    timeline::mark(|| "kernels compiled by NVRTC".into());
    // Written whole under a temporary name, then renamed: a concurrent run never reads half.
    let temporary = path.with_extension(format!("{}.partial", std::process::id()));
    let written = std::fs::create_dir_all(folder)
        .and_then(|()| std::fs::write(&temporary, &cubin))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    Ok(cubin)
}

/// The compiled machine code of `program`.
///
/// # Safety
/// `program` must be a live, compiled NVRTC program.
unsafe fn cubin(program: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: the caller's promise.
    unsafe {
        sys::nvrtcGetCUBINSize(program, &mut size).result()?;
        let mut bytes = vec![0u8; size];
        sys::nvrtcGetCUBIN(program, bytes.as_mut_ptr().cast()).result()?;
        Ok(bytes)
    }
}

/// The kernels, loaded on one device.
pub struct Kernels {
    _module: Arc<CudaModule>,
    /// `axpy(y, x, a, n)`: `y += a·x`
    pub axpy: CudaFunction,
    /// `scale(y, x, a, n)`: `y = a·x`
    pub scale: CudaFunction,
    /// `relu(y, x, n)`
    pub relu: CudaFunction,
    /// `clip(y, x, low, high, n)`
    pub clip: CudaFunction,
    /// `relu_bias(y, x, bias, plane, channels)`: `max(x + bias[c], 0)`, launched by
    /// [`per_plane`].
    pub relu_bias: CudaFunction,
    /// `clip_bias(y, x, bias, low, high, plane, channels)`: `min(max(x + bias[c], low),
    /// high)`, launched by [`per_plane`].
    pub clip_bias: CudaFunction,
    /// `add(y, a, b, n)`
    pub add: CudaFunction,
    /// `relu_backward(dx, dy, y, accumulate, n)`: `dy` where `y > 0`, else 0, stored in `dx`
    /// (added to it when `accumulate` is 1, else overwriting it, as every `accumulate` below).
    pub relu_backward: CudaFunction,
    /// `clip_backward(dx, dy, y, low, high, accumulate, n)`: `dy` where `low < y < high`.
    pub clip_backward: CudaFunction,
    /// `scale_shift(y, x, scale, shift, plane, channels)`, launched by [`per_plane`]
    pub scale_shift: CudaFunction,
    /// `scale_backward(dx, dy, scale, accumulate, plane, channels)`, launched by
    /// [`per_plane`]
    pub scale_backward: CudaFunction,
    /// `pad(y, x, height, width, top, left, padded_height, padded_width, value, n)`
    pub pad: CudaFunction,
    /// `crop(dx, dy, height, width, top, left, padded_height, padded_width, accumulate, n)`
    pub crop: CudaFunction,
    /// `quadratic_seed(dy, a, quadratic, linear, mask, channels, height, width, row0, row1,
    /// col0, col1, accumulate, n)`: a [`LayerTerms`](crate::backend::layer_terms::LayerTerms)'s
    /// gradient stored in `dy`.
    pub quadratic_seed: CudaFunction,
    /// `quadratic_value(total, a, quadratic, linear, mask, channels, height, width, row0,
    /// row1, col0, col1, n)`: `total +=` the quadratic loss's value.
    pub quadratic_value: CudaFunction,
    /// `content_seed(dy, total, a, target, scale, weight, n)`: a content
    /// [`Match`](crate::backend::layer_terms::Match)'s gradient `scale·(a − target)` added
    /// to `dy` and its value `weight·Σ(a − target)²` to `total` (none: 0).
    pub content_seed: CudaFunction,
    /// `style_difference(gram, total, target, inverse_count, weight, n)`: a style match's
    /// `gram·inverse_count − target` in place, `weight·Σ` of its squares added to `total`.
    pub style_difference: CudaFunction,
    /// `guide_seed(dy, scores, features, positions, channels, width, row0, row1, col0, col1,
    /// weight, n)`: a [`Guide`](crate::backend::layer_terms::Guide)'s pull added to `dy`
    /// inside the window, from the scores of each of the `n` positions against the guide's.
    pub guide_seed: CudaFunction,
    /// `roll(y, x, shift, height, width, n)`: each plane of `x` rolled by the `(rows,
    /// columns)` at `shift` on the GPU.
    pub roll: CudaFunction,
    /// `abs_sum(total, x, mask, shift, height, width, n)`: `total += Σ|x·m|`, `m` the weight
    /// of a change mask (or none: 0) rolled by the `(rows, columns)` at `shift`.
    pub abs_sum: CudaFunction,
    /// `ascend(image, gradient, total, bad, shift, mask, count, height, width, step_size,
    /// unit0..2, low0, high0, …, n)`: DeepDream's normalised update from the gradient's
    /// absolute sum at `total` over `count` values, the gradient weighted by the change mask
    /// (or none: 0), as [`NormalisedAscent::factors`] and
    /// [`ascend`](crate::backend::ascend::ascend) do it on the host; a sum that is not finite
    /// sets the flag at `bad` instead.
    ///
    /// [`NormalisedAscent::factors`]: crate::backend::ascend::NormalisedAscent::factors
    pub ascend: CudaFunction,
    /// `resize(y, x, minus, plus, height, width, out_height, out_width, n)`: `y = plus + (x -
    /// minus)` scaled bilinearly, corners aligned, from `height` x `width` planes to
    /// `out_height` x `out_width` ones, as [`transform::resize`] does (`minus`, `plus` none: 0):
    /// the octaves' bases and starts.
    ///
    /// [`transform::resize`]: crate::engine::transform::resize
    pub resize: CudaFunction,
    /// `depthwise(y, x, w, bias, height, width, out_height, out_width, kh, kw, sh, sw, top,
    /// left, dh, dw, n)`: a convolution of one filter per channel (bias none: 0).
    pub depthwise: CudaFunction,
    /// `depthwise_backward(dx, dy, w, accumulate, height, …, dw, n)`: its gradient with
    /// respect to the input, stored in `dx`.
    pub depthwise_backward: CudaFunction,
}

impl Kernels {
    /// The kernels compiled into `cubin` for `context`'s GPU (see [`compile_cached`]),
    /// loaded.
    pub fn load(context: &Arc<CudaContext>, cubin: Vec<u8>) -> Result<Kernels> {
        let driver = |e: cudarc::driver::DriverError| {
            Error::Device(format!("cannot load deepdream's CUDA kernels: {e}"))
        };
        let module = context
            .load_module(Ptx::from_binary(cubin))
            .map_err(driver)?;
        let function = |name: &str| module.load_function(name).map_err(driver);
        Ok(Kernels {
            axpy: function("axpy")?,
            scale: function("scale")?,
            relu: function("relu")?,
            clip: function("clip")?,
            relu_bias: function("relu_bias")?,
            clip_bias: function("clip_bias")?,
            add: function("add")?,
            relu_backward: function("relu_backward")?,
            clip_backward: function("clip_backward")?,
            scale_shift: function("scale_shift")?,
            scale_backward: function("scale_backward")?,
            pad: function("pad")?,
            crop: function("crop")?,
            quadratic_seed: function("quadratic_seed")?,
            quadratic_value: function("quadratic_value")?,
            content_seed: function("content_seed")?,
            style_difference: function("style_difference")?,
            guide_seed: function("guide_seed")?,
            roll: function("roll")?,
            abs_sum: function("abs_sum")?,
            ascend: function("ascend")?,
            resize: function("resize")?,
            depthwise: function("depthwise")?,
            depthwise_backward: function("depthwise_backward")?,
            _module: module,
        })
    }
}

/// The launch shape of an element-wise kernel over `n` elements.
pub fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The launch shape of a kernel over `channels` planes of `plane` elements each: a row of
/// blocks per channel (up to the grid's limit; the kernels loop over the rest).
pub fn per_plane(plane: usize, channels: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            plane.div_ceil(BLOCK as usize).clamp(1, 1024) as u32,
            channels.clamp(1, 65_535) as u32,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Kernels' `source` compiled for the host by the system's C++ compiler (for tests), each
/// grid-stride loop run by one thread over every element, as library `name`; `None` (with a
/// note) without a compiler, unless `DEEPDREAM_REQUIRE_CXX` is set.
#[cfg(test)]
pub(crate) fn host_build(name: &str, source: &str) -> Option<libloading::Library> {
    // A folder per build: tests build at once, and one must not load another's half-written
    // library.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let folder =
        std::env::temp_dir().join(format!("deepdream-{name}-{}-{build}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let shim = folder.join("shim.h");
    std::fs::write(
        &shim,
        "#include <math.h>\n#define __global__\n#define __device__\n#define __shared__ static\n\
         #define __syncthreads()\nstruct Dim { unsigned x, y, z; };\n\
         static const Dim blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};\n\
         static const Dim blockDim = {1, 1, 1}, gridDim = {1, 1, 1};\n\
         static inline float atomicAdd(float *a, float v) { float o = *a; *a += v; return o; }\n",
    )
    .unwrap();
    let source_file = folder.join("kernels.cu");
    std::fs::write(&source_file, source).unwrap();
    let library = folder.join("libkernels.so");
    let built = std::process::Command::new("c++")
        .args([
            "-x",
            "c++",
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            "-include",
        ])
        .arg(&shim)
        .arg(&source_file)
        .arg("-o")
        .arg(&library)
        .status();
    match built {
        Ok(status) if status.success() => {}
        other => {
            assert!(
                std::env::var_os("DEEPDREAM_REQUIRE_CXX").is_none(),
                "a C++ compiler was required: {other:?}"
            );
            eprintln!("skipped: no C++ compiler to build the kernels for the host");
            return None;
        }
    }
    // SAFETY: the library is the kernels' source compiled above; it runs no code on load.
    let loaded = unsafe { libloading::Library::new(&library) }.unwrap();
    // What is loaded stays mapped without its file.
    std::fs::remove_dir_all(&folder).ok();
    Some(loaded)
}

/// Checks (for tests) that kernels' `source` compiles for Ampere and Hopper GPUs wherever
/// NVRTC is installed; without it, a note, or a failure where `DEEPDREAM_REQUIRE_NVRTC` is
/// set.
#[cfg(test)]
pub(crate) fn assert_compiles(source: &str) {
    use crate::backend::cuda::libraries::{Library, find_library};
    if find_library(Library::Nvrtc).is_none() {
        assert!(
            std::env::var_os("DEEPDREAM_REQUIRE_NVRTC").is_none(),
            "NVRTC was required but not found"
        );
        eprintln!("skipped: no NVRTC (pip install nvidia-cuda-nvrtc)");
        return;
    }
    for capability in [(8, 0), (8, 6), (9, 0)] {
        let cubin = compile(source, capability).unwrap();
        assert_eq!(&cubin[..4], b"\x7fELF", "{capability:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::libraries::{Library, find_library};

    /// NVRTC needs no GPU: wherever it is installed (CI installs NVIDIA's package), the
    /// kernels must compile for the GPUs people dream on.
    #[test]
    fn the_kernels_compile_for_ampere_and_hopper() {
        assert_compiles(SOURCE);
    }

    type QuadraticSeed = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        *const f32,
        *const f32,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    type QuadraticValue = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        *const f32,
        *const f32,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    type ContentSeed =
        unsafe extern "C" fn(*mut f32, *mut f32, *const f32, *const f32, f32, f32, u64);
    type StyleDifference = unsafe extern "C" fn(*mut f32, *mut f32, *const f32, f32, f32, u64);
    type GuideSeed = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        f32,
        u64,
    );
    type Pad = unsafe extern "C" fn(*mut f32, *const f32, u64, u64, u64, u64, u64, u64, f32, u64);
    type Crop = unsafe extern "C" fn(*mut f32, *const f32, u64, u64, u64, u64, u64, u64, u64, u64);
    type Resize =
        unsafe extern "C" fn(*mut f32, *const f32, *const f32, *const f32, u64, u64, u64, u64, u64);

    /// The quadratic loss's kernel stores what [`LayerTerms::gradient`] computes on the
    /// host, under a mask: added to the gradient there, or over whatever was there (NaN
    /// included); the guides' kernel then adds their pulls, from the scores against each
    /// guide.
    ///
    /// [`LayerTerms::gradient`]: crate::backend::layer_terms::LayerTerms::gradient
    #[test]
    fn the_quadratic_seed_kernel_stores_the_losss_gradient() {
        use crate::backend::layer_terms::{Guide, LayerTerms};
        use burn::tensor::{Distribution, Tensor};

        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbol is `quadratic_seed` of kernels.cu, whose arguments these are.
        let kernel = unsafe { library.get::<QuadraticSeed>(b"quadratic_seed") }.unwrap();
        let device = burn::tensor::Device::flex();
        let (channels, height, width) = (5, 7, 9);
        let activation = Tensor::<4>::random(
            [1, channels, height, width],
            Distribution::Uniform(-2.0, 2.0),
            &device,
        );
        // Two guides: one of every channel, one of channels 1 and 3 only.
        let guide = |positions: usize, pulled: &[usize], weight| {
            let features = (0..channels * positions)
                .map(|i| {
                    let pulls = pulled.contains(&(i / positions));
                    if pulls {
                        ((i * 7919) % 13) as f32 - 6.0
                    } else {
                        0.0
                    }
                })
                .collect();
            Guide {
                features,
                positions,
                weight,
            }
        };
        let loss = LayerTerms {
            quadratic: vec![0.5, 0.0, 2.0, -1.0, 0.25],
            linear: vec![0.0, 3.0, 0.0, 1.5, -0.5],
            rows: 2..6,
            cols: 1..8,
            mask: Some((0..height * width).map(|i| (i % 5) as f32 / 4.0).collect()),
            guides: vec![guide(6, &[0, 1, 2, 3, 4], 0.75), guide(4, &[1, 3], -2.0)],
            content: Vec::new(),
            style: Vec::new(),
        };
        let a = activation.clone().into_data().try_to_vec::<f32>().unwrap();
        // SAFETY: the symbol is `guide_seed` of kernels.cu, whose arguments these are.
        let guide_seed = unsafe { library.get::<GuideSeed>(b"guide_seed") }.unwrap();
        let plane = height * width;
        let expected = loss
            .gradient(activation)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (accumulate, before) in [(1, 1.0f32), (0, f32::NAN)] {
            let mut dy = vec![before; a.len()];
            let n = a.len() as u64;
            // SAFETY: every buffer holds the `n` or `channels` elements the kernel reads.
            unsafe {
                kernel(
                    dy.as_mut_ptr(),
                    a.as_ptr(),
                    loss.quadratic.as_ptr(),
                    loss.linear.as_ptr(),
                    loss.mask.as_ref().map_or(std::ptr::null(), Vec::as_ptr),
                    channels as u64,
                    height as u64,
                    width as u64,
                    loss.rows.start as u64,
                    loss.rows.end as u64,
                    loss.cols.start as u64,
                    loss.cols.end as u64,
                    accumulate,
                    n,
                )
            };
            for guide in &loss.guides {
                let scores: Vec<f32> = (0..plane * guide.positions)
                    .map(|j| {
                        let (i, p) = (j / guide.positions, j % guide.positions);
                        (0..channels)
                            .map(|c| a[c * plane + i] * guide.features[c * guide.positions + p])
                            .sum()
                    })
                    .collect();
                // SAFETY: `dy` holds the channels x positions gradient, `scores` positions x
                // guide positions values, `features` channels x guide positions.
                unsafe {
                    guide_seed(
                        dy.as_mut_ptr(),
                        scores.as_ptr(),
                        guide.features.as_ptr(),
                        guide.positions as u64,
                        channels as u64,
                        width as u64,
                        loss.rows.start as u64,
                        loss.rows.end as u64,
                        loss.cols.start as u64,
                        loss.cols.end as u64,
                        guide.weight,
                        plane as u64,
                    )
                };
            }
            let added = if accumulate == 1 { before } else { 0.0 };
            for (i, (got, want)) in dy.iter().zip(&expected).enumerate() {
                assert!(
                    (got - (want + added)).abs() < 1e-5,
                    "element {i}: {got} vs {want} + {added}"
                );
            }
        }
    }

    type Backward = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64, u64);
    type ReluBias = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64, u64);
    type ScaleShift = unsafe extern "C" fn(*mut f32, *const f32, *const f32, *const f32, u64, u64);
    type ScaleBackward = unsafe extern "C" fn(*mut f32, *const f32, *const f32, u64, u64, u64);

    /// The per-channel scale (an inference batch norm) and its gradient use each channel's
    /// factor over its whole plane; the gradient is stored or added.
    #[test]
    fn scales_are_per_channel_forward_and_back() {
        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbols are kernels.cu's, with these arguments.
        let (forward, backward) = unsafe {
            (
                *library.get::<ScaleShift>(b"scale_shift").unwrap(),
                *library.get::<ScaleBackward>(b"scale_backward").unwrap(),
            )
        };
        let (channels, plane) = (3usize, 4usize);
        let x: Vec<f32> = (0..channels * plane).map(|i| i as f32 - 5.0).collect();
        let (scale, shift) = ([2.0f32, -1.0, 0.5], [1.0f32, 0.0, -3.0]);
        let mut y = vec![f32::NAN; x.len()];
        let (p, c) = (plane as u64, channels as u64);
        // SAFETY: `x` and `y` hold `channels` planes, `scale` and `shift` one per channel.
        unsafe {
            forward(
                y.as_mut_ptr(),
                x.as_ptr(),
                scale.as_ptr(),
                shift.as_ptr(),
                p,
                c,
            )
        };
        let expected: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * scale[i / plane] + shift[i / plane])
            .collect();
        assert_eq!(y, expected);
        for (accumulate, before) in [(0u64, f32::NAN), (1, 1.0f32)] {
            let mut dx = vec![before; x.len()];
            // SAFETY: as above.
            unsafe {
                backward(
                    dx.as_mut_ptr(),
                    x.as_ptr(),
                    scale.as_ptr(),
                    accumulate,
                    p,
                    c,
                )
            };
            let added = if accumulate == 1 { before } else { 0.0 };
            let expected: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| added + v * scale[i / plane])
                .collect();
            assert_eq!(dx, expected, "accumulate {accumulate}");
        }
    }
    type ClipBias = unsafe extern "C" fn(*mut f32, *const f32, *const f32, f32, f32, u64, u64);

    /// A convolution's bias added by the activation after it: each channel's own, then the
    /// ReLU or the clip, over every plane.
    #[test]
    fn activations_add_each_channels_bias() {
        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbols are kernels.cu's, with these arguments.
        let (relu, clip) = unsafe {
            (
                *library.get::<ReluBias>(b"relu_bias").unwrap(),
                *library.get::<ClipBias>(b"clip_bias").unwrap(),
            )
        };
        let (channels, plane) = (3usize, 5usize);
        let x: Vec<f32> = (0..channels * plane).map(|i| i as f32 - 7.0).collect();
        let bias = [0.5f32, -2.0, 10.0];
        let expected = |low: f32, high: f32| -> Vec<f32> {
            x.iter()
                .enumerate()
                .map(|(i, v)| (v + bias[i / plane]).clamp(low, high))
                .collect()
        };
        let mut y = vec![f32::NAN; x.len()];
        let (p, c) = (plane as u64, channels as u64);
        // SAFETY: `x` and `y` hold `channels` planes, `bias` one value per channel.
        unsafe { relu(y.as_mut_ptr(), x.as_ptr(), bias.as_ptr(), p, c) };
        assert_eq!(y, expected(0.0, f32::INFINITY));
        // SAFETY: as above.
        unsafe { clip(y.as_mut_ptr(), x.as_ptr(), bias.as_ptr(), 0.0, 6.0, p, c) };
        assert_eq!(y, expected(0.0, 6.0));
    }

    /// The ReLU's gradient passes where its output is positive and is 0 elsewhere, added or
    /// stored over whatever was there.
    #[test]
    fn the_relu_gradient_is_added_or_stored() {
        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbol is `relu_backward` of kernels.cu, whose arguments these are.
        let kernel = unsafe { library.get::<Backward>(b"relu_backward") }.unwrap();
        let y = [0.0f32, 2.0, -1.0, 0.5];
        let dy = [1.0f32, 2.0, 3.0, 4.0];
        for (accumulate, before, expected) in [
            (1, 10.0f32, [10.0f32, 12.0, 10.0, 14.0]),
            (0, f32::NAN, [0.0, 2.0, 0.0, 4.0]),
        ] {
            let mut dx = [before; 4];
            // SAFETY: every buffer holds 4 floats.
            unsafe { kernel(dx.as_mut_ptr(), dy.as_ptr(), y.as_ptr(), accumulate, 4) };
            assert_eq!(dx, expected, "accumulate {accumulate}");
        }
    }

    type Roll = unsafe extern "C" fn(*mut f32, *const f32, *const u64, u64, u64, u64);
    type AbsSum = unsafe extern "C" fn(*mut f32, *const f32, *const f32, *const u64, u64, u64, u64);
    type Ascend = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        *mut u32,
        *const u64,
        *const f32,
        f32,
        u64,
        u64,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        f32,
        u64,
    );

    /// The step kernels built for the host, on an 11x17 picture and its gradient.
    struct StepKernels {
        _library: libloading::Library,
        roll: Roll,
        abs_sum: AbsSum,
        ascend: Ascend,
        image: burn::tensor::Tensor<4>,
        gradient: burn::tensor::Tensor<4>,
        ascent: crate::backend::ascend::NormalisedAscent,
    }

    const HEIGHT: usize = 11;
    const WIDTH: usize = 17;

    impl StepKernels {
        fn new() -> Option<StepKernels> {
            use burn::tensor::{Distribution, Tensor};
            let library = host_build("kernels", SOURCE)?;
            // SAFETY: the symbols are kernels.cu's with these arguments.
            let (roll, abs_sum, ascend) = unsafe {
                (
                    *library.get::<Roll>(b"roll").unwrap(),
                    *library.get::<AbsSum>(b"abs_sum").unwrap(),
                    *library.get::<Ascend>(b"ascend").unwrap(),
                )
            };
            let device = burn::tensor::Device::flex();
            let random = |low, high| {
                Tensor::<4>::random(
                    [1, 3, HEIGHT, WIDTH],
                    Distribution::Uniform(low, high),
                    &device,
                )
            };
            Some(StepKernels {
                _library: library,
                roll,
                abs_sum,
                ascend,
                image: random(-60.0, 60.0),
                gradient: random(-1.0, 1.0),
                ascent: crate::backend::ascend::NormalisedAscent {
                    step_size: 1.5,
                    units: [2.0, -1.5, 0.5],
                    ranges: [(-50.0, 40.0), (-30.0, 55.0), (-45.0, 45.0)],
                },
            })
        }

        /// `abs_sum` of the gradient, with `mask` (`HEIGHT` x `WIDTH`) rolled by `shift`.
        fn abs_sum(&self, mask: Option<&[f32]>, shift: [u64; 2]) -> f32 {
            let g = values(self.gradient.clone());
            let mut total = 0.0f32;
            let mask = mask.map_or(std::ptr::null(), <[f32]>::as_ptr);
            let (h, w) = (HEIGHT as u64, WIDTH as u64);
            // SAFETY: `g` holds `n` floats, the mask one per pixel; `total` and `shift` are
            // in place.
            unsafe {
                (self.abs_sum)(
                    &mut total,
                    g.as_ptr(),
                    mask,
                    shift.as_ptr(),
                    h,
                    w,
                    g.len() as u64,
                )
            };
            total
        }

        /// The picture after `ascend` with the absolute sum `total` over `count` values, the
        /// gradient taken on the picture rolled by `shift`; and the flag it left.
        fn ascend(
            &self,
            total: f32,
            count: f32,
            mask: Option<&[f32]>,
            shift: [u64; 2],
        ) -> (Vec<f32>, u32) {
            let (mut moved, g) = (values(self.image.clone()), values(self.gradient.clone()));
            let mut bad = 0u32;
            let mask = mask.map_or(std::ptr::null(), <[f32]>::as_ptr);
            let a = &self.ascent;
            let [(low0, high0), (low1, high1), (low2, high2)] = a.ranges;
            // SAFETY: every buffer holds `n` floats, the mask one per pixel; `total`, `bad`
            // and `shift` are in place.
            unsafe {
                (self.ascend)(
                    moved.as_mut_ptr(),
                    g.as_ptr(),
                    &total,
                    &mut bad,
                    shift.as_ptr(),
                    mask,
                    count,
                    HEIGHT as u64,
                    WIDTH as u64,
                    a.step_size,
                    a.units[0],
                    a.units[1],
                    a.units[2],
                    low0,
                    high0,
                    low1,
                    high1,
                    low2,
                    high2,
                    g.len() as u64,
                )
            };
            (moved, bad)
        }
    }

    fn values(tensor: burn::tensor::Tensor<4>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn values_2d(tensor: burn::tensor::Tensor<2>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn values_1d(tensor: burn::tensor::Tensor<1>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn wrapped(shift: [i64; 2]) -> [u64; 2] {
        [
            shift[0].rem_euclid(HEIGHT as i64) as u64,
            shift[1].rem_euclid(WIDTH as i64) as u64,
        ]
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (got, want)) in got.iter().zip(want).enumerate() {
            assert!(
                (got - want).abs() <= 1e-4,
                "{what}, element {i}: {got} vs {want}"
            );
        }
    }

    /// A step of the kept image on the GPU — `roll`, `abs_sum` and `ascend` — computes what
    /// the engine's step does on the CPU: burn's roll, the mean absolute gradient, the
    /// factors of [`NormalisedAscent`] and [`ascend`](crate::backend::ascend::ascend); a
    /// gradient that is zero only clamps, and one that is not finite leaves the image and is
    /// flagged.
    ///
    /// [`NormalisedAscent`]: crate::backend::ascend::NormalisedAscent
    #[test]
    fn the_step_kernels_roll_measure_and_ascend_as_the_cpu_does() {
        let Some(kernels) = StepKernels::new() else {
            return;
        };
        let (x, g) = (
            values(kernels.image.clone()),
            values(kernels.gradient.clone()),
        );
        let n = x.len() as u64;
        let total = kernels.abs_sum(None, [0, 0]);
        let expected: f32 = g.iter().map(|v| v.abs()).sum::<f32>();
        assert!((total - expected).abs() <= 1e-3, "{total} vs {expected}");
        let factors = kernels.ascent.factors(total / n as f32).unwrap();
        for shift in [[0i64, 0], [3, -5], [-7, 16], [10, 1]] {
            let mut rolled = vec![0.0f32; x.len()];
            let at = wrapped(shift);
            // SAFETY: both buffers hold `n` floats; `at` is the shift.
            unsafe {
                (kernels.roll)(
                    rolled.as_mut_ptr(),
                    x.as_ptr(),
                    at.as_ptr(),
                    HEIGHT as u64,
                    WIDTH as u64,
                    n,
                )
            };
            assert_eq!(
                rolled,
                values(kernels.image.clone().roll(&shift, &[2, 3])),
                "{shift:?}"
            );
            let (moved, bad) = kernels.ascend(total, n as f32, None, at);
            assert_eq!(bad, 0);
            let expected = crate::backend::ascend::ascend(
                kernels.image.clone(),
                kernels.gradient.clone(),
                shift,
                factors,
                kernels.ascent.ranges,
            );
            assert_close(&moved, &values(expected), &format!("{shift:?}"));
        }
        // A zero gradient only clamps.
        let (moved, bad) = kernels.ascend(0.0, n as f32, None, [0, 0]);
        let clamped = crate::backend::ascend::ascend(
            kernels.image.clone(),
            kernels.gradient.clone(),
            [0, 0],
            [0.0; 3],
            kernels.ascent.ranges,
        );
        assert_eq!((moved, bad), (values(clamped), 0));
        // One that is not finite leaves the image as it was and sets the flag.
        for total in [f32::NAN, f32::INFINITY] {
            assert_eq!(
                kernels.ascend(total, n as f32, None, [1, 2]),
                (x.clone(), 1),
                "{total}"
            );
        }
    }

    /// With a change mask, the step's sum and update are the engine's: the gradient weighted
    /// by the mask rolled as the picture was, its mean over three times the mask's weight.
    #[test]
    fn the_step_kernels_weigh_the_gradient_by_a_change_mask() {
        use burn::tensor::{Distribution, Tensor};
        let Some(kernels) = StepKernels::new() else {
            return;
        };
        let device = burn::tensor::Device::flex();
        let change = Tensor::<4>::random(
            [1, 1, HEIGHT, WIDTH],
            Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let mask = values(change.clone());
        let area: f32 = change.clone().sum().into_scalar();
        for shift in [[0i64, 0], [4, -6], [-9, 13]] {
            let weighted = kernels
                .gradient
                .clone()
                .mul(change.clone().roll(&shift, &[2, 3]));
            let expected_total: f32 = weighted.clone().abs().sum().into_scalar();
            let total = kernels.abs_sum(Some(&mask), wrapped(shift));
            assert!(
                (total - expected_total).abs() <= 1e-3,
                "{shift:?}: {total} vs {expected_total}"
            );
            let factors = kernels.ascent.factors(total / (3.0 * area)).unwrap();
            let (moved, bad) = kernels.ascend(total, 3.0 * area, Some(&mask), wrapped(shift));
            assert_eq!(bad, 0);
            let expected = crate::backend::ascend::ascend(
                kernels.image.clone(),
                weighted,
                shift,
                factors,
                kernels.ascent.ranges,
            );
            assert_close(&moved, &values(expected), &format!("{shift:?}"));
        }
    }

    /// The value kernels and the matches' kernels give what [`LayerTerms::values`] and
    /// [`LayerTerms::gradient`] compute on the host: the quadratic's value over its
    /// window, two content matches' gradients and values, and a style match's (its Gram
    /// matrix and the product of its difference with the features, which cuBLAS makes on a
    /// GPU, made here on the host).
    ///
    /// [`LayerTerms::values`]: crate::backend::layer_terms::LayerTerms::values
    /// [`LayerTerms::gradient`]: crate::backend::layer_terms::LayerTerms::gradient
    #[test]
    fn the_match_kernels_make_what_the_host_does() {
        use crate::backend::layer_terms::{LayerTerms, Match};
        use crate::engine::objective::gram;
        use burn::tensor::{Distribution, Tensor};

        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbols are kernels.cu's with these arguments.
        let (seed, value, content_seed, style_difference) = unsafe {
            (
                *library.get::<QuadraticSeed>(b"quadratic_seed").unwrap(),
                *library.get::<QuadraticValue>(b"quadratic_value").unwrap(),
                *library.get::<ContentSeed>(b"content_seed").unwrap(),
                *library.get::<StyleDifference>(b"style_difference").unwrap(),
            )
        };
        let device = burn::tensor::Device::flex();
        let (channels, height, width) = (4, 6, 5);
        let random = |low, high| {
            Tensor::<4>::random(
                [1, channels, height, width],
                Distribution::Uniform(low, high),
                &device,
            )
        };
        let activation = random(-2.0, 2.0);
        let n = channels * height * width;
        let style_target = values_2d(gram(random(-1.0, 1.5)));
        let loss = LayerTerms {
            quadratic: vec![0.5, 0.0, -2.0, 1.0],
            linear: vec![0.0, 3.0, 0.25, -1.5],
            rows: 1..5,
            cols: 0..4,
            mask: Some((0..height * width).map(|i| (i % 3) as f32 / 2.0).collect()),
            guides: Vec::new(),
            content: vec![
                Match {
                    target: values(random(-1.0, 1.0)),
                    weight: 2.0,
                },
                Match {
                    target: values(random(0.0, 3.0)),
                    weight: 0.5,
                },
            ],
            style: vec![Match {
                target: style_target,
                weight: 40.0,
            }],
        };
        let a = values(activation.clone());
        let (mut dy, mut totals) = (vec![f32::NAN; n], [0.0f32; 3]);
        let window = [
            loss.rows.start,
            loss.rows.end,
            loss.cols.start,
            loss.cols.end,
        ];
        let [row0, row1, col0, col1] = window.map(|v| v as u64);
        let geometry = [channels, height, width].map(|v| v as u64);
        let [c, h, w] = geometry;
        // SAFETY: every buffer holds the `n`, `channels` or `channels²` elements the kernels
        // touch.
        unsafe {
            let (q, l) = (loss.quadratic.as_ptr(), loss.linear.as_ptr());
            let m = loss.mask.as_ref().map_or(std::ptr::null(), Vec::as_ptr);
            seed(
                dy.as_mut_ptr(),
                a.as_ptr(),
                q,
                l,
                m,
                c,
                h,
                w,
                row0,
                row1,
                col0,
                col1,
                0,
                n as u64,
            );
            value(
                &mut totals[0],
                a.as_ptr(),
                q,
                l,
                m,
                c,
                h,
                w,
                row0,
                row1,
                col0,
                col1,
                n as u64,
            );
            for content in &loss.content {
                let (scale, weight) = (2.0 * content.weight / n as f32, content.weight / n as f32);
                let target = content.target.as_ptr();
                content_seed(
                    dy.as_mut_ptr(),
                    &mut totals[1],
                    a.as_ptr(),
                    target,
                    scale,
                    weight,
                    n as u64,
                );
            }
        }
        for style in &loss.style {
            let plane = height * width;
            let mut gram: Vec<f32> = (0..channels * channels)
                .map(|k| {
                    let (i, j) = (k / channels, k % channels);
                    (0..plane)
                        .map(|p| a[i * plane + p] * a[j * plane + p])
                        .sum()
                })
                .collect();
            let squares = (channels * channels) as f32;
            // SAFETY: `gram` and the target hold channels² values.
            unsafe {
                style_difference(
                    gram.as_mut_ptr(),
                    &mut totals[2],
                    style.target.as_ptr(),
                    1.0 / n as f32,
                    style.weight / squares,
                    (channels * channels) as u64,
                )
            };
            let scale = 4.0 * style.weight / squares / n as f32;
            for i in 0..channels {
                for p in 0..plane {
                    let product: f32 = (0..channels)
                        .map(|j| gram[i * channels + j] * a[j * plane + p])
                        .sum();
                    dy[i * plane + p] += scale * product;
                }
            }
        }
        let want = loss.values(activation.clone());
        for (what, got, want) in [
            ("quadratic", totals[0], want.quadratic),
            ("content", totals[1], want.content),
            ("style", totals[2], want.style),
        ] {
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{what}: {got} vs {want}"
            );
        }
        assert!(want.quadratic != 0.0 && want.content > 0.0 && want.style > 0.0);
        assert_close(&dy, &values(loss.gradient(activation)), "the gradient");
    }

    /// `resize` scales as the engine's octaves do (burn's bilinear resize with aligned corners),
    /// down, up, to and from one pixel; with `minus` and `plus`, it gives an octave's start:
    /// `plus + resize(x - minus)`.
    #[test]
    fn resize_scales_as_the_octaves_do() {
        use crate::engine::transform;
        use burn::tensor::{Distribution, Tensor};

        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbol is kernels.cu's `resize` with these arguments.
        let resize = unsafe { *library.get::<Resize>(b"resize").unwrap() };
        let device = burn::tensor::Device::flex();
        let cases = [
            ((13, 17), (9, 12)),
            ((9, 12), (13, 17)),
            ((514, 914), (720, 1280)),
            ((5, 1), (7, 3)),
            ((4, 6), (1, 1)),
            ((8, 8), (8, 8)),
        ];
        for ((height, width), (out_height, out_width)) in cases {
            let random = |h, w| {
                Tensor::<4>::random([1, 3, h, w], Distribution::Uniform(-120.0, 120.0), &device)
            };
            let (x, minus, plus) = (
                random(height, width),
                random(height, width),
                random(out_height, out_width),
            );
            let run = |minus: Option<&[f32]>, plus: Option<&[f32]>| {
                let x = values(x.clone());
                let mut y = vec![f32::NAN; 3 * out_height * out_width];
                let pointer = |v: Option<&[f32]>| v.map_or(std::ptr::null(), <[f32]>::as_ptr);
                // SAFETY: `x` and `minus` hold 3 planes of the input's size, `y` and `plus`
                // of the output's.
                unsafe {
                    resize(
                        y.as_mut_ptr(),
                        x.as_ptr(),
                        pointer(minus),
                        pointer(plus),
                        height as u64,
                        width as u64,
                        out_height as u64,
                        out_width as u64,
                        y.len() as u64,
                    )
                };
                y
            };
            let case = format!("{width}x{height} to {out_width}x{out_height}");
            let plain = transform::resize(x.clone(), out_height, out_width, true);
            assert_close(&run(None, None), &values(plain), &case);
            let start =
                transform::resize(x.clone().sub(minus.clone()), out_height, out_width, true)
                    .add(plus.clone());
            let (minus, plus) = (values(minus), values(plus));
            assert_close(&run(Some(&minus), Some(&plus)), &values(start), &case);
        }
    }

    /// `pad` places the input at its offset amid the fill value, and `crop` adds that part
    /// back or stores it.
    #[test]
    fn pad_and_crop_are_each_others_reverse() {
        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbols are kernels.cu's `pad` and `crop` with these arguments.
        let (pad, crop) = unsafe {
            (
                library.get::<Pad>(b"pad").unwrap(),
                library.get::<Crop>(b"crop").unwrap(),
            )
        };
        let (channels, height, width, top, left) = (2usize, 3usize, 4usize, 1usize, 2usize);
        let (padded_height, padded_width) = (height + top + 2, width + left + 1);
        let x: Vec<f32> = (0..channels * height * width).map(|i| i as f32).collect();
        let mut y = vec![0.0f32; channels * padded_height * padded_width];
        let (mut back, mut stored) = (vec![0.5f32; x.len()], vec![f32::NAN; x.len()]);
        let geometry = [height, width, top, left, padded_height, padded_width].map(|v| v as u64);
        // SAFETY: `y` is the padded size, `x` and `back` the input's.
        unsafe {
            let [h, w, t, l, ph, pw] = geometry;
            pad(
                y.as_mut_ptr(),
                x.as_ptr(),
                h,
                w,
                t,
                l,
                ph,
                pw,
                -7.0,
                y.len() as u64,
            );
            for (accumulate, target) in [(1, &mut back), (0, &mut stored)] {
                crop(
                    target.as_mut_ptr(),
                    y.as_ptr(),
                    h,
                    w,
                    t,
                    l,
                    ph,
                    pw,
                    accumulate,
                    x.len() as u64,
                );
            }
        }
        for c in 0..channels {
            for row in 0..padded_height {
                for column in 0..padded_width {
                    let got = y[(c * padded_height + row) * padded_width + column];
                    let inside = (top..top + height).contains(&row)
                        && (left..left + width).contains(&column);
                    let want = if inside {
                        x[(c * height + row - top) * width + column - left]
                    } else {
                        -7.0
                    };
                    assert_eq!(got, want, "channel {c}, row {row}, column {column}");
                }
            }
        }
        let expected: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        assert_eq!(back, expected);
        assert_eq!(stored, x);
    }

    type Depthwise = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        *const f32,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    type DepthwiseBackward = unsafe extern "C" fn(
        *mut f32,
        *const f32,
        *const f32,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );

    /// The depthwise kernels compute what the graph's convolution computes on the CPU (with
    /// its padding, odd pixels included, stride and dilation), and their backward pass is its
    /// transpose: `<dy, conv(x)> = <conv_backward(dy), x>`; for the 3x3 and 5x5 windows that
    /// are compiled apart and for others.
    #[test]
    fn the_depthwise_kernels_convolve_as_the_cpu_and_transpose_exactly() {
        use crate::backend::graph::{Graph, Operation, Padding, Shape};
        use burn::tensor::{Distribution, Tensor};

        let Some(library) = host_build("kernels", SOURCE) else {
            return;
        };
        // SAFETY: the symbols are kernels.cu's depthwise kernels with these arguments.
        let (forward, backward) = unsafe {
            (
                *library.get::<Depthwise>(b"depthwise").unwrap(),
                *library
                    .get::<DepthwiseBackward>(b"depthwise_backward")
                    .unwrap(),
            )
        };
        let device = burn::tensor::Device::flex();
        let channels = 4;
        let cases = [
            // (window, stride, dilation, padding, height, width)
            ([3, 3], 1, 1, Padding::Same { upper: true }, 9, 11),
            ([3, 3], 2, 1, Padding::Same { upper: true }, 10, 13),
            ([5, 5], 2, 1, Padding::Same { upper: true }, 12, 9),
            ([5, 5], 1, 1, Padding::Fixed([(2, 2), (2, 2)]), 8, 8),
            ([3, 5], 1, 2, Padding::Fixed([(1, 3), (0, 2)]), 9, 10),
            ([2, 2], 3, 1, Padding::Fixed([(1, 0), (0, 1)]), 11, 7),
        ];
        for (kernel, stride, dilation, padding, height, width) in cases {
            let what =
                format!("{kernel:?} window, stride {stride}, dilation {dilation}, {padding:?}");
            let weight = Tensor::<4>::random(
                [channels, 1, kernel[0], kernel[1]],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let bias = Tensor::<1>::random([channels], Distribution::Uniform(-1.0, 1.0), &device);
            let mut graph = Graph::default();
            let node = graph.push(
                Operation::Conv {
                    weight: weight.clone(),
                    bias: Some(bias.clone()),
                    stride: [stride; 2],
                    padding,
                    dilation: [dilation; 2],
                    groups: channels,
                },
                vec![0],
            );
            let input = Shape {
                channels,
                height,
                width,
            };
            let plan = graph.plan(input, &[node]).unwrap();
            let step = &plan.steps[0];
            let output = step.output;
            let x = Tensor::<4>::random(
                [1, channels, height, width],
                Distribution::Uniform(-2.0, 2.0),
                &device,
            );
            let expected = values(graph.run(x.clone(), &[node]).unwrap().remove(0));
            let [(top, _), (left, _)] = step.padding;
            let geometry = [
                height,
                width,
                output.height,
                output.width,
                kernel[0],
                kernel[1],
                stride,
                stride,
                top,
                left,
                dilation,
                dilation,
            ]
            .map(|v| v as u64);
            let [h, w, oh, ow, kh, kw, sh, sw, t, l, dh, dw] = geometry;
            let (xs, ws, bs) = (values(x), values(weight), values_1d(bias));
            // The kernels over the buffers the geometry says, into `out` (NaN first) and, for
            // the backward pass, added to `out` (1.0 first) when `accumulate`.
            let convolve = |bias: *const f32| {
                let mut out = vec![f32::NAN; output.len()];
                let n = out.len() as u64;
                // SAFETY: every buffer holds what the geometry says; a null bias is none.
                unsafe {
                    forward(
                        out.as_mut_ptr(),
                        xs.as_ptr(),
                        ws.as_ptr(),
                        bias,
                        h,
                        w,
                        oh,
                        ow,
                        kh,
                        kw,
                        sh,
                        sw,
                        t,
                        l,
                        dh,
                        dw,
                        n,
                    )
                };
                out
            };
            let transpose = |dy: &[f32], accumulate: u64| {
                let mut out = vec![if accumulate == 1 { 1.0 } else { f32::NAN }; xs.len()];
                let n = out.len() as u64;
                // SAFETY: as above.
                unsafe {
                    backward(
                        out.as_mut_ptr(),
                        dy.as_ptr(),
                        ws.as_ptr(),
                        accumulate,
                        h,
                        w,
                        oh,
                        ow,
                        kh,
                        kw,
                        sh,
                        sw,
                        t,
                        l,
                        dh,
                        dw,
                        n,
                    )
                };
                out
            };
            assert_close(&convolve(bs.as_ptr()), &expected, &what);
            // Without bias, the adjoint identity; the backward pass adds to what is there.
            let plain = convolve(std::ptr::null());
            let dy = values(Tensor::<4>::random(
                [1, channels, output.height, output.width],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            ));
            let dx = transpose(&dy, 1);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a * b) as f64).sum::<f64>();
            let ones = vec![1.0f32; xs.len()];
            let (left_side, right_side) = (dot(&dy, &plain), dot(&dx, &xs) - dot(&ones, &xs));
            assert!(
                (left_side - right_side).abs() <= 1e-4 * left_side.abs().max(1.0),
                "{what}: {left_side} vs {right_side}"
            );
            // Stored over whatever was there, it is the same gradient.
            let added: Vec<f32> = transpose(&dy, 0).iter().map(|v| v + 1.0).collect();
            assert_close(&added, &dx, &what);
        }
    }

    /// The first run compiles and keeps the CUBIN; the next one reads it back, and a damaged
    /// cache file is compiled over.
    #[test]
    fn compiled_kernels_are_kept_for_the_next_run() {
        if find_library(Library::Nvrtc).is_none() {
            eprintln!("skipped: no NVRTC (pip install nvidia-cuda-nvrtc)");
            return;
        }
        let folder = std::env::temp_dir().join(format!("deepdream-cubin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        let first = compile_cached(SOURCE, (8, 6), &folder).unwrap();
        let files: Vec<_> = std::fs::read_dir(&folder).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one cache file");
        let path = files[0].path();
        assert!(path.to_string_lossy().ends_with("-sm_86.cubin"), "{path:?}");
        assert_eq!(std::fs::read(&path).unwrap(), first);
        // A marked copy read back proves the second run did not compile.
        let mut marked = first.clone();
        marked.push(0);
        std::fs::write(&path, &marked).unwrap();
        assert_eq!(compile_cached(SOURCE, (8, 6), &folder).unwrap(), marked);
        std::fs::write(&path, b"not a cubin").unwrap();
        assert_eq!(compile_cached(SOURCE, (8, 6), &folder).unwrap(), first);
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn launches_cover_every_element() {
        let config = elementwise(1000);
        assert_eq!(config.grid_dim.0 * config.block_dim.0, 1024);
        assert_eq!(elementwise(0).grid_dim.0, 1);
        assert_eq!(elementwise(usize::MAX / 2).grid_dim.0, 65_535);
    }
}
