//! Finding NVIDIA's libraries at run time. The driver (`libcuda`) comes with the system;
//! cuDNN, cuBLAS and NVRTC come either with a CUDA installation the dynamic loader knows,
//! or as NVIDIA's Python packages (`pip install nvidia-cudnn-cu13 nvidia-cublas
//! nvidia-cuda-nvrtc`), whose `nvidia/*/lib` folders are searched in every folder on the
//! Python path, in `DEEPDREAM_CUDA_LIBS` (folders separated by `:`) and in the usual CUDA
//! installation folders. A library found in such a folder is loaded by its full path, so
//! that loading it later by its usual name finds it already there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The environment variable that names extra folders to search, separated by `:`.
pub const SEARCH_PATH_VARIABLE: &str = "DEEPDREAM_CUDA_LIBS";

/// One of the libraries the CUDA device needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    /// The NVIDIA driver's `libcuda`.
    Driver,
    /// cuDNN 9: convolutions, pooling, LRN.
    Cudnn,
    /// cuBLAS: fully connected layers.
    Cublas,
    /// NVRTC: compiles deepdream's own kernels at run time.
    Nvrtc,
}

/// Where a library was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Where the dynamic loader looks by itself (`LD_LIBRARY_PATH`, the system's folders).
    System,
    /// Loaded from this folder.
    Folder(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::System => write!(f, "system"),
            Source::Folder(folder) => write!(f, "{}", folder.display()),
        }
    }
}

impl Library {
    /// Every library, in the order they are opened.
    pub const ALL: [Library; 4] = [
        Library::Driver,
        Library::Cudnn,
        Library::Cublas,
        Library::Nvrtc,
    ];

    /// The library's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Library::Driver => "the NVIDIA driver (libcuda)",
            Library::Cudnn => "cuDNN 9",
            Library::Cublas => "cuBLAS",
            Library::Nvrtc => "NVRTC",
        }
    }

    /// How to get the library.
    pub fn install_hint(self) -> &'static str {
        match self {
            Library::Driver => "install NVIDIA's driver for the GPU",
            Library::Cudnn => "pip install nvidia-cudnn-cu13",
            Library::Cublas => "pip install nvidia-cublas",
            Library::Nvrtc => "pip install nvidia-cuda-nvrtc",
        }
    }

    /// The start of the file names that make up the library in a search folder (cuBLAS's
    /// `libcublasLt`, NVRTC's builtins and cuDNN's sub-libraries included); the driver is
    /// never taken from a folder.
    fn file_prefix(self) -> Option<&'static str> {
        match self {
            Library::Driver => None,
            Library::Cudnn => Some("libcudnn"),
            Library::Cublas => Some("libcublas"),
            Library::Nvrtc => Some("libnvrtc"),
        }
    }

    /// Whether the dynamic loader finds the library under one of the names cudarc opens it by.
    fn loadable(self) -> bool {
        // SAFETY: these only try to open the library and close it again.
        unsafe {
            match self {
                Library::Driver => cudarc::driver::sys::is_culib_present(),
                Library::Cudnn => cudarc::cudnn::sys::is_culib_present(),
                Library::Cublas => cudarc::cublas::sys::is_culib_present(),
                Library::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
            }
        }
    }
}

/// Where each library was found, in [`Library::ALL`]'s order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found(pub Vec<(Library, Source)>);

/// Finds every library, loading those that live in a search folder; the error names each
/// missing library and how to install it, on one line.
pub fn find() -> Result<Found> {
    // Loaded libraries are never unloaded: cudarc keeps using them by name.
    static FOUND: Mutex<Option<Found>> = Mutex::new(None);
    let mut found = FOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = found.as_ref() {
        return Ok(found.clone());
    }
    let folders = search_folders();
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for library in Library::ALL {
        match find_one(library, &folders) {
            Some(source) => sources.push((library, source)),
            None => missing.push(library),
        }
    }
    if !missing.is_empty() {
        return Err(missing_error(&missing));
    }
    *found = Some(Found(sources.clone()));
    Ok(Found(sources))
}

/// Finds one library, loading it from a search folder if need be.
pub fn find_library(library: Library) -> Option<Source> {
    find_one(library, &search_folders())
}

fn find_one(library: Library, folders: &[PathBuf]) -> Option<Source> {
    if library.loadable() {
        return Some(Source::System);
    }
    let prefix = library.file_prefix()?;
    for folder in folders {
        let files = library_files(folder, prefix);
        if files.is_empty() {
            continue;
        }
        // Some parts may not load here (cuDNN's run-time compiled engines need the driver);
        // what loads stays loaded, and the folder counts if the library now loads by name.
        load_all(&files);
        if library.loadable() {
            return Some(Source::Folder(folder.clone()));
        }
    }
    None
}

/// The error for libraries that were not found.
pub fn missing_error(missing: &[Library]) -> Error {
    let listed: Vec<String> = missing
        .iter()
        .map(|library| format!("{} ({})", library.name(), library.install_hint()))
        .collect();
    Error::Device(format!(
        "the CUDA device needs {} (or set {SEARCH_PATH_VARIABLE} to the folders that hold them)",
        listed.join(", ")
    ))
}

/// The folders searched for libraries the dynamic loader does not find by itself: those in
/// [`SEARCH_PATH_VARIABLE`], every `nvidia/*/lib` folder of the Python path (and of an active
/// virtual or conda environment), and the usual CUDA installation folders.
pub fn search_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::env::var_os(SEARCH_PATH_VARIABLE)
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    let mut python_roots = python_path();
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(variable) {
            python_roots.extend(site_packages(Path::new(&prefix)));
        }
    }
    for root in python_roots {
        folders.extend(nvidia_lib_folders(&root));
    }
    folders.extend(
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
        ]
        .map(PathBuf::from),
    );
    let mut unique = Vec::new();
    for folder in folders {
        if folder.is_dir() && !unique.contains(&folder) {
            unique.push(folder);
        }
    }
    unique
}

/// The folders on `python3`'s path (none if there is no Python).
fn python_path() -> Vec<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", "import sys; print('\\n'.join(sys.path))"])
        .output();
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `lib/python3.*/site-packages` under an environment's prefix.
fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages"))
        .collect();
    folders.sort();
    folders
}

/// The `nvidia/*/lib` folders NVIDIA's Python packages install into under `root`
/// (`nvidia/cudnn/lib`, `nvidia/cu13/lib`, …), sorted.
pub fn nvidia_lib_folders(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join("nvidia")) else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path().join("lib"))
        .filter(|folder| folder.is_dir())
        .collect();
    folders.sort();
    folders
}

/// The shared libraries in `folder` whose names start with `prefix`, sorted.
pub fn library_files(folder: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) && name.contains(".so")
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// Loads `files` by their full paths, retrying those whose dependencies were not loaded
/// yet, and keeps them loaded; whether every one loaded.
fn load_all(files: &[PathBuf]) -> bool {
    static LOADED: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut pending: Vec<&PathBuf> = files.iter().collect();
    loop {
        let before = pending.len();
        // SAFETY: NVIDIA's libraries run no code at load time that depends on the caller.
        pending.retain(|file| match unsafe { libloading::Library::new(file) } {
            Ok(library) => {
                loaded.push(library);
                false
            }
            Err(_) => true,
        });
        if pending.is_empty() || pending.len() == before {
            return pending.is_empty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_libraries_are_named_with_how_to_install_them() {
        let message = missing_error(&[Library::Cudnn, Library::Nvrtc]).to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.contains("cuDNN 9 (pip install nvidia-cudnn-cu13)"),
            "{message}"
        );
        assert!(
            message.contains("NVRTC (pip install nvidia-cuda-nvrtc)"),
            "{message}"
        );
        assert!(message.contains(SEARCH_PATH_VARIABLE), "{message}");
    }

    #[test]
    fn nvidia_package_folders_and_their_libraries_are_listed() {
        let root = tempfile::tempdir().unwrap();
        for folder in ["nvidia/cudnn/lib", "nvidia/cu13/lib", "nvidia/empty"] {
            std::fs::create_dir_all(root.path().join(folder)).unwrap();
        }
        let lib = root.path().join("nvidia/cu13/lib");
        for file in [
            "libcublas.so.13",
            "libcublasLt.so.13",
            "libnvrtc.so.13",
            "libnvrtc-builtins.so.13.5",
            "libcublas.a",
        ] {
            std::fs::write(lib.join(file), b"").unwrap();
        }
        assert_eq!(
            nvidia_lib_folders(root.path()),
            [lib.clone(), root.path().join("nvidia/cudnn/lib")]
        );
        let names = |prefix| -> Vec<String> {
            library_files(&lib, prefix)
                .iter()
                .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("libcublas"), ["libcublas.so.13", "libcublasLt.so.13"]);
        assert_eq!(
            names("libnvrtc"),
            ["libnvrtc-builtins.so.13.5", "libnvrtc.so.13"]
        );
        assert!(names("libcudnn").is_empty());
    }

    #[test]
    fn files_that_are_not_libraries_do_not_load_and_do_not_panic() {
        let folder = tempfile::tempdir().unwrap();
        let fake = folder.path().join("libcudnn.so.9");
        std::fs::write(&fake, b"not a library").unwrap();
        assert!(!load_all(&[fake]));
    }

    /// cuDNN, cuBLAS and NVRTC installed as NVIDIA's Python packages are found in them,
    /// even on a machine without the driver some of their parts need.
    #[test]
    fn libraries_of_nvidias_python_packages_are_found() {
        let folders = search_folders();
        for (library, file) in [
            (Library::Cudnn, "libcudnn.so.9"),
            (Library::Cublas, "libcublas.so.13"),
            (Library::Nvrtc, "libnvrtc.so.13"),
        ] {
            let installed = folders.iter().any(|folder| folder.join(file).is_file());
            let found = find_library(library);
            println!("{}: installed {installed}, found {found:?}", library.name());
            if installed {
                assert!(
                    found.is_some(),
                    "{} is installed but not found",
                    library.name()
                );
            }
        }
    }

    #[test]
    fn finding_the_libraries_answers_without_panicking() {
        match find() {
            Ok(Found(sources)) => assert_eq!(sources.len(), Library::ALL.len()),
            Err(error) => {
                let message = error.to_string();
                assert!(message.starts_with("the CUDA device needs"), "{message}");
            }
        }
    }
}
