//! What the page offers to choose from: the models and their layers, the ImageNet classes,
//! and the bundled example photos.

use std::collections::HashMap;
use std::sync::Arc;

use deepdream::{Device, LayerInfo, networks::models, networks::weights};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::error::{ApiError, ApiResult};

/// A model as the page lists it before its weights are loaded.
#[derive(Serialize)]
pub struct ModelSummary {
    /// The name to ask for.
    pub name: &'static str,
    /// One line about the network.
    pub description: &'static str,
    /// Whether its weights are already downloaded.
    pub cached: bool,
    /// The layers dreamed when none is chosen.
    pub default_layers: &'static [&'static str],
}

/// Every named model.
pub fn model_summaries() -> Vec<ModelSummary> {
    models::ALL
        .iter()
        .map(|spec| ModelSummary {
            name: spec.name,
            description: spec.description,
            cached: weights::is_cached(spec),
            default_layers: spec.default_layers,
        })
        .collect()
}

/// A model's dreamable layers, read from the loaded network.
#[derive(Clone, Serialize)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// One line about the network.
    pub description: String,
    /// The layers dreamed when none is chosen.
    pub default_layers: Vec<String>,
    /// Whether it has an ImageNet classifier (needed for class dreams).
    pub classifier: bool,
    /// The layers, shallowest first.
    pub layers: Vec<LayerView>,
}

/// One layer as the page shows it.
#[derive(Clone, Serialize)]
pub struct LayerView {
    /// The name to ask for.
    pub name: String,
    /// The operator that produces it.
    pub kind: String,
    /// Its channel count.
    pub channels: usize,
    /// Input pixels per output pixel (0 for a global layer).
    pub stride: usize,
    /// Smallest square input it can look at.
    pub min_input: usize,
    /// What dreaming on a layer this deep tends to produce.
    pub produces: &'static str,
}

impl ModelInfo {
    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerView> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// What dreams on a layer with this stride tend to look like (deeper layers see larger
/// parts of the image, so they grow larger things).
pub fn what_it_produces(stride: usize) -> &'static str {
    match stride {
        0 => "class scores: speckle that a classifier reads as the class",
        1..=4 => "strokes, edges and fine texture",
        5..=8 => "patterns, ornaments and swirls",
        9..=16 => "eyes, fur, faces and animal parts",
        _ => "whole objects: dogs, birds, buildings",
    }
}

fn layer_view(layer: &LayerInfo) -> LayerView {
    LayerView {
        name: layer.name.clone(),
        kind: layer.kind.clone(),
        channels: layer.channels,
        stride: layer.stride,
        min_input: layer.min_input,
        produces: what_it_produces(layer.stride),
    }
}

/// Model infos, each read once (loading a network takes a moment and may download its
/// weights); concurrent first requests for a model wait for one load.
pub struct Catalog {
    device: Device,
    infos: Mutex<HashMap<String, Arc<ModelInfo>>>,
}

impl Catalog {
    /// An empty catalog whose networks are loaded on `device`.
    pub fn new(device: Device) -> Self {
        Catalog {
            device,
            infos: Mutex::new(HashMap::new()),
        }
    }

    /// The info of the model called `name`, loading it on first use.
    pub async fn model(&self, name: &str) -> ApiResult<Arc<ModelInfo>> {
        let spec = models::find(name)?;
        let mut infos = self.infos.lock().await;
        if let Some(info) = infos.get(spec.name) {
            return Ok(info.clone());
        }
        let device = self.device.clone();
        let info = tokio::task::spawn_blocking(move || -> deepdream::Result<ModelInfo> {
            let path = weights::ensure(spec, |_| {})?;
            let network = (spec.load)(&path, &device)?;
            Ok(ModelInfo {
                name: spec.name.to_string(),
                description: spec.description.to_string(),
                default_layers: network.default_layers().to_vec(),
                classifier: network.class_layer().is_some(),
                layers: network.layers().iter().map(layer_view).collect(),
            })
        })
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot load model {}: {e}", spec.name),
            )
        })?;
        let info = Arc::new(info);
        infos.insert(spec.name.to_string(), info.clone());
        Ok(info)
    }
}

/// A picture bundled with the page, to try the studio without one of your own.
pub struct Example {
    /// The file name.
    pub name: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// `photo` (to dream or restyle) or `painting` (a style).
    pub kind: &'static str,
    /// The file's media type.
    pub media_type: &'static str,
    /// The file's bytes.
    pub bytes: &'static [u8],
}

/// The bundled pictures: the README's photos (scikit-image's public-domain samples) and
/// paintings (public domain; see `assets/paintings/LICENSES.md`).
pub const EXAMPLES: &[Example] = &[
    Example {
        name: "chelsea.png",
        title: "Chelsea the cat",
        kind: "photo",
        media_type: "image/png",
        bytes: include_bytes!("../../../assets/chelsea.png"),
    },
    Example {
        name: "coffee.png",
        title: "A cup of coffee",
        kind: "photo",
        media_type: "image/png",
        bytes: include_bytes!("../../../assets/coffee.png"),
    },
    Example {
        name: "starry_night.jpg",
        title: "The Starry Night (van Gogh)",
        kind: "painting",
        media_type: "image/jpeg",
        bytes: include_bytes!("../../../assets/paintings/starry_night.jpg"),
    },
    Example {
        name: "the_scream.jpg",
        title: "The Scream (Munch)",
        kind: "painting",
        media_type: "image/jpeg",
        bytes: include_bytes!("../../../assets/paintings/the_scream.jpg"),
    },
    Example {
        name: "woman-with-hat-matisse.jpg",
        title: "Woman with a Hat (Matisse)",
        kind: "painting",
        media_type: "image/jpeg",
        bytes: include_bytes!("../../../assets/paintings/woman-with-hat-matisse.jpg"),
    },
];
