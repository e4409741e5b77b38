//! Choosing where the work runs: the CPU (burn's flex backend) always; GPUs when the
//! library is built with the `wgpu` (Vulkan, Metal, DirectX) or `cuda` (NVIDIA) feature.
//! On `wgpu` every tensor lives on the GPU; on `cuda` the networks' gradients run on the GPU
//! and the rest of the tensors stay on the CPU.

use burn::tensor::Device;

#[cfg(feature = "cuda")]
use crate::backend::cuda::{Gpu, Precision};

/// Where a job runs.
#[derive(Clone, Debug)]
pub enum Placement {
    /// A burn device: every tensor lives there.
    Burn(Device),
    /// An NVIDIA GPU that runs the networks' gradients, with convolutions in a precision.
    #[cfg(feature = "cuda")]
    Cuda(OpeningGpu, Precision),
}

/// An NVIDIA GPU opened on a thread of its own (CUDA, cuDNN and cuBLAS load and deepdream's
/// kernels are compiled, a second or more) while the job reads its network and pictures; the
/// first network put there waits for it, and an error opening it comes then. The last copy
/// dropped waits for the opening to end, so that no process exits in the middle of it.
#[cfg(feature = "cuda")]
#[derive(Clone)]
pub struct OpeningGpu(std::sync::Arc<std::sync::Mutex<Opening>>);

#[cfg(feature = "cuda")]
struct Opening {
    thread: Option<std::thread::JoinHandle<Result<std::sync::Arc<Gpu>>>>,
    /// The GPU, or why it could not be opened, once the thread is done.
    opened: Option<std::result::Result<std::sync::Arc<Gpu>, String>>,
}

#[cfg(feature = "cuda")]
impl Opening {
    /// Waits for the thread, if it has not been waited for.
    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.opened = Some(match thread.join() {
                Ok(opened) => opened.map_err(|error| error.to_string()),
                Err(_) => Err("opening the CUDA device stopped with a panic".into()),
            });
        }
    }
}

#[cfg(feature = "cuda")]
impl Drop for Opening {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(feature = "cuda")]
impl OpeningGpu {
    /// Starts opening GPU `ordinal`.
    fn start(ordinal: usize) -> OpeningGpu {
        let thread = std::thread::spawn(move || Gpu::open(ordinal));
        OpeningGpu(std::sync::Arc::new(std::sync::Mutex::new(Opening {
            thread: Some(thread),
            opened: None,
        })))
    }

    /// The GPU once it is open, or why it could not be.
    pub fn gpu(&self) -> Result<std::sync::Arc<Gpu>> {
        let mut opening = self.0.lock().unwrap_or_else(|p| p.into_inner());
        opening.finish();
        match opening.opened.as_ref().expect("finished") {
            Ok(gpu) => Ok(gpu.clone()),
            Err(reason) => Err(Error::Device(reason.clone())),
        }
    }
}

#[cfg(feature = "cuda")]
impl std::fmt::Debug for OpeningGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opening = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &opening.opened {
            None => write!(f, "OpeningGpu(opening)"),
            Some(Ok(gpu)) => write!(f, "OpeningGpu({gpu:?})"),
            Some(Err(reason)) => write!(f, "OpeningGpu(failed: {reason})"),
        }
    }
}

impl Placement {
    /// The burn device the job's tensors live on.
    pub fn tensors(&self) -> Device {
        match self {
            Placement::Burn(device) => device.clone(),
            #[cfg(feature = "cuda")]
            Placement::Cuda(..) => Device::flex(),
        }
    }
}

/// Opens the device called `name` (`cpu`, `wgpu`, `cuda`); `tf32` lets CUDA convolutions use
/// TF32 tensor cores. A CUDA device opens while the caller goes on (see [`OpeningGpu`]).
pub fn open(name: &str, tf32: bool) -> Result<Placement> {
    match name.to_ascii_lowercase().as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => {
            let precision = if tf32 {
                Precision::Tf32
            } else {
                Precision::Fp32
            };
            Ok(Placement::Cuda(OpeningGpu::start(0), precision))
        }
        _ => {
            let _ = tf32;
            by_name(name).map(Placement::Burn)
        }
    }
}

use crate::error::{Error, Result};

/// The device names [`by_name`] accepts in this build.
pub fn available() -> Vec<&'static str> {
    let mut names = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// The burn device called `name`: `cpu` or `wgpu` (the best GPU wgpu finds); `cuda` is
/// opened with [`open`].
pub fn by_name(name: &str) -> Result<Device> {
    match name.to_ascii_lowercase().as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            keep_kernels_across_runs();
            Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
        }
        #[cfg(feature = "cuda")]
        "cuda" => Err(Error::Device(
            "the CUDA device runs networks, not burn tensors: open it with device::open".into(),
        )),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err(not_built("wgpu")),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(not_built("cuda")),
        other => Err(Error::InvalidParameter(format!(
            "unknown device '{other}' (available: {})",
            available().join(", ")
        ))),
    }
}

/// Makes burn's GPU kernels (compiled by CubeCL for each operation and shape) and CubeCL's
/// autotune choices persist in [`gpu_cache_dir`](crate::home::gpu_cache_dir), so that a
/// dream compiles and tunes a shape once per machine instead of once per run: compiled
/// kernels are cached (CubeCL's default keeps only the tuning), and both are kept in
/// deepdream's cache instead of a `target` folder near the working directory. A
/// `cubecl.toml` and CubeCL's environment variables still apply; a cache folder they name
/// wins. Takes effect once, before the first GPU device opens.
#[cfg(feature = "wgpu")]
fn keep_kernels_across_runs() {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.compilation.cache = true;
        if matches!(config.environment.path, CacheConfig::Target) {
            config.environment.path = CacheConfig::Directory(crate::home::gpu_cache_dir());
        }
        // A configuration set or read before keeps applying.
        let _ = CubeClRuntimeConfig::try_set(config);
    });
}

#[allow(dead_code, reason = "unused when both GPU features are on")]
fn not_built(gpu: &str) -> Error {
    Error::InvalidParameter(format!(
        "this build has no {gpu} support; build with `cargo build --release --features {gpu}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there_and_unknown_names_are_errors() {
        assert!(by_name("cpu").is_ok());
        let error = by_name("tpu").unwrap_err().to_string();
        assert!(error.contains("unknown device 'tpu'"), "{error}");
        if !cfg!(feature = "cuda") {
            let error = by_name("cuda").unwrap_err().to_string();
            assert!(error.contains("--features cuda"), "{error}");
        }
    }

    /// The CUDA device opens while the caller goes on; asking for the GPU gives it, or the
    /// same one-line reason each time (no GPU here: the missing driver).
    #[cfg(feature = "cuda")]
    #[test]
    fn the_cuda_device_opens_on_its_own_thread_and_answers_the_same_each_time() {
        let Placement::Cuda(opening, Precision::Tf32) = open("cuda", true).unwrap() else {
            panic!("a CUDA placement in TF32");
        };
        let copy = opening.clone();
        match (opening.gpu(), copy.gpu()) {
            (Ok(first), Ok(second)) => assert!(std::sync::Arc::ptr_eq(&first, &second)),
            (Err(first), Err(second)) => {
                let (first, second) = (first.to_string(), second.to_string());
                assert_eq!(first, second);
                assert!(!first.is_empty() && !first.contains('\n'), "{first}");
            }
            (first, second) => panic!("{first:?} then {second:?}"),
        }
        assert!(format!("{copy:?}").starts_with("OpeningGpu("));
    }
}
