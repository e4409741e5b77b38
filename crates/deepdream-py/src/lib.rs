//! The native half of the `deepdream` Python package: a loaded network ([`Model`]) that
//! dreams and classifies `uint8` image arrays, the model catalogue, and the CLI's image
//! reader. The package's Python half turns PIL images, float arrays and paths into these
//! arrays and back. Work runs with the GIL released; Ctrl-C stops it after the current step;
//! errors are the package's exception classes, with the library's one-line messages.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use deepdream::backend::device::{self, Placement};
use deepdream::control::Direction;
use deepdream::control::channels::AutoChannels;
use deepdream::control::footage::{Ending, Footage};
use deepdream::control::keyframes::Keyframes;
use deepdream::control::mask::{Mask, check_strength};
use deepdream::control::region::Region;
use deepdream::control::sound::{Band, Envelope, Reaction, Reactions, check_smooth};
use deepdream::engine::optimizer::Optimizer;
use deepdream::media::animation::AnimationFormat;
use deepdream::media::animation::open_sink;
use deepdream::media::ffmpeg::{self, FrameRate, Segment, VideoReader};
use deepdream::media::ffmpeg::{AudioSource, probe_audio};
use deepdream::media::flow::FlowMethod;
use deepdream::media::frames::IterSource;
use deepdream::media::image_io;
use deepdream::media::live::{LiveSource, Scaled, SourceKind, open_source};
use deepdream::media::work_dir::WorkDir;
use deepdream::modes::animation::{FrameProgress, FrameSettings};
use deepdream::modes::dream::GUIDE_MAX_SIDE;
use deepdream::modes::live::{LiveReport, LiveSettings, dream_live};
use deepdream::modes::style::{Init, StyleImage, StyleParams, Stylist};
use deepdream::modes::video::{VideoParams, dream_video_watched};
use deepdream::modes::visualize::{Target, VisualizeParams, visualize_watched};
use deepdream::modes::zoom::{ZoomParams, zoom_watched};
use deepdream::networks::onnx::{OnnxNetwork, raw_layer_name};
use deepdream::networks::{classify, models, placement, weights};
use deepdream::{DreamParams, Dreamer, Error, LayerWeight, Network, Preprocess, Snapshot};
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
    network: Arc<dyn Network>,
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

/// Calls a Python progress callback from inside the engine (taking the GIL for it): checks
/// for Ctrl-C, then passes `info` (and every `preview_every` steps, `preview`, the picture
/// so far). The first Python error is kept and stops the work; [`Observer::finish`] raises
/// it.
struct Observer {
    callback: Option<Py<PyAny>>,
    preview_every: usize,
    raised: Mutex<Option<PyErr>>,
}

impl Observer {
    fn new(callback: Option<Py<PyAny>>, preview_every: usize) -> Observer {
        Observer {
            callback,
            preview_every,
            raised: Mutex::new(None),
        }
    }

    fn observe<P>(
        &self,
        snapshot: &Snapshot<'_, P>,
        step: usize,
        last: bool,
        info: impl for<'py> FnOnce(Python<'py>, &P) -> PyResult<Bound<'py, PyDict>>,
    ) -> deepdream::Result<()> {
        Python::attach(|py| {
            let result = py.check_signals().and_then(|()| {
                let Some(callback) = &self.callback else {
                    return Ok(());
                };
                let info = info(py, &snapshot.progress)?;
                if self.preview_every > 0 && (step.is_multiple_of(self.preview_every) || last) {
                    let preview = snapshot.image().map_err(|e| to_python(py, e))?;
                    info.set_item("preview", to_array(py, DynamicImage::ImageRgb8(preview)))?;
                }
                callback.call1(py, (info,)).map(|_| ())
            });
            result.map_err(|error| {
                *self.raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                Error::Cancelled
            })
        })
    }

    /// The result of the watched work: the callback's error first, then the engine's.
    fn finish<T>(self, py: Python<'_>, result: deepdream::Result<T>) -> PyResult<T> {
        if let Some(error) = self.raised.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(error);
        }
        result.map_err(|e| to_python(py, e))
    }
}

/// A dream's options, as the Python package passes them: a dict with every key of
/// `deepdream._dream_options` (checked there, validated here); `layers` are `(name,
/// weight)` pairs, `class_` an ImageNet class number, `guide` an image array.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct DreamOptions<'py> {
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
    auto_channels: Option<String>,
    mask: Option<PyReadonlyArray3<'py, u8>>,
    mask_strength: f32,
    regions: Vec<RegionOptions<'py>>,
}

/// A region as the Python package passes it: its mask, layers and channels.
type RegionOptions<'py> = (
    PyReadonlyArray3<'py, u8>,
    Option<Vec<(String, f32)>>,
    Option<Vec<usize>>,
);

/// What changes over an animation's frames, as the Python package passes it: a dict with
/// every key of `deepdream._control` (a keyframe schedule's text with whether it is JSON,
/// the sound and what it moves, a guide video).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct ControlOptions {
    keyframes: Option<(String, bool)>,
    audio: Option<PathBuf>,
    react: Option<String>,
    react_band: String,
    react_smooth: f64,
    guide_video: Option<PathBuf>,
    guide_video_end: String,
}

impl ControlOptions {
    /// The direction of an animation of `frames` frames at `fps`.
    fn direction(&self, fps: f64, frames: usize) -> deepdream::Result<Direction> {
        let schedule = match &self.keyframes {
            None => None,
            Some((text, json)) => Some(Keyframes::parse(text, *json)?.place(fps, Some(frames))?),
        };
        let band = Band::parse(&self.react_band)?;
        check_smooth(self.react_smooth)?;
        let sound = match (&self.react, &self.audio) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::InvalidParameter(
                    "react needs sound: give audio, a sound or video file".into(),
                ));
            }
            (Some(react), Some(audio)) => Some(Reactions {
                envelope: Envelope::of_file(
                    audio,
                    Segment::default(),
                    fps,
                    band,
                    self.react_smooth,
                )?,
                reactions: Reaction::parse_list(react)?,
            }),
        };
        let ending = Ending::parse(&self.guide_video_end)?;
        let guides = match &self.guide_video {
            Some(path) => Some(Footage::load(path, Some(GUIDE_MAX_SIDE), ending)?),
            None => None,
        };
        Ok(Direction {
            schedule,
            sound,
            guides,
            fps,
            ..Direction::default()
        })
    }
}

/// `(name, weight)` pairs as layer weights.
fn layer_weights(pairs: Vec<(String, f32)>) -> Vec<LayerWeight> {
    pairs
        .into_iter()
        .map(|(layer, weight)| LayerWeight { layer, weight })
        .collect()
}

impl DreamOptions<'_> {
    /// The dream's parameters, validated.
    fn params(self, py: Python<'_>) -> PyResult<DreamParams> {
        let max_memory = match self.max_memory {
            None => None,
            Some(size) => Some(memory_size(py, &size)?),
        };
        let guide = match self.guide {
            Some(guide) => Some(to_image(py, &guide)?.to_rgb8()),
            None => None,
        };
        let python = |e| to_python(py, e);
        let mask = match &self.mask {
            Some(mask) => Some(
                Mask::from_image(&to_image(py, mask)?)
                    .with_strength(self.mask_strength)
                    .map_err(python)?,
            ),
            None => {
                check_strength(self.mask_strength).map_err(python)?;
                None
            }
        };
        let regions = self
            .regions
            .iter()
            .map(|(mask, layers, channels)| {
                Ok(Region {
                    mask: Some(Mask::from_image(&to_image(py, mask)?)),
                    layers: layer_weights(layers.clone().unwrap_or_default()),
                    channels: channels.clone(),
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let auto_channels = self
            .auto_channels
            .as_deref()
            .map(AutoChannels::parse)
            .transpose()
            .map_err(python)?;
        let params = DreamParams {
            layers: layer_weights(self.layers.unwrap_or_default()),
            mask,
            regions,
            auto_channels,
            channels: self.channels,
            class: self.class_,
            guide,
            octaves: self.octaves,
            octave_scale: self.octave_scale,
            iterations: self.iterations,
            step_size: self.step,
            jitter: self.jitter,
            seed: self.seed,
            max_memory,
        };
        params.validate().map_err(|e| to_python(py, e))?;
        Ok(params)
    }
}

/// Frames (image arrays) as images of one size; `none` is the error for an empty list.
fn to_frames(
    py: Python<'_>,
    frames: &[PyReadonlyArray3<'_, u8>],
    none: &str,
) -> PyResult<Vec<RgbImage>> {
    let frames = frames
        .iter()
        .map(|frame| Ok(to_image(py, frame)?.to_rgb8()))
        .collect::<PyResult<Vec<RgbImage>>>()?;
    let Some(first) = frames.first() else {
        return Err(parameter_error(py, none.into()));
    };
    if let Some(other) = frames.iter().find(|f| f.dimensions() != first.dimensions()) {
        return Err(parameter_error(
            py,
            format!(
                "the frames differ in size ({}x{} and {}x{})",
                first.width(),
                first.height(),
                other.width(),
                other.height()
            ),
        ));
    }
    Ok(frames)
}

/// An optimiser by name.
fn optimizer(py: Python<'_>, name: &str, learning_rate: f32) -> PyResult<Optimizer> {
    match name {
        "lbfgs" => Ok(Optimizer::LBFGS),
        "adam" => Ok(Optimizer::Adam { learning_rate }),
        other => Err(parameter_error(
            py,
            format!("optimizer must be lbfgs or adam, not '{other}'"),
        )),
    }
}

/// What an animation's progress callback receives, as a dict.
fn frame_progress_dict<'py>(
    py: Python<'py>,
    progress: &FrameProgress,
) -> PyResult<Bound<'py, PyDict>> {
    let info = PyDict::new(py);
    info.set_item("frame", progress.frame)?;
    info.set_item("frames", progress.frames)?;
    info.set_item("frame_done", progress.step.is_none())?;
    info.set_item("fresh", progress.fresh)?;
    if let Some(step) = &progress.step {
        info.set_item("step", step.steps_done())?;
        info.set_item("steps", step.steps_total())?;
    }
    Ok(info)
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
            Ok(Model {
                network: Arc::from(network),
                placement,
            })
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
    /// returns the dream as the same kind of array. `options` are the [`DreamOptions`];
    /// `progress` is called after every step with a dict (`step`, `steps`, `octave`, …, and
    /// `preview`, the picture so far, every `preview_every` steps).
    #[pyo3(signature = (
        image, options, *, progress=None, preview_every=0
    ))]
    fn dream<'py>(
        &self,
        py: Python<'py>,
        image: PyReadonlyArray3<'py, u8>,
        options: DreamOptions<'py>,
        progress: Option<Py<PyAny>>,
        preview_every: usize,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let image = to_image(py, &image)?;
        let params = options.params(py)?;
        let observer = Observer::new(progress, preview_every);
        let device = self.placement.tensors();
        let dreamed = py.detach(|| {
            let dreamer = Dreamer::new(self.network.as_ref(), params, &device)?;
            let (rgb, alpha) = image_io::split_alpha(&image);
            let dreamed = dreamer.dream_watched(&rgb, dreamer.params().seed, |snapshot| {
                let p = &snapshot.progress;
                let last = p.steps_done() == p.steps_total();
                observer.observe(snapshot, p.steps_done(), last, progress_dict)
            })?;
            Ok(image_io::join_alpha(dreamed, alpha.as_ref()))
        });
        Ok(to_array(py, observer.finish(py, dreamed)?))
    }

    /// Restyles a content image array after `styles` (`(image array, weight)` pairs): neural
    /// style transfer (Gatys et al.), the CLI's `style` with its options.
    #[pyo3(signature = (
        content, styles, *, style_layers=None, content_layers=None, content_weight=5.0,
        style_weight=500.0, tv_weight=1.0, init="content", optimizer="lbfgs",
        learning_rate=10.0, iterations=200, size=512, scales=2, scale_ratio=2.0,
        preserve_colors=false, seed=0, progress=None, preview_every=0
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn style<'py>(
        &self,
        py: Python<'py>,
        content: PyReadonlyArray3<'py, u8>,
        styles: Vec<(PyReadonlyArray3<'py, u8>, f32)>,
        style_layers: Option<Vec<String>>,
        content_layers: Option<Vec<String>>,
        content_weight: f32,
        style_weight: f32,
        tv_weight: f32,
        init: &str,
        optimizer: &str,
        learning_rate: f32,
        iterations: usize,
        size: u32,
        scales: usize,
        scale_ratio: f32,
        preserve_colors: bool,
        seed: u64,
        progress: Option<Py<PyAny>>,
        preview_every: usize,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let content = to_image(py, &content)?.to_rgb8();
        let styles = styles
            .iter()
            .map(|(image, weight)| {
                Ok(StyleImage {
                    image: to_image(py, image)?.to_rgb8(),
                    weight: *weight,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let defaults = StyleParams::default();
        let params = StyleParams {
            style_layers: style_layers.unwrap_or(defaults.style_layers),
            content_layers: content_layers.unwrap_or(defaults.content_layers),
            content_weight,
            style_weight,
            tv_weight,
            init: match init {
                "content" => Init::Content,
                "noise" => Init::Noise,
                other => {
                    return Err(parameter_error(
                        py,
                        format!("init must be content or noise, not '{other}'"),
                    ));
                }
            },
            optimizer: self::optimizer(py, optimizer, learning_rate)?,
            iterations,
            size,
            scales,
            scale_ratio,
            preserve_colours: preserve_colors,
            seed,
        };
        let observer = Observer::new(progress, preview_every);
        let device = self.placement.tensors();
        let styled = py.detach(|| {
            let stylist = Stylist::new(self.network.as_ref(), params, &device)?;
            stylist.transfer_watched(&content, &styles, |snapshot| {
                let p = snapshot.progress;
                let total = p.scales * p.iterations;
                observer.observe(snapshot, p.done(), p.done() == total, |py, p| {
                    let info = PyDict::new(py);
                    info.set_item("step", p.done())?;
                    info.set_item("steps", p.scales * p.iterations)?;
                    info.set_item("scale", p.scale)?;
                    info.set_item("scales", p.scales)?;
                    info.set_item("loss", p.losses.total)?;
                    Ok(info)
                })
            })
        });
        Ok(to_array(
            py,
            DynamicImage::ImageRgb8(observer.finish(py, styled)?),
        ))
    }

    /// Grows an image from noise that excites a channel of a layer (`layer`, `channel`), a
    /// whole layer (`layer` alone) or an ImageNet class (`class_`): feature visualisation,
    /// the CLI's `visualize`.
    #[pyo3(signature = (
        *, layer=None, channel=None, class_=None, size=224, steps=256, learning_rate=0.05,
        priors=true, seed=0, progress=None, preview_every=0
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn visualize<'py>(
        &self,
        py: Python<'py>,
        layer: Option<String>,
        channel: Option<usize>,
        class_: Option<usize>,
        size: u32,
        steps: usize,
        learning_rate: f32,
        priors: bool,
        seed: u64,
        progress: Option<Py<PyAny>>,
        preview_every: usize,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let target = match (layer, channel, class_) {
            (Some(layer), Some(channel), None) => Target::Channel { layer, channel },
            (Some(layer), None, None) => Target::Layer(layer),
            (None, None, Some(class)) => Target::Class(class),
            _ => {
                return Err(parameter_error(
                    py,
                    "give a layer (and optionally a channel) or a class".into(),
                ));
            }
        };
        let params = VisualizeParams {
            size,
            steps,
            learning_rate,
            seed,
            ..VisualizeParams::default()
        };
        let params = if priors {
            params
        } else {
            params.without_priors()
        };
        let observer = Observer::new(progress, preview_every);
        let device = self.placement.tensors();
        let grown = py.detach(|| {
            visualize_watched(
                self.network.as_ref(),
                &target,
                &params,
                &device,
                |snapshot| {
                    let p = snapshot.progress;
                    observer.observe(snapshot, p.step, p.step == p.steps, |py, p| {
                        let info = PyDict::new(py);
                        info.set_item("step", p.step)?;
                        info.set_item("steps", p.steps)?;
                        info.set_item("activation", p.activation)?;
                        Ok(info)
                    })
                },
            )
        });
        Ok(to_array(
            py,
            DynamicImage::ImageRgb8(observer.finish(py, grown)?),
        ))
    }

    /// An endless zoom from an image array: `frames` frames, each the last one zoomed
    /// (`zoom`, `rotate` degrees, `pan` pixels) and dreamed again with `octaves_per_frame`
    /// octaves of `iterations_per_frame` steps; the first frame is the full dream. The
    /// dream options are [`Model::dream`]'s. Returns the frames.
    #[pyo3(signature = (
        image, *, frames=100, zoom=1.05, rotate=0.0, pan=(0.0, 0.0), colour_match=true,
        octaves_per_frame=2, iterations_per_frame=5, options, control, fps=25.0, progress=None
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn zoom<'py>(
        &self,
        py: Python<'py>,
        image: PyReadonlyArray3<'py, u8>,
        frames: usize,
        zoom: f32,
        rotate: f32,
        pan: (f32, f32),
        colour_match: bool,
        octaves_per_frame: usize,
        iterations_per_frame: usize,
        options: DreamOptions<'py>,
        control: ControlOptions,
        fps: f64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyArray3<u8>>>> {
        let source = to_image(py, &image)?.to_rgb8();
        let dream = options.params(py)?;
        let python = |e| to_python(py, e);
        // With a soundtrack, the zoom lasts as long as it.
        let frames = match &control.audio {
            Some(audio) => {
                let duration = probe_audio(audio)
                    .map_err(python)?
                    .duration
                    .ok_or_else(|| {
                        to_python(
                            py,
                            Error::AudioRead {
                                path: audio.clone(),
                                reason: "its duration is unknown".into(),
                            },
                        )
                    })?;
                ((duration * fps).round() as usize).max(1)
            }
            None => frames,
        };
        let direction = py
            .detach(|| control.direction(fps, frames))
            .map_err(python)?;
        let params = ZoomParams {
            frames,
            zoom,
            rotate,
            pan: [pan.0, pan.1],
            next: FrameSettings {
                octaves: octaves_per_frame,
                iterations: iterations_per_frame,
            },
            keep_colours: colour_match,
            direction,
        };
        let observer = Observer::new(progress, 0);
        let device = self.placement.tensors();
        let made = py.detach(|| {
            let scratch = tempfile::tempdir()
                .map_err(|e| Error::InvalidParameter(format!("no scratch folder: {e}")))?;
            let work = WorkDir::open(&scratch.path().join("frames"), "python zoom")?;
            zoom_watched(
                self.network.as_ref(),
                dream,
                &params,
                &source,
                &work,
                &device,
                |snapshot| observer.observe(snapshot, 0, false, frame_progress_dict),
            )?;
            (0..params.frames)
                .map(|i| work.finished_frame(i))
                .collect::<deepdream::Result<Vec<_>>>()
        });
        Ok(observer
            .finish(py, made)?
            .into_iter()
            .map(|frame| to_array(py, DynamicImage::ImageRgb8(frame)))
            .collect())
    }

    /// A dream film from a list of frames (image arrays of one size): each frame starts from
    /// the previous frame's dream carried along the optical flow (`blend` of it), scene cuts
    /// (`cut_threshold`) dreamed afresh; the frames after the first are dreamed with
    /// `octaves_per_frame` octaves of `iterations_per_frame` steps, along the optical flow
    /// `flow` (`farneback` or `dis`). The dream options are [`Model::dream`]'s. Returns the
    /// dreamed frames.
    #[pyo3(signature = (
        frames, *, blend=0.8, cut_threshold=30.0, octaves_per_frame=2,
        iterations_per_frame=4, flow="farneback", options, control, fps=25.0, progress=None
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn video<'py>(
        &self,
        py: Python<'py>,
        frames: Vec<PyReadonlyArray3<'py, u8>>,
        blend: f32,
        cut_threshold: f32,
        octaves_per_frame: usize,
        iterations_per_frame: usize,
        flow: &str,
        options: DreamOptions<'py>,
        control: ControlOptions,
        fps: f64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyArray3<u8>>>> {
        let frames = to_frames(py, &frames, "the video has no frames")?;
        let dream = options.params(py)?;
        let count = frames.len();
        let direction = py
            .detach(|| control.direction(fps, count))
            .map_err(|e| to_python(py, e))?;
        let flow = FlowMethod::parse(flow).map_err(|e| to_python(py, e))?;
        let params = VideoParams {
            blend,
            cut_threshold,
            flow,
            next: FrameSettings {
                octaves: octaves_per_frame,
                iterations: iterations_per_frame,
            },
            direction,
        };
        let observer = Observer::new(progress, 0);
        let count = frames.len();
        let device = self.placement.tensors();
        let made = py.detach(|| {
            let scratch = tempfile::tempdir()
                .map_err(|e| Error::InvalidParameter(format!("no scratch folder: {e}")))?;
            let work = WorkDir::open(&scratch.path().join("frames"), "python video")?;
            let mut source = IterSource(frames.into_iter());
            let made = dream_video_watched(
                self.network.as_ref(),
                dream,
                &params,
                &mut source,
                Some(count),
                &work,
                &device,
                |snapshot| observer.observe(snapshot, 0, false, frame_progress_dict),
            )?;
            (0..made)
                .map(|i| work.finished_frame(i))
                .collect::<deepdream::Result<Vec<_>>>()
        });
        Ok(observer
            .finish(py, made)?
            .into_iter()
            .map(|frame| to_array(py, DynamicImage::ImageRgb8(frame)))
            .collect())
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

    /// A live feed of `source` (a camera such as `/dev/video0`, a video file, played at its
    /// own rate when `realtime`, or a stream URL, tried `retries` times), its frames scaled
    /// to `size` and dreamed as they come on a thread of its own, each from the previous
    /// dream carried along the optical flow `flow`; `fps` holds a frame rate by lowering
    /// the steps, then the size. The dream options are [`Model::dream`]'s.
    #[pyo3(signature = (
        source, options, *, size=None, realtime=false, camera_format=None, blend=0.8,
        octaves_per_frame=1, iterations_per_frame=2, flow="dis", fps=None, retries=5
    ))]
    #[allow(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn live<'py>(
        &self,
        py: Python<'py>,
        source: &str,
        options: DreamOptions<'py>,
        size: Option<(u32, u32)>,
        realtime: bool,
        camera_format: Option<String>,
        blend: f32,
        octaves_per_frame: usize,
        iterations_per_frame: usize,
        flow: &str,
        fps: Option<f64>,
        retries: u32,
    ) -> PyResult<LiveFeed> {
        let dream = options.params(py)?;
        if let Some((w, h)) = size
            && !((16..=8192).contains(&w) && (16..=8192).contains(&h))
        {
            let message = "size must be (width, height) with sides from 16 to 8192";
            return Err(parameter_error(py, message.to_string()));
        }
        let settings = LiveSettings {
            dream,
            next: FrameSettings {
                octaves: octaves_per_frame,
                iterations: iterations_per_frame,
            },
            blend,
            flow: FlowMethod::parse(flow).map_err(|e| to_python(py, e))?,
            fps,
            ..LiveSettings::default()
        };
        settings.validate().map_err(|e| to_python(py, e))?;
        let opened = py
            .detach(|| open_source(source, camera_format.as_deref(), retries, Box::new(|_| {})))
            .map_err(|e| to_python(py, e))?;
        let pace = (realtime && opened.kind == SourceKind::File).then(|| opened.rate.fps());
        let settings = Arc::new(Mutex::new(settings));
        let stop = Arc::new(AtomicBool::new(false));
        // One dream waits for Python at most; a slow consumer skips the others.
        let (sender, receiver) = mpsc::sync_channel(1);
        let (network, placement) = (Arc::clone(&self.network), self.placement.clone());
        // The dreaming thread runs on its own; once closed it ends at the next frame.
        {
            let (settings, stop) = (Arc::clone(&settings), Arc::clone(&stop));
            std::thread::spawn(move || {
                let frames = LiveSource::start(Box::new(Scaled::new(opened.frames, size)), pace);
                let device = placement.tensors();
                let mut other = |name: &str| placement::load_named(name, &placement);
                let outcome = dream_live(
                    network,
                    &mut other,
                    &settings,
                    &frames,
                    &device,
                    |dream, report| {
                        if stop.load(Ordering::SeqCst) {
                            return Err(Error::Cancelled);
                        }
                        match sender.try_send(Ok((dream.clone(), *report))) {
                            Err(mpsc::TrySendError::Disconnected(_)) => Err(Error::Cancelled),
                            _ => Ok(()),
                        }
                    },
                );
                if let Err(error) = outcome
                    && !matches!(error, Error::Cancelled)
                {
                    let _ = sender.send(Err(error));
                }
            });
        }
        Ok(LiveFeed {
            dreams: Mutex::new(Some(receiver)),
            settings,
            stop,
            report: Mutex::new(None),
        })
    }
}

/// A dream of a receiver's next item.
type LiveItem = deepdream::Result<(RgbImage, LiveReport)>;

/// A live feed dreaming on a thread of its own; iterate for the dreams as they come.
#[pyclass(module = "deepdream._deepdream")]
struct LiveFeed {
    /// The dreams; `None` once closed.
    dreams: Mutex<Option<mpsc::Receiver<LiveItem>>>,
    settings: Arc<Mutex<LiveSettings>>,
    stop: Arc<AtomicBool>,
    report: Mutex<Option<LiveReport>>,
}

#[pymethods]
impl LiveFeed {
    /// The next dream as an array, waiting for it; `None` once the source ended or the feed
    /// was closed. Ctrl-C interrupts the wait.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray3<u8>>>> {
        // Taken out while waiting (the lock is not held without the GIL), put back after
        // unless the feed was closed meanwhile.
        let taken = self.dreams.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut receiver) = taken else {
            return Ok(None);
        };
        loop {
            let (back, next) = py.detach(move || {
                let next = receiver.recv_timeout(Duration::from_millis(100));
                (receiver, next)
            });
            receiver = back;
            let keep = |receiver| {
                if !self.stop.load(Ordering::SeqCst) {
                    *self.dreams.lock().unwrap_or_else(|p| p.into_inner()) = Some(receiver);
                }
            };
            match next {
                Ok(Ok((dream, report))) => {
                    keep(receiver);
                    *self.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
                    return Ok(Some(to_array(py, DynamicImage::ImageRgb8(dream))));
                }
                Ok(Err(error)) => return Err(to_python(py, error)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupted) = py.check_signals() {
                        keep(receiver);
                        return Err(interrupted);
                    }
                    if self.stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Changes a setting while the feed runs (the names of the OSC addresses: `step`,
    /// `layers`, `blend`, `fps`, …); from the next frame.
    fn set(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let text = match value.extract::<String>() {
            Ok(text) => text,
            Err(_) => value.str()?.to_string(),
        };
        let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        settings.set(name, &text).map_err(|e| to_python(py, e))
    }

    /// The last dream's report: `frame`, `dreamed`, `dropped`, `fps`, `latency` (seconds),
    /// `changes`, `change`, `steps`, `scale`; `None` before the first.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(report) = *self.report.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        dict.set_item("frame", report.frame)?;
        dict.set_item("dreamed", report.dreamed)?;
        dict.set_item("dropped", report.dropped)?;
        dict.set_item("fps", report.fps)?;
        dict.set_item("latency", report.latency.as_secs_f64())?;
        dict.set_item("changes", report.changes)?;
        dict.set_item("change", report.change)?;
        dict.set_item("steps", report.steps)?;
        dict.set_item("scale", report.scale)?;
        Ok(Some(dict))
    }

    /// Stops the feed: no more dreams come.
    fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.dreams.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Runs the `deepdream` command line `args` (the program's name first), with the GIL
/// released, and returns its exit status.
#[pyfunction]
fn run_cli(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| deepdream_cli::run_args(args))
}

/// Writes frames (image arrays of one size) as an animated GIF or a video (by the path's
/// extension: `.gif`, `.mp4`, `.mov`, `.mkv`, `.webm`) at `fps` frames a second, a video
/// with the sound of the file `audio` when given; nothing appears at `path` unless the
/// whole file is written.
#[pyfunction]
#[pyo3(signature = (frames, path, fps, audio=None))]
fn save_animation(
    py: Python<'_>,
    frames: Vec<PyReadonlyArray3<'_, u8>>,
    path: PathBuf,
    fps: f64,
    audio: Option<PathBuf>,
) -> PyResult<()> {
    let frames = to_frames(py, &frames, "there are no frames to write")?;
    let (width, height) = frames[0].dimensions();
    py.detach(|| {
        let rate = FrameRate::from_fps(fps)?;
        let audio = match audio {
            None => None,
            Some(audio) => {
                if !matches!(
                    AnimationFormat::from_path(&path)?,
                    AnimationFormat::Video(_)
                ) {
                    return Err(Error::InvalidParameter(
                        "a GIF has no sound: write .mp4, .mov, .mkv or .webm".into(),
                    ));
                }
                Some(AudioSource {
                    codec: probe_audio(&audio)?.codec,
                    path: audio,
                    segment: Segment::default(),
                })
            }
        };
        let mut sink = open_sink(&path, width, height, rate, frames.len() as u64, audio, &[])?;
        for frame in &frames {
            sink.write(frame)?;
        }
        sink.finish()
    })
    .map_err(|e| to_python(py, e))
}

/// Whether the file at `path` has sound FFmpeg can read.
#[pyfunction]
fn has_sound(py: Python<'_>, path: PathBuf) -> bool {
    py.detach(|| probe_audio(&path).is_ok())
}

/// Decodes a video's frames (from `start` seconds, for `duration` seconds or to the end) as
/// image arrays, upright, with the system's FFmpeg; and its frame rate.
#[pyfunction]
#[pyo3(signature = (path, start=0.0, duration=None))]
fn read_video(
    py: Python<'_>,
    path: PathBuf,
    start: f64,
    duration: Option<f64>,
) -> PyResult<(Vec<Bound<'_, PyArray3<u8>>>, f64)> {
    let (frames, fps) = py
        .detach(|| {
            let info = ffmpeg::probe(&path)?;
            let mut reader = VideoReader::open(&path, Segment { start, duration })?;
            let mut frames = Vec::new();
            while let Some(frame) = reader.next_frame()? {
                frames.push(frame);
            }
            Ok((frames, info.frame_rate.fps()))
        })
        .map_err(|e: Error| to_python(py, e))?;
    let frames = frames
        .into_iter()
        .map(|frame| to_array(py, DynamicImage::ImageRgb8(frame)))
        .collect();
    Ok((frames, fps))
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
    module.add_class::<LiveFeed>()?;
    module.add_function(wrap_pyfunction!(list_models, module)?)?;
    module.add_function(wrap_pyfunction!(default_model, module)?)?;
    module.add_function(wrap_pyfunction!(load_image, module)?)?;
    module.add_function(wrap_pyfunction!(find_class, module)?)?;
    module.add_function(wrap_pyfunction!(save_animation, module)?)?;
    module.add_function(wrap_pyfunction!(has_sound, module)?)?;
    module.add_function(wrap_pyfunction!(read_video, module)?)?;
    Ok(())
}
