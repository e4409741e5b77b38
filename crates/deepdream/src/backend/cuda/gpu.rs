//! One NVIDIA GPU, opened: its context and stream, cuDNN and cuBLAS handles bound to the
//! stream, and deepdream's kernels compiled for it.

use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};

use crate::backend::cuda::cudnn;
use crate::backend::cuda::kernels::{Kernels, SOURCE, compile_cached};
use crate::backend::cuda::libraries::{self, Found};
use crate::error::{Error, Result};
use crate::timeline;

/// What an opened GPU is, for reports.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    /// The device number.
    pub ordinal: usize,
    /// The GPU's name.
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    /// Total memory, in bytes.
    pub total_memory: usize,
    /// The CUDA version the driver supports, e.g. 13000 for 13.0.
    pub driver_version: i32,
    /// cuDNN's version, e.g. 91300 for 9.13.0.
    pub cudnn_version: usize,
    /// Where the libraries were found.
    pub libraries: Found,
}

impl GpuInfo {
    /// The GPU and the cuDNN that decide which algorithms are fastest: its name, compute
    /// capability and cuDNN's version.
    pub fn identity(&self) -> String {
        format!(
            "{} (compute {}.{}) cuDNN {}",
            self.name, self.capability.0, self.capability.1, self.cudnn_version
        )
    }
}

impl std::fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = |v: i32| format!("{}.{}", v / 1000, (v % 1000) / 10);
        write!(
            f,
            "{} (cuda:{}, compute {}.{}, {:.1} GiB), driver for CUDA {}, cuDNN {}.{}.{}",
            self.name,
            self.ordinal,
            self.capability.0,
            self.capability.1,
            self.total_memory as f64 / (1u64 << 30) as f64,
            version(self.driver_version),
            self.cudnn_version / 10_000,
            self.cudnn_version / 100 % 100,
            self.cudnn_version % 100,
        )
    }
}

/// An opened GPU: what it is, and its handles, used by one thread at a time.
pub struct Gpu {
    /// What the GPU is.
    pub info: GpuInfo,
    handles: Mutex<Handles>,
}

/// The handles to work on a GPU with.
pub struct Handles {
    /// The driver context.
    pub context: Arc<CudaContext>,
    /// The stream all work runs on.
    pub stream: Arc<CudaStream>,
    /// cuDNN, on [`Handles::stream`].
    pub cudnn: cudnn::Handle,
    /// cuBLAS, on [`Handles::stream`].
    pub cublas: CudaBlas,
    /// cuBLAS's workspace, its own so that it allocates nothing while a step is recorded.
    pub cublas_workspace: CudaSlice<u8>,
    /// deepdream's kernels.
    pub kernels: Kernels,
}

// SAFETY: cuDNN's handle may move between threads (it must not be used by two at once,
// which the Gpu's mutex rules out); the other handles are `Send` already.
unsafe impl Send for Handles {}

/// The oldest driver the bindings work with (CUDA 12.0).
const OLDEST_DRIVER: i32 = 12_000;

impl Gpu {
    /// Opens GPU `ordinal`: finds the libraries, checks the driver, creates the context and
    /// handles and compiles the kernels. Every failure is an error naming what is missing,
    /// never a panic.
    pub fn open(ordinal: usize) -> Result<Arc<Gpu>> {
        let libraries = libraries::find()?;
        timeline::mark(|| "CUDA libraries found".into());
        std::panic::catch_unwind(|| Gpu::open_found(ordinal, libraries)).unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(Error::Device(format!(
                "cannot open the CUDA device: {}",
                detail.lines().next().unwrap_or_default()
            )))
        })
    }

    fn open_found(ordinal: usize, libraries: Found) -> Result<Arc<Gpu>> {
        let driver = |what: &str, e: cudarc::driver::DriverError| {
            Error::Device(format!("CUDA device {ordinal}: {what}: {e}"))
        };
        let mut driver_version = 0;
        // SAFETY: a plain query of the loaded driver.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(|e| driver("cannot ask the driver its version", e))?;
        if driver_version < OLDEST_DRIVER {
            return Err(Error::Device(format!(
                "the NVIDIA driver supports CUDA {}.{}; deepdream needs a driver for CUDA 12 or later",
                driver_version / 1000,
                driver_version % 1000 / 10
            )));
        }
        let count =
            CudaContext::device_count().map_err(|e| driver("cannot count the GPUs", e))? as usize;
        if ordinal >= count {
            return Err(Error::Device(format!(
                "there is no CUDA device {ordinal}: the driver sees {count}"
            )));
        }
        let context = CudaContext::new(ordinal).map_err(|e| driver("cannot open it", e))?;
        timeline::mark(|| "CUDA context made".into());
        // All work goes to one stream, in order: nothing needs cudarc's events.
        // SAFETY: no buffers exist yet.
        unsafe { context.disable_event_tracking() };
        keep_freed_memory(&context);
        // NVRTC compiles deepdream's kernels (or the cache gives them) while cuDNN and cuBLAS
        // load, which takes about as long.
        let capability = context
            .compute_capability()
            .map_err(|e| driver("no compute capability", e))?;
        let compiling = std::thread::spawn(move || {
            compile_cached(SOURCE, capability, &crate::home::gpu_cache_dir())
        });
        let stream = context
            .new_stream()
            .map_err(|e| driver("cannot create a stream", e))?;
        let cudnn = cudnn::Handle::new(&stream)?;
        let cublas = CudaBlas::new(stream.clone())
            .map_err(|e| Error::Device(format!("cuBLAS does not start: {e:?}")))?;
        let cublas_workspace = cublas_workspace(&cublas, &stream)?;
        timeline::mark(|| "cuDNN and cuBLAS ready".into());
        let cubin = compiling.join().map_err(|_| {
            Error::Device("compiling deepdream's CUDA kernels stopped with a panic".into())
        })??;
        let kernels = Kernels::load(&context, cubin)?;
        timeline::mark(|| "deepdream's kernels loaded".into());
        let info = GpuInfo {
            ordinal,
            name: context.name().map_err(|e| driver("no name", e))?,
            capability: context
                .compute_capability()
                .map_err(|e| driver("no compute capability", e))?,
            total_memory: context
                .total_mem()
                .map_err(|e| driver("no memory size", e))?,
            driver_version,
            cudnn_version: cudarc::cudnn::result::get_version(),
            libraries,
        };
        Ok(Arc::new(Gpu {
            info,
            handles: Mutex::new(Handles {
                context,
                stream,
                cudnn,
                cublas,
                cublas_workspace,
                kernels,
            }),
        }))
    }

    /// Runs `work` with the GPU's handles, the only thread to use them meanwhile.
    pub fn with<T>(&self, work: impl FnOnce(&Handles) -> T) -> T {
        let handles = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        handles.context.bind_to_thread().ok();
        work(&handles)
    }

    /// Hands the memory that the stream's pool keeps but nothing uses back to the driver,
    /// once the stream's work is done, so that an allocation that did not fit may (best
    /// effort).
    pub fn release_freed_memory(&self) {
        use cudarc::driver::sys;
        self.with(|handles| {
            let _ = handles.stream.synchronize();
            let mut pool = std::ptr::null_mut();
            // SAFETY: a query of the device's default pool and a trim of its unused memory.
            unsafe {
                if sys::cuDeviceGetDefaultMemPool(&mut pool, handles.context.cu_device())
                    .result()
                    .is_ok()
                {
                    let _ = sys::cuMemPoolTrimTo(pool, 0);
                }
            }
        })
    }

    /// The free memory on the GPU now, in bytes.
    pub fn free_memory(&self) -> Result<usize> {
        self.with(|handles| handles.context.mem_get_info())
            .map(|(free, _)| free)
            .map_err(|e| Error::Device(format!("cannot ask the GPU's memory: {e}")))
    }
}

/// Lets the GPU's stream-ordered memory pool keep what is freed instead of handing it back to
/// the driver at every wait, so that a gradient's buffers come from the pool (as PyTorch's
/// caching allocator does). Best effort: without it, allocations only take longer.
/// The memory cuBLAS's matrix products may use (as PyTorch gives it on Hopper).
const CUBLAS_WORKSPACE: usize = 32 << 20;

/// A workspace of cuBLAS's own, set on `cublas`: without one, cuBLAS allocates its own when a
/// product first needs it, which a step being recorded as a CUDA graph may not.
fn cublas_workspace(cublas: &CudaBlas, stream: &Arc<CudaStream>) -> Result<CudaSlice<u8>> {
    // SAFETY: cuBLAS writes the workspace before it reads it.
    let workspace = unsafe { stream.alloc::<u8>(CUBLAS_WORKSPACE) }
        .map_err(|e| Error::Device(format!("no memory for cuBLAS's workspace: {e}")))?;
    let (pointer, _) = workspace.device_ptr(stream);
    // SAFETY: the workspace is as long as said and lives as long as the handle (both are
    // kept in the GPU's handles).
    let status = unsafe {
        cudarc::cublas::sys::cublasSetWorkspace_v2(
            *cublas.handle(),
            pointer as *mut std::ffi::c_void,
            CUBLAS_WORKSPACE,
        )
    };
    if status != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return Err(Error::Device(format!(
            "cuBLAS does not take a workspace: {status:?}"
        )));
    }
    Ok(workspace)
}

fn keep_freed_memory(context: &CudaContext) {
    use cudarc::driver::sys;
    let mut pool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: plain queries and settings of the device's default pool.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device())
            .result()
            .is_ok()
        {
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            );
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine with a GPU this opens it; elsewhere it must answer with an error that
    /// says what is missing, not panic.
    #[test]
    fn opening_answers_with_a_gpu_or_an_error() {
        match Gpu::open(0) {
            Ok(gpu) => {
                println!("{}", gpu.info);
                assert!(gpu.info.total_memory > 0);
                assert!(gpu.free_memory().unwrap() <= gpu.info.total_memory);
            }
            Err(error) => {
                let message = error.to_string();
                println!("{message}");
                assert!(!message.contains('\n'), "{message}");
            }
        }
    }

    #[test]
    fn a_device_that_does_not_exist_is_an_error() {
        assert!(Gpu::open(1 << 20).is_err());
    }
}
