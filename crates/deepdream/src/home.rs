//! Where deepdream keeps what it fetches or builds once and reuses: the pretrained weights,
//! and the GPU kernels compiled and tuned for this machine.

use std::path::PathBuf;

/// Environment variable that overrides the cache directory.
pub const HOME_ENV: &str = "DEEPDREAM_HOME";

/// The cache directory: `$DEEPDREAM_HOME` if set, else the platform's cache directory
/// (`~/.cache/deepdream` on Linux).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("deepdream"),
    }
}

/// Where GPU kernels compiled for this machine, and the kernel choices tuned on it, are kept
/// between runs: `gpu` in the [`cache_dir`].
pub fn gpu_cache_dir() -> PathBuf {
    cache_dir().join("gpu")
}
