//! Reading raw fp32 tensors out of PyTorch files without unpickling arbitrary objects:
//! TorchScript archives by storage key (a zip of `…/data/KEY` entries), and state dicts
//! (legacy pickle streams or zip) with the `pytorch-reader` crate, which accepts only
//! tensors and plain containers.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The raw storages of a TorchScript zip, read by key.
pub struct TorchScriptStorages {
    path: PathBuf,
    what: String,
    archive: zip::ZipArchive<File>,
    prefix: String,
}

impl TorchScriptStorages {
    /// Opens a TorchScript archive; `what` names the expected network in errors.
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let wrong = |reason: String| Error::WrongArchitecture {
            path: path.to_path_buf(),
            expected: format!("{what} TorchScript file"),
            reason,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let archive = zip::ZipArchive::new(file).map_err(|e| wrong(e.to_string()))?;
        let prefix = archive
            .file_names()
            .find_map(|name| name.find("/data/").map(|i| name[..i + 6].to_string()))
            .ok_or_else(|| wrong("no tensor storages in it".into()))?;
        Ok(TorchScriptStorages {
            path: path.to_path_buf(),
            what: format!("{what} TorchScript file"),
            archive,
            prefix,
        })
    }

    /// The fp32 values of storage `key`, which must hold exactly `len` of them.
    pub fn read(&mut self, key: usize, len: usize, what: &str) -> Result<Vec<f32>> {
        let name = format!("{}{key}", self.prefix);
        let wrong = |reason: String| Error::WrongArchitecture {
            path: self.path.clone(),
            expected: self.what.clone(),
            reason,
        };
        let Ok(mut entry) = self.archive.by_name(&name) else {
            return Err(wrong(format!("storage {key} ({what}) is missing")));
        };
        if entry.size() != (len * 4) as u64 {
            return Err(wrong(format!(
                "storage {key} ({what}) holds {} bytes, expected {} for {len} floats",
                entry.size(),
                len * 4
            )));
        }
        let mut bytes = Vec::with_capacity(len * 4);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::CorruptWeights {
                path: self.path.clone(),
                reason: format!("storage {key}: {e}"),
            })?;
        Ok(f32_from_le(&bytes))
    }
}

/// A PyTorch state dict, read tensor by tensor.
pub struct StateDict {
    path: PathBuf,
    what: String,
    reader: pytorch_reader::PytorchReader,
}

impl StateDict {
    /// Opens a `.pth`/`.pt` state dict; `what` names the expected network in errors.
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let what = format!("{what} checkpoint");
        let reader =
            pytorch_reader::PytorchReader::new(path).map_err(|e| Error::WrongArchitecture {
                path: path.to_path_buf(),
                expected: what.clone(),
                reason: e.to_string(),
            })?;
        Ok(StateDict {
            path: path.to_path_buf(),
            what,
            reader,
        })
    }

    /// The fp32 values of tensor `name`, which must have `shape`.
    pub fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let wrong = |reason: String| Error::WrongArchitecture {
            path: self.path.clone(),
            expected: self.what.clone(),
            reason,
        };
        let corrupt = |reason: String| Error::CorruptWeights {
            path: self.path.clone(),
            reason,
        };
        let tensor = self
            .reader
            .get(name)
            .ok_or_else(|| wrong(format!("it has no tensor {name}")))?;
        if tensor.shape() != shape {
            return Err(wrong(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                tensor.shape()
            )));
        }
        if tensor.dtype() != pytorch_reader::DType::F32 {
            return Err(wrong(format!(
                "tensor {name} is {:?}, expected f32",
                tensor.dtype()
            )));
        }
        let bytes = tensor.read().map_err(|e| corrupt(e.to_string()))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
