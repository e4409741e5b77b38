//! The native half of the `deepdream` Python package: a loaded network ([`Model`]) that
//! dreams and classifies `uint8` image arrays, the model catalogue, and the CLI's image
//! reader. The package's Python half turns PIL images, float arrays and paths into these
//! arrays and back. Work runs with the GIL released; Ctrl-C stops it after the current step;
//! errors are the package's exception classes, with the library's one-line messages.

use std::path::PathBuf;
use std::sync::Mutex;

use deepdream::backend::device::{self, Placement};
use deepdream::media::image_io;
use deepdream::networks::onnx::{OnnxNetwork, raw_layer_name};
use deepdream::networks::{classify, models, placement, weights};
use deepdream::{DreamParams, Dreamer, Error, LayerWeight, Network, Preprocess};
use image::{DynamicImage, RgbImage, RgbaImage};
use numpy::{PyArray3, PyArrayMethods, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The package's exception class for a library error (defined in `deepdream/errors.py`).
fn exception_class(error: &Error) -> &'static str {
    match error {
        Error::ImageRead { .. } | Error::ImageData(_) | Error::ImageWrite { .. } => "ImageError",
        Error::Fetch { .. }
        | Error::CorruptWeights { .. }
        | Error::WrongArchitecture { .. }
        | Error::Onnx { .. }
        | Error::UnsupportedOperator { .. } => "ModelError",
        Error::Device(_) => "DeviceError",
        Error::VideoRead { .. } | Error::VideoWrite { .. } => "VideoError",
        _ => "ParameterError",
    }
}

/// A library error as the Python exception it stands for.
fn to_python(py: Python<'_>, error: Error) -> PyErr {
    if matches!(error, Error::Cancelled) {
        return PyKeyboardInterrupt::new_err("cancelled");
    }
    let message = error.to_string();
    let class = py
        .import("deepdream.errors")
        .and_then(|module| module.getattr(exception_class(&error)));
    match class {
        Ok(class) => PyErr::from_type(class.cast_into().expect("an exception class"), message),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

fn parameter_error(py: Python<'_>, message: String) -> PyErr {
    to_python(py, Error::InvalidParameter(message))
}

/// An image array (`H x W x 3` or `H x W x 4`, `uint8`) as an image.
fn to_image(py: Python<'_>, array: &PyReadonlyArray3<'_, u8>) -> PyResult<DynamicImage> {
    let [height, width, channels] = [0, 1, 2].map(|d| array.shape()[d]);
    if height == 0 || width == 0 {
        return Err(parameter_error(py, "the image is empty".into()));
    }
    let values = array.as_slice().map_or_else(
        |_| array.as_array().iter().copied().collect(),
        <[u8]>::to_vec,
    );
    let (w, h) = (width as u32, height as u32);
    let image = match channels {
        3 => RgbImage::from_raw(w, h, values).map(DynamicImage::ImageRgb8),
        4 => RgbaImage::from_raw(w, h, values).map(DynamicImage::ImageRgba8),
        _ => None,
    };
    image.ok_or_else(|| {
        parameter_error(
            py,
            format!("an image array must be height x width x 3 or 4, not {height} x {width} x {channels}"),
        )
    })
}

/// An image as an `H x W x C` array.
fn to_array<'py>(py: Python<'py>, image: DynamicImage) -> Bound<'py, PyArray3<u8>> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (values, channels) = if image.color().has_alpha() {
        (image.to_rgba8().into_raw(), 4)
    } else {
        (image.to_rgb8().into_raw(), 3)
    };
    numpy::PyArray1::from_vec(py, values)
        .reshape([height, width, channels])
        .expect("the image's size")
}

/// A memory budget given as a number of bytes or as text such as `512M` or `2G`.
fn memory_size(py: Python<'_>, size: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(text) = size.extract::<String>() {
        return deepdream::engine::tiling::parse_size(&text).map_err(|e| to_python(py, e));
    }
    match size.extract::<i64>() {
        Ok(bytes) if bytes > 0 => Ok(bytes as u64),
        _ => Err(parameter_error(
            py,
            format!("max_memory must be a positive size such as 512M or 2G, not {size}"),
        )),
    }
}

/// Reads an image file as the CLI does (orientation from EXIF applied): `H x W x 3`, or
/// `H x W x 4` with an alpha channel.
#[pyfunction]
fn load_image(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyArray3<u8>>> {
    let image = py
        .detach(|| image_io::load(&path))
        .map_err(|e| to_python(py, e))?;
    Ok(to_array(py, image))
}

/// The known models: `(name, description, weight package, cached)` each.
#[pyfunction]
#[pyo3(name = "models")]
fn list_models() -> Vec<(String, String, String, bool)> {
    models::ALL
        .iter()
        .map(|spec| {
            (
                spec.name.to_string(),
                spec.description.to_string(),
                spec.package.to_string(),
                weights::is_cached(spec),
            )
        })
        .collect()
}

/// The default model's name.
#[pyfunction]
fn default_model() -> &'static str {
    models::DEFAULT.name
}

/// An ONNX preprocessing preset by name.
fn preset(name: &str) -> Option<Preprocess> {
    match name {
        "caffe" => Some(Preprocess::CAFFE),
        "torch" => Some(Preprocess::TORCH),
        "tf" => Some(Preprocess::TF),
        _ => None,
    }
}

/// Loads the network `name` names, or the weight file `weights` holds, on `placement`.
fn load_network(
    name: Option<&str>,
    weights_path: Option<&PathBuf>,
    preprocess: Option<Preprocess>,
    placement: &Placement,
) -> deepdream::Result<Box<dyn Network>> {
    let device = placement.tensors();
    let network: Box<dyn Network> = match (name, weights_path) {
        (Some(name), None) => {
            let spec = models::find(name)?;
            let path = weights::ensure(spec, |_| {})?;
            (spec.load)(&path, &device)?
        }
        (Some(name), Some(path)) => (models::find(name)?.load)(path, &device)?,
        (None, Some(path)) => match weights::identify(path)? {
            Some(spec) if preprocess.is_none() => (spec.load)(path, &device)?,
            _ => Box::new(OnnxNetwork::load(
                path,
                preprocess.unwrap_or(Preprocess::CAFFE),
                raw_layer_name,
                &device,
            )?),
        },
        (None, None) => {
            let spec = models::DEFAULT;
            let path = weights::ensure(spec, |_| {})?;
            (spec.load)(&path, &device)?
        }
    };
    placement::place(network, placement)
}

/// A network loaded once, on a device, to dream and classify with.
#[pyclass(frozen, module = "deepdream._deepdream")]
struct Model {
    network: Box<dyn Network>,
    placement: Placement,
}

/// What a dream's progress callback receives, as a dict.
fn progress_dict<'py>(
    py: Python<'py>,
    progress: &deepdream::Progress,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("step", progress.steps_done())?;
    dict.set_item("steps", progress.steps_total())?;
    dict.set_item("octave", progress.octave)?;
    dict.set_item("octaves", progress.octaves)?;
    dict.set_item("iteration", progress.iteration)?;
    dict.set_item("iterations", progress.iterations)?;
    dict.set_item("width", progress.width)?;
    dict.set_item("height", progress.height)?;
    Ok(dict)
}

#[pymethods]
impl Model {
    /// Loads a model by name (`vgg16`, `inception3`, `efficientnet-lite0`), or from a weight
    /// file (a known model's, or any ONNX CNN with `preprocess` `caffe`, `torch` or `tf`),
    /// on `device` (`cpu`, or `cuda` with `precision` `tf32` or `fp32`). Weights are fetched
    /// into the CLI's cache on first use.
    #[new]
    #[pyo3(signature = (name=None, *, weights=None, preprocess=None, device="cpu", precision="tf32"))]
    fn new(
        py: Python<'_>,
        name: Option<String>,
        weights: Option<PathBuf>,
        preprocess: Option<String>,
        device: &str,
        precision: &str,
    ) -> PyResult<Model> {
        let tf32 = match precision {
            "tf32" => true,
            "fp32" => false,
            other => {
                return Err(parameter_error(
                    py,
                    format!("precision must be tf32 or fp32, not '{other}'"),
                ));
            }
        };
        let preprocess = match preprocess.as_deref() {
            None => None,
            Some(name) => Some(preset(name).ok_or_else(|| {
                parameter_error(
                    py,
                    format!("preprocess must be caffe, torch or tf, not '{name}'"),
                )
            })?),
        };
        if let Some(path) = &weights
            && !path.is_file()
        {
            return Err(pyo3::exceptions::PyFileNotFoundError::new_err(format!(
                "weight file {} does not exist",
                path.display()
            )));
        }
        py.detach(|| {
            let placement = device::open(device, tf32)?;
            let network = load_network(name.as_deref(), weights.as_ref(), preprocess, &placement)?;
            Ok(Model { network, placement })
        })
        .map_err(|e| to_python(py, e))
    }

    /// The model's name.
    #[getter]
    fn name(&self) -> String {
        self.network.name().to_string()
    }

    /// The layers dreamed when none are named.
    #[getter]
    fn default_layers(&self) -> Vec<String> {
        self.network.default_layers().to_vec()
    }

    /// The dreamable layers, shallowest first: `(name, kind, channels, stride)` each.
    #[getter]
    fn layers(&self) -> Vec<(String, String, usize, usize)> {
        self.network
            .layers()
            .iter()
            .map(|l| (l.name.clone(), l.kind.clone(), l.channels, l.stride))
            .collect()
    }

    /// Whether the model has an ImageNet classifier (for `classify` and class dreams).
    #[getter]
    fn classifier(&self) -> bool {
        self.network.class_layer().is_some()
    }

    /// Dreams a `uint8` image array (`H x W x 3`, or `x 4` with alpha kept as it is) and
    /// returns the dream as the same kind of array. `layers` are `(name, weight)` pairs,
    /// `class_` an ImageNet class number, `guide` an image array; `progress` is called after
    /// every step with a dict (`step`, `steps`, `octave`, …, and `preview`, the picture so
    /// far, every `preview_every` steps).
    #[pyo3(signature = (
        image, *, layers=None, channels=None, class_=None, guide=None, octaves=4,
        octave_scale=1.4, iterations=10, step=1.5, jitter=32, seed=0, max_memory=None,
        progress=None, preview_every=0
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn dream<'py>(
        &self,
        py: Python<'py>,
        image: PyReadonlyArray3<'py, u8>,
        layers: Option<Vec<(String, f32)>>,
        channels: Option<Vec<usize>>,
        class_: Option<usize>,
        guide: Option<PyReadonlyArray3<'py, u8>>,
        octaves: usize,
        octave_scale: f32,
        iterations: usize,
        step: f32,
        jitter: u32,
        seed: u64,
        max_memory: Option<Bound<'py, PyAny>>,
        progress: Option<Py<PyAny>>,
        preview_every: usize,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let image = to_image(py, &image)?;
        let max_memory = match max_memory {
            None => None,
            Some(size) => Some(memory_size(py, &size)?),
        };
        let guide = match guide {
            Some(guide) => Some(to_image(py, &guide)?.to_rgb8()),
            None => None,
        };
        let params = DreamParams {
            layers: layers
                .unwrap_or_default()
                .into_iter()
                .map(|(layer, weight)| LayerWeight { layer, weight })
                .collect(),
            channels,
            class: class_,
            guide,
            octaves,
            octave_scale,
            iterations,
            step_size: step,
            jitter,
            seed,
            max_memory,
        };
        // The first error of the progress callback (or Ctrl-C), raised once the dream stops.
        let raised: Mutex<Option<PyErr>> = Mutex::new(None);
        let device = self.placement.tensors();
        let dreamed = py.detach(|| {
            params.validate()?;
            let dreamer = Dreamer::new(self.network.as_ref(), params, &device)?;
            let (rgb, alpha) = image_io::split_alpha(&image);
            let dreamed = dreamer.dream_watched(&rgb, seed, |snapshot| {
                Python::attach(|py| {
                    let result = py.check_signals().and_then(|()| {
                        let Some(callback) = &progress else {
                            return Ok(());
                        };
                        let p = &snapshot.progress;
                        let info = progress_dict(py, p)?;
                        let done = p.steps_done();
                        if preview_every > 0
                            && (done % preview_every == 0 || done == p.steps_total())
                        {
                            let preview = snapshot.image().map_err(|e| to_python(py, e))?;
                            info.set_item(
                                "preview",
                                to_array(py, DynamicImage::ImageRgb8(preview)),
                            )?;
                        }
                        callback.call1(py, (info,)).map(|_| ())
                    });
                    result.map_err(|error| {
                        *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        Error::Cancelled
                    })
                })
            })?;
            Ok(image_io::join_alpha(dreamed, alpha.as_ref()))
        });
        if let Some(error) = raised.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(error);
        }
        let dreamed = dreamed.map_err(|e: Error| to_python(py, e))?;
        Ok(to_array(py, dreamed))
    }

    /// The `top` most probable ImageNet classes of an image array: `(class, name,
    /// probability)` each.
    #[pyo3(signature = (image, top=5))]
    fn classify(
        &self,
        py: Python<'_>,
        image: PyReadonlyArray3<'_, u8>,
        top: usize,
    ) -> PyResult<Vec<(usize, String, f32)>> {
        let image = to_image(py, &image)?;
        let device = self.placement.tensors();
        let guesses = py
            .detach(|| classify::classify(self.network.as_ref(), &image, top, &device))
            .map_err(|e| to_python(py, e))?;
        Ok(guesses
            .into_iter()
            .map(|g| (g.class, g.name.to_string(), g.probability))
            .collect())
    }

    fn __repr__(&self) -> String {
        format!("Model('{}')", self.network.name())
    }
}

/// Runs the `deepdream` command line `args` (the program's name first), with the GIL
/// released, and returns its exit status.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| deepdream_cli::run_args(args))
}

/// An ImageNet class number by name or number (`"tabby"`, `"281"`).
#[pyfunction]
fn find_class(py: Python<'_>, query: &str) -> PyResult<usize> {
    deepdream::networks::imagenet::find_class(query).map_err(|e| to_python(py, e))
}

/// mimalloc, as in the CLI: the dream allocates and frees tensors of tens of megabytes every
/// step, and the system allocator's page faults made steps up to 1.5x slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The native module.
#[pymodule]
fn _deepdream(module: &Bound<'_, PyModule>) -> PyResult<()> {
    deepdream_cli::keep_freed_memory();
    module.add_function(wrap_pyfunction!(run_cli, module)?)?;
    module.add_class::<Model>()?;
    module.add_function(wrap_pyfunction!(list_models, module)?)?;
    module.add_function(wrap_pyfunction!(default_model, module)?)?;
    module.add_function(wrap_pyfunction!(load_image, module)?)?;
    module.add_function(wrap_pyfunction!(find_class, module)?)?;
    Ok(())
}
