//! Choosing where the tensors live: the CPU (burn's flex backend) always; GPUs when the
//! library is built with the `wgpu` (Vulkan, Metal, DirectX) or `cuda` (NVIDIA) feature.

use burn::tensor::Device;

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

/// The device called `name`: `cpu`, `wgpu` (the best GPU wgpu finds) or `cuda` (the first
/// NVIDIA GPU).
pub fn by_name(name: &str) -> Result<Device> {
    match name.to_ascii_lowercase().as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => {
            let gpu = crate::backend::cuda::Gpu::open(0)?;
            Err(Error::InvalidParameter(format!(
                "found {}, but dreaming on CUDA is not finished yet; use --device cpu",
                gpu.info
            )))
        }
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
}
