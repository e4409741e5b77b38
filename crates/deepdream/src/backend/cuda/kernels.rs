//! deepdream's own CUDA kernels ([`SOURCE`]): compiled by NVRTC, at run time, straight to
//! machine code for the GPU at hand (a CUBIN, not PTX, so that a newer NVRTC than the
//! driver still works), and loaded once per device.

use std::ffi::{CStr, CString};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, LaunchConfig};
use cudarc::nvrtc::{Ptx, result, sys};

use crate::error::{Error, Result};

/// The kernels' CUDA C source.
pub const SOURCE: &str = include_str!("kernels.cu");

/// Threads per block of every element-wise kernel.
const BLOCK: u32 = 256;

/// Compiles [`SOURCE`] for a GPU of compute capability `(major, minor)` into a CUBIN.
pub fn compile(capability: (i32, i32)) -> Result<Vec<u8>> {
    let failed = |what: &str, detail: String| {
        Error::Device(format!(
            "NVRTC could not {what} deepdream's kernels: {detail}"
        ))
    };
    let source = CString::new(SOURCE).expect("no NUL in the source");
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
    /// `relu(y, x, n)`
    pub relu: CudaFunction,
    /// `clip(y, x, low, high, n)`
    pub clip: CudaFunction,
    /// `add(y, a, b, n)`
    pub add: CudaFunction,
    /// `relu_backward_add(dx, dy, y, n)`: `dx += dy` where `y > 0`.
    pub relu_backward_add: CudaFunction,
    /// `clip_backward_add(dx, dy, y, low, high, n)`: `dx += dy` where `low < y < high`.
    pub clip_backward_add: CudaFunction,
    /// `scale_shift(y, x, scale, shift, plane, channels, n)`
    pub scale_shift: CudaFunction,
    /// `scale_backward_add(dx, dy, scale, plane, channels, n)`
    pub scale_backward_add: CudaFunction,
    /// `pad(y, x, height, width, top, left, padded_height, padded_width, value, n)`
    pub pad: CudaFunction,
    /// `crop_add(dx, dy, height, width, top, left, padded_height, padded_width, n)`
    pub crop_add: CudaFunction,
}

impl Kernels {
    /// Compiles the kernels for `context`'s GPU and loads them.
    pub fn load(context: &Arc<CudaContext>) -> Result<Kernels> {
        let driver = |e: cudarc::driver::DriverError| {
            Error::Device(format!("cannot load deepdream's CUDA kernels: {e}"))
        };
        let capability = context.compute_capability().map_err(driver)?;
        let module = context
            .load_module(Ptx::from_binary(compile(capability)?))
            .map_err(driver)?;
        let function = |name: &str| module.load_function(name).map_err(driver);
        Ok(Kernels {
            axpy: function("axpy")?,
            relu: function("relu")?,
            clip: function("clip")?,
            add: function("add")?,
            relu_backward_add: function("relu_backward_add")?,
            clip_backward_add: function("clip_backward_add")?,
            scale_shift: function("scale_shift")?,
            scale_backward_add: function("scale_backward_add")?,
            pad: function("pad")?,
            crop_add: function("crop_add")?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::libraries::{Library, find_library};

    /// NVRTC needs no GPU: wherever it is installed (CI installs NVIDIA's package), the
    /// kernels must compile for the GPUs people dream on.
    #[test]
    fn the_kernels_compile_for_ampere_and_hopper() {
        if find_library(Library::Nvrtc).is_none() {
            assert!(
                std::env::var_os("DEEPDREAM_REQUIRE_NVRTC").is_none(),
                "NVRTC was required but not found"
            );
            eprintln!("skipped: no NVRTC (pip install nvidia-cuda-nvrtc)");
            return;
        }
        for capability in [(8, 0), (8, 6), (9, 0)] {
            let cubin = compile(capability).unwrap();
            assert_eq!(&cubin[..4], b"\x7fELF", "{capability:?}");
        }
    }

    #[test]
    fn launches_cover_every_element() {
        let config = elementwise(1000);
        assert_eq!(config.grid_dim.0 * config.block_dim.0, 1024);
        assert_eq!(elementwise(0).grid_dim.0, 1);
        assert_eq!(elementwise(usize::MAX / 2).grid_dim.0, 65_535);
    }
}
