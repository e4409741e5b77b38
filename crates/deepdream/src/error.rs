//! The library's error type: every failure a user can cause has its own variant and a
//! one-line message that says what went wrong and, where possible, what to do.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a model, reading images or dreaming.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model name is not one the library knows.
    #[error("unknown model '{name}' (known models: {known})")]
    UnknownModel { name: String, known: String },

    /// A layer name that the network does not have.
    #[error(
        "model '{model}' has no layer '{layer}' (run `deepdream layers --model {model}` to list them)"
    )]
    UnknownLayer { model: String, layer: String },

    /// A channel index outside the layer's channel count.
    #[error(
        "layer '{layer}' has {channels} channels, so channel {channel} does not exist (valid: 0..{channels})"
    )]
    UnknownChannel {
        layer: String,
        channel: usize,
        channels: usize,
    },

    /// A class name or number that ImageNet does not have.
    #[error("unknown ImageNet class '{name}': {suggestions}")]
    UnknownClass { name: String, suggestions: String },

    /// The model has no ImageNet classifier (needed by `classify` and class dreams).
    #[error("model '{model}' has no ImageNet classifier; use --model efficientnet-lite0")]
    NoClassifier { model: String },

    /// The dream cannot fit the memory budget.
    #[error(
        "{what} needs about {}, over the {} budget; raise --max-memory{hint}",
        format_bytes(*needed),
        format_bytes(*budget)
    )]
    OverMemoryBudget {
        what: String,
        needed: u64,
        budget: u64,
        hint: String,
    },

    /// The network gave a gradient with NaN or infinite values (broken weights, or
    /// preprocessing that does not suit them); going on would write a black picture.
    #[error(
        "the gradient of '{layer}' has NaN or infinite values at {width}x{height}: the network's weights or its preprocessing give invalid numbers"
    )]
    NonFiniteGradient {
        layer: String,
        width: usize,
        height: usize,
    },

    /// A device that cannot be used, and why.
    #[error("{0}")]
    Device(String),

    /// Parameters that cannot work (zero iterations, a negative step, …).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// The image is smaller than the chosen layer can look at.
    #[error(
        "image {width}x{height} is too small for layer '{layer}': it needs at least {min}x{min} pixels"
    )]
    ImageTooSmall {
        width: u32,
        height: u32,
        layer: String,
        min: u32,
    },

    /// An image file could not be opened, decoded or was too large.
    #[error("cannot read image {}: {reason}", path.display())]
    ImageRead { path: PathBuf, reason: String },

    /// Image data held in memory (an upload) could not be decoded or encoded.
    #[error("cannot read the image: {0}")]
    ImageData(String),

    /// The caller stopped the work (a cancelled job).
    #[error("cancelled")]
    Cancelled,

    /// An image could not be written.
    #[error("cannot write image {}: {reason}", path.display())]
    ImageWrite { path: PathBuf, reason: String },

    /// The ONNX file could not be parsed, or uses something the executor does not run.
    #[error("cannot use ONNX model {}: {reason}", path.display())]
    Onnx { path: PathBuf, reason: String },

    /// An ONNX operator (or an attribute value of one) that the executor does not support.
    #[error("unsupported ONNX operator {op} in node '{node}'{detail}")]
    UnsupportedOperator {
        op: String,
        node: String,
        detail: String,
    },

    /// Obtaining the weights from their package failed.
    #[error("cannot fetch weights for '{model}': {reason}")]
    Fetch { model: String, reason: String },

    /// A weight file whose contents are not what they should be.
    #[error("weight file {} is corrupt: {reason}", path.display())]
    CorruptWeights { path: PathBuf, reason: String },

    /// A weight file that holds another network than the one it was loaded as.
    #[error("weight file {} is not {expected}: {reason}", path.display())]
    WrongArchitecture {
        path: PathBuf,
        expected: String,
        reason: String,
    },

    /// A video file that cannot be used as input.
    #[error("cannot read video {}: {reason}", path.display())]
    VideoRead { path: PathBuf, reason: String },

    /// A sound file (or a video's sound) that cannot be used.
    #[error("cannot read sound {}: {reason}", path.display())]
    AudioRead { path: PathBuf, reason: String },

    /// A video or animation that cannot be written.
    #[error("cannot write video {}: {reason}", path.display())]
    VideoWrite { path: PathBuf, reason: String },

    /// An external program the task needs is not installed.
    #[error("{tool} was not found; {hint}")]
    MissingTool { tool: String, hint: String },

    /// A work folder of an interrupted run that belongs to another job.
    #[error("work folder {} holds frames of a different job ({reason}); delete it, or choose another with --work-dir", path.display())]
    WorkDirConflict { path: PathBuf, reason: String },

    /// Any other I/O failure, with the path it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A byte count for people: `512 bytes`, `1 KiB`, `300 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    let (value, unit) = if b < KIB {
        return format!("{bytes} bytes");
    } else if b < KIB * KIB {
        (b / KIB, "KiB")
    } else if b < KIB * KIB * KIB {
        (b / (KIB * KIB), "MiB")
    } else {
        (b / (KIB * KIB * KIB), "GiB")
    };
    if value < 10.0 {
        format!("{:.1} {unit}", value).replace(".0 ", " ")
    } else {
        format!("{:.0} {unit}", value)
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_bytes;

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(format_bytes(512), "512 bytes");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(300 << 20), "300 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
    }
}
